"""Run every benchmark in turn; each prints its table and appends it to docs/benchmarks.md.

    python -m bench.run_all                        # all of them, both backends (~25 min on 2 cores)
    python -m bench.run_all --backend postgresql   # one backend
    python -m bench.run_all --only trend --trend-args "--days 60"
    python -m bench.run_all --no-doc               # print only

Each benchmark is also a module of its own with size flags (`python -m bench.<module> --help`):
bench.writer_throughput, bench.trend_read, bench.ingest_latency (issue #2); bench.ingest_mqtt,
bench.ingest_amqp, bench.ingest_coap, bench.ingest_opcua, bench.ingest_modbus (issue #3);
bench.installers (issue #6: bundle sizes, build and start-up times); bench.analytics (issue #7:
analytics endpoint latency on 30 days of 1 Hz history; bench.anomaly_quality and
bench.anomaly_throughput, `--only detection` / `--only scoring`: detection quality on injected
faults, scoring throughput and latency, training time). Before each timed part a benchmark
waits (up to 2 min) for other processes to leave the cores idle, and records whether they did.
"""

from __future__ import annotations

import argparse
import shlex
import time

from bench import (
    analytics,
    anomaly_quality,
    anomaly_throughput,
    ingest_amqp,
    ingest_coap,
    ingest_latency,
    ingest_modbus,
    ingest_mqtt,
    ingest_opcua,
    installers,
    trend_read,
    writer_throughput,
)

BENCHES = {
    "writer": writer_throughput.main,
    "trend": trend_read.main,
    "latency": ingest_latency.main,
    "mqtt": ingest_mqtt.main,
    "amqp": ingest_amqp.main,
    "coap": ingest_coap.main,
    "opcua": ingest_opcua.main,
    "modbus": ingest_modbus.main,
    "installers": installers.main,
    "analytics": analytics.main,
    "detection": anomaly_quality.main,
    "scoring": anomaly_throughput.main,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=list(BENCHES), help="run only these (repeatable)")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--no-doc", action="store_true", help="print only, do not append to docs/benchmarks.md")
    for name in BENCHES:
        p.add_argument(f"--{name}-args", default="", help=f"extra flags for bench {name} (one quoted string)")
    a = p.parse_args(argv)
    failed = []
    for name, run in BENCHES.items():
        if a.only and name not in a.only:
            continue
        args = shlex.split(getattr(a, f"{name}_args")) + ["--backend", a.backend] + (["--no-doc"] if a.no_doc else [])
        print(f"\n=== {name}: {' '.join(args)}", flush=True)
        t0 = time.perf_counter()
        try:
            run(args)
        except Exception as exc:  # noqa: BLE001 - keep going, report at the end
            print(f"=== {name} FAILED: {exc!r}", flush=True)
            failed.append(name)
        print(f"=== {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
