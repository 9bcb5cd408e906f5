"""The Lua scripts say what they use: each header lists the KEYS it receives, its ARGV
and the helper files it includes; the typed Python methods send exactly that, in that
order; the loader puts in only the declared helpers; the engine's ACL user holds every
command its scripts run; and an error inside a script names the file and line it came
from, not a line of the composed text."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from runq.broker import Broker, StateType
from runq.broker.errors import BrokerUnavailable, ScriptError
from runq.broker.keys import Keys
from runq.broker.scripts import GLOBAL_SCRIPTS, QUEUE_SCRIPTS, Scripts, source, specs
from runq.broker.scripts.sources import (
    INCLUDE_DIR,
    ScriptLayoutError,
    compose,
    header_lines,
    helper,
    parse_header,
    read,
    resolve,
)
from runq.broker.scripts.specs import ScriptSpec

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "broker" / "scripts"
NAMES = QUEUE_SCRIPTS + GLOBAL_SCRIPTS
HELPERS = sorted(path.stem for path in (SCRIPTS / INCLUDE_DIR).glob("*.lua"))
SPECS = {**specs.QUEUE_SPECS, **specs.GLOBAL_SPECS}
#: The scripts an engine runs with its own ACL user (set_state, heartbeat, append_logs).
ENGINE_SCRIPTS = ("set_state", "heartbeat", "log_append")
ACL_FILES = (ROOT / "deploy" / "redis-acl.conf", ROOT / "deploy" / "redis-acl-6.2.conf")


# ---- headers and the Python declarations ----------------------------------------------


def test_every_script_file_has_a_declaration_and_the_other_way_round() -> None:
    assert {path.stem for path in SCRIPTS.glob("*.lua")} == set(NAMES) == set(SPECS)


@pytest.mark.parametrize("name", NAMES)
def test_the_header_declares_what_the_python_side_sends(name: str) -> None:
    header = parse_header(read(f"{name}.lua"), f"{name}.lua")
    spec = SPECS[name]
    assert (header.keys, header.keys_rest) == (spec.keys, spec.keys_rest), "KEYS"
    assert (header.argv, header.argv_rest) == (spec.argv, spec.argv_rest), "ARGV"


QK = Keys("runq").queue("q")
RUN, DEP = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "dep-1"

#: One call of each typed method, and the ARGV it must send, by the header's names.
CALLS: dict[str, tuple[Callable[[Scripts], Any], dict[str, str], list[str]]] = {
    "queue_create": (
        lambda s: s.queue_create(
            QK, mode="create", queue_id="id", description="d", limit=3, name="q"
        ),
        {"mode": "create", "queue_id": "id", "description": "d", "limit": "3", "name": "q"},
        [],
    ),
    "queue_read": (
        lambda s: s.queue_read(QK, agents_window_ms=1, late_after_ms=2),
        {"agents_window_ms": "1", "late_after_ms": "2"},
        [],
    ),
    "queue_gauges": (
        lambda s: s.queue_gauges(QK, agents_window_ms=1, late_after_ms=2),
        {"agents_window_ms": "1", "late_after_ms": "2"},
        [],
    ),
    "queue_update": (
        lambda s: s.queue_update(QK, name="q", fields={"is_paused": "1"}),
        {"name": "q"},
        ["is_paused", "1"],
    ),
    "queue_delete": (lambda s: s.queue_delete(QK, name="q"), {"name": "q"}, []),
    "run_create": (
        lambda s: s.run_create(
            QK, queue_id="id", with_records=True, name="q", runs=[[str(n) for n in range(11)]]
        ),
        {"queue_id": "id", "with_records": "1", "name": "q"},
        [str(n) for n in range(11)],
    ),
    "run_cancel": (
        lambda s: s.run_cancel(QK, run_id=RUN, message="m", retention_ms=5),
        {"run_id": RUN, "message": "m", "retention_ms": "5"},
        [],
    ),
    "run_retry": (
        lambda s: s.run_retry(QK, run_id=RUN, message="m", queue_name="q"),
        {"run_id": RUN, "message": "m", "queue_name": "q"},
        [],
    ),
    "run_delete": (lambda s: s.run_delete(QK, run_id=RUN), {"run_id": RUN}, []),
    "runs_reindex": (
        lambda s: s.runs_reindex(QK, cursor_id="c", cursor_ms="7", batch=9),
        {"cursor_id": "c", "cursor_ms": "7", "batch": "9"},
        [],
    ),
    "claim": (
        lambda s: s.claim(
            QK,
            agent_id="a",
            max_runs=2,
            prefetch_ms=3,
            lease_ms=4,
            reclaim_batch=5,
            retention_ms=6,
            nonce="n",
            queue_name="q",
        ),
        {
            "agent_id": "a",
            "max_runs": "2",
            "prefetch_ms": "3",
            "lease_ms": "4",
            "reclaim_batch": "5",
            "retention_ms": "6",
            "nonce": "n",
            "queue_name": "q",
        },
        [],
    ),
    "set_state": (
        lambda s: s.set_state(
            QK,
            run_id=RUN,
            state_type="RUNNING",
            state_name="Running",
            message="m",
            token="t",
            from_states=["PENDING", "RUNNING"],
            due_ms=8,
            lease_ms=9,
            retention_ms=10,
            fields={"infra": "i"},
            queue_name="q",
        ),
        {
            "run_id": RUN,
            "state_type": "RUNNING",
            "state_name": "Running",
            "message": "m",
            "token": "t",
            "from_states": "PENDING RUNNING",
            "due_ms": "8",
            "lease_ms": "9",
            "retention_ms": "10",
            "queue_name": "q",
        },
        ["infra", "i"],
    ),
    "run_annotate": (
        lambda s: s.run_annotate(QK, run_id=RUN, token="t", fields={"infra": "i"}),
        {"run_id": RUN, "token": "t"},
        ["infra", "i"],
    ),
    "runs_unschedule": (lambda s: s.runs_unschedule(QK, deployment_id=DEP), {}, []),
    "heartbeat": (
        lambda s: s.heartbeat(QK, lease_ms=3, claims=[(RUN, "t1"), ("r2", "t2")]),
        {"lease_ms": "3"},
        [RUN, "t1", "r2", "t2"],
    ),
    "sweep": (
        lambda s: s.sweep(QK, batch=1, retention_ms=2, agent_ttl_ms=3, lease_ms=4),
        {"batch": "1", "retention_ms": "2", "agent_ttl_ms": "3", "lease_ms": "4"},
        [],
    ),
    "preview": (
        lambda s: s.preview(QK, horizon_ms=1, limit=2),
        {"horizon_ms": "1", "limit": "2"},
        [],
    ),
    "log_append": (
        lambda s: s.log_append(
            QK,
            run_id=RUN,
            max_bytes=1,
            overhead=2,
            lost=3,
            lost_bytes=4,
            notice="n",
            lines=["stdout", "hello"],
        ),
        {
            "run_id": RUN,
            "max_bytes": "1",
            "overhead": "2",
            "lost": "3",
            "lost_bytes": "4",
            "notice": "n",
        },
        ["stdout", "hello"],
    ),
    "deployment_save": (
        lambda s: s.deployment_save(
            "names-key",
            "record-key",
            mode="update",
            deployment_id="d",
            name="x",
            document="{}",
            old_name="y",
        ),
        {"mode": "update", "deployment_id": "d", "name": "x", "document": "{}", "old_name": "y"},
        [],
    ),
    "limit_acquire": (
        lambda s: s.limit_acquire(
            LK, run_id=RUN, claim_id="c", queue="q", due_ms=5, value="v", notify_ms=6
        ),
        {
            "run_id": RUN,
            "claim_id": "c",
            "queue": "q",
            "due_ms": "5",
            "value": "v",
            "notify_ms": "6",
        },
        [],
    ),
    "limit_release": (
        lambda s: s.limit_release(LK, run_id=RUN, claim_id="c", value="v", notify_ms=6),
        {"run_id": RUN, "claim_id": "c", "value": "v", "notify_ms": "6"},
        [],
    ),
    "limit_pass": (
        lambda s: s.limit_pass(LK, value="v", notify_ms=6, older_ms=7, max_holders=8, resend=RUN),
        {"value": "v", "notify_ms": "6", "older_ms": "7", "max_holders": "8", "resend": RUN},
        [],
    ),
    "limit_save": (
        lambda s: s.limit_save(LK, mode="create", name="l", fields={"limit": "3"}),
        {"mode": "create", "name": "l"},
        ["limit", "3"],
    ),
    "limit_delete": (lambda s: s.limit_delete(LK, name="l"), {"name": "l"}, []),
    "run_park": (
        lambda s: s.run_park(QK, run_id=RUN, token="t", message="m", limit="l\nv"),
        {"run_id": RUN, "token": "t", "message": "m", "limit": "l\nv"},
        [],
    ),
    "run_unpark": (lambda s: s.run_unpark(QK, run_id=RUN), {"run_id": RUN}, []),
}

#: Key names outside QueueKeys' own fields and properties, as headers use them.
EXPECTED_KEY = {
    "run": QK.run(RUN),
    "logs": QK.logs(RUN),
    "history": QK.history(RUN),
    "auto": QK.auto(DEP),
    "names": "names-key",
    "record": "record-key",
}
LK = Keys("runq").limit("l")
#: A named limit's keys at the value "v" (the limit scripts' own slot).
LIMIT_KEY = {
    "config": LK.config,
    "values": LK.values,
    "value_prefix": LK.value_prefix,
    **{kind: getattr(LK, kind)("v") for kind in specs.LIMIT_VALUE[2:]},
}


def test_every_typed_method_has_a_call_here() -> None:
    assert set(CALLS) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_typed_method_sends_keys_and_argv_in_its_header_order(name: str) -> None:
    """The method's keyword arguments land at the ARGV positions its file's header names,
    and its KEYS are the header's keys, each the key of that name."""
    sent: list[tuple[ScriptSpec, list[str], list[Any]]] = []

    class Recording(Scripts):
        def _run(self, spec: ScriptSpec, keys: Any, args: Any, client: Any = None) -> Any:
            sent.append((spec, list(keys), list(args)))

    call, argv, rest = CALLS[name]
    call(Recording(redis.Redis()))
    [(spec, keys, args)] = sent
    header = parse_header(read(f"{name}.lua"), f"{name}.lua")
    assert spec.name == name
    assert args == [argv[arg] for arg in header.argv] + rest
    named = LIMIT_KEY if name.startswith("limit_") else EXPECTED_KEY
    fixed = [named[key] if key in named else getattr(QK, key) for key in header.keys]
    assert keys[: len(fixed)] == fixed
    repeated = keys[len(fixed) :]
    if header.keys_rest == ("run",):  # heartbeat: one record per (run id, token) pair
        assert repeated == [QK.run(run_id) for run_id in rest[::2]]
    else:
        assert repeated == []
    if name not in GLOBAL_SCRIPTS:
        assert all(key.startswith("runq:{q:q}:") for key in keys), "one cluster slot"
    elif name.startswith("limit_"):
        assert all(key.startswith("runq:{l:l}:") for key in keys), "one cluster slot"


