"""``runq deployment ...`` through Click's runner, against a real Redis."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runq.broker import Broker, DeploymentNotFound
from runq.broker.schedules import due_times, parse_schedule
from tests.cli_helpers import Invoke


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deployment.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_create_stores_every_flag(runq: Invoke, broker: Broker) -> None:
    out = runq(
        "deployment",
        "create",
        "report",
        "--entrypoint",
        "reports.daily:build",
        "-q",
        "k8s",
        "--param",
        "days=7",
        "--param",
        "region=eu",
        "--param",
        'opts={"a": [1]}',
        "--params-json",
        '{"days": 1, "dry_run": true}',
        "--infra",
        "docker",
        "--image",
        "acme/report:1.4",
        "--env",
        "LOG_LEVEL=debug",
        "--env",
        "URL=a=b",
        "--tag",
        "reports",
        "--tag",
        "daily",
        "--retries",
        "2",
        "--retry-delay",
        "1m30s",
        "-d",
        "the daily report",
    ).stdout
    found = broker.read_deployment("report")
    assert out.startswith(f"Created deployment 'report' with id '{found.id}'.")
    assert "runq agent start -q 'k8s'" in out and "runq deployment run 'report'" in out
    assert found.parameters == {"days": 7, "region": "eu", "opts": {"a": [1]}, "dry_run": True}
    assert (found.infrastructure.type, found.infrastructure.image) == ("docker", "acme/report:1.4")
    assert found.infrastructure.env == {"LOG_LEVEL": "debug", "URL": "a=b"}
    assert (found.tags, found.retries, found.retry_delay_seconds) == (["reports", "daily"], 2, 90)
    assert (found.work_queue_name, found.description, found.flow_name) == (
        "k8s",
        "the daily report",
        "build",
    )
    assert broker.read_work_queue("k8s").name == "k8s"


@pytest.mark.parametrize(
    "extra, code, message",
    [
        (["--entrypoint", "not-an-entrypoint"], 1, "entrypoint"),
        (["--entrypoint", "a.py:f", "--image", "x"], 2, "--image needs --infra docker"),
        (["--entrypoint", "a.py:f", "--param", "novalue"], 2, "KEY=VALUE"),
        (["--entrypoint", "a.py:f", "--params-json", "[1]"], 2, "JSON object"),
        (["--entrypoint", "a.py:f", "--retries", "-1"], 1, "retries"),
        (["--entrypoint", "a.py:f", "--retry-delay", "soon"], 2, "not a duration"),
        (["--entrypoint", "a.py:f", "-q", "bad:queue"], 1, "work_queue_name"),
        ([], 2, "--entrypoint"),
        (
            ["--entrypoint", "a.py:f", "--cron", "0 * * * *", "--rrule", "FREQ=DAILY"],
            2,
            "exactly one of --cron, --interval or --rrule (got --cron and --rrule)",
        ),
        (["--entrypoint", "a.py:f", "--interval", "60", "--day-and"], 2, "go with --cron"),
        (
            ["--entrypoint", "a.py:f", "--cron", "0 * * * *", "--anchor", "2030-01-01"],
            2,
            "--anchor goes with --interval",
        ),
        (["--entrypoint", "a.py:f", "--timezone", "Europe/London"], 2, "exactly one of --cron"),
        (["--entrypoint", "a.py:f", "--anchor", "someday", "--interval", "1h"], 2, "ISO-8601"),
        (["--entrypoint", "a.py:f", "--cron", "61 * * * *"], 1, "invalid cron expression"),
        (["--entrypoint", "a.py:f", "--cron", ""], 1, "invalid cron expression ''"),
        (["--entrypoint", "a.py:f", "--interval", "soon"], 1, "invalid interval 'soon'"),
        (
            ["--entrypoint", "a.py:f", "--rrule", "FREQ=DAILY", "--timezone", "Mars/Base"],
            1,
            "unknown IANA time zone 'Mars/Base'",
        ),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(
    runq: Invoke, broker: Broker, extra, code, message
) -> None:
    result = runq("deployment", "create", "x", *extra, code=code)
    assert message in result.stderr
    with pytest.raises(DeploymentNotFound):
        broker.read_deployment("x")


def test_create_of_an_existing_name_fails(runq: Invoke, broker: Broker) -> None:
    broker.create_deployment(name="etl", entrypoint="a.py:f")
    result = runq("deployment", "create", "etl", "--entrypoint", "b.py:g", code=1)
    assert result.stderr == "Deployment 'etl' already exists.\n"
    assert broker.read_deployment("etl").entrypoint == "a.py:f"


def test_apply_creates_then_updates_by_name(runq: Invoke, broker: Broker, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: etl
        entrypoint: flows/etl.py:main
        work_queue_name: nightly
        parameters: {region: eu, days: 7}
        infrastructure:
          type: kubernetes
          image: acme/etl:2.0
          namespace: jobs
          env: {LOG_LEVEL: info}
        tags: [etl]
        retries: 2
        retry_delay_seconds: 60
    """,
    )
    assert runq("deployment", "apply", str(path)).stdout.startswith("Created deployment 'etl'")
    created = broker.read_deployment("etl")
    assert created.infrastructure.namespace == "jobs" and created.parameters["days"] == 7
    assert created.path is None  # a container's code is in its image
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "etl.py").write_text("def other():\n    pass\n")
    path.write_text("name: etl\nentrypoint: flows/etl.py:other\nwork_queue_name: day\n")
    assert runq("deployment", "apply", str(path)).stdout.startswith("Updated deployment 'etl'")
    updated = broker.read_deployment("etl")
    assert updated.id == created.id and updated.created == created.created
    assert (updated.entrypoint, updated.work_queue_name, updated.infrastructure.type) == (
        "flows/etl.py:other",
        "day",
        "process",
    )
    assert (updated.tags, updated.retries) == ([], 0)  # the file is the whole truth
    assert updated.path == str(tmp_path.resolve())  # the process runs the file's neighbour


