"""``runq concurrency-limit ...``, ``deployment run --tag`` and ``flow-run inspect`` of a run
waiting for a slot, through Click's runner against a real Redis.

Runs are made to wait without an agent: an agent's two steps (claim, then take the
limits' slots) are called on the broker, as ``agent/limit_taking.py`` calls them.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from runq.broker import Broker, FlowRun, LimitSlot, StateType, Waiting
from tests.cli_helpers import Invoke, cells
from tests.keyspace import changes, snapshot

QUEUE = "q"


def deploy(broker: Broker, name: str = "dep", tags: tuple[str, ...] = ("w",)) -> None:
    broker.create_deployment(
        name=name,
        entrypoint="flows.py:f",
        work_queue_name=QUEUE,
        tags=list(tags),
        check_code=False,
    )


def take_slots(broker: Broker, count: int) -> list[tuple[FlowRun, list[LimitSlot] | Waiting]]:
    """Claim ``count`` due runs of the queue and take their limits' slots, in claim order."""
    runs = broker.claim(QUEUE, "a1", max_runs=count)
    assert len(runs) == count
    names = broker.limit_names()
    return [(run, broker.take_limit_slots(run, QUEUE, run.claim_token, names)) for run in runs]


def one_holder_two_waiting(broker: Broker, **run_args) -> tuple[FlowRun, list[FlowRun]]:
    """Limit "w" of 1 and three runs tagged "w": the first holds, the others wait in order."""
    broker.create_concurrency_limit("w", 1, description="the warehouse")
    deploy(broker)
    for _ in range(3):
        broker.create_flow_run(deployment="dep", **run_args)
    taken = take_slots(broker, 3)
    assert not isinstance(taken[0][1], Waiting)
    assert all(isinstance(result, Waiting) for _, result in taken[1:])
    return taken[0][0], [run for run, _ in taken[1:]]


# ---- create, ls, inspect, update, delete -----------------------------------------------


def test_create_prints_properties_and_stores_the_limit(runq: Invoke, broker: Broker) -> None:
    out = runq("concurrency-limit", "create", "w", "5", "--rate", "10/1m", "-d", "nightly").stdout
    assert out.splitlines()[:5] == [
        "Created concurrency limit with properties:",
        "    name - 'w'",
        "    limit - 5",
        "    rate - 10/m",
        "    description - 'nightly'",
    ]
    assert "    runq concurrency-limit inspect 'w'" in out
    stored = broker.read_concurrency_limit("w")
    assert (stored.limit, str(stored.rate), stored.description) == (5, "10/m", "nightly")
    runq("concurrency-limit", "create", "api", "--rate", "5/30s")  # a rate alone
    assert broker.read_concurrency_limit("api").limit is None
    per_value = runq("concurrency-limit", "create", "customer:*", "1").stdout
    assert "Runs tagged 'customer:VALUE'" in per_value and "each VALUE its own limit" in per_value


def test_ls_shows_limits_rates_and_counts(runq: Invoke, broker: Broker) -> None:
    one_holder_two_waiting(broker)
    broker.create_concurrency_limit("api", rate="5/30s")
    out = runq("concurrency-limit", "ls").stdout
    assert cells(out, "Name") == ["Name", "Limit", "Rate", "Active", "Waiting", "Description"]
    assert cells(out, "warehouse") == ["w", "1", "None", "1", "2", "the warehouse"]
    assert cells(out, "5/30s") == ["api", "None", "5/30s", "0", "0", ""]
    listed = json.loads(runq("concurrency-limit", "ls", "-o", "json").stdout)
    assert [(item["name"], item["active"], item["waiting"]) for item in listed] == [
        ("api", 0, 0),
        ("w", 1, 2),
    ]
    assert listed[0]["rate"] == {"count": 5, "window_ms": 30_000}