def test_a_typed_call_refuses_argv_its_declaration_does_not_name() -> None:
    with pytest.raises(TypeError, match="claim takes ARGV"):
        specs.CLAIM.args({"agent_id": "a"})
    with pytest.raises(ValueError, match="groups of"):
        specs.HEARTBEAT.args({"lease_ms": "1"}, ["run-without-token"])


# ---- includes: only what is declared, everything that is used ------------------------


def lua_code(text: str) -> str:
    """``text`` without comments and string literals (what the code itself names)."""
    text = re.sub(r"--\[\[.*?\]\]", "", text, flags=re.S)
    text = re.sub(r"--[^\n]*", "", text)
    return re.sub(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"", "''", text)


def defined(text: str) -> set[str]:
    """The names a helper file defines at its top level (functions and constants)."""
    names = set(re.findall(r"^local function (\w+)", text, re.M))
    for group in re.findall(r"^local ((?:\w+)(?:\s*,\s*\w+)*)\s*=", text, re.M):
        names.update(name.strip() for name in group.split(","))
    return names


DEFINES = {name: defined(read(f"{INCLUDE_DIR}/{name}.lua")) for name in HELPERS}


def used_helpers(text: str) -> set[str]:
    """The helper files whose names ``text``'s code uses."""
    words = set(re.findall(r"\b\w+\b", lua_code(text)))
    return {name for name, names in DEFINES.items() if words & names}


