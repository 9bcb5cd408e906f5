"""A deployment's code located (``path``) and checked before a run exists.

Against real Redis (6.2, 7 and the cluster): the parameter schema a deployment stores
refuses missing, unknown and ill-typed parameters of its runs before anything is written
(no run, no queue slot), whether they come from ``deployment run``, the defaults of
``create``/``apply`` or the API's ``create_flow_run``. The code itself is imported in a
child process, so a file that crashes, exits or hangs costs one line.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest

from runq.broker import Broker, DeploymentNotFound, InvalidInput, WorkQueueNotFound
from runq.broker.parameters import check_parameters
from tests.cli_helpers import Invoke
from tests.keyspace import Snapshot, changes, snapshot

ON_CLUSTER = True

FLOW = """
import datetime


def main(day: datetime.date, region: str = "eu", days: int = 7, *, dry_run: bool = False):
    return f"{day} {region} {days} {dry_run}"


def anything(**extra):
    return extra


class Opaque:
    pass


def odd(_hidden: int, thing: Opaque = None, json: dict | None = None, /, *more):
    return 1
"""

SCHEMA = {
    "type": "object",
    "properties": {"day": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["day"],
    "additionalProperties": False,
}


def keyspace(broker: Broker) -> Snapshot:
    """Every key, its value and expiry (tests/keyspace.py): ``changes(before, keyspace(broker))``
    empty means nothing was written; a key that expired by itself meanwhile is no write."""
    return snapshot(broker)


def one_line(text: str) -> bool:
    return text.count("\n") == 1 and text.endswith("\n") and "Traceback" not in text


@pytest.fixture
def code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory holding etl.py, and the working directory of the commands."""
    (tmp_path / "etl.py").write_text(FLOW)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- check_parameters: one line naming the parameter ---------------------------------------


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({}, "Missing parameter 'day' (the flow takes: day, days)."),
        ({"day": "x", "bogus": 1}, "Unknown parameter 'bogus' (the flow takes: day, days)."),
        ({"day": "x", "days": "7"}, "Parameter 'days': '7' is not of type 'integer'."),
        ({"day": "x", "days": "7" * 500}, "Parameter 'days': '77777"),
    ],
)
def test_check_parameters_names_the_parameter(parameters: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_parameters(SCHEMA, parameters)
    assert str(refused.value).startswith(message) and len(str(refused.value)) < 200


def test_partial_parameters_may_leave_out_required_ones_and_no_schema_checks_nothing() -> None:
    check_parameters(SCHEMA, {"days": 1}, partial=True)
    with pytest.raises(InvalidInput, match="Unknown parameter 'x'"):
        check_parameters(SCHEMA, {"x": 1}, partial=True)
    check_parameters(None, {"anything": object()})


# ---- the broker: schema, defaults, runs, names and ids -------------------------------------


def test_a_run_that_does_not_fit_the_schema_writes_nothing(broker: Broker) -> None:
    broker.create_deployment(name="etl", entrypoint="etl.py:main", parameter_schema=SCHEMA)
    before = keyspace(broker)
    for parameters, message in [
        ({}, "Missing parameter 'day'"),
        ({"day": "d", "bogus": 1}, "Unknown parameter 'bogus'"),
        ({"day": "d", "days": "many"}, "Parameter 'days'"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            broker.create_flow_run(deployment="etl", parameters=parameters)
    assert changes(before, keyspace(broker)) == []  # no run, no index entry, no queue slot
    run = broker.create_flow_run(deployment="etl", parameters={"day": "2024-05-01", "days": 2})
    assert run.parameters == {"day": "2024-05-01", "days": 2}


def test_default_parameters_are_checked_and_a_schedule_needs_every_required_one(
    broker: Broker,
) -> None:
    with pytest.raises(InvalidInput, match="^Default parameters: Parameter 'days'"):
        broker.create_deployment(
            name="etl", entrypoint="etl.py:main", parameter_schema=SCHEMA, parameters={"days": "x"}
        )
    with pytest.raises(InvalidInput, match="Missing parameter 'day'.*the schedule's runs"):
        broker.create_deployment(
            name="etl",
            entrypoint="etl.py:main",
            parameter_schema=SCHEMA,
            schedule={"interval": 3600},
        )
    assert keyspace(broker).keys == {}
    broker.create_deployment(
        name="etl", entrypoint="etl.py:main", parameter_schema=SCHEMA, parameters={"days": 3}
    )
    with pytest.raises(InvalidInput, match="Unknown parameter 'nope'"):
        broker.update_deployment("etl", parameters={"nope": 1})


def test_a_schema_that_is_not_one_is_refused(broker: Broker) -> None:
    with pytest.raises(InvalidInput, match="parameter_schema: not a valid JSON schema"):
        broker.create_deployment(name="etl", entrypoint="a.py:f", parameter_schema={"type": 5})
    with pytest.raises(InvalidInput, match="path must be an absolute directory"):
        broker.create_deployment(name="etl", entrypoint="a.py:f", path="relative/dir")
    assert keyspace(broker).keys == {}


def test_moving_the_code_forgets_the_schema_it_was_derived_from(broker: Broker) -> None:
    broker.create_deployment(
        name="etl", entrypoint="etl.py:main", parameter_schema=SCHEMA, path="/srv"
    )
    assert broker.update_deployment("etl", retries=1).parameter_schema == SCHEMA
    assert broker.update_deployment("etl", path="/srv/v2").parameter_schema is None


def test_flow_slash_deployment_names_a_deployment(broker: Broker) -> None:
    made = broker.create_deployment(name="nightly", entrypoint="etl.py:main")
    slashed = broker.create_deployment(name="a/b", entrypoint="x.py:f")
    assert broker.read_deployment("main/nightly").id == made.id
    assert broker.read_deployment("a/b").id == slashed.id  # a name holding '/' first
    assert broker.read_deployment("f/a/b").id == slashed.id
    for text in ("other/nightly", "main/", "/nightly", "main/nope"):
        with pytest.raises(DeploymentNotFound, match=f"No deployment named '{text}' found."):
            broker.read_deployment(text)


def test_a_queue_id_moves_a_deployment_to_that_queue(broker: Broker) -> None:
    target = broker.create_work_queue("target")
    broker.create_deployment(name="etl", entrypoint="etl.py:main", work_queue_name="first")
    assert (
        broker.update_deployment("etl", work_queue_name=str(target.id)).work_queue_name == "target"
    )
    made = broker.create_deployment(
        name="other", entrypoint="a.py:f", work_queue_name=str(target.id)
    )
    assert made.work_queue_name == "target"
    before = keyspace(broker)
    unknown = str(uuid.uuid4())
    with pytest.raises(WorkQueueNotFound, match=unknown):
        broker.update_deployment("etl", work_queue_name=unknown)
    assert changes(before, keyspace(broker)) == []  # no queue named after the id


# ---- the CLI: create, apply, inspect, run ----------------------------------------------------


def test_create_records_the_path_and_the_schema_and_inspect_shows_them(
    runq: Invoke, broker: Broker, code: Path
) -> None:
    runq("deployment", "create", "etl", "--entrypoint", "etl.py:main", "--param", "days=3")
    found = broker.read_deployment("etl")
    assert found.path == str(code.resolve())
    schema = found.parameter_schema
    assert schema is not None and schema["required"] == ["day"]
    assert list(schema["properties"]) == ["day", "region", "days", "dry_run"]
    assert (
        schema["properties"]["days"]["type"] == "integer"
        and schema["additionalProperties"] is False
    )
    shown = runq("deployment", "inspect", "main/etl").stdout
    assert f"path='{code.resolve()}'" in shown and "parameter_schema={" in shown
    assert (
        json.loads(runq("deployment", "inspect", "etl", "-o", "json").stdout)["parameter_schema"]
        == schema
    )


def test_signatures_pydantic_cannot_describe_still_give_a_schema(
    runq: Invoke, broker: Broker, code: Path
) -> None:
    runq("deployment", "create", "any", "--entrypoint", "etl.py:anything", "--param", "x=1")
    assert broker.read_deployment("any").parameter_schema["additionalProperties"] is True
    runq("deployment", "create", "odd", "--entrypoint", "etl.py:odd")
    schema = broker.read_deployment("odd").parameter_schema
    assert schema["properties"] == {} and "required" not in schema  # positional-only: not by name


@pytest.mark.parametrize(
    "args, message",
    [
        (["--entrypoint", "nosuch.py:fn"], "No flow file 'nosuch.py' in "),
        (["--entrypoint", "etl.py:nosuch"], "'etl.py' has no function 'nosuch'"),
        (["--entrypoint", "nosuch.mod:fn"], "No module named 'nosuch'"),
        (["--entrypoint", "etl.py:main", "--path", "/nonexistent-dir"], "is not a directory"),
        (
            ["--entrypoint", "etl.py:main", "--param", "bogus=1"],
            "Default parameters: Unknown parameter 'bogus'",
        ),
        (
            ["--entrypoint", "etl.py:main", "--param", "days=many"],
            "Default parameters: Parameter 'days': 'many' is not of type 'integer'.",
        ),
        (
            ["--entrypoint", "etl.py:main", "--interval", "1h"],
            "Default parameters: Missing parameter 'day'",
        ),
        (["--entrypoint", "crash.py:f"], "crashed (exit status 3; its last output: 'going down')"),
        (["--entrypoint", "exits.py:f"], "SystemExit: refusing to be imported"),
        (["--entrypoint", "broken.py:f"], "cannot import 'broken.py': SyntaxError"),
        (
            ["--entrypoint", "slow.py:f"],
            "took over 1 s and was stopped (raise RUNQ_ENTRYPOINT_CHECK_SECONDS",
        ),
    ],
)
def test_create_refuses_code_that_is_not_there_with_one_line_and_writes_nothing(
    runq: Invoke, broker: Broker, code: Path, monkeypatch: pytest.MonkeyPatch, args, message
) -> None:
    (code / "crash.py").write_text(
        "import os, sys\nprint('going down', file=sys.stderr)\nos._exit(3)\n"
    )
    (code / "exits.py").write_text("raise SystemExit('refusing to be imported')\n")
    (code / "broken.py").write_text("def f(:\n")
    (code / "slow.py").write_text("import time\ntime.sleep(600)\n")
    if "slow.py:f" in args:  # timed from the import of the user's file, not runq's start-up
        monkeypatch.setenv("RUNQ_ENTRYPOINT_CHECK_SECONDS", "1")
    error = runq("deployment", "create", "x", *args, code=1).stderr
    assert one_line(error) and message in error, error
    assert keyspace(broker).keys == {}


def test_skip_validation_stores_no_schema_and_the_default_path(
    runq: Invoke, broker: Broker, code: Path
) -> None:
    runq(
        "deployment",
        "create",
        "remote",
        "--entrypoint",
        "only/on/agents.py:f",
        "--skip-validation",
        "--param",
        "anything=1",
    )
    found = broker.read_deployment("remote")
    assert (found.parameter_schema, found.path) == (None, str(code.resolve()))
    runq("deployment", "run", "remote", "--param", "whatever=2")  # the engine will judge


def test_a_container_deployment_keeps_the_images_directory(
    runq: Invoke, broker: Broker, code: Path
) -> None:
    runq(
        "deployment",
        "create",
        "boxed",
        "--entrypoint",
        "in/image.py:f",
        "--infra",
        "docker",
        "--image",
        "acme/etl:1",
    )
    boxed = broker.read_deployment("boxed")
    assert (boxed.path, boxed.parameter_schema) == (None, None)
    runq(
        "deployment",
        "create",
        "copy",
        "--entrypoint",
        "etl.py:main",
        "--infra",
        "docker",
        "--image",
        "acme/etl:1",
        "--path",
        "/app",
    )
    copy = broker.read_deployment("copy")  # a copy of the image's code is here: checked
    assert copy.path == "/app" and copy.parameter_schema["required"] == ["day"]
    error = runq(
        "deployment",
        "create",
        "rel",
        "--entrypoint",
        "a.py:f",
        "--infra",
        "docker",
        "--image",
        "x",
        "--path",
        "app",
        code=1,
    ).stderr
    assert one_line(error) and "path must be an absolute directory" in error


def test_run_checks_every_param_before_anything_is_written(
    runq: Invoke, broker: Broker, code: Path
) -> None:
    runq("deployment", "create", "etl", "--entrypoint", "etl.py:main")
    before = keyspace(broker)
    for params, message in [
        ([], "Missing parameter 'day' (the flow takes: day, region, days, dry_run)."),
        (["--param", "day=2024-05-01", "--param", "bogus=1"], "Unknown parameter 'bogus'"),
        (
            ["--param", "day=2024-05-01", "--param", "dry_run=maybe"],
            "Parameter 'dry_run': 'maybe' is not of type 'boolean'.",
        ),
    ]:
        error = runq("deployment", "run", "main/etl", *params, code=1).stderr
        assert one_line(error) and message in error, error
    assert changes(before, keyspace(broker)) == []
    out = runq("deployment", "run", "main/etl", "--param", "day=2024-05-01").stdout
    assert out.startswith("Created flow run")
    assert runq("deployment", "run", "other/etl", code=1).stderr == (
        "No deployment named 'other/etl' found.\n"
    )


def test_set_work_queue_takes_a_queue_id(runq: Invoke, broker: Broker, code: Path) -> None:
    target = broker.create_work_queue("laptop")
    runq("deployment", "create", "etl", "--entrypoint", "etl.py:main", "-q", "old")
    out = runq("deployment", "set-work-queue", "main/etl", str(target.id)).stdout
    assert "now sends new flow runs to work queue 'laptop'" in out
    assert broker.read_deployment("etl").work_queue_name == "laptop"
    before = keyspace(broker)
    unknown = str(uuid.uuid4())
    error = runq("deployment", "set-work-queue", "etl", unknown, code=1).stderr
    assert error == f"No work queue named '{unknown}' found.\n"
    assert changes(before, keyspace(broker)) == []


def test_apply_resolves_the_code_against_the_files_directory(
    runq: Invoke, broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "etl.py").write_text(FLOW)
    (project / "lib").mkdir()
    (project / "lib" / "job.py").write_text(FLOW)
    spec = project / "deploy.yaml"
    spec.write_text("name: etl\nentrypoint: flows/etl.py:main\nparameters: {days: 2}\n")
    monkeypatch.chdir(tmp_path)  # apply runs elsewhere: the file means the same
    runq("deployment", "apply", str(spec.relative_to(tmp_path)))
    found = broker.read_deployment("etl")
    assert found.path == str(project.resolve()) and found.parameter_schema["required"] == ["day"]
    spec.write_text("name: etl\nentrypoint: job.py:main\npath: lib\n")
    runq("deployment", "apply", str(spec))
    assert broker.read_deployment("etl").path == str((project / "lib").resolve())
    spec.write_text("name: etl\nentrypoint: job.py:main\npath: lib\nparameters: {bogus: 1}\n")
    before = keyspace(broker)
    error = runq("deployment", "apply", str(spec), code=1).stderr
    assert one_line(error) and "Unknown parameter 'bogus'" in error
    spec.write_text("name: etl\nentrypoint: gone.py:main\n")
    error = runq("deployment", "apply", str(spec), code=1).stderr
    assert one_line(error) and "No flow file 'gone.py'" in error and "--skip-validation" in error
    assert changes(before, keyspace(broker)) == []
    runq("deployment", "apply", "--skip-validation", str(spec))
    assert broker.read_deployment("etl").parameter_schema is None


def test_apply_names_the_line_of_a_bad_path(runq: Invoke, broker: Broker, tmp_path: Path) -> None:
    spec = tmp_path / "deploy.yaml"
    spec.write_text(
        textwrap.dedent("""\
        name: etl
        entrypoint: a.py:f
        infrastructure: {type: docker, image: x}
        path: relative
    """)
    )
    error = runq("deployment", "apply", str(spec), code=1).stderr
    assert error.startswith(f"{spec}, line 4, field 'path': path must be an absolute directory")
    assert keyspace(broker).keys == {}
