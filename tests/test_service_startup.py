"""Long-running services started while Redis is down wait for it, and where they listen.

A replacement agent started during a Redis restart must not simply be gone: the agent,
the scheduler and the exporter (the UI: tests of its own) wait for Redis at start with
the backoff and the lines of a later outage, then do their job; a stop while they wait
is a clean exit; one-shot commands, ``--run-once`` and a wrong password still fail at
once with one line. Real processes on a Redis of their own that starts only once the
service says it is waiting (a condition, never a sleep).

Their HTTP endpoints take a host option (an address that is not loopback-wide is not
reached) and say in ``--help`` what they expose; the agent's health server drops a
connection that stays silent instead of keeping its thread forever.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from runq.agent.health import HealthServer
from runq.broker import Broker, StateType
from tests.agent_helpers import FAST, FLOWS, wait_for
from tests.figures import Figure
from tests.redis_server import RedisServer, available_binaries, free_port
from tests.test_restarts import (
    SHORT_HORIZON,
    assert_backoff,
    every_second,
    extended,
    retry_delays,
    short_horizon_broker,
)

RUNQ = Path(sys.executable).with_name("runq")


@pytest.fixture
def later(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis with its port chosen but not started: the test starts it."""
    binaries = available_binaries()
    server = RedisServer(binaries["redis7"] or binaries["redis6"], tmp_path / "redis")
    yield server
    server.kill()


class Service:
    """A ``runq`` process with stdout and stderr in files of their own."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.out, self.err = workdir / f"{args[0]}.out", workdir / f"{args[0]}.err"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNQ_")}
        with self.out.open("w") as stdout, self.err.open("w") as stderr:
            self.proc = subprocess.Popen(
                [str(RUNQ), *args],
                cwd=workdir,
                stdout=stdout,
                stderr=stderr,
                env={**clean, **FAST, **(env or {})},
                start_new_session=True,
            )

    def stdout(self) -> list[str]:
        return self.out.read_text().splitlines()

    def stderr(self) -> list[str]:
        return self.err.read_text().splitlines()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def waiting(service: Service, server: RedisServer, attempts: int = 3) -> None:
    """Until the service has logged ``attempts`` retries naming the server, alive."""
    wait_for(lambda: len(retry_delays(service.stdout(), server.url)) >= attempts, 60, "retry lines")
    assert service.proc.poll() is None, service.stderr()


def scrape(port: int, host: str = "127.0.0.1", path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as response:
        return str(response.read().decode())


def gauge_up(port: int) -> float | None:
    try:
        text = scrape(port)
    except (OSError, urllib.error.URLError):
        return None
    for line in text.splitlines():
        if line.startswith("runq_queues_up "):
            return float(line.split()[1])
    return None


def answered_after_back(service: Service, server: RedisServer, figure: Figure) -> None:
    """The outage's lines: the backoff of a later outage, then one line when it is back."""
    lines = service.stdout()
    delays = retry_delays(lines, server.url)
    assert_backoff(delays)
    assert len([line for line in lines if f"Redis at {server.url} is back" in line]) == 1
    figure("attempts_before_redis_was_up", len(delays))
    figure("exit_code_after_sigterm", service.proc.returncode)


@pytest.mark.slow
def test_an_agent_started_before_redis_waits_then_runs_a_flow(
    tmp_path: Path, later: RedisServer, figure: Figure
) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    agent = Service(
        tmp_path,
        "agent",
        "start",
        "-q",
        "q",
        "--api",
        later.url,
        "--hide-welcome",
        "--no-scheduler",
    )
    try:
        waiting(agent, later)
        later.start()
        broker = Broker.from_url(later.url)
        broker.create_deployment(
            name="hello", entrypoint="flows.py:hello", work_queue_name="q", path=str(tmp_path)
        )
        run = broker.create_flow_run(deployment="hello")
        wait_for(lambda: broker.read_flow_run(run.id).state.is_terminal, 60, "the run to end")
        assert broker.read_flow_run(run.id).state.type is StateType.COMPLETED
        broker.close()
    finally:
        code = agent.stop()
    answered_after_back(agent, later, figure)
    assert code == 0 and agent.stderr() == [], agent.stderr()


@pytest.mark.slow
def test_a_scheduler_started_before_redis_waits_then_materializes(
    tmp_path: Path, later: RedisServer, figure: Figure
) -> None:
    scheduler = Service(
        tmp_path,
        "scheduler",
        "start",
        "--api",
        later.url,
        "--loop-seconds",
        "0.2",
        env=SHORT_HORIZON,
    )
    try:
        waiting(scheduler, later)
        later.start()
        broker = short_horizon_broker(later.url)
        made = every_second(broker, "ticks")  # the save alone makes the first 3 runs
        wait_for(lambda: extended(broker, "ticks", made[-1]), 60, "runs the scheduler made")
        broker.close()
    finally:
        code = scheduler.stop()
    answered_after_back(scheduler, later, figure)
    assert code == 0 and scheduler.stderr() == [], scheduler.stderr()


