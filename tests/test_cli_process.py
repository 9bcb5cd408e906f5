"""The real ``runq`` executable: exit codes, one-line stderr, no traceback, embedded server.

Click's runner cannot show what the console script does around the commands (the
catch-all in ``main()``, the process's exit status), so these tests run it for real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from runq.broker import Broker
from runq.broker.embedded import EmbeddedServer

RUNQ = Path(sys.executable).with_name("runq")


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``runq ARGS`` as a child process (environment: ours plus ``env``)."""
    full_env = {key: value for key, value in os.environ.items() if key != "RUNQ_DEBUG"}
    full_env.update(COLUMNS="200", **(env or {}))
    return subprocess.run(
        [str(RUNQ), *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def api(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RUNQ_API_URL", redis_url)
    return redis_url


def test_runtime_errors_are_one_line_and_exit_1(api: str, broker: Broker) -> None:
    assert_one_line_error(run("work-queue", "inspect", "nope"), "No work queue named 'nope' found.")
    assert_one_line_error(run("work-queue", "create", "a{b}"), "Invalid work queue name 'a{b}'")
    assert_one_line_error(
        run("work-queue", "create", "q", "--limit", "-1"), "Invalid concurrency limit -1"
    )
    assert broker.list_work_queues() == []


def test_usage_errors_exit_2(api: str) -> None:
    result = run("work-queue", "set-concurrency-limit", "q", "five")
    assert result.returncode == 2 and "'five' is not a valid integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_redis_names_it_with_the_password_masked() -> None:
    result = run("work-queue", "ls", "--api", "redis://:hunter2@127.0.0.1:1/0")
    assert_one_line_error(result, "Cannot use Redis at redis://:***@127.0.0.1:1/0")
    assert "hunter2" not in result.stderr


def test_a_bad_deployment_file_names_field_and_line(
    api: str, broker: Broker, tmp_path: Path
) -> None:
    path = tmp_path / "etl.yaml"
    path.write_text("name: etl\nentrypoint: flows/etl.py:main\n\nretries: many\n")
    result = run("deployment", "apply", str(path))
    assert_one_line_error(
        result, f"{path}, line 4, field 'retries': Input should be a valid integer"
    )
    assert broker.list_deployments() == []


def test_debug_shows_the_traceback(api: str) -> None:
    result = run("work-queue", "inspect", "nope", env={"RUNQ_DEBUG": "1"})
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "WorkQueueNotFound" in result.stderr


def test_an_unexpected_error_is_still_one_line(api: str, broker: Broker) -> None:
    """Damaged data raises no RunqError; main() still answers with one line and exit 1."""
    broker.client.hset(broker.keys.deployment_names, "broken", "0000")
    broker.client.set(broker.keys.deployment("0000"), "{not json")
    assert_one_line_error(
        run("deployment", "inspect", "broken"), "Unexpected error (ValidationError)"
    )
    result = run("deployment", "inspect", "broken", env={"RUNQ_DEBUG": "1"})
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_python_dash_m_control_is_the_same_cli(api: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runq", "work-queue", "inspect", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(result, "No work queue named 'nope' found.")


def test_the_embedded_default_is_shared_between_commands(runq_home: str) -> None:
    created = run("work-queue", "create", "shared")
    assert created.returncode == 0, created.stderr
    listed = run("work-queue", "ls", "-o", "json")
    assert listed.returncode == 0 and '"name": "shared"' in listed.stdout

    status = run("server", "status")
    assert status.returncode == 0, status.stderr
    assert f"unix://{runq_home}/redis.sock" in status.stdout
    assert "append-only file on" in status.stdout and "pid" in status.stdout

    stopped = run("server", "stop")
    assert stopped.returncode == 0 and stopped.stdout.startswith("Stopped the runq server")
    assert not EmbeddedServer(Path(runq_home)).ping()
    assert_one_line_error(run("server", "status"), "No runq server is running")
    assert run("server", "stop").stdout.startswith("No runq server is running")
    again = run("work-queue", "inspect", "shared")  # restarted on demand, data kept (AOF)
    assert again.returncode == 0 and "name='shared'" in again.stdout


@pytest.mark.timeout(240)
def test_server_start_runs_in_the_foreground_until_ctrl_c(runq_home: str) -> None:
    proc = subprocess.Popen(
        [str(RUNQ), "server", "start"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        seen = []
        for line in proc.stdout:  # redis-server logs to our stdout in the foreground
            seen.append(line)
            if "eady to accept connections" in line:
                break
        assert seen and seen[0].startswith("Starting the runq server at unix://"), seen
        assert EmbeddedServer(Path(runq_home)).ping()
        assert_one_line_error(run("server", "start"), "already running")
        client = redis.Redis(unix_socket_path=f"{runq_home}/redis.sock")
        client.set("kept", "1")
        client.close()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C does: the whole foreground group
        rest = proc.stdout.read()
        assert proc.wait(timeout=120) == 0, rest
        assert "The runq server stopped (exit code 0)." in rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    server = EmbeddedServer(Path(runq_home))
    assert not server.ping()
    assert_one_line_error(run("server", "status"), "No runq server is running")
    client = redis.Redis.from_url(server.ensure_running())
    assert client.get("kept") == b"1"  # shut down cleanly, append-only file flushed
    client.close()