def test_inspect_lists_holders_then_waiting_runs_in_order(runq: Invoke, broker: Broker) -> None:
    holder, waiting = one_holder_two_waiting(broker)
    out = runq("concurrency-limit", "inspect", "w").stdout
    assert out.startswith("ConcurrencyLimit(\n    name='w',\n    limit=1,\n")
    assert "    active=1," in out and "    waiting=2," in out
    assert cells(out, str(holder.id))[:3] == [holder.name, str(holder.id), QUEUE]
    assert cells(out, str(waiting[0].id))[:4] == ["1", waiting[0].name, str(waiting[0].id), QUEUE]
    assert cells(out, str(waiting[1].id))[:4] == ["2", waiting[1].name, str(waiting[1].id), QUEUE]
    assert out.index("Holders") < out.index(str(holder.id)) < out.index("Waiting Runs")
    assert out.index(str(waiting[0].id)) < out.index(str(waiting[1].id))
    data = json.loads(runq("concurrency-limit", "inspect", "w", "-o", "json").stdout)
    assert data["limit"]["name"] == "w" and data["limit"]["active"] == 1
    assert [(h["run_id"], h["run_name"], h["queue"]) for h in data["holders"]] == [
        (str(holder.id), holder.name, QUEUE)
    ]
    assert [(w["run_id"], w["run_name"], w["place"]) for w in data["waiting"]] == [
        (str(waiting[0].id), waiting[0].name, 1),
        (str(waiting[1].id), waiting[1].name, 2),
    ]


def test_inspect_of_a_per_value_limit_shows_each_value(runq: Invoke, broker: Broker) -> None:
    broker.create_concurrency_limit("customer:*", 1)
    deploy(broker, "acme", ("customer:acme",))
    deploy(broker, "zeta", ("customer:zeta",))
    for name in ("acme", "acme", "zeta"):
        broker.create_flow_run(deployment=name)
    taken = take_slots(broker, 3)
    [acme_waiting] = [run for run, result in taken if isinstance(result, Waiting)]
    out = runq("concurrency-limit", "inspect", "customer:*").stdout
    assert "Value" in cells(out, "Since") and cells(out, "Since")[-1] == "Since"
    assert cells(out, str(acme_waiting.id))[:5] == [
        "1",
        acme_waiting.name,
        str(acme_waiting.id),
        QUEUE,
        "acme",
    ]
    assert sum(1 for run, _ in taken if str(run.id) in out) == 3


def test_update_changes_only_what_is_given(runq: Invoke, broker: Broker) -> None:
    broker.create_concurrency_limit("w", 2, rate="10/1m", description="d")
    out = runq("concurrency-limit", "update", "w", "--limit", "4").stdout
    assert out.splitlines() == ["Updated concurrency limit 'w':", "    limit - 4"]
    found = broker.read_concurrency_limit("w")
    assert (found.limit, str(found.rate), found.description) == (4, "10/m", "d")
    out = runq("concurrency-limit", "update", "w", "--no-limit", "--rate", "3/h", "-d", "").stdout
    assert out.splitlines() == [
        "Updated concurrency limit 'w':",
        "    limit - None",
        "    rate - 3/h",
        "    description - ''",
    ]
    found = broker.read_concurrency_limit("w")
    assert (found.limit, str(found.rate), found.description) == (None, "3/h", "")
    runq("concurrency-limit", "update", "w", "--limit", "0", "--no-rate")
    found = broker.read_concurrency_limit("w")
    assert (found.limit, found.rate) == (0, None)


def test_a_raised_limit_sends_the_first_waiting_run_back(runq: Invoke, broker: Broker) -> None:
    _, waiting = one_holder_two_waiting(broker)
    assert broker.preview(QUEUE) == []  # parked: out of the queue's due runs
    runq("concurrency-limit", "update", "w", "--limit", "2")
    assert [str(run.id) for run in broker.preview(QUEUE)] == [str(waiting[0].id)]
    [(again, slots)] = take_slots(broker, 1)  # claimed again, it takes the freed slot
    assert str(again.id) == str(waiting[0].id) and slots == [LimitSlot("w")]
    assert broker.read_flow_run(waiting[1].id).state.name == "AwaitingConcurrencySlot"