@pytest.mark.slow
def test_an_exporter_started_before_redis_answers_up_0_then_up_1(
    tmp_path: Path, later: RedisServer, figure: Figure
) -> None:
    port = free_port()
    exporter = Service(
        tmp_path, "exporter", "--port", str(port), "--host", "127.0.0.1", "--api", later.url
    )
    try:
        waiting(exporter, later)
        assert wait_for(lambda: gauge_up(port) == 0.0, 60, "runq_queues_up 0 while Redis is down")
        later.start()
        wait_for(lambda: gauge_up(port) == 1.0, 60, "runq_queues_up 1 once Redis answers")
        wait_for(
            lambda: any("is back" in line for line in exporter.stdout()), 60, "the line saying so"
        )
    finally:
        code = exporter.stop()
    answered_after_back(exporter, later, figure)
    assert code == 0 and exporter.stderr() == [], exporter.stderr()


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, signum",
    [
        (("agent", "start", "-q", "q", "--hide-welcome"), signal.SIGINT),
        (("agent", "start", "-q", "q", "--hide-welcome", "--health-port", "0"), signal.SIGTERM),
        (("scheduler", "start"), signal.SIGTERM),
        (("exporter", "--port", "0", "--host", "127.0.0.1"), signal.SIGINT),
    ],
    ids=["agent-ctrl-c", "agent-sigterm", "scheduler-sigterm", "exporter-ctrl-c"],
)
def test_a_stop_while_waiting_for_redis_is_a_clean_exit(
    tmp_path: Path, later: RedisServer, args: tuple[str, ...], signum: int
) -> None:
    service = Service(tmp_path, *args, "--api", later.url)
    try:
        waiting(service, later, attempts=1)
        code = service.stop(signum)
    finally:
        service.kill()
    assert code == 0, (service.stdout(), service.stderr())
    assert service.stderr() == [], "no traceback"
    assert any("Stopped before Redis answered" in line for line in service.stdout())


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [("agent", "start", "-q", "q", "--run-once"), ("work-queue", "ls"), ("flow-run", "ls")],
    ids=["run-once", "work-queue-ls", "flow-run-ls"],
)
def test_one_shot_commands_still_fail_at_once_in_one_line(
    later: RedisServer, args: tuple[str, ...]
) -> None:
    result = subprocess.run(
        [str(RUNQ), *args, "--api", later.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(f"Cannot use Redis at {later.url}: ")


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("agent", "start", "-q", "q"),
        ("scheduler", "start"),
        ("exporter", "--port", "0", "--host", "127.0.0.1"),
    ],
    ids=["agent", "scheduler", "exporter"],
)
def test_a_wrong_password_at_start_is_one_line_not_a_wait(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """A password Redis refuses will not mend by waiting: the service says so and exits."""
    binaries = available_binaries()
    server = RedisServer(
        binaries["redis7"] or binaries["redis6"],
        tmp_path / "redis",
        extra_args=("--requirepass", "right"),
    )
    server.start(ping_password="right")
    try:
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        result = subprocess.run(
            [str(RUNQ), *args, "--api", url], capture_output=True, text=True, timeout=60
        )
    finally:
        server.kill()
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert "authentication failed" in result.stderr and "wrong" not in result.stderr
    assert "Retrying" not in result.stdout


# ---- where the endpoints listen, and what they say they expose ---------------------------


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=10):
            return True
    except ConnectionRefusedError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, port_option",
    [
        (
            ("agent", "start", "-q", "q", "--hide-welcome", "--health-host", "127.0.0.1"),
            "--health-port",
        ),
        (("scheduler", "start", "--metrics-host", "127.0.0.1"), "--metrics-port"),
        (("exporter", "--host", "127.0.0.1"), "--port"),
    ],
    ids=["agent", "scheduler", "exporter"],
)
def test_each_endpoint_listens_only_where_its_host_option_says(
    tmp_path: Path, later: RedisServer, args: tuple[str, ...], port_option: str
) -> None:
    """Bound to 127.0.0.1, the endpoint answers there and refuses 127.0.0.2 (another
    loopback address, which a wildcard bind would answer), even while Redis is down."""
    port = free_port()
    service = Service(tmp_path, *args, port_option, str(port), "--api", later.url)
    try:
        waiting(service, later, attempts=1)
        wait_for(lambda: reachable("127.0.0.1", port), 60, "the endpoint")
        assert not reachable("127.0.0.2", port)
    finally:
        service.stop()
        service.kill()


@pytest.mark.parametrize(
    "args, option",
    [
        (("agent", "start"), "--health-host"),
        (("scheduler", "start"), "--metrics-host"),
        (("exporter",), "--host"),
    ],
)
def test_help_names_the_host_option_and_what_is_exposed(args: tuple[str, ...], option: str) -> None:
    result = subprocess.run(
        [str(RUNQ), *args, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert option in text and "no authentication" in text


def test_the_health_server_drops_connections_that_stay_silent() -> None:
    """Fifty clients connect and send nothing: each is closed after the idle timeout
    and its thread ends (a server without one keeps them all, forever); probes are
    answered meanwhile."""
    before = threading.active_count()
    with HealthServer(0, lambda: True, host="127.0.0.1", idle_timeout=0.5) as health:
        idle = [socket.create_connection(("127.0.0.1", health.port), timeout=60) for _ in range(50)]
        assert scrape(health.port, path="/healthz") == "ok\n"
        try:
            for connection in idle:
                assert connection.recv(1) == b"", "closed by the server"
        finally:
            for connection in idle:
                connection.close()
        wait_for(
            lambda: threading.active_count() <= before + 1,
            60,
            "the idle connections' threads to end",
        )
        assert scrape(health.port, path="/healthz") == "ok\n"