def own_code(name: str) -> str:
    return "\n".join(line for line in read(f"{name}.lua").splitlines() if not line.startswith("#!"))


def test_helper_files_define_distinct_names() -> None:
    seen: dict[str, str] = {}
    for name, names in DEFINES.items():
        for each in names:
            assert each not in seen, f"{each} in {name}.lua and {seen[each]}.lua"
            seen[each] = name


@pytest.mark.parametrize("name", NAMES)
def test_a_script_includes_exactly_the_helpers_it_uses(name: str) -> None:
    header = parse_header(read(f"{name}.lua"), f"{name}.lua")
    declared = set(header.includes) | set(header.on_demand)
    assert used_helpers(own_code(name)) == declared


@pytest.mark.parametrize("name", HELPERS)
def test_a_helper_file_includes_exactly_the_helpers_it_uses(name: str) -> None:
    text = read(f"{INCLUDE_DIR}/{name}.lua")
    assert used_helpers(text) - {name} == set(helper(name).includes)


@pytest.mark.parametrize("name", HELPERS)
def test_a_helper_file_declares_the_keys_it_uses(name: str) -> None:
    text = read(f"{INCLUDE_DIR}/{name}.lua")
    used = set(re.findall(r"\bK_(\w+)", lua_code(text)))
    assert used == {key.upper() for key in helper(name).needs}