@pytest.mark.parametrize(
    "text, line, field, message",
    [
        (
            "name: etl\nentrypoint: a.py:f\nretries: -1\n",
            3,
            "retries",
            "greater than or equal to 0",
        ),
        (
            "name: etl\nentrypoint: a.py:f\ninfrastructure:\n  type: docker\n  imagee: x\n",
            5,
            "infrastructure.imagee",
            "unknown field",
        ),
        (
            "name: etl\nentrypoint: a.py:f\ninfrastructure:\n  type: ecs\n",
            4,
            "infrastructure.type",
            "does not match",
        ),
        ("name: etl\nentrypoint: a.py:f\ntags:\n  - a\n  - [b]\n", 5, "tags.1", "valid string"),
        ("name: etl\n\nentrypoint: not-one\n", 3, "entrypoint", "an entrypoint must look like"),
        ("entrypoint: a.py:f\n", 1, "name", "this field is required"),
        ("name: etl\nentrypoint: a.py:f\ncommand: [x]\n", 1, None, "exactly one of"),
        ("name: etl\nentrypoint: [a.py:f\n", 3, None, "invalid YAML"),
        ("- name: etl\n", 1, None, "must be a mapping"),
    ],
)
def test_an_invalid_file_names_field_and_line_and_changes_nothing(
    runq: Invoke, broker: Broker, tmp_path: Path, text, line, field, message
) -> None:
    broker.create_deployment(name="etl", entrypoint="keep.py:me")
    path = write(tmp_path, text)
    result = runq("deployment", "apply", str(path), code=1)
    error = result.stderr
    assert error.startswith(f"{path}, line {line}") and message in error, error
    if field:
        assert f"field '{field}'" in error
    assert len(error.splitlines()) == 1
    assert broker.read_deployment("etl").entrypoint == "keep.py:me"


