"""Build the frozen programs and the installers (`make dist` runs `all`).

    python -m installers.build bundles [--onefile]   # PyInstaller onedir bundles (+ the one-file console)
    python -m installers.build deb                   # bundles, then dist/iiot-platform_<v>_<arch>.deb
    python -m installers.build nsis [--stand-in]     # the Windows installer (stand-in payload off Windows)
    python -m installers.build all                   # bundles + deb + nsis with stand-ins (Linux)

Bundles are cached under build/bundles/<name>-<hash>, the hash taken over everything that goes
into them (sources, assets, specs, installed distributions, Python): the test suite and CI
reuse a bundle instead of spending a minute per program on PyInstaller, and rebuild only what
changed. `--force` rebuilds anyway. Each bundle's build time and size are in its build.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("IIOT_BUILD_DIR", ROOT / "build"))
DIST = ROOT / "dist"
OS_DIR = "windows" if sys.platform == "win32" else "linux"
EXE_SUFFIX = ".exe" if sys.platform == "win32" else ""

# What each program is built from, besides the shared spec helpers and the environment.
INPUTS = {
    "iiot-server": ["server", "installers/entry/iiot_server.py", "installers/entry/iiot_service.py"],
    "iiot-hmi": [
        "hmi",
        "server/__init__.py",
        "server/api/__init__.py",
        "server/api/schema.py",
        "assets",
        "installers/entry/iiot_hmi.py",
    ],  # fmt: skip
}
SHARED_INPUTS = ["installers/pyi_common.py"]


@dataclass(frozen=True)
class Bundle:
    name: str
    path: Path  # the onedir directory, or the one-file executable
    executable: Path
    seconds: float  # PyInstaller's wall time when it was built
    size_bytes: int
    cached: bool


def version() -> str:
    from server import __version__

    return __version__


def _files(rel: str) -> list[Path]:
    path = ROOT / rel
    if path.is_file():
        return [path]
    skip = {"__pycache__", ".mypy_cache"}
    return sorted(p for p in path.rglob("*") if p.is_file() and not skip & set(p.parts) and p.suffix != ".pyc")


def input_hash(name: str, onefile: bool = False) -> str:
    """Hash of the program's sources, the spec, the installed distributions and the Python."""
    digest = hashlib.sha256()
    spec = ROOT / "installers" / OS_DIR / f"{name}.spec"
    for rel in [*INPUTS[name], *SHARED_INPUTS, str(spec.relative_to(ROOT))]:
        for file in _files(rel):
            digest.update(str(file.relative_to(ROOT)).encode() + b"\0" + file.read_bytes() + b"\0")
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())
    digest.update("\n".join([*dists, sys.version, platform.platform(), str(onefile)]).encode())
    return digest.hexdigest()[:16]


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())


def bundle(name: str, *, onefile: bool = False, force: bool = False) -> Bundle:
    """The cached bundle of `name` for the current inputs, built with PyInstaller when missing."""
    key = f"{name}{'-onefile' if onefile else ''}-{input_hash(name, onefile)}"
    home = BUILD / "bundles" / key
    info_file = home / "build.json"
    if force and home.exists():
        shutil.rmtree(home)
    if not info_file.exists():
        shutil.rmtree(home, ignore_errors=True)
        spec = ROOT / "installers" / OS_DIR / f"{name}.spec"
        cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath",
               str(home / "dist"), "--workpath", str(BUILD / "pyinstaller" / key), str(spec)]  # fmt: skip
        if onefile:
            cmd += ["--", "--onefile"]
        print(f"build: {' '.join(cmd[2:])}", flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True)
        seconds = time.perf_counter() - t0
        shutil.rmtree(BUILD / "pyinstaller" / key, ignore_errors=True)
        built = home / "dist" / (name + EXE_SUFFIX if onefile else name)
        info = {"name": name, "onefile": onefile, "seconds": round(seconds, 1), "size_bytes": tree_size(built),
                "built_at": time.strftime("%Y-%m-%d %H:%M:%S"), "python": platform.python_version()}  # fmt: skip
        info_file.write_text(json.dumps(info, indent=1))
        _prune(name, onefile, keep=home)
        cached = False
    else:
        info = json.loads(info_file.read_text())
        cached = True
    path = home / "dist" / (name + EXE_SUFFIX if onefile else name)
    executable = path if onefile else path / (name + EXE_SUFFIX)
    return Bundle(name, path, executable, float(info["seconds"]), int(info["size_bytes"]), cached)


