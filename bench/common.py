"""Shared helpers: throwaway databases, timing, and the markdown result tables."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
POSTGRES_URL = os.environ.get("IIOT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")


@dataclass
class Row:
    backend: str
    figure: str
    value: str
    baseline: str
    ratio: str
    goal: str
    met: str


@dataclass
class BenchDb:
    backend: str
    url: str  # SQLAlchemy-style URL for Database()
    dsn: str  # raw driver: sqlite file path, or asyncpg DSN
    tmp: Path


def machine_busy(seconds: float = 1.0) -> float:
    """Cores busy (user+system, all processes) averaged over `seconds`."""

    def ticks() -> tuple[int, int]:
        v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(v) - v[3] - v[4], sum(v)

    b0, t0 = ticks()
    time.sleep(seconds)
    b1, t1 = ticks()
    cores = os.cpu_count() or 1
    return (b1 - b0) / max(1, t1 - t0) * cores


def wait_for_quiet(limit: float = 0.4, max_wait: float = 120.0) -> str:
    """Wait until other work on this shared machine leaves the cores idle; returns a note for the doc."""
    t0 = time.monotonic()
    busy = machine_busy(2.0)
    while busy > limit and time.monotonic() - t0 < max_wait:
        print(f"  (machine busy: {busy:.2f} cores used by other processes; waiting for quiet)", flush=True)
        busy = machine_busy(3.0)
    waited = time.monotonic() - t0
    state = "quiet" if busy <= limit else "**busy**"
    return f"machine {state} before the run ({busy:.2f} cores in use by other processes, waited {waited:.0f} s)"


def git_note() -> str:
    import subprocess

    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "server"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "git: unknown"
    return f"code: {rev}" + (" + uncommitted changes under server/" if dirty else "")


def cpu_note() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    return f"{cores} cores" + (f" ({model})" if model else "")


async def pg_version() -> str:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        return str(await conn.fetchval("SHOW server_version")).split()[0]
    finally:
        await conn.close()


def environment_note() -> str:
    try:
        pg = asyncio.run(pg_version())
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        pg = f"unreachable ({exc.__class__.__name__})"
    return (
        f"{cpu_note()}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, PostgreSQL {pg}, "
        f"{platform.system()} {platform.release()}"
    )


def _with_db(url: str, name: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{name}"


@asynccontextmanager
async def bench_database(backend: str) -> AsyncIterator[BenchDb]:
    """A fresh, migrated database: a temp SQLite file, or a throwaway PostgreSQL database."""
    from server.storage.database import Database

    tmp = Path(tempfile.mkdtemp(prefix=f"iiot-bench-{backend}-"))
    name = f"iiot_bench_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        path = tmp / "iiot.db"
        db = BenchDb(backend, f"sqlite:///{path}", str(path), tmp)
    else:
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        dsn = _with_db(POSTGRES_URL, name)
        db = BenchDb(backend, dsn, dsn, tmp)
    try:
        d = Database(db.url)
        await d.migrate()
        await d.dispose()
        yield db
    finally:
        if backend == "postgresql":
            admin = await asyncpg.connect(POSTGRES_URL)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
        shutil.rmtree(tmp, ignore_errors=True)


async def read_response(r: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length (what FastAPI sends)."""
    status = int((await r.readline()).split()[1])
    length = 0
    while True:
        line = await r.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await r.readexactly(length)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_rate(x: float) -> str:
    return f"{x / 1000:,.0f}k/s" if x >= 10_000 else f"{x:,.0f}/s"


def fmt_ms(x: float) -> str:
    return f"{x * 1000:.1f} ms" if x < 10 else f"{x:.1f} s"


def yes_no(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start


def render(title: str, rows: list[Row], notes: list[str], command: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{os.cpu_count()} cores"
    head = "| Date | Machine | Backend | Figure | Measured | Baseline | Ratio | Goal | Met |"
    sep = "|---|---|---|---|---:|---:|---:|---|---|"
    lines = [
        f"## {title} ({now})", "", f"Command: `{command}`  ", f"Environment: {environment_note()}; {git_note()}", "",
        head, sep,
    ]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {now[:10]} | {machine} | {r.backend} | {r.figure} | {r.value} | {r.baseline} | {r.ratio} "
            f"| {r.goal} | {r.met} |"
        )
    lines.append("")
    lines.extend(f"- {n}" for n in notes)
    lines.append("")
    return "\n".join(lines)


def publish(title: str, rows: list[Row], notes: list[str], command: str, *, write: bool = True) -> str:
    """Print the table and append it to docs/benchmarks.md."""
    text = render(title, rows, notes, command)
    print("\n" + text, flush=True)
    if write:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        if not DOC.exists():
            DOC.write_text(
                "# Benchmarks\n\n"
                "Appended by `python -m bench.run_all` (or one module of `bench/`), newest at the bottom. "
                'Each section names the command that produced it. "Ratio" is measured ÷ baseline.\n\n'
            )
        with DOC.open("a", encoding="utf-8") as f:
            f.write("\n" + text)
    return text
