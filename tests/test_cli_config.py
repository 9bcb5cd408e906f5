"""``runq config view``: the effective settings and where each came from, and
the one duration grammar seen from the command line."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from click.testing import CliRunner

from runq.broker import Broker
from runq.control.cli import cli
from tests.cli_helpers import Invoke, cells


def setting(out: str, variable: str) -> list[str]:
    """Value and source of ``variable``'s row (its first cell, not a mention elsewhere)."""
    return cells(out, f"│ {variable} ")[1:3]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean RUNQ_* environment (none of the developer's), wide tables."""
    for name in list(os.environ):
        if name.upper().startswith("RUNQ_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "250")
    return monkeypatch


def view(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, ["config", "view", *args], catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def test_the_table_shows_each_value_and_its_source_with_passwords_masked(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("RUNQ_API_URL", "redis://runq:s3cret@redis:6379/0")
    env.setenv("RUNQ_ENGINE_API_URL", "rediss://engine:hunter2@redis:6380")
    env.setenv("RUNQ_LEASE_SECONDS", "60")
    env.setenv("RUNQ_FLOW_RUN_TOKEN", "7-abcdef")
    out = view().stdout
    assert "s3cret" not in out and "hunter2" not in out and "abcdef" not in out
    assert setting(out, "RUNQ_API_URL") == ["redis://runq:***@redis:6379/0", "env"]
    assert setting(out, "RUNQ_ENGINE_API_URL") == ["rediss://engine:***@redis:6380", "env"]
    assert setting(out, "RUNQ_LEASE_SECONDS") == ["60.0", "env"]
    assert setting(out, "RUNQ_FLOW_RUN_TOKEN") == ["********", "env"]
    assert setting(out, "RUNQ_HEARTBEAT_SECONDS") == ["5.0", "default"]
    assert setting(out, "RUNQ_HOME") == ["~/.runq", "default"]


def test_json_lists_every_setting_and_hide_defaults_keeps_the_environment_s(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("RUNQ_API_URL", "redis://:pw@h:1")
    env.setenv("RUNQ_AGENT_PREFETCH_SECONDS", "2.5")
    entries = json.loads(view("-o", "json").stdout)
    by_name = {entry["variable"]: entry for entry in entries}
    assert {"RUNQ_LEASE_SECONDS", "RUNQ_HOME", "RUNQ_DEBUG", "RUNQ_KUBERNETES_URL_SECRET"} <= set(
        by_name
    )
    assert by_name["RUNQ_AGENT_PREFETCH_SECONDS"] == {
        **by_name["RUNQ_AGENT_PREFETCH_SECONDS"],
        "value": 2.5,
        "source": "env",
    }
    assert by_name["RUNQ_API_URL"]["value"] == "redis://:***@h:1"
    assert by_name["RUNQ_REDIS_CLUSTER"]["value"] is False
    only_env = json.loads(view("-o", "json", "--hide-defaults").stdout)
    assert [entry["variable"] for entry in only_env] == [
        "RUNQ_API_URL",
        "RUNQ_AGENT_PREFETCH_SECONDS",
    ]


def test_a_bad_value_is_one_line_and_exit_1(env: pytest.MonkeyPatch) -> None:
    env.setenv("RUNQ_CANCEL_GRACE_SECONDS", "-1")
    result = view(code=1)
    assert result.stdout == ""
    assert result.stderr.startswith("Invalid RUNQ_CANCEL_GRACE_SECONDS '-1': ")
    assert len(result.stderr.splitlines()) == 1


def test_help_shows_an_example() -> None:
    out = CliRunner().invoke(cli, ["config", "view", "--help"]).stdout
    assert "runq config view -o json" in out and "env or default" in out


def test_start_in_takes_what_interval_takes(runq: Invoke, broker: Broker) -> None:
    """Both flags read one grammar: ``--start-in 1w`` (refused before) and ``1h 30m``."""
    broker.create_deployment(name="etl", entrypoint="a.py:f")
    runq("deployment", "run", "etl", "--start-in", "1w")
    [run] = broker.list_flow_runs()
    assert (
        timedelta(days=6, hours=23)
        < run.expected_start_time - run.created
        <= timedelta(days=7, seconds=1)
    )
    runq("deployment", "set-schedule", "etl", "--interval", "1w")
    runq("deployment", "run", "etl", "--start-in", "1h 30m")
    assert (
        "not a duration" in runq("deployment", "run", "etl", "--start-in", "30m1h", code=2).stderr
    )
