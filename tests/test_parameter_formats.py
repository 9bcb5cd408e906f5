"""A string parameter's format (date, date-time, uuid, ...) is checked before a run
exists, the way the engine will parse it: what the check refuses the engine refuses, and
what the engine accepts the check accepts."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from runq.broker import Broker, InvalidInput
from runq.broker.parameters import check_parameters
from runq.engine.loading import FlowLoadError
from runq.engine.parameters import bind_parameters, parameter_schema
from tests.cli_helpers import Invoke

FLOW = """
from datetime import date


def report(day: date, region: str = "eu") -> str:
    return f"{region} {day}"
"""


def test_deployment_run_refuses_an_impossible_date_before_the_run_exists(
    runq: Invoke, broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "report.py").write_text(FLOW)
    monkeypatch.chdir(tmp_path)
    runq("deployment", "create", "report", "--entrypoint", "report.py:report", "-q", "r")
    error = runq("deployment", "run", "report", "--param", "day=2024-02-30", code=1).stderr
    assert error.strip() == (
        "Parameter 'day': '2024-02-30' is not a valid date (day value is outside expected range)."
    ), error
    assert broker.list_flow_runs("r") == []  # refused before anything was written
    with pytest.raises(InvalidInput, match="'2024-13-01' is not a valid date"):
        broker.create_flow_run(deployment="report", parameters={"day": "2024-13-01"})
    error = runq(
        "deployment",
        "create",
        "other",
        "--entrypoint",
        "report.py:report",
        "--param",
        "day=2024-02-30",
        code=1,
    ).stderr
    assert "Default parameters: Parameter 'day': '2024-02-30' is not a valid date" in error
    runq("deployment", "run", "report", "--param", "day=2024-02-29")
    (run,) = broker.list_flow_runs("r")
    assert run.parameters == {"day": "2024-02-29"}


def report(
    day: date,
    at: datetime,
    clock: time,
    every: timedelta,
    key: UUID,
    maybe: date | None = None,
    days: list[date] = [],  # noqa: B006 - a flow's default, never mutated
) -> None:
    """A flow whose parameters have formats."""


GOOD: dict[str, Any] = {
    "day": "2024-02-29",
    "at": "2024-02-01T10:00",  # no offset: RFC 3339 refuses it, pydantic (the engine) takes it
    "clock": "23:59:59",
    "every": "P1DT2H",
    "key": "9b2e0b3c-5e0e-4f3a-9a57-6f1b6f2d7c11",
    "maybe": None,
    "days": ["2024-01-01"],
}
BAD = [
    ("day", "2024-02-30"),
    ("day", "yesterday"),
    ("at", "2024-02-01T25:00"),
    ("clock", "24:61"),
    ("every", "P1X"),
    ("key", "not-a-uuid"),
    ("maybe", "2024-13-01"),
    ("days", ["2024-01-01", "2024-02-30"]),
]


def engine_accepts(parameters: dict[str, Any]) -> bool:
    try:
        bind_parameters(report, parameters)()
    except FlowLoadError:
        return False
    return True


def check_accepts(parameters: dict[str, Any]) -> bool:
    try:
        check_parameters(parameter_schema(report), parameters)
    except InvalidInput:
        return False
    return True


def test_the_check_and_the_engine_agree_on_every_format() -> None:
    assert check_accepts(GOOD) and engine_accepts(GOOD)
    for name, value in BAD:
        parameters = {**GOOD, name: value}
        assert not engine_accepts(parameters), (name, value)
        assert not check_accepts(parameters), (name, value)


def test_formats_it_cannot_judge_are_left_to_the_engine() -> None:
    schema = {
        "type": "object",
        "properties": {
            "to": {"type": "string", "format": "email"},
            "x": {"type": "string", "format": "made-up"},
        },
    }
    check_parameters(schema, {"to": "not an address", "x": "anything"})