def _prune(name: str, onefile: bool, keep: Path) -> None:
    """Bundles are 100-250 MB each: keep only the newest of each program."""
    prefix = f"{name}{'-onefile' if onefile else ''}-"
    for old in (BUILD / "bundles").glob(prefix + "*"):
        rest = old.name[len(prefix) :]
        if old != keep and "-" not in rest:  # iiot-hmi-<hash>, not iiot-hmi-onefile-<hash>
            shutil.rmtree(old, ignore_errors=True)


def build_deb(out: Path = DIST) -> Path:
    from installers.linux.build_deb import build_deb as assemble

    server, hmi = bundle("iiot-server"), bundle("iiot-hmi")
    return assemble(server.path, hmi.path, out, version())


def stand_in_payload(where: Path) -> tuple[Path, Path]:
    """Empty files named like the Windows bundles, so makensis can compile the script on Linux."""
    server, hmi = where / "iiot-server", where / "iiot-hmi"
    for directory, files in ((server, ["iiot-server.exe", "iiot-service.exe"]), (hmi, ["iiot-hmi.exe"])):
        (directory / "_internal").mkdir(parents=True, exist_ok=True)
        for file in files:
            (directory / file).write_bytes(b"MZ stand-in\n")
        (directory / "_internal" / "python311.dll").write_bytes(b"stand-in\n")
    return server, hmi


def build_nsis(server_dir: Path, hmi_dir: Path, out: Path = DIST, *, makensis: str = "makensis") -> Path:
    """Compile installers/windows/iiot-platform.nsi around the two bundles; warnings are errors."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"iiot-platform-{version()}-setup.exe"
    script = ROOT / "installers" / "windows" / "iiot-platform.nsi"
    defines = {
        "VERSION": version(),
        "SERVER_DIR": str(server_dir.resolve()),
        "HMI_DIR": str(hmi_dir.resolve()),
        "CONFIG": str(ROOT / "config.example.toml"),
        "ICON": str(ROOT / "assets" / "icons" / "iiot-hmi.ico"),
        "OUTFILE": str(target.resolve()),
    }
    cmd = [makensis, "-V2", "-WX", *(f"-D{k}={v}" for k, v in defines.items()), str(script)]
    subprocess.run(cmd, check=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["bundles", "deb", "nsis", "all"])
    parser.add_argument("--onefile", action="store_true", help="also the one-file console")
    parser.add_argument("--force", action="store_true", help="rebuild the bundles even when cached")
    parser.add_argument("--stand-in", action="store_true", help="nsis: stand-in payload instead of the bundles")
    parser.add_argument("--makensis", default=os.environ.get("MAKENSIS", "makensis"))
    args = parser.parse_args(argv)
    if args.what in ("bundles", "deb", "all"):
        for name in INPUTS:
            b = bundle(name, force=args.force)
            print(f"{b.name}: {b.path} ({b.size_bytes / 1e6:.0f} MB, built in {b.seconds:.0f} s"
                  f"{', cached' if b.cached else ''})")  # fmt: skip
        if args.onefile or args.what == "all":
            b = bundle("iiot-hmi", onefile=True, force=args.force)
            print(f"{b.name} one-file: {b.path} ({b.size_bytes / 1e6:.0f} MB, built in {b.seconds:.0f} s)")
    if args.what in ("deb", "all"):
        print(f"deb: {build_deb()}")
    if args.what in ("nsis", "all"):
        if args.stand_in or sys.platform != "win32":
            server, hmi = stand_in_payload(BUILD / "nsis-stand-in")
        else:
            server, hmi = bundle("iiot-server").path, bundle("iiot-hmi").path
        print(f"nsis: {build_nsis(server, hmi, makensis=args.makensis)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
