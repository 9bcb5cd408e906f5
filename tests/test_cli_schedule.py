"""``runq schedule preview`` through Click's runner (pure: no Redis).

The group is tested on its own; runq's root group (control/cli.py) turns the
InvalidInput these commands raise into one line on stderr and exit 1.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result

from runq.broker import InvalidInput
from runq.control.schedule import schedule


def preview(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(schedule, ["preview", *args])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def as_json(*args: str) -> list[dict[str, str]]:
    return json.loads(preview(*args, "--output", "json").stdout)


def test_json_shows_the_shift_across_spring_forward() -> None:
    rows = as_json(
        "--cron", "30 2 * * *", "--timezone", "America/New_York", "--start", "2026-03-07", "-n", "3"
    )
    assert rows == [
        {"local": "2026-03-07T02:30:00-05:00", "utc": "2026-03-07T07:30:00+00:00"},
        {"local": "2026-03-08T03:30:00-04:00", "utc": "2026-03-08T07:30:00+00:00"},
        {"local": "2026-03-09T02:30:00-04:00", "utc": "2026-03-09T06:30:00+00:00"},
    ]


def test_table_shows_local_time_with_zone_and_utc() -> None:
    out = preview(
        "--cron", "30 2 * * *", "--timezone", "America/New_York", "--start", "2026-03-08", "-n", "1"
    ).stdout
    assert "Local" in out and "UTC" in out
    assert "2026-03-08 03:30:00 EDT (-04:00)" in out
    assert "2026-03-08 07:30:00" in out
    assert "America/New_York" in out


def test_hourly_cron_on_fall_back_shows_both_one_oclocks_once() -> None:
    rows = as_json(
        "--cron", "0 * * * *", "--timezone", "Europe/London", "--start", "2026-10-25", "-n", "25"
    )
    assert [r["local"] for r in rows[:4]] == [
        "2026-10-25T00:00:00+01:00",
        "2026-10-25T01:00:00+01:00",
        "2026-10-25T01:00:00+00:00",
        "2026-10-25T02:00:00+00:00",
    ]
    utcs = [datetime.fromisoformat(r["utc"]) for r in rows]
    assert all(b - a == timedelta(hours=1) for a, b in zip(utcs, utcs[1:]))
    assert rows[-1]["local"] == "2026-10-25T23:00:00+00:00"


def test_day_and_requires_both_day_fields() -> None:
    rows = as_json("--cron", "0 0 13 * 5", "--day-and", "--start", "2026-01-01", "-n", "2")
    assert [r["utc"][:10] for r in rows] == ["2026-02-13", "2026-03-13"]
    rows = as_json("--cron", "0 0 13 * 5", "--day-or", "--start", "2026-01-01", "-n", "2")
    assert [r["utc"][:10] for r in rows] == ["2026-01-02", "2026-01-09"]


def test_interval_with_anchor_in_the_zone() -> None:
    rows = as_json(
        "--interval",
        "1h30m",
        "--anchor",
        "2026-01-01T08:00",
        "--timezone",
        "Asia/Tokyo",
        "--start",
        "2026-05-01T00:00+09:00",
        "-n",
        "3",
    )
    assert [r["local"] for r in rows] == [
        "2026-05-01T00:30:00+09:00",  # 2872.5 h = 1915 x 1.5 h after the anchor
        "2026-05-01T02:00:00+09:00",
        "2026-05-01T03:30:00+09:00",
    ]


def test_daily_interval_keeps_local_time_in_the_table() -> None:
    out = preview(
        "--interval",
        "1d",
        "--anchor",
        "2026-01-01T09:00",
        "--timezone",
        "Australia/Sydney",
        "--start",
        "2026-10-03",
        "-n",
        "2",
    ).stdout
    assert "2026-10-03 09:00:00 AEST (+10:00)" in out
    assert "2026-10-04 09:00:00 AEDT (+11:00)" in out


def test_rrule_on_one_line() -> None:
    rows = as_json(
        "--rrule",
        "DTSTART:20260105T090000 RRULE:FREQ=WEEKLY;INTERVAL=2",
        "--timezone",
        "Europe/Paris",
        "--start",
        "2026-01-01",
        "-n",
        "2",
    )
    assert [r["local"] for r in rows] == ["2026-01-05T09:00:00+01:00", "2026-01-19T09:00:00+01:00"]


def test_start_with_an_offset_is_that_instant() -> None:
    rows = as_json("--cron", "0 * * * *", "--start", "2026-01-01T10:30:00+02:00", "-n", "1")
    assert rows == [{"local": "2026-01-01T09:00:00+00:00", "utc": "2026-01-01T09:00:00+00:00"}]


def test_default_start_is_now_and_count_is_ten() -> None:
    before = datetime.now(UTC)
    rows = as_json("--interval", "60")
    after = datetime.now(UTC)  # the command's "now" is between the two
    assert len(rows) == 10
    first = datetime.fromisoformat(rows[0]["utc"])
    assert before - timedelta(seconds=1) <= first <= after + timedelta(seconds=60)


def test_a_finished_rule_says_so() -> None:
    out = preview("--rrule", "FREQ=DAILY;COUNT=3", "--start", "2026-01-01").stdout
    assert "no due time" in out
    assert as_json("--rrule", "FREQ=DAILY;COUNT=3", "--start", "2026-01-01") == []


@pytest.mark.parametrize(
    "args, bad",
    [
        (["--cron", "61 * * * *"], "'61 * * * *'"),
        (["--cron", "0 9 * * *", "--timezone", "Mars/Olympus"], "'Mars/Olympus'"),
        (["--rrule", "FREQ=FORTNIGHTLY"], "'FREQ=FORTNIGHTLY'"),
        (["--interval", "0"], "'0'"),
        (["--interval", "soon"], "'soon'"),
    ],
)
def test_bad_values_raise_one_line_invalid_input(args: list[str], bad: str) -> None:
    result = preview(*args, code=1)
    assert isinstance(result.exception, InvalidInput)
    message = str(result.exception)
    assert bad in message and "\n" not in message


@pytest.mark.parametrize(
    "args, hint",
    [
        ([], "exactly one of"),
        (["--cron", "0 * * * *", "--interval", "60"], "exactly one of"),
        (["--interval", "60", "--rrule", "FREQ=DAILY"], "exactly one of"),
        (["--cron", "0 * * * *", "--anchor", "2026-01-01"], "--anchor goes with --interval"),
        (["--interval", "60", "--day-and"], "go with --cron"),
        (["--cron", "0 * * * *", "--start", "tomorrow"], "not an ISO-8601 time"),
        (["--cron", "0 * * * *", "-n", "0"], "-n"),
        (["--cron", "0 * * * *", "-o", "yaml"], "--output"),
    ],
)
def test_usage_errors_exit_2(args: list[str], hint: str) -> None:
    result = preview(*args, code=2)
    assert hint in result.output


@pytest.mark.parametrize("args", [["--help"], ["preview", "--help"]])
def test_help_has_examples(args: list[str]) -> None:
    result = CliRunner().invoke(schedule, args)
    assert result.exit_code == 0
    assert "Examples:" in result.output
    assert "runq schedule preview --cron" in result.output
