"""bcrypt hashing, run in a thread: a hash costs ~200 ms of CPU the event loop must not pay."""

from __future__ import annotations

import asyncio

import bcrypt

from server.domain.errors import InvalidInput

MIN_LENGTH = 8
MAX_BYTES = 72  # bcrypt ignores (5.x: refuses) anything longer
ROUNDS = 12

# Verifying against this keeps the timing of "no such user" equal to "wrong password".
_DUMMY = bcrypt.hashpw(b"timing-equaliser", bcrypt.gensalt(4))


def check_password_policy(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"password must have at least {MIN_LENGTH} characters", field="password")
    if len(password.encode()) > MAX_BYTES:
        raise InvalidInput(f"password must be at most {MAX_BYTES} bytes", field="password")


def hash_password_sync(password: str, rounds: int = ROUNDS) -> str:
    check_password_policy(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


async def hash_password(password: str, rounds: int = ROUNDS) -> str:
    check_password_policy(password)
    return await asyncio.to_thread(hash_password_sync, password, rounds)


async def verify_password(password: str, hashed: str | None) -> bool:
    data = password.encode()[:MAX_BYTES]
    if hashed is None:
        await asyncio.to_thread(bcrypt.checkpw, data, _DUMMY)
        return False
    return await asyncio.to_thread(bcrypt.checkpw, data, hashed.encode())
