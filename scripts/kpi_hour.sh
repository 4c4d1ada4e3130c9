#!/bin/sh
# The alarm KPIs of an hour of the simulated plant (issue #4): a fresh server (SQLite in a temp
# dir, HTTP only), `iiot-sim --backfill 1h` with faults through its pipeline and alarm engine,
# a supervisor shelving the chattering alarm, then GET /api/v1/alarms/kpis over the last hour,
# printed as JSON. The scenario is server/sim/kpi_hour.py; about 15 s.
set -e
cd "$(dirname "$0")/.."
BIN=.venv/bin
TMP="$(mktemp -d)"
PORT="$($BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
export IIOT_DATA_DIR="$TMP" IIOT_HTTP_PORT="$PORT" IIOT_ADMIN_PASSWORD="kpi-hour-admin" IIOT_CONFIG=""
export IIOT_COAP_PORT=0 IIOT_OPCUA_PORT=0 IIOT_MQTT_URL="" IIOT_AMQP_URL="" IIOT_REDIS_URL="" IIOT_DATABASE_URL=""

$BIN/iiot-server init --tenant kpi --admin admin > "$TMP/init.log" 2>&1
$BIN/iiot-server run > "$TMP/server.log" 2>&1 &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

for i in $(seq 1 60); do
    $BIN/python -c "import httpx,sys; sys.exit(httpx.get('$URL/ready').status_code != 200)" 2>/dev/null && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$TMP/server.log" >&2; echo "kpi_hour: the server failed" >&2; exit 1; }
    sleep 0.5
done
IIOT_SIM_PASSWORD="$IIOT_ADMIN_PASSWORD" $BIN/python -m server.sim.kpi_hour --server "$URL" --tenant kpi --username admin
