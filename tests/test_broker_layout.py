"""The broker's layout: one Broker composed from per-concept classes, typed
script calls, one key schema. No Redis needed."""

from __future__ import annotations

import inspect
import re
from importlib import resources
from pathlib import Path

import redis

from runq.broker import Broker, BrokerUnavailable
from runq.broker.keys import Keys
from runq.broker.scripts import GLOBAL_SCRIPTS, QUEUE_SCRIPTS, Scripts
from runq.broker.scripts.specs import QUEUE_SPECS

BROKER = Path(__file__).resolve().parent.parent / "broker"
LUA = {path.stem: path.read_text() for path in (BROKER / "scripts").glob("*.lua")}


def test_no_broker_module_is_over_400_lines() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in BROKER.rglob("*.py")}
    assert {name: size for name, size in sizes.items() if size > 400} == {}


def test_every_script_has_one_typed_method_and_is_loaded() -> None:
    scripts = set(LUA)
    assert scripts == set(QUEUE_SCRIPTS) | set(GLOBAL_SCRIPTS)
    for name in scripts:
        method = getattr(Scripts, name)
        parameters = inspect.signature(method).parameters.values()
        assert all(p.kind is not p.VAR_POSITIONAL for p in parameters), name
    assert resources.files("runq.broker.scripts").joinpath("include", "basics.lua").is_file()


def test_no_script_derives_a_key_by_cutting_another() -> None:
    for name, text in LUA.items():
        code = "\n".join(line.split("--")[0] for line in text.splitlines())
        assert not re.search(r"string\.(sub|match|gsub|find)\s*\(\s*K_", code), name
        assert "queue_name()" not in code, name


def test_queue_scripts_get_keys_of_their_queue_only() -> None:
    """Each script's KEYS (tests/test_lua_scripts.py holds them against its header) are
    its queue's, under one hash tag."""
    keys = Keys("runq").queue("q")
    for spec in QUEUE_SPECS.values():
        sent = spec.queue_keys(keys, run_id="r", deployment_id="d", runs=["r"])
        assert all("{q:q}" in key for key in sent), "one cluster slot"


def test_every_public_method_of_the_composed_broker_names_redis_on_failure() -> None:
    public = [name for name, member in vars(Broker).items() if not name.startswith("_")]
    inherited = [
        name
        for klass in Broker.__mro__[1:-1]
        for name, member in vars(klass).items()
        if not name.startswith("_") and inspect.isfunction(member)
    ]
    assert set(inherited) <= set(public)
    for name in inherited:
        assert getattr(getattr(Broker, name), "__runq_wrapped__", False), name


def test_the_scheduler_fails_as_the_broker_does() -> None:
    broker = Broker(redis.Redis(port=1, socket_connect_timeout=0.2), url="redis://127.0.0.1:1")
    scheduler = broker.scheduler()
    try:
        scheduler.run_pass_if_leader("holder", lease_seconds=1)  # its own client calls first
    except BrokerUnavailable as error:
        assert "127.0.0.1:1" in str(error)
    else:
        raise AssertionError("no error from an unreachable Redis")
