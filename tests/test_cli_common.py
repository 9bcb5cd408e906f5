"""The CLI's shared helpers and its help texts (no Redis needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner

from runq.control.cli import cli
from runq.control.common import (
    parse_duration,
    parse_value,
    render_record,
)
from runq.display.text import quoted
from runq.display.time_text import relative, seconds_text

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("45s", 45),
        ("10m", 600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("90", 90),
        ("1.5", 1.5),
        ("0.5h", 1800),
        (" 1H ", 3600),
        ("1d2h3m4s", 93784),
        ("1h 30m", 5400),  # the schedules' grammar: one for every duration
        ("1w", 604800),
        ("0", 0),
        ("0s", 0),
        ("0h 0m", 0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10x", "-5", "1m1h", "ten", "nan", "inf", "1h1h", "0x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        ("1.5", 1.5),
        ("true", True),
        ("null", None),
        ('"3"', "3"),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ("eu-west", "eu-west"),
        ("hello world", "hello world"),
        ("", ""),
        ("NaN", "NaN"),
        ("[Infinity]", "[Infinity]"),
    ],
)
def test_param_values_are_json_when_they_can_be(text: str, value) -> None:
    assert parse_value(text) == value


@pytest.mark.parametrize(
    "delta, text",
    [
        (0, "just now"),
        (0.4, "just now"),
        (1, "in 1 second"),
        (-59, "59 seconds ago"),
        (599.8, "in 10 minutes"),
        (-3600 * 5, "5 hours ago"),
        (86400 * 3 + 5, "in 3 days"),
    ],
)
def test_relative_times(delta: float, text: str) -> None:
    assert relative(NOW + timedelta(seconds=delta), NOW) == text
    assert relative(None, NOW) == "never"


def test_small_formatters() -> None:
    assert quoted("my-queue") == "'my-queue'"
    assert quoted("it's") == "'it'\"'\"'s'"
    assert seconds_text(5400) == "1h30m" and seconds_text(0) == "0s"
    assert render_record("X", {"a": 1, "b": "two"}) == "X(\n    a=1,\n    b='two',\n)"


def all_commands(group: click.Group, path: tuple[str, ...] = ()):
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from all_commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = [path for path, _ in all_commands(cli)]


def test_every_command_of_the_issue_exists() -> None:
    expected = (
        {
            ("work-queue", name)
            for name in [
                "create",
                "ls",
                "inspect",
                "preview",
                "pause",
                "resume",
                "delete",
                "set-concurrency-limit",
                "clear-concurrency-limit",
            ]
        }
        | {
            ("deployment", name)
            for name in ["create", "apply", "ls", "inspect", "delete", "set-work-queue", "run"]
        }
        | {("flow-run", name) for name in ["ls", "inspect", "cancel", "logs"]}
        | {
            ("agent", "ls"),
            ("server", "start"),
            ("server", "status"),
            ("server", "stop"),
            ("config", "view"),
        }
    )
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "runq")
def test_every_help_shows_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    example = result.stdout.split("Example", 1)
    assert len(example) == 2, result.stdout
    assert f"runq {' '.join(path)}".rstrip() in example[1] or not path


@pytest.mark.parametrize("path", [p for p in COMMANDS if len(p) == 2])
def test_read_and_api_options_are_everywhere(path: tuple[str, ...]) -> None:
    """Every command that talks to Redis takes --api; every read command takes --output."""
    command = cli.commands[path[0]].commands[path[1]]
    options = {opt for param in command.params for opt in param.opts}
    if path not in {
        ("server", "start"),
        ("server", "stop"),
        ("schedule", "preview"),
        ("config", "view"),
    }:
        assert "--api" in options
    if path[1] in {"ls", "inspect", "preview", "status", "view"}:
        assert "--output" in options


def test_unknown_commands_and_options_exit_2() -> None:
    assert CliRunner().invoke(cli, ["work-queue", "frobnicate"]).exit_code == 2
    assert CliRunner().invoke(cli, ["work-queue", "ls", "--bogus"]).exit_code == 2
    assert CliRunner().invoke(cli, ["work-queue", "ls", "-o", "yaml"]).exit_code == 2