@pytest.mark.parametrize("name", NAMES)
def test_a_script_uses_every_key_its_header_binds_and_no_other(name: str) -> None:
    """Each declared key is used by the script or by a helper it includes; the script
    names no key it does not declare."""
    composed = compose(name)
    used = set(re.findall(r"\bK_(\w+)", lua_code(own_code(name))))
    for included in composed.includes:
        used |= {key.upper() for key in helper(included).needs}
    assert used == {key.upper() for key in composed.header.keys}


@pytest.mark.parametrize("name", NAMES)
def test_the_loader_puts_in_the_declared_helpers_and_nothing_else(name: str) -> None:
    composed = compose(name)
    header = composed.header
    top = resolve(header.includes, name)
    demanded = [inner for wanted in header.on_demand for inner in resolve((wanted,), name, top)]
    assert composed.includes == top + tuple(demanded)
    in_text = {part.file for part in composed.parts} - {f"{name}.lua"}
    assert in_text == {f"{INCLUDE_DIR}/{included}.lua" for included in composed.includes}
    assert "_common" not in composed.text and "replicate_commands" not in composed.text


def test_a_helper_that_needs_an_undeclared_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = "#!lua\n-- fake.lua: a test.\n-- KEYS[1] config  HASH\n-- Includes: wake\n\nreturn 1\n"
    monkeypatch.setattr(
        "runq.broker.scripts.sources.read",
        lambda path: fake if path == "fake_script.lua" else read(path),
    )
    with pytest.raises(ScriptLayoutError, match="needs KEYS scheduled, wake, waiters"):
        compose("fake_script")


def test_the_flags_line_stays_first_and_the_keys_are_bound_next() -> None:
    for name in NAMES:
        first = read(f"{name}.lua").splitlines()[0]
        assert first.startswith("#!lua"), name
        assert source(name).splitlines()[0] == first, name
        six = source(name, shebang=False).splitlines()
        assert not six[0].startswith("#!") and six[0].startswith("local K_"), name


def test_headers_are_leading_comments_only() -> None:
    for name in NAMES:
        block = header_lines(read(f"{name}.lua"))
        assert any(line.startswith("-- Includes:") for line in block), name


# ---- the engine's ACL user ----------------------------------------------------------


def acl_commands(path: Path, user: str) -> set[str]:
    [line] = [line for line in path.read_text().splitlines() if line.startswith(f"user {user} ")]
    return {token[1:].lower() for token in line.split() if token.startswith("+")}


def script_commands(name: str) -> set[str]:
    code = compose(name, sharded=True).text + compose(name).text
    found = {command.lower() for command in re.findall(r"redis\.call\('(\w+)'", code)}
    if "redis.call(WAKE_PUBLISH" in code:
        found |= {"publish", "spublish"}
    return found


@pytest.mark.parametrize("path", ACL_FILES, ids=lambda path: path.name)
def test_the_engine_user_holds_every_command_of_the_engines_scripts(path: Path) -> None:
    allowed = acl_commands(path, "runq-engine")
    if path.name == "redis-acl-6.2.conf":
        allowed.add("spublish")  # no sharded pub/sub on 6.2: the loader never sends it there
    for name in ENGINE_SCRIPTS:
        assert script_commands(name) <= allowed, name


# ---- errors name the file and line ----------------------------------------------------


def line_of(file: str, needle: str) -> int:
    """The line of ``file`` (under broker/scripts) holding ``needle``, which must be unique."""
    lines = [n for n, line in enumerate(read(file).splitlines(), 1) if needle in line]
    assert len(lines) == 1, (file, needle, lines)
    return lines[0]


def test_an_error_in_a_script_names_the_script_file_and_line(broker: Broker) -> None:
    broker.create_flow_run("q")
    broker.client.set(broker.keys.queue("q").waiters, "not a sorted set")
    with pytest.raises(ScriptError) as error:
        broker.claim("q", "agent-1")
    where = line_of("claim.lua", "redis.call('ZREM', K_WAITERS, agent)")
    assert f"claim.lua:{where}" in str(error.value)
    assert "user_script" not in str(error.value) and "included by" not in str(error.value)


