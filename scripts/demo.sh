#!/bin/sh
# The demo: an embedded server (SQLite in .demo/), the plant simulator, and the console.
set -e
cd "$(dirname "$0")/.."
BIN=.venv/bin
export IIOT_DATA_DIR="${IIOT_DATA_DIR:-$PWD/.demo}"
export IIOT_HTTP_PORT="${IIOT_HTTP_PORT:-8080}"
export IIOT_ADMIN_PASSWORD="${IIOT_ADMIN_PASSWORD:-demo-admin}"
URL="http://127.0.0.1:$IIOT_HTTP_PORT"

# Field protocols: CoAP always (in-process), MQTT + Sparkplug B when a broker answers on
# 127.0.0.1:1883 (e.g. Debian's mosquitto), and a Modbus TCP device the server polls.
port_open() { $BIN/python -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; }
PUBLISH="http,coap"
if [ -z "${IIOT_MQTT_URL:-}" ] && port_open 1883; then export IIOT_MQTT_URL=mqtt://127.0.0.1:1883; fi
[ -n "${IIOT_MQTT_URL:-}" ] && PUBLISH="$PUBLISH,mqtt,sparkplug"
export IIOT_MQTT_CLIENT_ID="${IIOT_MQTT_CLIENT_ID:-iiot-demo}"
MODBUS_PORT="${IIOT_DEMO_MODBUS_PORT:-5020}"

$BIN/iiot-server init --tenant demo --admin admin
$BIN/iiot-server run > "$IIOT_DATA_DIR/server.log" 2>&1 &
SERVER=$!
SIM=""
cleanup() { [ -n "$SIM" ] && kill "$SIM" 2>/dev/null; kill "$SERVER" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT INT TERM

for i in $(seq 1 60); do
    $BIN/python -c "import httpx,sys; sys.exit(httpx.get('$URL/ready').status_code != 200)" 2>/dev/null && break
    kill -0 "$SERVER" 2>/dev/null || { echo "demo: server failed, see $IIOT_DATA_DIR/server.log"; exit 1; }
    sleep 0.5
done
IIOT_SIM_PASSWORD="$IIOT_ADMIN_PASSWORD" $BIN/iiot-sim --server "$URL" --tenant demo --username admin \
    --devices 4 --publish "$PUBLISH" --split --modbus-port "$MODBUS_PORT" --modbus-register --modbus-root Modbus \
    --random-faults 2 --ground-truth "$IIOT_DATA_DIR/ground-truth.jsonl" > "$IIOT_DATA_DIR/simulator.log" 2>&1 &
SIM=$!

echo "demo: server $URL (API docs $URL/docs), tenant 'demo', user 'admin', password '$IIOT_ADMIN_PASSWORD'"
echo "demo: the plant arrives over $PUBLISH and Modbus TCP (port $MODBUS_PORT, polled by the server);"
echo "demo: OPC UA server opc.tcp://127.0.0.1:${IIOT_OPCUA_PORT:-4840}/ (user demo/admin); counters at $URL/api/v1/ingest/stats"
echo "demo: logs in $IIOT_DATA_DIR; Ctrl-C stops everything"
if [ -n "$DISPLAY" ] || [ -n "$WAYLAND_DISPLAY" ]; then
    # the login dialog opens prefilled with this server, tenant and user; the password is printed above
    $BIN/iiot-hmi --server "$URL" --tenant demo --username admin
else
    echo "demo: no display, so the console is not opened; server and simulator keep running"
    wait "$SERVER"
fi
