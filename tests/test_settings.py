"""One settings source, one of each.

Every ``RUNQ_*`` variable is read by ``runq.broker.settings.RunqSettings`` with one default;
the broker, agent, engine and CLI take their values from it. One duration grammar, one
set of live states and heartbeat replies, one backoff, one engine command and one set of
labels for every infrastructure, and runners named apart from their settings models.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path

import pytest

from runq.agent.agent import Agent, AgentSettings, InFlight
from runq.agent.infrastructure import (
    LABEL_AGENT,
    LABEL_DEPLOYMENT,
    LABEL_RUN,
    engine_command,
    engine_entrypoint,
    for_deployment,
    this_interpreter,
)
from runq.agent.states import GONE, LIVE_STATE_VALUES, LIVE_STATES, STALE
from runq.broker import (
    Broker,
    BrokerSettings,
    Deployment,
    DockerInfrastructure,
    FlowRun,
    InvalidInput,
    ProcessInfrastructure,
    StateType,
)
from runq.broker.backoff import Backoff
from runq.broker.schedules import parse_interval
from runq.broker.settings import (
    BROKER_FIELDS,
    ENV_SETTINGS,
    RunqSettings,
    debug_enabled,
    variable,
)
from runq.control.common import parse_duration
from runq.engine.execution import Engine

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No RUNQ_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("RUNQ_"):
            monkeypatch.delenv(name)
    return monkeypatch


# ---- one settings source ----------------------------------------------------------------


def test_every_setting_has_one_default_and_its_variable_overrides_it(
    clean_env: pytest.MonkeyPatch,
) -> None:
    defaults = RunqSettings.from_env()
    assert all(defaults.source(name) == "default" for name in RunqSettings.model_fields)
    assert (defaults.lease_seconds, defaults.heartbeat_seconds, defaults.home) == (
        30.0,
        5.0,
        "~/.runq",
    )
    clean_env.setenv("RUNQ_LEASE_SECONDS", "12")
    clean_env.setenv("RUNQ_AGENT_QUERY_INTERVAL", "0.5")
    clean_env.setenv("RUNQ_REDIS_CLUSTER", "yes")
    clean_env.setenv("RUNQ_HEARTBEAT_SECONDS", "")  # empty: unset
    settings = RunqSettings.from_env()
    assert (settings.lease_seconds, settings.agent_query_interval, settings.redis_cluster) == (
        12,
        0.5,
        True,
    )
    assert (
        settings.source("lease_seconds") == "env"
        and settings.source("heartbeat_seconds") == "default"
    )
    assert settings.heartbeat_seconds == 5.0
    assert settings.broker.lease_seconds == 12 == BrokerSettings.from_env().lease_seconds


def test_the_broker_agent_defaults_are_the_settings_defaults(clean_env: pytest.MonkeyPatch) -> None:
    """One default each: BrokerSettings and AgentSettings take theirs from RunqSettings."""
    settings = RunqSettings.from_env()
    assert BrokerSettings() == settings.broker
    assert AgentSettings(work_queues=["q"]) == AgentSettings.from_settings(["q"], settings)
    assert set(ENV_SETTINGS) == set(BROKER_FIELDS)
    assert ENV_SETTINGS["retention_seconds"] == "RUNQ_RUN_RETENTION_SECONDS"
    assert ENV_SETTINGS["late_after_seconds"] == "RUNQ_LATE_RUNS_AFTER_SECONDS"


def test_a_broker_settings_built_in_code_reads_no_environment(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("RUNQ_LEASE_SECONDS", "2")
    assert BrokerSettings().lease_seconds == 30.0
    assert BrokerSettings(lease_seconds=3).lease_seconds == 3


@pytest.mark.parametrize(
    "var, value, message",
    [
        (
            "RUNQ_LEASE_SECONDS",
            "0",
            "Invalid RUNQ_LEASE_SECONDS '0': Input should be greater than 0.",
        ),
        (
            "RUNQ_HEARTBEAT_SECONDS",
            "often",
            "Invalid RUNQ_HEARTBEAT_SECONDS 'often': Input should be a valid number",
        ),
        ("RUNQ_SCHEDULER_MIN_RUNS", "1.5", "Invalid RUNQ_SCHEDULER_MIN_RUNS '1.5'"),
        ("RUNQ_SCHEDULER_LOOP_SECONDS", "0.01", "Invalid RUNQ_SCHEDULER_LOOP_SECONDS '0.01'"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_variable(
    clean_env: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    clean_env.setenv(var, value)
    with pytest.raises(InvalidInput) as caught:
        RunqSettings.from_env()
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        BrokerSettings.from_env()


def test_debug_never_raises_while_an_error_is_reported(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RUNQ_LEASE_SECONDS", "0")
    assert not debug_enabled()
    clean_env.setenv("RUNQ_DEBUG", "On")
    assert debug_enabled()
    clean_env.setenv("RUNQ_DEBUG", "maybe")
    assert not debug_enabled()


def test_each_field_is_its_variable() -> None:
    assert variable("engine_patience_seconds") == "RUNQ_ENGINE_PATIENCE_SECONDS"
    with pytest.raises(KeyError):
        variable("no_such_setting")


#: Files that still read RUNQ_* themselves until the lead's one-line changes land (their
#: owners are others); drop each from this list with its change.
DIRECT_READ = re.compile(
    r"""(environ(\.get)?\s*[\[(]\s*|getenv\(\s*|envvar\s*=\s*)["']RUNQ_(?!TEST_)"""
)


def test_no_runq_variable_is_read_outside_the_settings() -> None:
    offenders = []
    for folder in ("broker", "agent", "control"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative == "broker/settings.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if DIRECT_READ.search(line):
                    offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# ---- the agent hands its settings to the engine under the names the engine reads ---------


def test_the_engine_reads_back_what_the_agent_sets(
    broker: Broker, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("RUNQ_ENGINE_API_URL", "redis://engine:pw@10.0.0.1:6379/0")
    broker.create_flow_run("q")
    [run] = broker.claim("q", "agent-1")
    agent = Agent(
        broker, AgentSettings(work_queues=["q"], heartbeat_seconds=0.7, cancel_grace_seconds=4)
    )
    env = agent.engine_env(InFlight(run, "q", run.claim_token))
    for name, value in env.items():
        clean_env.setenv(name, value)
    seen = RunqSettings.from_env()
    assert seen.api_url == "redis://engine:pw@10.0.0.1:6379/0"
    assert (seen.heartbeat_seconds, seen.cancel_grace_seconds) == (0.7, 4)
    assert (seen.flow_run_token, seen.agent_id) == (run.claim_token, agent.id)
    assert seen.lease_seconds == broker.settings.lease_seconds
    engine = Engine(broker, str(run.id), run.claim_token)
    assert (engine.heartbeat_seconds, engine.cancel_grace, engine.patience) == (0.7, 4, 120.0)


def test_agent_settings_take_the_environment_then_the_flags(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RUNQ_AGENT_PREFETCH_SECONDS", "3")
    clean_env.setenv("RUNQ_SCHEDULER_LOOP_SECONDS", "2")
    settings = AgentSettings.from_settings(["q"])
    assert (settings.prefetch_seconds, settings.scheduler_loop_seconds) == (3, 2)
    assert AgentSettings.from_settings(["q"], prefetch_seconds=0.0).prefetch_seconds == 0
    assert AgentSettings.from_settings(["q"], prefetch_seconds=None).prefetch_seconds == 3


# ---- one duration grammar -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["3600", "90s", "1h30m", "1h 30m", "2d", "1w", "1.5h", " 10M ", "1d2h3m4s"]
)
def test_every_duration_flag_reads_what_a_schedule_interval_reads(text: str) -> None:
    assert parse_duration(text) == parse_interval(text)


@pytest.mark.parametrize("text", ["", "1x", "h", "30m1h", "1h1h", "nan", "inf", "1 h 30", "-5"])
def test_both_refuse_the_same_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_interval(text)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_a_duration_may_be_zero_an_interval_may_not() -> None:
    assert parse_duration("0s") == parse_duration("0") == 0
    with pytest.raises(ValueError):
        parse_interval("0s")
    with pytest.raises(ValueError, match=">= 0.1"):
        parse_duration("0s", minimum=0.1)


# ---- one set of live states and heartbeat replies -----------------------------------------


def test_the_heartbeat_replies_are_the_names_the_agent_knows(broker: Broker) -> None:
    """The Lua script's replies (broker/scripts/heartbeat.lua) and the agent's names agree."""
    broker.create_flow_run("q")
    [run] = broker.claim("q", "agent-1")
    gone = "01a2274a-df0a-7000-a4c7-288447221c35"
    assert broker.heartbeat_runs("q", [(gone, run.claim_token)]) == {gone: GONE}
    [(_, live)] = broker.heartbeat_runs("q", [(str(run.id), run.claim_token)]).items()
    assert StateType(live) in LIVE_STATES and live in LIVE_STATE_VALUES
    [(_, stale)] = broker.heartbeat_runs("q", [(str(run.id), "1-wrong")]).items()
    assert stale == STALE


# ---- one backoff ---------------------------------------------------------------------------


def test_the_backoff_doubles_to_its_cap_and_starts_over_after_a_reset() -> None:
    backoff = Backoff(first=0.2, cap=1.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next_delay() == 0.2


def test_a_stop_event_cuts_the_wait_short() -> None:
    """A wait of an hour ends when its stop event is set: the waiting thread is done
    within a minute, and the wait says it was stopped (a wait that ran out says False)."""
    stop = threading.Event()
    backoff = Backoff(first=3600.0, stop=stop)
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(backoff.wait()), daemon=True)
    waiter.start()
    stop.set()
    waiter.join(timeout=60)
    assert outcome == [True]
    assert Backoff(first=0.01, stop=threading.Event()).wait() is False


# ---- one engine command, one set of labels, runners named apart ---------------------------


def a_run() -> FlowRun:
    from uuid import uuid4

    return FlowRun.model_validate(
        {
            "id": str(uuid4()),
            "name": "brave-otter",
            "work_queue_name": "q",
            "deployment_id": str(uuid4()),
            "state": {
                "type": "SCHEDULED",
                "name": "Scheduled",
                "timestamp": "2026-01-01T00:00:00Z",
            },
            "expected_start_time": "2026-01-01T00:00:00Z",
            "created": "2026-01-01T00:00:00Z",
        }
    )


def test_one_engine_command_for_every_infrastructure() -> None:
    run = a_run()
    assert engine_command(run) == ["runq", "flow-run", "execute", str(run.id)]
    assert engine_command(run, this_interpreter()) == [
        sys.executable,
        "-m",
        "runq",
        "flow-run",
        "execute",
        str(run.id),
    ]
    assert engine_command(run, this_interpreter(), ["my-engine"]) == ["my-engine", str(run.id)]
    docker = pytest.importorskip("runq.agent.infrastructure.docker")
    options = docker.container_options(run, DockerInfrastructure(), {"RUNQ_AGENT_ID": "agent-7"})
    assert [*options["entrypoint"], *options["command"]] == engine_command(run)
    assert options["entrypoint"] == engine_entrypoint()
    assert {
        LABEL_RUN: str(run.id),
        LABEL_DEPLOYMENT: str(run.deployment_id),
        LABEL_AGENT: "agent-7",
    }.items() <= options["labels"].items()


def test_the_runners_are_named_apart_from_their_settings_models(broker: Broker) -> None:
    from runq.agent.infrastructure.process import ProcessRunner

    assert isinstance(for_deployment(None, broker), ProcessRunner)
    docker = pytest.importorskip("runq.agent.infrastructure.docker")
    deployment = Deployment.model_validate(
        {**_deployment_fields(), "infrastructure": DockerInfrastructure().model_dump()}
    )
    runner = for_deployment(deployment, broker)
    assert isinstance(runner, docker.DockerRunner) and isinstance(
        runner.settings, DockerInfrastructure
    )
    assert (
        not hasattr(docker, "DockerInfrastructure")
        or docker.DockerInfrastructure is DockerInfrastructure
    )
    assert isinstance(ProcessRunner(broker).settings, ProcessInfrastructure)


def _deployment_fields() -> dict:
    from uuid import uuid4

    return {
        "id": str(uuid4()),
        "name": "etl",
        "flow_name": "etl",
        "entrypoint": "flows/etl.py:main",
        "work_queue_name": "q",
        "created": "2026-01-01T00:00:00Z",
        "updated": "2026-01-01T00:00:00Z",
    }


# ---- what the broker's connection code takes from the settings ------------------------------


def test_one_setting_read_alone_ignores_another_bad_value(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from runq.broker.settings import home_path, setting

    clean_env.setenv("RUNQ_LEASE_SECONDS", "0")  # bad, but not asked for
    clean_env.setenv("RUNQ_REDIS_CA_FILE", "/etc/ssl/runq-ca.pem")
    clean_env.setenv("RUNQ_HOME", str(tmp_path))
    assert setting("redis_ca_file") == "/etc/ssl/runq-ca.pem"
    assert setting("heartbeat_seconds") == 5.0 and home_path() == tmp_path
    with pytest.raises(InvalidInput, match="Invalid RUNQ_LEASE_SECONDS '0'"):
        setting("lease_seconds")
    clean_env.delenv("RUNQ_HOME")
    assert home_path() == Path("~/.runq").expanduser()


def test_the_redis_url_is_the_flag_then_the_variable_then_the_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url_file = tmp_path / "url"
    url_file.write_text("redis://from-file:6379/0\n")
    clean_env.setenv("RUNQ_API_URL_FILE", str(url_file))
    assert RunqSettings.from_env().redis_url() == "redis://from-file:6379/0"
    clean_env.setenv("RUNQ_API_URL", "redis://from-env:6379/0")
    assert RunqSettings.from_env().redis_url() == "redis://from-env:6379/0"
    assert RunqSettings.from_env().redis_url("redis://flag:1") == "redis://flag:1"
    clean_env.delenv("RUNQ_API_URL")
    clean_env.delenv("RUNQ_API_URL_FILE")
    assert RunqSettings.from_env().redis_url() is None
    clean_env.setenv("RUNQ_API_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(InvalidInput, match="RUNQ_API_URL_FILE"):
        RunqSettings.from_env().redis_url()


def test_the_engine_path_stays_import_light() -> None:
    """The settings come with pydantic-settings only: no rich, YAML or Click at start-up."""
    import subprocess

    code = (
        "import sys, runq.control.entry, runq.engine.entry, runq.engine.execution, runq.broker.settings;"
        "print(sorted(m for m in ('rich', 'yaml', 'click', 'docker', 'kubernetes') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
