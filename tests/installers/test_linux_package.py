"""The .deb: built from the real bundles with zstd, its contents as listed, the unit and the
desktop entry accepted by systemd's and freedesktop's validators, the installed binaries
running; and its maintainer scripts through a real dpkg install, upgrade, remove and purge in
a fake root (`dpkg --root`), with the commands that would touch this machine's users and
services replaced by stand-ins that record their calls."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from installers.linux import build_deb
from server.config import load_settings
from tests.installers.conftest import BUILD_TIMEOUT, need
from tests.support import database_url

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT)

UNIT = "lib/systemd/system/iiot-server.service"
DESKTOP = "usr/share/applications/iiot-hmi.desktop"


def test_package_is_zstd_with_control_fields(deb: Path) -> None:
    members = subprocess.run(["ar", "t", str(deb)], capture_output=True, text=True, check=True).stdout.split()
    assert members == ["debian-binary", "control.tar.zst", "data.tar.zst"]
    info = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line and not line.startswith(" "))
    assert fields["Package"] == "iiot-platform" and fields["Version"] == "0.1.0"
    assert "libxcb1" in fields["Depends"] and "init-system-helpers" in fields["Depends"]
    assert int(fields["Installed-Size"]) > 100_000  # kB: both bundles are in it


def test_package_contents_as_listed(deb: Path) -> None:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in listing.splitlines():
        perms, owner, *_rest = line.split(maxsplit=5)
        name = line.split(" ./", 1)[1] if " ./" in line else ""
        entries[name.split(" -> ")[0]] = (perms, owner, name)
    expected_files = [
        "opt/iiot-platform/server/iiot-server", "opt/iiot-platform/hmi/iiot-hmi", UNIT, DESKTOP,
        "etc/iiot/iiot.toml", "usr/share/icons/hicolor/scalable/apps/iiot-hmi.svg",
        "usr/share/icons/hicolor/48x48/apps/iiot-hmi.png", "usr/share/icons/hicolor/256x256/apps/iiot-hmi.png",
        "usr/share/doc/iiot-platform/copyright", "usr/share/doc/iiot-platform/README.md",
    ]  # fmt: skip
    missing = [f for f in expected_files if f not in entries]
    assert not missing, missing
    assert entries["opt/iiot-platform/server/iiot-server"][0] == "-rwxr-xr-x"
    assert entries["usr/bin/iiot-server"][2].endswith("-> ../../opt/iiot-platform/server/iiot-server")
    assert entries["usr/bin/iiot-hmi"][2].endswith("-> ../../opt/iiot-platform/hmi/iiot-hmi")
    assert {owner for _perms, owner, _name in entries.values()} == {"root/root"}
    # Nothing under the data directory: dpkg must never own (and so remove) the plant's data.
    assert not [name for name in entries if name.startswith("var/")]


def test_control_files(deb_root: Path) -> None:
    debian = deb_root / "DEBIAN"
    assert (debian / "conffiles").read_text().split() == ["/etc/iiot/iiot.toml"]
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(debian / script, os.X_OK), script
        subprocess.run(["sh", "-n", str(debian / script)], check=True)


def test_systemd_analyze_verify_accepts_the_unit(deb_root: Path, tmp_path: Path) -> None:
    """Verified inside the unpacked package (so ExecStart's binary exists), with the host's
    own units beside it for the targets it refers to. Any warning counts as a failure."""
    need("systemd-analyze")
    root = tmp_path / "root"
    shutil.copytree(deb_root, root, symlinks=True, ignore=shutil.ignore_patterns("_internal"))
    host_units = Path("/lib/systemd/system")
    for unit in host_units.iterdir():
        dest = root / "lib" / "systemd" / "system" / unit.name
        if not dest.exists() and unit.is_file():
            shutil.copy(unit, dest)
    r = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "iiot-server.service"],
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_unit_is_hardened_as_promised(deb_root: Path) -> None:
    lines = [line.strip() for line in (deb_root / UNIT).read_text().splitlines()]
    keys: dict[str, list[str]] = {}
    for line in lines:
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            keys.setdefault(key, []).append(value)
    assert keys["User"] == ["iiot"] and keys["Group"] == ["iiot"]
    assert keys["ExecStart"] == ["/usr/bin/iiot-server run"]
    assert keys["Environment"] == ["IIOT_CONFIG=/etc/iiot/iiot.toml"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "Restart": "on-failure", "ReadWritePaths": "/var/lib/iiot",
                       "StateDirectory": "iiot", "CapabilityBoundingSet": ""}.items():  # fmt: skip
        assert keys.get(key) == [value], key
    assert keys["WantedBy"] == ["multi-user.target"]


def test_desktop_file_validate_accepts_the_entry(deb_root: Path) -> None:
    need("desktop-file-validate")
    r = subprocess.run(["desktop-file-validate", str(deb_root / DESKTOP)], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    text = (deb_root / DESKTOP).read_text()
    assert "Exec=iiot-hmi\n" in text and "Icon=iiot-hmi\n" in text


def test_packaged_configuration(deb_root: Path) -> None:
    config = deb_root / "etc" / "iiot" / "iiot.toml"
    assert tomllib.loads(config.read_text())["server"]["data_dir"] == "/var/lib/iiot"
    settings = load_settings(config)
    assert settings.database_url == "sqlite:////var/lib/iiot/iiot.db"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_installed_binaries_answer(deb_root: Path, tmp_path: Path, backend: str) -> None:
    """The programs as the package installs them, started through the /usr/bin links."""
    server, hmi = deb_root / "usr" / "bin" / "iiot-server", deb_root / "usr" / "bin" / "iiot-hmi"
    with database_url(backend, tmp_path) as url:
        env = {"PATH": os.environ["PATH"], "IIOT_DATA_DIR": str(tmp_path), "IIOT_DATABASE_URL": url,
               "IIOT_HMI_CONFIG_DIR": str(tmp_path / "hmi")}  # fmt: skip
        steps = [(server, "--version", "iiot-server 0.1.0"), (hmi, "--version", "iiot-hmi 0.1.0"),
                 (server, "migrate", "schema empty ->"), (server, "--check", "reachable and current")]  # fmt: skip
        for exe, arg, expected in steps:
            r = subprocess.run([str(exe), arg], capture_output=True, text=True, env=env, timeout=120, check=False)
            assert r.returncode == 0 and expected in r.stdout, (arg, r.stdout, r.stderr)


# --- maintainer scripts through a real dpkg in a fake root -------------------------------------

STUB = """#!/bin/sh
# stand-in for {name}: records the call; knows the users useradd created
echo "{name} $*" >> "$STUB_LOG"
case "{name}" in
  getent) grep -qx "$2" "$STUB_USERS" 2>/dev/null || exit 2 ;;
  useradd) for last; do :; done; echo "$last" >> "$STUB_USERS" ;;
  userdel) grep -vx "$1" "$STUB_USERS" > "$STUB_USERS.new" || true; mv "$STUB_USERS.new" "$STUB_USERS" ;;