def test_apply_with_a_schedule_materializes_its_due_times_and_a_bad_cron_changes_nothing(
    runq: Invoke, broker: Broker, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        """
        name: morning
        entrypoint: flows/etl.py:main
        work_queue_name: mornings
        schedule: {cron: "0 6 * * *", timezone: Europe/London}
        skip_if_late_by_seconds: 3600
    """,
    )
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "etl.py").write_text("def main():\n    pass\n")
    before = broker.server_time()
    assert runq("deployment", "apply", str(path)).stdout.startswith("Created deployment 'morning'")
    created = broker.read_deployment("morning")
    plan = parse_schedule({"cron": "0 6 * * *", "timezone": "Europe/London"})
    assert (created.schedule, created.skip_if_late_by_seconds) == (plan, 3600)

    def preview() -> list[dict]:
        out = runq("work-queue", "preview", "mornings", "--hours", "48", "-o", "json").stdout
        return json.loads(out)

    runs = preview()
    after = broker.server_time()
    due = [datetime.fromisoformat(run["expected_start_time"]) for run in runs]
    # the preview's window ends 48 h after its own clock, somewhere in [before, after]
    assert due in (
        due_times(plan, before, end=before + timedelta(hours=48)),
        due_times(plan, before, end=after + timedelta(hours=48)),
    )
    assert len(due) >= 2  # a daily schedule: two mornings in any 48 h
    assert all(run["deployment_id"] == str(created.id) for run in runs)

    path = write(
        tmp_path,
        """
        name: morning
        entrypoint: flows/etl.py:other
        work_queue_name: mornings
        schedule:
          cron: "61 6 * * *"
          timezone: Europe/London
        skip_if_late_by_seconds: 60
    """,
    )
    error = runq("deployment", "apply", str(path), code=1).stderr
    assert error.startswith(f"{path}, line 5, field 'schedule.cron': invalid cron expression")
    assert len(error.splitlines()) == 1
    assert broker.read_deployment("morning") == created
    assert preview() == runs


def test_schedule_flags_run_what_schedule_preview_shows(runq: Invoke, broker: Broker) -> None:
    """`deployment create` reads the flags as `schedule preview` does: the anchor in --timezone."""
    flags = ["--interval", "1d", "--anchor", "2026-01-01T09:00", "--timezone", "Australia/Sydney"]
    before = broker.server_time()
    runq(
        "deployment",
        "create",
        "daily",
        "--entrypoint",
        "a.py:f",
        "--skip-validation",
        "-q",
        "syd",
        *flags,
    )
    assert broker.read_deployment("daily").schedule.anchor_date == datetime(2026, 1, 1, 9, 0)
    runs = json.loads(runq("work-queue", "preview", "syd", "--hours", "48", "-o", "json").stdout)
    assert len(runs) >= 2
    start = ["--start", before.isoformat(), "-n", str(len(runs))]
    shown = json.loads(runq("schedule", "preview", *flags, *start, "-o", "json").stdout)
    assert [datetime.fromisoformat(run["expected_start_time"]) for run in runs] == [
        datetime.fromisoformat(row["utc"]) for row in shown
    ]
    assert all(row["local"][11:19] == "09:00:00" for row in shown)


def test_set_pause_resume_and_clear_the_schedule(runq: Invoke, broker: Broker) -> None:
    broker.create_deployment(name="etl", entrypoint="a.py:f", work_queue_name="q")
    out = runq(
        "deployment", "set-schedule", "etl", "--cron", "0 6 * * *", "--timezone", "Europe/London"
    ).stdout
    assert out == "Schedule of deployment 'etl' set: cron 0 6 * * * (Europe/London)\n"
    assert len(broker.preview("q", hours=24 * 4)) >= 3
    out = runq("deployment", "pause-schedule", "etl").stdout
    assert out == "Paused the schedule of deployment 'etl'\n"
    assert "cron 0 6 * * * (Europe/London) [paused]" in runq("deployment", "ls").stdout
    assert broker.preview("q", hours=24 * 4) == []
    out = runq("deployment", "resume-schedule", "etl").stdout
    assert out == "Resumed the schedule of deployment 'etl'\n"
    assert len(broker.preview("q", hours=24 * 4)) >= 3
    out = runq("deployment", "set-schedule", "etl", "--interval", "0.5", "--day-or", code=2)
    assert "go with --cron" in out.stderr
    out = runq("deployment", "set-schedule", "etl", "--interval", "90m").stdout
    assert out == "Schedule of deployment 'etl' set: every 1h30m\n"
    out = runq("deployment", "set-schedule", "etl", "--interval", "0.5").stdout
    assert out == "Schedule of deployment 'etl' set: every 0.5s\n"  # not rounded to "0s"
    out = runq("deployment", "clear-schedule", "etl").stdout
    assert out == "Cleared the schedule of deployment 'etl'\n"
    assert broker.read_deployment("etl").schedule is None
    assert broker.preview("q", hours=24 * 4) == []
    error = runq("deployment", "set-schedule", "etl", code=2).stderr
    assert "Give the new schedule: --cron, --interval or --rrule." in error
    for command in ("clear-schedule", "pause-schedule", "resume-schedule"):
        error = runq("deployment", command, "nope", code=1).stderr
        assert error == "No deployment named 'nope' found.\n"


