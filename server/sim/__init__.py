"""`iiot-sim`: a small plant with simple physics and noise, its faults, and its field interfaces.

- `plant.py` — tanks, pumps and a boiler; deterministic for a seed.
- `faults.py` — injected faults (sensor drift, stuck value, spike, bearing wear, pump trip),
  their schedule and the ground-truth file.
- `publishers.py` — HTTP, MQTT (JSON and Sparkplug B), CoAP and AMQP publishers.
- `sparkplug.py` — the simulator's own minimal Sparkplug B encoder.
- `servers.py` — the plant as a Modbus TCP device and as an OPC UA server.
- `runner.py` — the tick loop that ties them together; `server/simulator.py` is the CLI.
"""