def test_delete_sends_the_waiting_runs_back(runq: Invoke, broker: Broker) -> None:
    _, waiting = one_holder_two_waiting(broker)
    out = runq("concurrency-limit", "delete", "w").stdout
    assert out.splitlines() == [
        "Deleted concurrency limit 'w'",
        "2 waiting run(s) went back to their work queues.",
    ]
    assert broker.list_concurrency_limits() == []
    assert [str(run.id) for run in broker.preview(QUEUE)] == [str(run.id) for run in waiting]
    assert runq("concurrency-limit", "ls", "-o", "json").stdout.strip() == "[]"


# ---- bad input: one line, nothing written ----------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["create", "x", "-1"], "Invalid concurrency limit -1: it must be an integer from 0"),
        (["create", "x", "1.5"], "Invalid concurrency limit '1.5'"),
        (["create", "x", "many"], "Invalid concurrency limit 'many'"),
        (["create", "x", "1000001"], "Invalid concurrency limit 1000001"),
        (["create", "x", "--rate", "0/1m"], "Invalid rate '0/1m'"),
        (["create", "x", "2", "--rate", "fast"], "Invalid rate 'fast'"),
        (["create", "a\x1bb", "1"], "must not contain control characters"),
        (["create", "a\nb", "1"], "must not contain control characters"),
        (["create", "a{b}", "1"], "must not contain '{' or '}'"),
        (["create", "*", "1"], "'*' may only end it"),
        (["create", "x"], "Concurrency limit 'x' needs a limit, a rate or both."),
        (["create", "x", "-d", "only words"], "needs a limit, a rate or both"),
        (["create", "w", "3"], "Concurrency limit 'w' already exists."),
        (["update", "w", "--limit", "-1"], "Invalid concurrency limit -1"),
        (["update", "w", "--limit", "two"], "Invalid concurrency limit 'two'"),
        (["update", "w", "--rate", "0/1m"], "Invalid rate '0/1m'"),
        (["update", "w", "--no-limit"], "Concurrency limit 'w' needs a limit, a rate or both."),
        (["update", "nope", "--limit", "1"], "No concurrency limit named 'nope' found."),
        (["inspect", "nope"], "No concurrency limit named 'nope' found."),
        (["delete", "nope"], "No concurrency limit named 'nope' found."),
    ],
)
def test_mistakes_are_one_line_exit_1_and_write_nothing(
    runq: Invoke, broker: Broker, args: list[str], message: str
) -> None:
    broker.create_concurrency_limit("w", 1, description="d")
    before, keys = broker.read_concurrency_limit("w"), snapshot(broker)
    result = runq("concurrency-limit", *args, code=1)
    assert message in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    assert changes(keys, snapshot(broker)) == []  # keys expiring by themselves forgiven
    assert broker.read_concurrency_limit("w") == before
    assert [item.name for item in broker.list_concurrency_limits()] == ["w"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--limit", "1", "--no-limit"], "--limit N or --no-limit"),
        (["--rate", "1/m", "--no-rate"], "--rate R or --no-rate"),
        ([], "Nothing to update"),
    ],
)
def test_update_usage_mistakes_exit_2(runq: Invoke, broker: Broker, args, words) -> None:
    broker.create_concurrency_limit("w", 1)
    before = broker.read_concurrency_limit("w")
    result = runq("concurrency-limit", "update", "w", *args, code=2)
    assert words in result.stderr and "Traceback" not in result.output
    assert broker.read_concurrency_limit("w") == before


def test_every_command_has_an_example_in_its_help(runq: Invoke) -> None:
    for command in ([], ["create"], ["ls"], ["inspect"], ["update"], ["delete"]):
        out = runq("concurrency-limit", *command, "--help").stdout
        assert "Example" in out and "runq concurrency-limit" in out.split("Example")[1], command