def test_apply_of_a_missing_file_is_a_usage_error(runq: Invoke, tmp_path: Path) -> None:
    assert "does not exist" in runq("deployment", "apply", str(tmp_path / "no.yaml"), code=2).stderr


def test_ls_inspect_delete(runq: Invoke, broker: Broker) -> None:
    dep = broker.create_deployment(name="etl", entrypoint="flows/etl.py:main", work_queue_name="q")
    out = runq("deployment", "ls").stdout
    for text in ["Deployments", "etl", str(dep.id), "main", "q", "process", "flows/etl.py:main"]:
        assert text in out
    assert [d["name"] for d in json.loads(runq("deployment", "ls", "-o", "json").stdout)] == ["etl"]
    out = runq("deployment", "inspect", "etl").stdout
    assert out.startswith(f"Deployment(\n    id='{dep.id}',\n    name='etl',")
    assert "    work_queue_name='q'," in out and "    created='" in out
    data = json.loads(runq("deployment", "inspect", str(dep.id), "-o", "json").stdout)
    assert data["infrastructure"]["type"] == "process" and data["entrypoint"] == "flows/etl.py:main"
    assert runq("deployment", "delete", "etl").stdout == "Deleted deployment 'etl'\n"
    assert (
        runq("deployment", "inspect", "etl", code=1).stderr == "No deployment named 'etl' found.\n"
    )


def test_set_work_queue_sends_future_runs_there(runq: Invoke, broker: Broker) -> None:
    broker.create_deployment(name="etl", entrypoint="a.py:f", work_queue_name="old")
    before = broker.create_flow_run(deployment="etl")
    out = runq("deployment", "set-work-queue", "etl", "my-laptop").stdout
    assert "now sends new flow runs to work queue 'my-laptop'" in out
    out = runq("deployment", "run", "etl").stdout
    (moved,) = broker.list_flow_runs("my-laptop")
    assert moved.deployment_id == before.deployment_id and "Work queue: 'my-laptop'" in out
    assert [r.id for r in broker.list_flow_runs("old")] == [before.id]


def test_run_prints_id_and_name_and_applies_params_and_start(runq: Invoke, broker: Broker) -> None:
    broker.create_deployment(
        name="etl", entrypoint="a.py:f", parameters={"days": 7, "region": "eu"}
    )
    out = runq(
        "deployment",
        "run",
        "etl",
        "--param",
        "days=1",
        "--param",
        "note=hello world",
        "--start-in",
        "10m",
    ).stdout
    (run,) = broker.list_flow_runs()
    assert out.splitlines()[:2] == [f"Created flow run '{run.name}'.", f"└── ID: {run.id}"]
    assert "Scheduled start time: in 10 minutes (" in out
    assert run.parameters == {"days": 1, "region": "eu", "note": "hello world"}
    assert (
        timedelta(minutes=9)
        < run.expected_start_time - run.created
        <= timedelta(minutes=10, seconds=1)
    )

    at = datetime(2030, 5, 1, 9, 30, tzinfo=UTC)
    runq("deployment", "run", "etl", "--start-at", "2030-05-01T11:30:00+02:00")
    assert broker.list_flow_runs(limit=1)[0].expected_start_time == at
    runq("deployment", "run", "etl", "--start-at", "2030-05-01T09:30:00Z")
    assert broker.list_flow_runs(limit=1)[0].expected_start_time == at


@pytest.mark.parametrize(
    "args, message",
    [
        (["--start-in", "1m", "--start-at", "2030-01-01T00:00:00Z"], "not both"),
        (["--start-in", "ten minutes"], "not a duration"),
        (["--start-at", "tomorrow"], "not an ISO-8601 time"),
        (["--param", "=3"], "KEY=VALUE"),
    ],
)
def test_run_usage_errors_exit_2(runq: Invoke, broker: Broker, args, message) -> None:
    broker.create_deployment(name="etl", entrypoint="a.py:f")
    assert message in runq("deployment", "run", "etl", *args, code=2).stderr
    assert broker.list_flow_runs() == []


def test_run_of_an_unknown_deployment(runq: Invoke) -> None:
    assert runq("deployment", "run", "nope", code=1).stderr == "No deployment named 'nope' found.\n"
