"""Configuration and the command line, run as a plant engineer would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import ConfigError, Settings, example_toml, load_settings

EXE = [sys.executable, "-m", "server.cli"]


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IIOT_")}
    return subprocess.run(
        [*EXE, *args], capture_output=True, text=True, env=clean | (env or {}), input=stdin, timeout=120, check=False
    )


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "iiot.toml"
    cfg.write_text('[server]\nhttp_port = 9000\nhttp_host = "0.0.0.0"\nmqtt_url = "mqtt://broker:1883"\n')
    for name, value in {
        "IIOT_DATA_DIR": str(tmp_path / "data"), "IIOT_HTTP_PORT": "9100", "IIOT_REDIS_URL": "redis://r:6379/0",
        "IIOT_AMQP_URL": "amqp://guest:guest@mq/", "IIOT_OPCUA_PORT": "4841", "IIOT_COAP_PORT": "5684",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    s = load_settings(cfg)
    assert (s.http_port, s.http_host, s.mqtt_url, s.redis_url) == (
        9100,
        "0.0.0.0",
        "mqtt://broker:1883",
        "redis://r:6379/0",
    )
    assert (s.opcua_port, s.coap_port, s.amqp_url) == (4841, 5684, "amqp://guest:guest@mq/")
    assert s.database_url == f"sqlite:///{(tmp_path / 'data' / 'iiot.db').as_posix()}"
    monkeypatch.setenv("IIOT_DATABASE_URL", "postgresql://u@db/iiot")
    assert load_settings(cfg).database_url == "postgresql://u@db/iiot"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[server]\nhttp_port = 70000\n", "'http_port'"),
        ("[server]\nhttp_prot = 8080\n", "'http_prot'"),
        ("[server\n", "not valid TOML"),
        ('[server]\nopcua_security = "None,Basic128"\n', "Basic128: expected"),
        ('[server]\nevent_loop = "uvloop"\n', "needs coap_port = 0"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, content: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg)
    r = run("-c", str(cfg), "check")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("iiot-server: error:") and message in r.stderr
    assert "Traceback" not in r.stderr and str(cfg) in r.stderr


def test_example_config_lists_every_key_with_its_default() -> None:
    text = example_toml()
    for name in Settings.model_fields:
        assert f"{name} = " in text or f"# {name} = " in text, name
    r = run("example-config")
    assert r.returncode == 0 and r.stdout == text
    shipped = Path(__file__).parents[2] / "config.example.toml"
    assert shipped.read_text() == text, "config.example.toml is stale: iiot-server example-config > config.example.toml"


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    r = run(
        "check", env={"IIOT_DATA_DIR": str(tmp_path), "IIOT_DATABASE_URL": "postgresql://iiot:secret@127.0.0.1:1/iiot"}
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert "cannot connect to database" in r.stderr and "127.0.0.1:1" in r.stderr and "secret" not in r.stderr


def test_init_create_user_and_run_flow(tmp_path: Path) -> None:
    env = {"IIOT_DATA_DIR": str(tmp_path), "IIOT_ADMIN_PASSWORD": "first-admin-pw"}
    r = run("check", env=env)
    assert r.returncode == 2 and "iiot-server migrate" in r.stderr  # a new database must be initialised first
    r = run("init", "--tenant", "plant1", "--admin", "alice", env=env)
    assert r.returncode == 0, r.stderr
    assert "tenant 'plant1' created with admin 'alice'" in r.stdout
    assert "first-admin-pw" not in r.stdout + r.stderr
    assert (tmp_path / "iiot.db").exists()
    r = run("init", "--tenant", "plant1", "--admin", "alice", env=env)  # idempotent
    assert r.returncode == 0 and "already exists" in r.stdout
    r = run("create-user", "--tenant", "plant1", "--username", "bob", "--role", "operator", "--role", "viewer",
            env={"IIOT_DATA_DIR": str(tmp_path), "IIOT_PASSWORD": "bob-password"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "operator" in r.stdout and "bob-password" not in r.stdout + r.stderr
    r = run("create-user", "--tenant", "plant1", "--username", "eve", "--role", "wizard",
            env={"IIOT_DATA_DIR": str(tmp_path), "IIOT_PASSWORD": "eve-password"})  # fmt: skip
    assert r.returncode == 2 and "unknown role(s): wizard" in r.stderr
    r = run("create-user", "--tenant", "plant9", "--username", "eve", "--role", "viewer",
            env={"IIOT_DATA_DIR": str(tmp_path), "IIOT_PASSWORD": "eve-password"})  # fmt: skip
    assert r.returncode == 2 and "tenant 'plant9' does not exist" in r.stderr
    r = run("init", "--tenant", "plant2", "--admin", "x", env={"IIOT_DATA_DIR": str(tmp_path)}, stdin="")
    assert r.returncode == 2 and "IIOT_ADMIN_PASSWORD" in r.stderr
    r = run("check", env={"IIOT_DATA_DIR": str(tmp_path)})
    assert r.returncode == 0 and "reachable and current" in r.stdout
    secret = tmp_path / "jwt_secret"
    assert secret.exists() and (secret.stat().st_mode & 0o777) == 0o600


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("iiot-server 0.")


def test_run_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"IIOT_DATA_DIR": str(tmp_path), "IIOT_ADMIN_PASSWORD": "first-admin-pw", "IIOT_HTTP_PORT": str(port)}
    assert run("init", "--tenant", "plant1", "--admin", "alice", env=env).returncode == 0
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IIOT_")}
    proc = subprocess.Popen([*EXE, "run"], env=clean | env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        creds = {"tenant": "plant1", "username": "alice", "password": "first-admin-pw"}
        tok = httpx.post(f"http://127.0.0.1:{port}/api/v1/auth/login", json=creds).json()
        h = {"Authorization": f"Bearer {tok['access_token']}"}
        httpx.post(
            f"http://127.0.0.1:{port}/api/v1/nodes", json={"node_class": "device", "browse_name": "D"}, headers=h
        )
        r = httpx.post(f"http://127.0.0.1:{port}/api/v1/telemetry", json={"device": "D", "values": {"x": 1}}, headers=h)
        assert r.status_code == 201
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "historian flushed" in out