# ---- deployment run --tag --------------------------------------------------------------


def test_deployment_run_tag_gives_the_run_tags_that_limits_apply_to(
    runq: Invoke, broker: Broker
) -> None:
    deploy(broker, tags=("etl",))
    broker.create_concurrency_limit("customer:*", 1)
    out = runq("deployment", "run", "dep", "--tag", "customer:acme", "--tag", "urgent").stdout
    assert "└── Tags: ['etl', 'customer:acme', 'urgent']" in out
    runq("deployment", "run", "dep", "--tag", "customer:acme")
    plain = runq("deployment", "run", "dep").stdout
    assert "Tags" not in plain  # no --tag: the output is as before
    runs = sorted(broker.list_flow_runs(QUEUE), key=lambda run: str(run.id))
    assert [run.tags for run in runs] == [
        ["etl", "customer:acme", "urgent"],
        ["etl", "customer:acme"],
        ["etl"],
    ]
    taken = take_slots(broker, 3)
    results = [type(result).__name__ for _, result in taken]
    assert results == ["list", "Waiting", "list"]  # the second customer:acme run waits
    assert taken[0][1] == [LimitSlot("customer:*", "acme")] and taken[2][1] == []


def test_deployment_run_refuses_a_bad_tag_and_creates_nothing(runq: Invoke, broker: Broker) -> None:
    deploy(broker)
    result = runq("deployment", "run", "dep", "--tag", "\udcff", code=1)
    assert len(result.stderr.splitlines()) == 1 and "UTF-8" in result.stderr
    assert broker.list_flow_runs(QUEUE) == []


# ---- flow-run inspect of a waiting run -------------------------------------------------


def test_flow_run_inspect_says_the_limit_its_holders_and_the_place(
    runq: Invoke, broker: Broker
) -> None:
    # due an hour ago: long past the late threshold, yet a run in a limit's line is not Late
    due = broker.server_time() - timedelta(hours=1)
    holder, waiting = one_holder_two_waiting(broker, scheduled_start_time=due)
    out = runq("flow-run", "inspect", str(waiting[1].id)).stdout
    assert "'name': 'AwaitingConcurrencySlot'" in out and "Late" not in out
    assert "Waiting for concurrency limit 'w' (1 in use)." in out  # the state message
    assert "awaiting_limit='w'" in out
    line = "Waiting for concurrency limit 'w': 1/1 slots held; place 2 of 2 in line."
    assert line in out.splitlines()
    first = runq("flow-run", "inspect", str(waiting[0].id)).stdout
    assert "place 1 of 2 in line." in first
    held = runq("flow-run", "inspect", str(holder.id)).stdout
    assert "slots held" not in held and "in line" not in held
    data = json.loads(runq("flow-run", "inspect", str(waiting[1].id), "-o", "json").stdout)
    assert data["state"]["name"] == "AwaitingConcurrencySlot" and data["awaiting_limit"] == "w"


def test_flow_run_inspect_under_a_per_value_limit_counts_that_value(
    runq: Invoke, broker: Broker
) -> None:
    broker.create_concurrency_limit("customer:*", 2, rate="100/1m")
    deploy(broker, "acme", ("customer:acme",))
    deploy(broker, "zeta", ("customer:zeta",))
    for name in ("zeta", "acme", "acme", "acme"):
        broker.create_flow_run(deployment=name)
    taken = take_slots(broker, 4)
    [waiting] = [run for run, result in taken if isinstance(result, Waiting)]
    assert broker.read_flow_run(waiting.id).state.type is StateType.SCHEDULED
    out = runq("flow-run", "inspect", str(waiting.id)).stdout
    expected = (
        "Waiting for concurrency limit 'customer:acme': 2/2 slots held, at most 100/m starts; "
        "place 1 of 1 in line."
    )
    assert expected in out.splitlines()
