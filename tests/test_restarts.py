"""The scheduler and the CLI survive Redis restarts (agents: tests/test_durability.py).

Each test starts its own redis-server (own port, append-only file, ``appendfsync always``)
so it can kill -9 and restart it without disturbing the session's servers, and runs the
real ``runq`` executable as an operator would.

What a Prefect or Celery user expects, and what these tests pin down:

- **At start**, ``runq scheduler start`` waits for an unreachable Redis as through a
  later outage, and a wrong password is one line and exit 1
  (tests/test_service_startup.py).
- **Once running**, the scheduler and ``runq flow-run logs --follow`` ride out an outage
  as Celery beat does: one line per attempt naming the URL and the next delay (doubling
  from a fraction of a second, capped at a few seconds, so never a flood), one line when
  Redis is back, never a traceback, and then they do their job again.
- **One-shot commands** while Redis is down exit 1 with one line naming the URL: tested by
  tests/test_cli_process.py::test_an_unreachable_redis_names_it_with_the_password_masked
  and tests/test_connection.py::test_a_lost_connection_mid_session_is_one_clear_error;
  the follow test only contrasts ``logs`` without ``--follow`` during the same outage.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runq.broker import Broker, BrokerSettings
from tests.agent_helpers import wait_for
from tests.redis_server import RedisServer, available_binaries

RUNQ = Path(sys.executable).with_name("runq")
RETRY = re.compile(r"Retrying in (?P<delay>\d+(?:\.\d+)?) s\.$")
#: The scheduler keeps 3 runs ahead, however soon: with a 1 s interval it must act every second.
SHORT_HORIZON = {"RUNQ_SCHEDULER_MIN_RUNS": "3", "RUNQ_SCHEDULER_MIN_AHEAD_SECONDS": "0"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of our own to kill: Redis 7 when installed, else 6.2."""
    binaries = available_binaries()
    instance = RedisServer(
        binaries["redis7"] or binaries["redis6"],
        tmp_path / "redis",
        extra_args=("--appendfsync", "always"),  # nothing acknowledged is lost on kill -9
    )
    instance.start()
    yield instance
    instance.kill()


