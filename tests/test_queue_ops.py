"""Operating work queues: a delete that keeps history, names or ids everywhere, live
agents only, and the agent's start-up lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest

from runq.broker import (
    Broker,
    BrokerSettings,
    FlowRun,
    FlowRunNotFound,
    InvalidInput,
    StateType,
    WorkQueueBusy,
    WorkQueueNotFound,
)
from runq.broker.scripts import (
    QUEUE_SCRIPTS,
    WAKE_COUNTED,
    WAKE_UNCOUNTED,
    server_major_version,
    source,
    uses_sharded_wakeups,
)
from runq.broker.work_queues import WorkQueueInFlight, WorkQueueInUse
from runq.control.agent_start import connection_text
from tests.agent_helpers import wait_for  # noqa: F401 (the shared condition wait)
from tests.cli_helpers import Invoke, cells

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster
HOURLY = {"cron": "0 * * * *", "timezone": "UTC"}
MOVE_HINT = "runq deployment set-work-queue DEPLOYMENT OTHER-QUEUE"


def completed(broker: Broker, queue: str, **fields: object) -> FlowRun:
    """A run created on ``queue``, claimed, run and COMPLETED (no agent needed)."""
    run = broker.create_flow_run(queue, **fields)  # type: ignore[arg-type]
    [claimed] = broker.claim(queue, "agent-x")
    assert claimed.id == run.id
    broker.set_state(run.id, StateType.RUNNING, token=claimed.claim_token)
    broker.set_state(run.id, StateType.COMPLETED, token=claimed.claim_token)
    return run


def retired(broker: Broker) -> set[str]:
    return set(broker.client.smembers(broker.keys.retired_queues))


# ---- the delete keeps history ----------------------------------------------------------


def test_delete_keeps_terminal_runs_and_removes_everything_else(broker: Broker) -> None:
    queue = broker.create_work_queue("q")
    done = completed(broker, "q", idempotency_key="k-done")
    waiting = broker.create_flow_run("q", idempotency_key="k-wait")
    later = broker.create_flow_run("q", start_in_seconds=3600)
    broker.delete_work_queue("q")

    assert broker.read_flow_run(done.id).state.type is StateType.COMPLETED
    assert [run.id for run in broker.list_flow_runs(queue="q")] == [done.id]
    assert [run.id for run in broker.list_flow_runs(states=["COMPLETED"])] == [done.id]
    for gone in (waiting, later):
        with pytest.raises(FlowRunNotFound):
            broker.read_flow_run(gone.id)
        assert broker.client.hget(broker.keys.run_index, str(gone.id)) is None
    keys = broker.keys.queue("q")
    for key in (keys.config, keys.scheduled, keys.ready, keys.active, keys.agents, keys.waiters):
        assert not broker.client.exists(key), key
    assert broker.client.hget(keys.idempotency, "k-wait") is None
    assert broker.client.hget(keys.idempotency, "k-done") == str(done.id)
    assert broker.client.zcard(keys.runs) == broker.client.zcard(keys.done) == 1
    assert not broker.client.sismember(broker.keys.queue_names, "q")
    assert broker.client.hget(broker.keys.queue_ids, str(queue.id)) is None
    assert retired(broker) == {"q"} and broker.list_work_queues() == []
    for key in ("q", str(queue.id)):
        with pytest.raises(WorkQueueNotFound):
            broker.read_work_queue(key)


def test_a_queue_without_history_is_not_retired(broker: Broker) -> None:
    broker.create_flow_runs("empty", [{}, {"start_in_seconds": 60}])
    broker.delete_work_queue("empty")
    assert retired(broker) == set()
    assert not broker.client.exists(broker.keys.queue("empty").runs)


def test_recreating_a_retired_queue_takes_it_off_the_retired_set(broker: Broker) -> None:
    done = completed(broker, "q")
    broker.delete_work_queue("q")
    broker.create_work_queue("q")
    assert retired(broker) == set()
    assert [run.id for run in broker.list_flow_runs(queue="q")] == [done.id]
    broker.delete_work_queue("q")
    broker.create_flow_run("q")  # a run's queue is created by the run, as when referenced
    broker.scheduler().run_pass()
    assert retired(broker) == set()


def test_retrying_a_run_of_a_deleted_queue_brings_the_queue_back(broker: Broker) -> None:
    done = broker.create_flow_run("q")
    [claimed] = broker.claim("q", "agent-x")
    broker.set_state(done.id, StateType.FAILED, token=claimed.claim_token)
    broker.delete_work_queue("q")
    broker.retry_flow_run(done.id)
    assert broker.read_work_queue("q").scheduled_runs == 1
    assert retired(broker) == set()
    (again,) = broker.claim("q", "agent-y")
    assert again.id == done.id


def test_the_scheduler_pass_purges_retired_history_when_retention_ends(broker: Broker) -> None:
    done = completed(broker, "q")
    broker.delete_work_queue("q")
    assert broker.scheduler().run_pass().purged == 0, "retention (days) has not ended"
    assert retired(broker) == {"q"}
    short = Broker.from_url(broker.url, settings=BrokerSettings(retention_seconds=0.001))
    try:
        wait_for(lambda: short.scheduler().run_pass().purged == 1, 120, "the purge")
    finally:
        short.close()
    with pytest.raises(FlowRunNotFound):
        broker.read_flow_run(done.id)
    keys = broker.keys.queue("q")
    assert retired(broker) == set() and broker.list_flow_runs(states=["COMPLETED"]) == []
    assert broker.client.hget(broker.keys.run_index, str(done.id)) is None
    for key in (keys.runs, keys.done, keys.idempotency, keys.index_prefix + "state:COMPLETED"):
        assert not broker.client.exists(key), key


def test_runs_in_flight_refuse_the_delete_forced_or_not(broker: Broker) -> None:
    broker.create_flow_run("q")
    broker.claim("q", "agent-x")
    for force in (False, True):
        with pytest.raises(WorkQueueInFlight, match="1 run\\(s\\) in flight") as refused:
            broker.delete_work_queue("q", force=force)
        assert isinstance(refused.value, InvalidInput) and isinstance(refused.value, WorkQueueBusy)
    assert broker.read_work_queue("q").active_runs == 1 and retired(broker) == set()


def test_deployments_on_the_queue_refuse_the_delete(broker: Broker) -> None:
    for name in ("vd", "other"):
        broker.create_deployment(name=name, entrypoint="flows.py:main", work_queue_name="vq")
    before = broker.read_work_queue("vq")
    with pytest.raises(WorkQueueInUse) as refused:
        broker.delete_work_queue("vq")
    message = str(refused.value)
    assert isinstance(refused.value, InvalidInput) and len(message.splitlines()) == 1
    assert "'other', 'vd'" in message and MOVE_HINT in message
    assert broker.read_work_queue("vq").id == before.id and retired(broker) == set()


def test_a_forced_delete_gives_deployments_their_queue_and_schedule_back(broker: Broker) -> None:
    deployment = broker.create_deployment(
        name="vd", entrypoint="flows.py:main", work_queue_name="vq", schedule=HOURLY
    )
    old = broker.read_work_queue("vq")
    future = broker.preview("vq", hours=24)
    assert len(future) == 3
    done = completed(broker, "vq", deployment="vd")  # a manual run: due now, claimed first
    broker.delete_work_queue(str(old.id), force=True)

    again = broker.read_work_queue("vq")
    assert again.id != old.id and retired(broker) == set()
    now_future = broker.preview("vq", hours=24)
    assert [r.expected_start_time for r in now_future] == [r.expected_start_time for r in future]
    assert {r.id for r in now_future}.isdisjoint(r.id for r in future), "made again"
    listed = broker.list_flow_runs(deployment_id=deployment.id, states=["COMPLETED"])
    assert [run.id for run in listed] == [done.id]


# ---- names or ids ----------------------------------------------------------------------


def test_every_queue_method_takes_a_name_or_an_id(broker: Broker) -> None:
    queue = broker.create_work_queue("named")
    for key in (str(queue.id), queue.id, str(queue.id).upper()):
        assert broker.pause_work_queue(key).is_paused  # type: ignore[arg-type]
        assert not broker.resume_work_queue(key).is_paused  # type: ignore[arg-type]
        assert broker.set_concurrency_limit(key, 2).concurrency_limit == 2  # type: ignore[arg-type]
        assert broker.clear_concurrency_limit(key).concurrency_limit is None  # type: ignore[arg-type]
        assert broker.set_work_queue_description(key, "d").description == "d"  # type: ignore[arg-type]
        assert broker.read_work_queue(key).name == "named"
    broker.create_flow_run("named", start_in_seconds=60)
    assert len(broker.preview(str(queue.id))) == 1
    broker.delete_work_queue(queue.id)
    assert broker.list_work_queues() == []
    with pytest.raises(WorkQueueNotFound):
        broker.pause_work_queue(str(queue.id))


def test_an_id_shaped_name_is_still_a_name(broker: Broker) -> None:
    name = "0d9e1c1e-35a4-4ed2-8f0b-5ad1a4a3c0a1"
    broker.create_work_queue(name)
    assert broker.pause_work_queue(name).name == name


# ---- live agents -----------------------------------------------------------------------


def test_queues_count_only_live_agents(broker: Broker) -> None:
    broker.create_work_queue("q")
    broker.claim("q", "ghost")  # polled, never registered (or long gone)
    assert broker.read_work_queue("q").agents == []
    broker.register_agent("alive", name="a", work_queues=["q"])
    broker.register_agent("stale", name="s", work_queues=["q"])
    broker.claim("q", "alive")
    broker.claim("q", "stale")
    two_minutes_ago = broker.client.zscore(broker.keys.agent_registry, "stale") - 120e6
    broker.client.zadd(broker.keys.agent_registry, {"stale": two_minutes_ago})
    assert [a.id for a in broker.read_work_queue("q").agents] == ["alive"]
    assert [a.id for a in broker.list_work_queues()[0].agents] == ["alive"]
    broker.deregister_agent("alive")
    assert broker.read_work_queue("q").agents == []


def test_agent_ls_and_work_queue_ls_agree(runq: Invoke, broker: Broker) -> None:
    broker.create_work_queue("watched")
    broker.register_agent("alive", name="a", work_queues=["watched"])
    broker.register_agent("stale", name="s", work_queues=["watched"])
    for agent in ("alive", "stale", "ghost"):
        broker.claim("watched", agent)
    old = broker.client.zscore(broker.keys.agent_registry, "stale") - 120e6
    broker.client.zadd(broker.keys.agent_registry, {"stale": old})
    agents = json.loads(runq("agent", "ls", "-o", "json").stdout)
    online = [a["id"] for a in agents if a["status"] == "online"]
    assert online == ["alive"]
    assert cells(runq("work-queue", "ls").stdout, "watched")[5] == "1"
    out = runq("work-queue", "inspect", "watched").stdout
    assert "alive (polled" in out and "stale" not in out and "ghost" not in out


# ---- the CLI -----------------------------------------------------------------------------


def test_the_issue_scenario_through_the_cli(runq: Invoke, broker: Broker) -> None:
    """Deployment vd on vq, hourly cron, one completed run: refused, then --force."""
    broker.create_deployment(
        name="vd", entrypoint="flows.py:main", work_queue_name="vq", schedule=HOURLY
    )
    done = completed(broker, "vq", deployment="vd")
    refused = runq("work-queue", "delete", "vq", code=1)
    assert refused.stdout == "" and len(refused.stderr.splitlines()) == 1
    assert "'vd'" in refused.stderr and f"`{MOVE_HINT}`" in refused.stderr
    assert broker.read_work_queue("vq").scheduled_runs == 3

    out = runq("work-queue", "delete", "vq", "--force").stdout
    assert out.splitlines()[0] == "Deleted work queue 'vq'"
    assert "Created work queue 'vq' again for deployment(s) 'vd'" in out
    listed = json.loads(runq("flow-run", "ls", "--deployment", "vd", "-o", "json").stdout)
    assert str(done.id) in [run["id"] for run in listed]
    assert f"id='{done.id}'" in runq("flow-run", "inspect", str(done.id)).stdout
    assert broker.read_work_queue("vq").scheduled_runs == 3
    assert (
        len(json.loads(runq("work-queue", "preview", "vq", "--hours", "3", "-o", "json").stdout))
        >= 2
    )


def test_every_command_takes_the_queue_id(runq: Invoke, broker: Broker) -> None:
    queue_id = str(broker.create_work_queue("idq").id)
    assert runq("work-queue", "pause", queue_id).stdout == "Paused work queue 'idq'\n"
    assert runq("work-queue", "resume", queue_id).stdout == "Resumed work queue 'idq'\n"
    assert (
        "of 4 set on work queue 'idq'"
        in runq("work-queue", "set-concurrency-limit", queue_id, "4").stdout
    )
    assert (
        "removed from work queue 'idq'"
        in runq("work-queue", "clear-concurrency-limit", queue_id).stdout
    )
    assert "name='idq'" in runq("work-queue", "inspect", queue_id).stdout
    assert "No runs scheduled on work queue 'idq'" in runq("work-queue", "preview", queue_id).stdout
    assert runq("work-queue", "delete", queue_id).stdout == "Deleted work queue 'idq'\n"
    result = runq("work-queue", "pause", queue_id, code=1)
    assert result.stderr == f"No work queue named '{queue_id}' found.\n"


def test_set_work_queue_by_id_moves_to_that_queue(runq: Invoke, broker: Broker) -> None:
    target = broker.create_work_queue("target")
    broker.create_deployment(name="d", entrypoint="flows.py:main", work_queue_name="first")
    runq("deployment", "set-work-queue", "d", str(target.id))
    assert broker.read_deployment("d").work_queue_name == "target"
    assert sorted(q.name for q in broker.list_work_queues()) == ["first", "target"]


def test_ls_verbose_adds_description_created_and_last_polled(runq: Invoke, broker: Broker) -> None:
    broker.create_work_queue("v", description="nightly jobs")
    plain = runq("work-queue", "ls").stdout
    assert "Description" not in plain and "Last Polled" not in plain
    out = runq("work-queue", "ls", "--verbose").stdout
    for header in ("Description", "Created", "Last Polled"):
        assert header in out
    row = cells(out, "nightly")
    assert row[0] == "v" and row[7] == "nightly jobs" and row[9] == "never"
    assert row[8].startswith(str(broker.server_time().astimezone().year))


@pytest.mark.parametrize(
    "args, message",
    [
        (["work-queue", "delete", "nope"], "No work queue named 'nope' found."),
        (["work-queue", "delete", "nope", "--force"], "No work queue named 'nope' found."),
        (
            ["work-queue", "delete", "7b7c8f3e-0000-4000-8000-000000000000"],
            "No work queue named '7b7c8f3e-0000-4000-8000-000000000000' found.",
        ),
        (["work-queue", "resume", "a{b"], "No work queue named 'a{b' found."),
        (["agent", "start", "--run-once"], "Give a work queue (-q NAME) or a prefix (-m PREFIX)"),
        (["agent", "start", "-m", "a{b", "--run-once"], "Invalid work queue prefix name 'a{b'"),
    ],
)
def test_mistakes_are_one_line_and_write_nothing(
    runq: Invoke, broker: Broker, args: list[str], message: str
) -> None:
    result = runq(*args, code=1)
    assert message in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stdout == "" and broker.client.dbsize() == 0


# ---- agent start ----------------------------------------------------------------------


def test_the_banner_masks_the_password_and_names_the_embedded_socket() -> None:
    assert connection_text("redis://u:s3cret@redis:6379/0", False) == "redis://u:***@redis:6379/0"
    assert connection_text("unix:///tmp/h/redis.sock", True) == (
        "the embedded Redis (socket /tmp/h/redis.sock)"
    )


def start_once(url: str, *args: str, env: dict[str, str] | None = None) -> str:
    """``runq agent start ... --run-once`` in its own process; its output."""
    command = [sys.executable, "-m", "runq", "agent", "start", "--run-once", "--no-scheduler"]
    if url:
        command += ["--api", url]
    done = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_agent_start_warns_about_paused_queues_and_names_its_redis(broker: Broker) -> None:
    broker.create_work_queue("held")
    broker.pause_work_queue("held")
    broker.create_work_queue("k8s-a")
    broker.pause_work_queue("k8s-a")
    extra = ["--cluster"] if broker.cluster else []
    out = start_once(broker.url, "-q", "held", "-q", "fine", "-m", "k8s-", *extra)
    assert f"Starting agent connected to {broker.url}..." in out
    assert "ephemeral" not in out
    warnings = [line for line in out.splitlines() if "is paused" in line]
    assert len(warnings) == 2, out
    assert "Work queue 'held' is paused: this agent gets no runs from it until " in warnings[0]
    assert "`runq work-queue resume 'held'`" in warnings[0] and "'k8s-a'" in warnings[1]
    assert "queue(s): held, fine; queues matching: k8s-*" in out
    only_prefix = start_once(broker.url, "-m", "k8s-", *extra)
    assert "Looking for work from queues matching: k8s-*..." in only_prefix
    assert "Work queue 'k8s-a' is paused" in only_prefix


def test_agent_start_on_the_embedded_redis_names_its_socket(runq_home: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "RUNQ_API_URL"}
    command = [sys.executable, "-m", "runq", "agent", "start", "--run-once", "--no-scheduler"]
    done = subprocess.run(
        [*command, "-q", "local"], capture_output=True, text=True, timeout=120, env=env
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    socket = Path(runq_home) / "redis.sock"
    assert f"Starting agent connected to the embedded Redis (socket {socket})..." in out, out
    assert "Created work queue 'local'." in out


def test_queue_id_of_an_unknown_uuid_is_not_found(broker: Broker) -> None:
    with pytest.raises(WorkQueueNotFound):
        broker.read_work_queue(UUID(int=5))


def test_an_ended_run_of_a_deleted_queue_is_not_rescheduled_by_set_state(broker: Broker) -> None:
    """SCHEDULED there would strand it (a queue nobody lists): refused, nothing written."""
    run = broker.create_flow_run("q")
    [claimed] = broker.claim("q", "agent-x")
    broker.set_state(run.id, StateType.FAILED, token=claimed.claim_token)
    broker.delete_work_queue("q")
    keys = broker.keys.queue("q")
    before = broker.client.hgetall(keys.run(str(run.id)))
    with pytest.raises(WorkQueueNotFound, match="'q'"):
        broker.set_state(run.id, StateType.SCHEDULED, name="AwaitingRetry")
    assert broker.client.hgetall(keys.run(str(run.id))) == before
    assert not broker.client.exists(keys.config, keys.scheduled)


def test_the_retry_script_refuses_a_deleted_queue(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    [claimed] = broker.claim("q", "agent-x")
    broker.set_state(run.id, StateType.CRASHED, token=claimed.claim_token)
    broker.delete_work_queue("q")
    keys = broker.keys.queue("q")
    with pytest.raises(WorkQueueNotFound):
        broker.scripts.run_retry(keys, run_id=str(run.id), message="m", queue_name="q")
    assert broker.client.hget(keys.run(str(run.id)), "st") == "CRASHED"
    assert not broker.client.exists(keys.scheduled)


def test_a_refused_retry_does_not_bring_a_deleted_queue_back(broker: Broker) -> None:
    completed(broker, "q")
    run = broker.list_flow_runs(queue="q")[0]
    broker.delete_work_queue("q")
    with pytest.raises(InvalidInput, match="is COMPLETED"):
        broker.retry_flow_run(run.id)
    with pytest.raises(WorkQueueNotFound):
        broker.read_work_queue("q")


def test_a_claim_cut_short_by_stale_entries_wakes_an_agent(broker: Broker) -> None:
    """Every read round hit stale entries (runs gone since their release) while a due run
    is still in the stream: the claim wakes an idle agent (here itself, the only waiter)
    instead of leaving the run to the fallback poll."""
    run = broker.create_flow_run("q")
    keys = broker.keys.queue("q")
    for _ in range(4):  # entries of runs that no longer exist, older than the due run's
        broker.client.xadd(keys.ready, {"run": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"})
    pubsub = broker.client.pubsub()
    channel = keys.wake_for("agent-a")
    sharded = uses_sharded_wakeups(broker.client)
    (pubsub.ssubscribe if sharded else pubsub.subscribe)(channel)
    receive = pubsub.get_sharded_message if sharded else pubsub.get_message
    try:
        wait_for(lambda: receive(timeout=1) is not None, 120, "the subscription")
        assert broker.claim("q", "agent-a") == [], "four stale rounds leave the run unread"
        message = receive(timeout=60)
        assert message is not None and message["data"] == "wake"
        assert [r.id for r in broker.claim("q", "agent-a")] == [run.id]
    finally:
        pubsub.close()


def test_wake_ups_on_a_cluster_without_sharded_pub_sub_drop_no_waiter() -> None:
    """On a Redis 6.2 cluster PUBLISH counts one node's subscribers: the loader tells the
    prelude so, and the waiter check is skipped (broadcast) instead of dropping waiters."""
    plain = source("claim", shebang=False)
    assert WAKE_COUNTED in plain
    assert WAKE_UNCOUNTED in source("claim", shebang=False, cluster=True)
    assert WAKE_COUNTED in source("claim", shebang=True, sharded=True, cluster=True)


def test_uncounted_wake_ups_broadcast_and_keep_the_waiters(broker: Broker) -> None:
    """The prelude as loaded for a Redis 6.2 cluster, run here: a waiter nobody hears on
    this node is not judged dead (it may listen on another node), "wake" is broadcast."""
    broker.create_work_queue("q")
    assert broker.claim("q", "agent-elsewhere") == []  # registers as a waiter
    keys = broker.keys.queue("q")
    shebang = server_major_version(broker.client) >= 7
    broker.scripts._registered = {  # what Scripts registers on a Redis 6.2 cluster
        name: broker.client.register_script(source(name, shebang, False, True))
        for name in QUEUE_SCRIPTS
    }
    pubsub = broker.client.pubsub()
    pubsub.subscribe(keys.wake)
    try:
        wait_for(lambda: pubsub.get_message(timeout=1) is not None, 120, "the subscription")
        broker.create_flow_run("q")
        message = pubsub.get_message(timeout=60)
        assert message is not None and message["data"] == "wake"
        assert broker.client.zscore(keys.waiters, "agent-elsewhere") is not None
    finally:
        pubsub.close()
