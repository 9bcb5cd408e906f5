"""``watch_run`` (what ``deployment run --watch`` calls) prints each state change
of a run until it ends and returns 0 only for COMPLETED; it wakes on the queue's events
channel and reads the run on a timer only as a fallback. Real Redis (6.2, 7, cluster)."""

from __future__ import annotations

import threading

import pytest
import redis

from runq.broker import Broker, StateType
from runq.control import run_watch
from runq.control.run_watch import watch_run
from tests.agent_helpers import wait_for
from tests.test_cli_run_ops import ended

ON_CLUSTER = True


def subscribers(broker: Broker, channel: str) -> int:
    """Clients subscribed to ``channel`` (on a cluster: on any node)."""
    if broker.cluster:
        nodes = [node.redis_connection for node in broker.client.get_nodes()]
    else:
        nodes = [broker.client]
    return sum(int(client.pubsub_numsub(channel)[0][1]) for client in nodes if client)


def watch_in_thread(broker: Broker, run_id: str) -> tuple[threading.Thread, dict[str, int]]:
    outcome: dict[str, int] = {}
    thread = threading.Thread(target=lambda: outcome.update(code=watch_run(broker, run_id)))
    thread.start()
    return thread, outcome


def test_watch_prints_each_state_and_returns_0_only_when_completed(
    broker: Broker, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No poll fallback within the test's timeout: only the events channel can end it.
    monkeypatch.setattr(run_watch, "POLL_SECONDS", 120.0)
    run = broker.create_flow_run("q")
    thread, outcome = watch_in_thread(broker, str(run.id))
    (claimed,) = broker.claim("q", "agent-1")
    broker.set_state(claimed.id, StateType.RUNNING, token=claimed.claim_token)
    broker.set_state(claimed.id, StateType.COMPLETED, token=claimed.claim_token, message="all good")
    thread.join(timeout=60)
    assert not thread.is_alive() and outcome["code"] == 0
    names = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert names == ["Scheduled", "Pending", "Running", "Completed"]

    failed = ended(broker, "q", StateType.FAILED)
    assert watch_run(broker, str(failed.id)) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1].split()[1:] == ["Failed", "it", "FAILED"]


def test_watch_polls_when_it_cannot_subscribe(
    broker: Broker, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A viewer whose ACL forbids SUBSCRIBE, or a lost connection: it reads on a timer."""
    monkeypatch.setattr(run_watch, "POLL_SECONDS", 0.05)

    def refused(**_: object) -> None:
        raise redis.ConnectionError("no pub/sub here")

    monkeypatch.setattr(broker.client, "pubsub", refused)
    run = broker.create_flow_run("q")
    thread, outcome = watch_in_thread(broker, str(run.id))
    broker.cancel_flow_run(run.id)
    thread.join(timeout=60)
    assert not thread.is_alive() and outcome["code"] == 1
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == [
        "Scheduled",
        "Cancelled",
    ]


def test_watch_ends_when_the_run_is_deleted(
    broker: Broker, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_watch, "POLL_SECONDS", 120.0)
    run = broker.create_flow_run("q", start_in_seconds=3600)
    thread, outcome = watch_in_thread(broker, str(run.id))
    channel = broker.keys.queue("q").events
    wait_for(lambda: subscribers(broker, channel) > 0, what="the watcher's subscription")
    broker.delete_flow_run(str(run.id))
    thread.join(timeout=60)
    assert not thread.is_alive() and outcome["code"] == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"Flow run {run.name!r} ({run.id}) was deleted."
