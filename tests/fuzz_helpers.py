"""Shared fuzz helpers: hypothesis settings, the seeded keyspace and the refusal checks.

Hand-written bad-input tests check the mistakes someone thought of. These let hypothesis
feed the CLI and the Python API random names, limits, parameters, YAML files, cron
strings, intervals, rrules, time zones and run ids: fully random text (control
characters, braces, lone surrogates, unicode, very long strings) and valid input with
one part broken, so that examples get past the first checks and reach the deep ones
(schedule materialization, state transitions, the YAML line finder). For every example:

- a refused CLI command exits 1 with exactly one printable line on stderr, or exits 2
  with Click's usage block (see :func:`assert_clean_refusal`); never a traceback;
- a refused API call raises one of runq's own exceptions, with a one-line message;
- the whole keyspace (every key's type, DUMP bytes and whether it expires) is identical
  before and after a refused command, but for a key whose time to live ran out by itself
  meanwhile (tests/keyspace.py): nothing half-done remains;
- what an accepted command stored can be read back.

Each example starts from the same seeded keyspace (a queue with a limit, a plain and a
scheduled deployment, runs SCHEDULED, RUNNING and COMPLETED), put back with RESTORE from
DUMPs taken once per test: examples are independent, so hypothesis can shrink a failure
to its smallest input. Runs are derandomized and bounded so CI is deterministic and
fast; ``RUNQ_FUZZ_RANDOM=1 RUNQ_FUZZ_EXAMPLES=2000`` searches further on a workstation,
and ``--hypothesis-show-statistics`` shows how often each kind of refusal was reached.

The bugs it found in the broker are kept as plain regression tests in test_fuzz_regressions.py.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, currently_in_test_context, event, settings

from runq.broker import Broker, RunqError
from runq.broker.api import ENV_SETTINGS
from runq.control.cli import cli
from tests.keyspace import Snapshot, changes, snapshot

FUZZ = settings(
    max_examples=int(os.environ.get("RUNQ_FUZZ_EXAMPLES", "100")),
    deadline=None,
    derandomize=not os.environ.get("RUNQ_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the keyspace is reset per example instead
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# ---- the keyspace ---------------------------------------------------------------------

# Snapshots and their differences come from tests/keyspace.py: every key's type, DUMP
# bytes and whether it expires (the remaining TTL itself counts down between two
# snapshots); a key that ran out of time by itself in between is no write.
differences = changes


@dataclass
class World:
    """The seeded keyspace every example starts from, and the names and ids in it."""

    broker: Broker
    raw: redis.Redis
    baseline: list[tuple[bytes, int, bytes]]
    queue: str
    deployment: str
    scheduled_run: str
    running_run: str
    running_token: str
    done_run: str
    #: The seeded keyspace's snapshot, once taken.
    seeded: Snapshot | None = None
    #: Whether the keyspace may differ from the seeded one.
    dirty: bool = True

    def __repr__(self) -> str:
        return f"World(queue={self.queue!r}, runs={self.run_ids!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' printer
        printer.text(repr(self))

    @property
    def run_ids(self) -> list[str]:
        return [self.scheduled_run, self.running_run, self.done_run]

    def reset(self) -> Snapshot:
        """Put the seeded keyspace back (one round trip) and return its snapshot.

        Skipped when the keyspace is known to be the seeded one: the last command was
        refused and the comparison after it found nothing changed.
        """
        if self.dirty or self.seeded is None:
            pipe = self.raw.pipeline(transaction=True)
            pipe.flushdb()
            for key, ttl, value in self.baseline:
                pipe.restore(key, ttl, value)
            pipe.execute()
            self.broker._run_queues.clear()  # its run -> queue cache must not outlive the data
            self.seeded, self.dirty = snapshot(self.raw), False
        return self.seeded

    def check_accepted(self, before: Snapshot) -> None:
        """What an accepted command wrote can be read back (a read-only one wrote nothing)."""
        if differences(before, snapshot(self.raw)):
            assert_readable(self.broker)
        else:
            self.dirty = before is not self.seeded

    def check_unchanged(self, before: Snapshot, what: str) -> None:
        """Assert a refused command changed nothing (then the keyspace may still be clean)."""
        changed = differences(before, snapshot(self.raw))
        assert not changed, f"{what} but changed {changed}"
        self.dirty = before is not self.seeded


def seed(broker: Broker) -> dict[str, Any]:
    """A queue with a limit, a plain and a scheduled deployment, runs in three states."""
    broker.create_work_queue("seeded", concurrency_limit=2, description="seeded queue")
    broker.create_deployment(
        name="plain-dep",
        entrypoint="flows/etl.py:main",
        work_queue_name="seeded",
        parameters={"n": 1, "region": "eu"},
        tags=["t"],
    )
    broker.create_deployment(
        name="cron-dep",
        entrypoint="pkg.mod:func",
        work_queue_name="seeded",
        schedule={"cron": "0 * * * *", "timezone": "Europe/Paris"},
    )
    later = broker.create_flow_run(deployment="plain-dep", start_in_seconds=7 * 86400)
    broker.create_flow_run(deployment="plain-dep")
    [running] = broker.claim("seeded", "agent-1", max_runs=1)
    broker.set_state(running.id, "RUNNING", token=running.claim_token)
    broker.create_flow_run(deployment="plain-dep")
    [done] = broker.claim("seeded", "agent-1", max_runs=1)
    broker.set_state(done.id, "RUNNING", token=done.claim_token)
    broker.set_state(done.id, "COMPLETED", token=done.claim_token)
    return dict(
        queue="seeded",
        deployment="plain-dep",
        scheduled_run=str(later.id),
        running_run=str(running.id),
        running_token=running.claim_token,
        done_run=str(done.id),
    )


@pytest.fixture
def world(broker: Broker, redis_url: str) -> Iterator[World]:
    raw = redis.Redis.from_url(redis_url)
    names = seed(broker)
    baseline = [(key, max(raw.pttl(key), 0), raw.dump(key)) for key in raw.scan_iter()]
    yield World(broker=broker, raw=raw, baseline=baseline, **names)
    raw.close()


# ---- checks ---------------------------------------------------------------------------


def terminal_lines(text: str) -> list[str]:
    """The lines a terminal shows: only newline and carriage return break a line.

    (``str.splitlines`` would also split at ``\\x1e`` or ``\\u2028``, which a terminal
    prints in place; :func:`assert_clean_refusal` refuses those as unprintable anyway.)
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").removesuffix("\n").split("\n")


