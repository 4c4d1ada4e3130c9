"""Remembered logins: the refresh token in the OS keyring, or in a 0600 file where there is none.

A headless Linux box has no keyring backend (keyring raises NoKeyringError); there the token
goes to keyrings.alt's PlaintextKeyring in the console's config directory, readable by the
user only. That is not encryption, and the login dialog says which backend is in use.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import keyring
import keyring.errors
from keyring.backend import KeyringBackend
from keyrings.alt.file import PlaintextKeyring

SERVICE = "iiot-hmi"


class _PrivateFileKeyring(PlaintextKeyring):  # type: ignore[misc]
    """PlaintextKeyring at a chosen path, kept at mode 0600."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path

    @property
    def file_path(self) -> str:
        return str(self._path)

    def set_password(self, service: str, username: str, password: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._path.touch(mode=0o600, exist_ok=True)
        os.chmod(self._path, 0o600)
        super().set_password(service, username, password)
        os.chmod(self._path, 0o600)


def _usable_os_keyring() -> KeyringBackend | None:
    backend = keyring.get_keyring()
    name = type(backend).__module__ + "." + type(backend).__name__
    if "fail" in name or "null" in name.lower() or "keyrings.alt" in name:
        return None
    if backend.priority <= 0:
        return None
    return backend


class CredentialStore:
    """Stores one refresh token per (server, tenant, user)."""

    def __init__(self, config_dir: Path, *, use_os_keyring: bool = True) -> None:
        os_backend = _usable_os_keyring() if use_os_keyring else None
        self.file: Path | None = None if os_backend else config_dir / "credentials.cfg"
        self.backend: KeyringBackend = os_backend or _PrivateFileKeyring(config_dir / "credentials.cfg")

    @property
    def description(self) -> str:
        """What the login dialog shows: where a remembered login is kept."""
        if self.file is not None:
            return f"file {self.file} (mode 0600, not encrypted: no OS keyring found)"
        return f"OS keyring ({type(self.backend).__name__})"

    @staticmethod
    def key(server: str, tenant: str, username: str) -> str:
        return f"{server.rstrip('/')}|{tenant}|{username}"

    def load(self, server: str, tenant: str, username: str) -> str | None:
        try:
            return self.backend.get_password(SERVICE, self.key(server, tenant, username))
        except keyring.errors.KeyringError:
            return None

    def save(self, server: str, tenant: str, username: str, refresh_token: str) -> None:
        self.backend.set_password(SERVICE, self.key(server, tenant, username), refresh_token)

    def forget(self, server: str, tenant: str, username: str) -> None:
        with contextlib.suppress(keyring.errors.KeyringError):
            self.backend.delete_password(SERVICE, self.key(server, tenant, username))
