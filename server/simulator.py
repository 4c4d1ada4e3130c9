"""`iiot-sim`: a small plant that feeds iiot-server over every field protocol (see `server/sim/`).

By default it logs in over HTTP, builds its devices (`<site>/Area1/Pump<n>`, `Tank<n>`,
`<site>/Utilities/Boiler1`) and posts one value per tag per period, as `make demo` expects.
`--publish` picks the transports (http, mqtt, sparkplug, coap, amqp; `none` for servers
only), `--modbus-port`/`--opcua-port` make it a Modbus TCP device and an OPC UA server,
`--fault`/`--random-faults` inject faults, written to `--ground-truth`. `--backfill 1h`
first simulates the hour before now, as fast as the server takes it, each reading with its own
time, posted over HTTP in batches; then the run goes on live (`--count 0`: stop there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from server.sim.faults import Fault, GroundTruth, RandomFaults, parse_fault
from server.sim.plant import Plant
from server.sim.publishers import (
    AmqpPublisher,
    CoapPublisher,
    HttpPublisher,
    MqttPublisher,
    Platform,
    Publisher,
    SparkplugPublisher,
)
from server.sim.runner import Backfill, Simulation, assign
from server.sim.servers import ModbusPlantServer, OpcUaPlantServer, modbus_connections

log = logging.getLogger("iiot-sim")

TRANSPORTS = ("http", "mqtt", "sparkplug", "coap", "amqp")
DEFAULT_GROUND_TRUTH = "iiot-sim-ground-truth.jsonl"


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="iiot-sim", description="A simulated plant for iiot-server")
    p.add_argument("--server", default=env("IIOT_SIM_SERVER", "http://127.0.0.1:8080"), help="iiot-server base URL")
    p.add_argument("--tenant", default=env("IIOT_SIM_TENANT", "demo"))
    p.add_argument("--username", default=env("IIOT_SIM_USERNAME", "admin"))
    p.add_argument("--password", default=env("IIOT_SIM_PASSWORD", ""), help="default: $IIOT_SIM_PASSWORD")
    p.add_argument("--devices", type=int, default=3, help="pumps, each with its tank (plus one boiler)")
    p.add_argument("--site", default="Plant1")
    p.add_argument("--period", type=float, default=1.0, help="seconds between readings")
    p.add_argument("--count", type=int, default=None, help="stop after this many periods")
    p.add_argument("--seed", type=int, default=42, help="same seed, same plant and noise")
    p.add_argument("--backfill", type=duration, default=None, metavar="DURATION",
                   help="first simulate this span before now (e.g. 3600, 90s, 45m, 1h) with the readings' own "
                        "times, posted over HTTP in batches as fast as the server takes them; then run live "
                        "(--count 0: stop after the backfill)")  # fmt: skip
    p.add_argument("--backfill-batch", type=int, default=5000, metavar="VALUES",
                   help="values per backfill request (at most the server's max_telemetry_items)")  # fmt: skip
    g = p.add_argument_group("transports")
    g.add_argument("--publish", default=env("IIOT_SIM_PUBLISH", "http"),
                   help=f"comma list of {', '.join(TRANSPORTS)}; 'none' to only serve Modbus/OPC UA")  # fmt: skip
    g.add_argument("--split", action="store_true", help="send each device over one transport (round robin)")
    g.add_argument("--no-build", action="store_true", help="don't create the devices over HTTP")
    g.add_argument("--mqtt-url", default=env("IIOT_SIM_MQTT_URL", "mqtt://127.0.0.1:1883"))
    g.add_argument("--sparkplug-edge", default=None, help="Sparkplug edge node id (default: <site>-Edge)")
    g.add_argument("--coap-url", default=env("IIOT_SIM_COAP_URL", "coap://127.0.0.1:5683"))
    g.add_argument("--api-key", default=env("IIOT_SIM_API_KEY", ""), help="CoAP key (default: one is created)")
    g.add_argument("--amqp-url", default=env("IIOT_SIM_AMQP_URL", "amqp://guest:guest@127.0.0.1/"))
    g.add_argument("--amqp-exchange", default="iiot")
    s = p.add_argument_group("field servers")
    s.add_argument("--modbus-port", type=int, default=0, help="serve the plant as a Modbus TCP device (0: off)")
    s.add_argument("--modbus-host", default="127.0.0.1")
    s.add_argument("--modbus-register", action="store_true",
                   help="create the matching modbus connections on the server (one per device)")  # fmt: skip
    s.add_argument("--modbus-root", default="", help="put the Modbus-read devices under this folder")
    s.add_argument("--print-modbus-config", action="store_true", help="print the connections as JSON and exit")
    s.add_argument("--opcua-port", type=int, default=0, help="serve the plant over OPC UA (0: off)")
    s.add_argument("--opcua-host", default="127.0.0.1")
    f = p.add_argument_group("faults")
    f.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="kind:Device[/Tag]@start+duration[:magnitude], e.g. bearing_wear:Pump1@60+3600; "
                        "kinds: drift, stuck, spike (need a tag), bearing_wear, pump_trip (pumps)")  # fmt: skip
    f.add_argument("--random-faults", type=float, default=0.0, metavar="PER_HOUR", help="random faults per hour")
    f.add_argument("--fault-duration-scale", type=float, default=1.0, help="shorten random faults (e.g. 0.01)")
    f.add_argument("--ground-truth", default=env("IIOT_SIM_GROUND_TRUTH", ""),
                   help=f"JSON lines file of the faults (default with faults: {DEFAULT_GROUND_TRUTH})")  # fmt: skip
    p.add_argument("--log-level", default="info")
    return p


def duration(text: str) -> float:
    """Seconds from `3600`, `90s`, `45m` or `1h` (argparse turns the ValueError into a usage error)."""
    text = text.strip().lower()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(text[-1:])
    number = text[:-1] if scale is not None else text
    seconds = float(number) * (scale or 1.0)
    if not 0 < seconds <= 7 * 86_400:
        raise ValueError(f"{text!r}: a duration between 0 and 7 days")
    return seconds


def _transports(text: str) -> list[str]:
    chosen = [t.strip().lower() for t in text.split(",") if t.strip()]
    if chosen == ["none"]:
        return []
    unknown = sorted(set(chosen) - set(TRANSPORTS))
    if unknown:
        raise ValueError(f"--publish: unknown transport(s) {', '.join(unknown)}; choose from {', '.join(TRANSPORTS)}")
    return list(dict.fromkeys(chosen))


def build_plant(args: argparse.Namespace) -> Plant:
    faults: list[Fault] = [parse_fault(spec) for spec in args.fault]
    plant = Plant(seed=args.seed, pumps=args.devices, site=args.site, faults=faults)
    if args.random_faults > 0:
        plant.random_faults = RandomFaults(
            args.seed, args.random_faults, plant.sensors(), duration_scale=args.fault_duration_scale
        )
    return plant


async def run(args: argparse.Namespace, stop: asyncio.Event | None = None) -> Simulation:
    """Set everything up from the arguments and run until `count` ticks or `stop`."""
    transports = _transports(args.publish)
    plant = build_plant(args)
    routes = assign(transports, plant.devices, args.split)
    needs_login = (
        "http" in transports or ("coap" in transports and not args.api_key) or args.modbus_register
        or (not args.no_build and any(t in transports for t in ("mqtt", "coap", "amqp"))) or args.backfill
    )  # fmt: skip
    platform: Platform | None = None
    if needs_login:
        if not args.password:
            raise ValueError("set --password or IIOT_SIM_PASSWORD (needed to log in to the server)")
        platform = Platform(args.server, args.tenant, args.username, args.password)
        await platform.login()
        built = [d for t in ("http", "mqtt", "coap", "amqp") for d in routes.get(t, [])]
        if args.backfill:
            built = list(plant.devices)  # the backfill sends every device over HTTP
        if not args.no_build and built:
            await platform.build(sorted(set(built), key=plant.devices.index))
    try:
        publishers: list[Publisher] = []
        for name in transports:
            if name == "http":
                assert platform is not None
                publishers.append(HttpPublisher(platform))
            elif name == "mqtt":
                publishers.append(MqttPublisher(args.mqtt_url, args.tenant, routes[name]))
            elif name == "sparkplug":
                edge = args.sparkplug_edge or f"{args.site}-Edge"
                publishers.append(SparkplugPublisher(args.mqtt_url, args.tenant, edge, routes[name]))
            elif name == "coap":
                key = args.api_key
                if not key:
                    assert platform is not None
                    key = await platform.api_key("iiot-sim-coap")
                publishers.append(CoapPublisher(args.coap_url, key))
            elif name == "amqp":
                publishers.append(AmqpPublisher(args.amqp_url, args.tenant, args.amqp_exchange))
        modbus = ModbusPlantServer(plant.devices, args.modbus_host, args.modbus_port) if args.modbus_port else None
        opcua = OpcUaPlantServer(plant.devices, args.opcua_host, args.opcua_port) if args.opcua_port else None
        truth_path = args.ground_truth or (DEFAULT_GROUND_TRUTH if args.fault or args.random_faults > 0 else "")
        ground_truth = GroundTruth(Path(truth_path)) if truth_path else None
        backfill = None
        if args.backfill:
            assert platform is not None
            backfill = Backfill(args.backfill, platform.post_telemetry, max(1, args.backfill_batch))
        sim = Simulation(
            plant, publishers, modbus, opcua, ground_truth, period=args.period, count=args.count,
            routes={name: [d.path for d in devices] for name, devices in routes.items()}, backfill=backfill,
        )  # fmt: skip
        if args.modbus_register and modbus is not None and platform is not None:
            await _register_modbus(args, plant, platform)
        log.info(
            "simulating %d devices every %.2f s; publishing %s%s%s",
            len(plant.devices), args.period, ", ".join(transports) or "nothing",
            f"; modbus on {args.modbus_host}:{args.modbus_port}" if modbus else "",
            f"; opcua at {opcua.endpoint}" if opcua else "",
        )  # fmt: skip
        await sim.run(stop)
        return sim
    finally:
        if platform is not None:
            await platform.close()


async def _register_modbus(args: argparse.Namespace, plant: Plant, platform: Platform) -> None:
    for name, config in modbus_connections(
        plant.devices, args.modbus_host, args.modbus_port, poll_interval_s=args.period, path_root=args.modbus_root
    ):
        await platform.create_connection("modbus", name, config)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("asyncua", "aiocoap", "aio_pika", "aiormq", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        if args.print_modbus_config:
            plant = build_plant(args)
            configs = modbus_connections(
                plant.devices, args.modbus_host, args.modbus_port or 5020, poll_interval_s=args.period,
                path_root=args.modbus_root,
            )  # fmt: skip
            print(json.dumps([{"kind": "modbus", "name": n, "config": c} for n, c in configs], indent=2))
            return 0
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 0
    except ValueError as exc:
        print(f"iiot-sim: error: {exc}", file=sys.stderr)
        return 2
    except (httpx.HTTPError, RuntimeError, OSError) as exc:
        print(f"iiot-sim: error: {exc}", file=sys.stderr)
        return 2
    return 0


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)  # stop cleanly: ground truth closed, NDEATH sent
    await run(args, stop)


if __name__ == "__main__":
    sys.exit(main())
