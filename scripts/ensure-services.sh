#!/bin/sh
# Start the local services the tests use if they are installed but stopped.
# Tests read IIOT_TEST_POSTGRES_URL etc.; unreachable services skip locally and fail with CI=true.
port_open() { bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

if ! port_open 5432 && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! port_open 6379 && command -v redis-server >/dev/null 2>&1; then
    echo "services: starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi
if ! port_open 1883 && command -v mosquitto >/dev/null 2>&1; then
    echo "services: starting Mosquitto"
    mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
fi
if ! port_open 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
    echo "services: starting RabbitMQ"
    rabbitmq-server -detached || true
fi
for i in $(seq 1 30); do port_open 5432 && break; sleep 1; done
exit 0