class Runq:
    """A long-running ``runq`` process with its stdout and stderr in files we can poll."""

    def __init__(self, directory: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.out, self.err = directory / "stdout.txt", directory / "stderr.txt"
        full_env = {k: v for k, v in os.environ.items() if k != "RUNQ_DEBUG"}
        with self.out.open("w") as stdout, self.err.open("w") as stderr:  # the child keeps copies
            self.proc = subprocess.Popen(
                [str(RUNQ), *args], stdout=stdout, stderr=stderr, env={**full_env, **(env or {})}
            )

    def stdout(self) -> list[str]:
        return self.out.read_text().splitlines()

    def stderr(self) -> list[str]:
        return self.err.read_text().splitlines()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM, then its exit status (a graceful stop is 0)."""
        if self.alive():
            self.proc.terminate()
        return self.proc.wait(timeout=60)


def retry_delays(lines: list[str], url: str) -> list[float]:
    """The delays announced by the retry lines; each must name the URL."""
    delays = []
    for line in lines:
        match = RETRY.search(line)
        if match:
            assert f"Cannot use Redis at {url}: " in line, line
            delays.append(float(match["delay"]))
    return delays


def hit_the_cap(delays: list[float]) -> bool:
    """True once a delay is less than double the one before: the backoff stopped growing."""
    return any(later < 2 * earlier for earlier, later in zip(delays, delays[1:]))


def assert_backoff(delays: list[float]) -> None:
    """Doubling from a fraction of a second up to a cap of a few seconds, then the cap."""
    cap = max(delays)
    assert 0 < delays[0] <= 0.5 and cap <= 5.0, delays
    for earlier, later in zip(delays, delays[1:]):
        assert later == pytest.approx(min(2 * earlier, cap), abs=0.051), delays


def due_times(broker: Broker, queue: str) -> list:
    """Due times of the schedule-made runs waiting on ``queue``."""
    return [
        r.expected_start_time for r in broker.preview(queue, hours=1) if "auto-scheduled" in r.tags
    ]


def short_horizon_broker(url: str) -> Broker:
    """A Broker whose own materialization (at deployment save) uses the short horizon."""
    return Broker.from_url(url, settings=BrokerSettings(scheduler_min_ahead_seconds=0))


def every_second(broker: Broker, name: str) -> list:
    """A deployment on its own queue with a 1 s interval; its initial due times."""
    broker.create_deployment(
        name=name, entrypoint="f.py:f", work_queue_name=name, schedule={"interval": 1}
    )
    return due_times(broker, name)


def extended(broker: Broker, queue: str, beyond) -> bool:
    """The scheduler made a run due later than ``beyond`` (the save alone never would)."""
    times = due_times(broker, queue)
    return bool(times) and times[-1] > beyond


def test_the_scheduler_rides_out_a_redis_restart(server: RedisServer, tmp_path: Path) -> None:
    """Killed under it, Redis comes back with its data; the scheduler logs the outage in
    bounded lines, backs off up to its cap, says when Redis is back, and again extends
    the horizon of a deployment made before the kill and of one made after the restart
    (the save materializes only the first 3 runs: any later run is the scheduler's)."""
    broker = short_horizon_broker(server.url)
    made_before = every_second(broker, "before")
    scheduler = Runq(
        tmp_path,
        "scheduler",
        "start",
        "--api",
        server.url,
        "--loop-seconds",
        "0.2",
        env=SHORT_HORIZON,
    )
    try:
        wait_for(
            lambda: extended(broker, "before", made_before[-1]), 120, "the scheduler's first runs"
        )
        server.kill()
        wait_for(
            lambda: hit_the_cap(retry_delays(scheduler.stdout(), server.url)),
            120,
            "backoff to its cap",
        )
        assert scheduler.alive()
        server.start()
        wait_for(
            lambda: any("is back" in line for line in scheduler.stdout()),
            120,
            "the reconnection line",
        )

        broker = short_horizon_broker(server.url)  # a fresh client on the restarted server
        last_before = due_times(broker, "before")[-1]
        made_after = every_second(broker, "after")
        wait_for(
            lambda: extended(broker, "before", last_before), 120, "runs of the older deployment"
        )
        wait_for(
            lambda: extended(broker, "after", made_after[-1]), 120, "runs of the new deployment"
        )
    finally:
        code = scheduler.stop()
    for queue in ("before", "after"):
        times = due_times(broker, queue)
        assert len(times) == len(set(times)), "no run doubled across the restart"
    logged = scheduler.stdout()
    assert_backoff(retry_delays(logged, server.url))
    assert len([line for line in logged if f"Redis at {server.url} is back" in line]) == 1
    assert code == 0 and scheduler.stderr() == [], "no traceback, a clean stop"


def test_logs_follow_rides_out_a_redis_restart(server: RedisServer, tmp_path: Path) -> None:
    """Lines from before the kill are printed once, the follower waits out the outage with
    one-line notices on stderr, prints the lines written after the restart, and exits
    when the run ends; the same command without --follow just fails in one line."""
    broker = Broker.from_url(server.url)
    run = broker.create_flow_run("q")
    broker.append_logs(run.id, [("stdout", "before 1"), ("stderr", "before 2")])
    follower = Runq(tmp_path, "flow-run", "logs", str(run.id), "--follow", "--api", server.url)
    try:
        wait_for(lambda: len(follower.stdout()) == 2, 120, "the lines written before the kill")
        server.kill()
        wait_for(lambda: retry_delays(follower.stderr(), server.url), 120, "a notice of the outage")
        once = subprocess.run(
            [str(RUNQ), "flow-run", "logs", str(run.id), "--api", server.url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert once.returncode == 1 and once.stderr.startswith(
            f"Cannot use Redis at {server.url}: "
        )
        assert len(once.stderr.splitlines()) == 1
        server.start()

        broker = Broker.from_url(server.url)
        broker.append_logs(run.id, [("stdout", "after 1")])
        wait_for(lambda: len(follower.stdout()) >= 3, 120, "the line written after the restart")
        broker.cancel_flow_run(run.id)
        assert follower.proc.wait(timeout=120) == 0, "it ends with the run"
    finally:
        follower.stop()
    assert [line.split(" | ", 2)[1:] for line in follower.stdout()] == [
        ["stdout", "before 1"],
        ["stderr", "before 2"],
        ["stdout", "after 1"],
    ], "each line printed once, in order"
    notices = follower.stderr()
    delays = retry_delays(notices, server.url)
    assert delays and notices[-1].startswith(f"Redis at {server.url} is back after ")
    assert len(notices) == len(delays) + 1, "only retry lines and the reconnection line"