def test_an_error_in_a_helper_names_the_helper_file_and_line(broker: Broker) -> None:
    run = broker.create_flow_run("q")
    (claimed,) = broker.claim("q", "agent-1")
    config = broker.keys.queue("q").config
    broker.client.delete(config)
    broker.client.set(config, "not a hash")
    with pytest.raises(ScriptError) as error:
        broker.set_state(run.id, StateType.RUNNING, token=claimed.claim_token)
    where = line_of(f"{INCLUDE_DIR}/lease_clock.lua", "redis.call('HMGET', K_CONFIG")
    assert f"{INCLUDE_DIR}/lease_clock.lua:{where} (included by set_state.lua)" in str(error.value)
    assert "user_script" not in str(error.value)
    assert broker.client.hget(broker.keys.queue("q").run(str(run.id)), "st") == "PENDING"


def test_an_error_in_a_pipelined_script_names_its_file_and_line(broker: Broker) -> None:
    broker.create_work_queue("q")
    broker.client.set(broker.keys.queue("q").names_index, "not a sorted set")
    with pytest.raises((ScriptError, BrokerUnavailable)) as error:
        broker.create_flow_run("q")
    where = line_of("run_create.lua", "redis.call('ZADD', K_NAMES_INDEX, unpack(names))")
    assert f"run_create.lua:{where}" in str(error.value)
    assert "user_script" not in str(error.value)


# ---- what the claim leaves to others ------------------------------------------------


def history_of(broker: Broker, run_id: str) -> list[tuple[str, str]]:
    return [(s.type.value, s.name) for s in broker.read_flow_run(run_id).state_history]


def test_a_claims_history_entry_is_shown_at_once_and_stored_when_the_run_leaves_pending(
    broker: Broker,
) -> None:
    run = broker.create_flow_run("q")
    (claimed,) = broker.claim("q", "agent-1")
    history = broker.keys.queue("q").history(str(run.id))
    assert broker.client.llen(history) == 0, "the claim writes no history entry"
    pending = broker.read_flow_run(run.id).state_history[-1]
    assert (pending.type, pending.timestamp) == (StateType.PENDING, claimed.state.timestamp)
    broker.set_state(run.id, StateType.RUNNING, token=claimed.claim_token)
    assert broker.client.llen(history) == 2, "the claim's entry and RUNNING, in one write"
    assert history_of(broker, str(run.id)) == [
        ("SCHEDULED", "Scheduled"),
        ("PENDING", "Pending"),
        ("RUNNING", "Running"),
    ]
    assert broker.read_flow_run(run.id).state_history[1].timestamp == claimed.state.timestamp


def test_a_pending_entry_stored_by_an_earlier_claim_is_not_doubled(broker: Broker) -> None:
    """A run claimed by a runq that stored the claim's entry itself (before an upgrade)."""
    run = broker.create_flow_run("q")
    (claimed,) = broker.claim("q", "agent-1")
    record = broker.client.hgetall(broker.keys.queue("q").run(str(run.id)))
    broker.client.rpush(
        broker.keys.queue("q").history(str(run.id)), f'["PENDING","Pending","{record["sts"]}",""]'
    )
    assert history_of(broker, str(run.id)) == [("SCHEDULED", "Scheduled"), ("PENDING", "Pending")]
    broker.set_state(run.id, StateType.RUNNING, token=claimed.claim_token)
    assert history_of(broker, str(run.id)) == [
        ("SCHEDULED", "Scheduled"),
        ("PENDING", "Pending"),
        ("RUNNING", "Running"),
    ]


def hmget_calls(broker: Broker) -> int:
    nodes = {"target_nodes": broker.client.ALL_NODES} if broker.cluster else {}
    stats = broker.client.info("commandstats", **nodes)
    per_node = stats.values() if broker.cluster else [stats]
    return sum(int(node.get("cmdstat_hmget", {}).get("calls", 0)) for node in per_node)


def test_listings_check_a_queue_for_old_runs_once(broker: Broker) -> None:
    """Runs written before the listing indexes are indexed on a queue's first listing; the
    Broker remembers it, so later listings ask Redis nothing about it."""
    broker.create_flow_run("q")
    broker.client.hdel(broker.keys.queue("q").config, "indexed")  # as a queue of old data
    assert len(broker.list_flow_runs()) == 1
    assert broker.client.hget(broker.keys.queue("q").config, "indexed") == "1"
    before = hmget_calls(broker)
    for _ in range(3):
        assert len(broker.list_flow_runs()) == 1
    assert hmget_calls(broker) == before
