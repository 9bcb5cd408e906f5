"""What ``runq ui`` keeps in Redis for an exposed deployment: its login sessions and its
failed logins, each bounded in count and in bytes, each with an expiry, on one cluster
slot (every Redis version and the cluster: ``ON_CLUSTER``)."""

from __future__ import annotations

from runq.broker import Broker
from runq.broker.ui_logins import LoginFailures
from runq.broker.ui_sessions import UISessions

ON_CLUSTER = True


def ui_keys(broker: Broker) -> list[str]:
    return sorted(key for key in broker.client.scan_iter(match=f"{broker.keys.prefix}:{{ui}}:*"))


def test_sessions_are_bounded_in_count_and_bytes_and_end_on_close(broker: Broker) -> None:
    sessions = UISessions(broker, max_sessions=3)
    ids = [f"session-{n}-" + "x" * 40 for n in range(5)]
    for session_id in ids:
        sessions.open(session_id, 3600)
    # the two oldest were ended to make room: three remain, whatever was asked
    assert [sessions.alive(session_id) for session_id in ids] == [False, False, True, True, True]
    assert sessions.count() == 3
    keys = ui_keys(broker)
    assert len(keys) == 4  # three sessions and their index
    for key in keys:
        assert 0 < broker.client.pttl(key) <= 3600 * 1000  # everything expires by itself
        assert broker.client.memory_usage(key) < 1024  # fixed-size entries
    assert not any(session_id in " ".join(keys) for session_id in ids)  # no usable cookie
    sessions.close(ids[3])
    assert not sessions.alive(ids[3]) and sessions.alive(ids[4]) and sessions.count() == 2
    sessions.close(ids[3])  # twice: nothing happens


def test_failed_logins_are_counted_per_client_within_a_bound(broker: Broker) -> None:
    failures = LoginFailures(broker, window_seconds=300, max_clients=3)
    assert failures.current("10.0.0.1") == (0, 0.0)
    assert [failures.failed("10.0.0.1").attempts for _ in range(3)] == [1, 2, 3]
    count, left = failures.current("10.0.0.1")
    assert count == 3 and 0 < left <= 300
    for client in ("10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"):
        failures.failed(client)
    assert failures.tracked() == 3  # beyond the bound the oldest are forgotten
    assert len(ui_keys(broker)) == 4
    assert failures.current("10.0.0.5").attempts == 1
    failures.cleared("10.0.0.5")
    assert failures.current("10.0.0.5").attempts == 0 and failures.tracked() == 2