def one_line(message: str) -> bool:
    return bool(message.strip()) and len(terminal_lines(message)) == 1


def assert_clean_refusal(result: Result) -> None:
    """Exit 1: exactly one printable line on stderr. Exit 2: Click's usage block.

    Usage errors (exit 2) are Click's: ``Usage: ...``, ``Try '... -h' for help.``, a
    blank line and ``Error: <message>``. That block is accepted as Click prints it (the
    standard of every Click program); its ``Error:`` message must be one printable line
    like ours. No kind of refusal may ever show a traceback.
    """
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (1, 2), (result.exit_code, result.output)
    lines = terminal_lines(result.stderr)
    assert all(line.isprintable() for line in lines), repr(result.stderr)  # no raw ESC...
    if result.exit_code == 1 or len(lines) == 1:
        assert len(lines) == 1 and lines[0].strip(), repr(result.stderr)
        return
    assert lines[0].startswith("Usage: "), repr(result.stderr)
    errors = [line for line in lines if line.startswith("Error: ")]
    assert errors == [lines[-1]] and lines[-1].removeprefix("Error: ").strip(), repr(result.stderr)
    assert len(lines) <= 4, repr(result.stderr)


def assert_readable(broker: Broker) -> None:
    """What an accepted command stored can be read back by every reader."""
    for queue in broker.list_work_queues():
        broker.read_work_queue(queue.name)
    for name in broker.client.hkeys(broker.keys.deployment_names):
        broker.read_deployment(name)
    broker.list_flow_runs(limit=1000)


def gist(message: str) -> str:
    """A message without what it quotes, to count refusals by kind."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", message.split(": ")[0])[:60]


def count(kind: str) -> None:
    """Count an outcome for ``--hypothesis-show-statistics`` (inside examples only)."""
    if currently_in_test_context():
        event(kind)


CLI_ENV: dict[str, str | None] = {
    **{var: None for var in ENV_SETTINGS.values()},
    "RUNQ_DEBUG": None,
    "RUNQ_REDIS_CLUSTER": None,
    "COLUMNS": None,
}


def run_cli(world: World, args: list[str], *, reset: bool = True) -> Result:
    """``runq ARGS`` in-process on the test Redis: refused cleanly and harmlessly, or accepted.

    The keyspace is the seeded one first, unless ``reset`` is False (a follow-up command).
    """
    before = world.reset() if reset else snapshot(world.raw)
    world.dirty = True  # until the command is known to have changed nothing
    env = {**CLI_ENV, "RUNQ_API_URL": world.broker.url}
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"runq {args!r} raised instead of failing cleanly:\n{trace}")
    refusal = f"exit {result.exit_code} {gist(terminal_lines(result.stderr)[-1])}"
    count(f"runq {' '.join(args[:2])}: {refusal if result.exit_code else 'accepted'}")
    if result.exit_code == 0:
        assert "Traceback" not in result.output
        world.check_accepted(before)
        return result
    assert_clean_refusal(result)
    world.check_unchanged(before, f"runq {args!r} was refused ({result.stderr!r})")
    return result


def call_api(world: World, action: Callable[[Broker], Any]) -> Any:
    """Run one API call: runq's own one-line exception and no change, or success."""
    before = world.reset()
    world.dirty = True  # until the call is known to have changed nothing
    try:
        value = action(world.broker)
    except RunqError as error:
        count(f"{type(error).__name__}: {gist(str(error))}")
        assert one_line(str(error)), repr(str(error))
        world.check_unchanged(before, f"refused with {error!r}")
        return error
    count("accepted")
    world.check_accepted(before)
    return value
