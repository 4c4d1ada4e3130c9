"""The real bundles, built once by installers.build (cached under build/bundles by input hash),
and the .deb assembled from them. A first run on a fresh checkout spends ~2 minutes in
PyInstaller; later runs with unchanged inputs reuse the bundles."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from installers import build
from installers.linux import build_deb

BUILD_TIMEOUT = 1200  # seconds: two PyInstaller runs on a busy 2-core machine


def need(tool: str) -> str:
    """A Debian tool the tests need; scripts/system-deps.sh (make test) installs it."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: run `make system-deps` (scripts/system-deps.sh installs it)")
    return path


@pytest.fixture(scope="session")
def server_bundle() -> build.Bundle:
    return build.bundle("iiot-server")


@pytest.fixture(scope="session")
def hmi_bundle() -> build.Bundle:
    return build.bundle("iiot-hmi")


@pytest.fixture(scope="session")
def deb(server_bundle: build.Bundle, hmi_bundle: build.Bundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("dpkg-deb")
    # Beside the bundles (same file system): the staging tree hard-links instead of copying.
    out = build.BUILD / "test-deb"
    shutil.rmtree(out, ignore_errors=True)
    return build_deb.build_deb(server_bundle.path, hmi_bundle.path, out, build.version())


@pytest.fixture(scope="session")
def deb_root(deb: Path) -> Iterator[Path]:
    """The package unpacked as dpkg would install it, with its DEBIAN/ control files."""
    root = deb.parent / "root"
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(root / "DEBIAN")], check=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)