esac
exit 0
"""
STUBBED = ("getent", "useradd", "userdel", "groupdel", "chown", "deb-systemd-helper", "deb-systemd-invoke", "systemctl")


class FakeRoot:
    """A dpkg database in a directory; dpkg runs the maintainer scripts with DPKG_ROOT set."""

    def __init__(self, base: Path) -> None:
        self.root = base / "root"
        for sub in ("info", "updates", "triggers"):
            (self.root / "var" / "lib" / "dpkg" / sub).mkdir(parents=True)
        for name in ("status", "available"):
            (self.root / "var" / "lib" / "dpkg" / name).touch()
        stubs = base / "stubs"
        stubs.mkdir()
        for name in STUBBED:
            (stubs / name).write_text(STUB.format(name=name))
            (stubs / name).chmod(0o755)
        self.log, self.users = base / "calls.log", base / "users"
        self.env = {"PATH": f"{stubs}:{os.environ['PATH']}", "STUB_LOG": str(self.log), "STUB_USERS": str(self.users)}

    def dpkg(self, *args: str) -> list[str]:
        """Run dpkg; returns the stand-in calls the maintainer scripts made."""
        self.log.write_text("")
        cmd = ["dpkg", f"--root={self.root}", "--force-script-chrootless", "--force-depends", "--force-not-root",
               "--force-confold", *args]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, env=self.env, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        return self.log.read_text().splitlines()

    def path(self, rel: str) -> Path:
        return self.root / rel


def stand_in_deb(base: Path, version: str) -> Path:
    """The real packaging script around two tiny stand-in bundles: the scripts are the subject."""
    bundles = base / f"bundles-{version}"
    for name, dirname in (("iiot-server", "server"), ("iiot-hmi", "hmi")):
        exe = bundles / dirname / name
        exe.parent.mkdir(parents=True)
        exe.write_text(f"#!/bin/sh\necho {name} {version}\n")
        exe.chmod(0o755)
    return build_deb.build_deb(bundles / "server", bundles / "hmi", base / "debs", version)


def test_maintainer_scripts_install_upgrade_remove_purge(tmp_path: Path) -> None:
    need("dpkg")
    fake = FakeRoot(tmp_path)
    first, second = stand_in_deb(tmp_path, "0.1.0"), stand_in_deb(tmp_path, "0.1.1")

    # A first install, systemd not running (as in an image build): user, data dir, unit enabled.
    calls = fake.dpkg("-i", str(first))
    assert any(c.startswith("useradd --system --user-group --home-dir /var/lib/iiot") for c in calls), calls
    assert f"chown iiot:iiot {fake.path('var/lib/iiot')}" in calls
    assert "deb-systemd-helper enable iiot-server.service" in calls
    assert not [c for c in calls if c.startswith(("systemctl", "deb-systemd-invoke"))], calls
    data, config = fake.path("var/lib/iiot"), fake.path("etc/iiot/iiot.toml")
    assert data.stat().st_mode & 0o777 == 0o750 and config.stat().st_mode & 0o777 == 0o640
    assert os.readlink(fake.path("usr/bin/iiot-server")) == "../../opt/iiot-platform/server/iiot-server"

    # The plant runs for a while; an engineer edits the configuration.
    (data / "iiot.db").write_text("plant data")
    config.write_text(config.read_text() + '\nmqtt_url = "mqtt://broker:1883"\n')

    # An upgrade with systemd running: no second user, the service restarted, data and edits kept.
    fake.path("run/systemd/system").mkdir(parents=True)
    calls = fake.dpkg("-i", str(second))
    assert not [c for c in calls if c.startswith("useradd")], calls
    assert "deb-systemd-invoke restart iiot-server.service" in calls
    assert "deb-systemd-invoke stop iiot-server.service" not in calls
    assert (data / "iiot.db").read_text() == "plant data" and "mqtt://broker:1883" in config.read_text()
    assert fake.path("opt/iiot-platform/server/iiot-server").read_text().endswith("0.1.1\n")

    # Remove: the service stopped, the programs gone, the data, configuration and user kept.
    calls = fake.dpkg("-r", "iiot-platform")
    assert "deb-systemd-invoke stop iiot-server.service" in calls
    assert "deb-systemd-helper mask iiot-server.service" in calls
    assert not fake.path("opt/iiot-platform").exists() and not fake.path("usr/bin/iiot-server").exists()
    assert (data / "iiot.db").read_text() == "plant data" and "mqtt://broker:1883" in config.read_text()
    assert not [c for c in calls if c.startswith("userdel")]

    # Reinstall finds everything as it was; then purge deletes data, configuration and user.
    calls = fake.dpkg("-i", str(second))
    assert not [c for c in calls if c.startswith("useradd")] and (data / "iiot.db").exists()
    # dpkg passes the kept configuration's version to postinst, so it is a restart (which starts it).
    assert "deb-systemd-invoke restart iiot-server.service" in calls
    fake.dpkg("-r", "iiot-platform")
    calls = fake.dpkg("-P", "iiot-platform")
    assert "deb-systemd-helper purge iiot-server.service" in calls
    assert "userdel iiot" in calls and "groupdel iiot" not in calls  # userdel took the user's group
    assert not data.exists() and not fake.path("etc/iiot").exists()
