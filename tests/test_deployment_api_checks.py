"""``Broker.create_deployment`` locates and checks the code as ``runq deployment create``
does (the same functions, the import in a child process): it records ``path`` and the
parameter schema, so runs are checked before they exist and a relative entrypoint never
depends on the agent's directory; ``check_code`` says how to skip it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from runq.broker import Broker, InvalidInput
from runq.broker.code_check import CodeNotChecked, EntrypointError
from tests.cli_helpers import Invoke
from tests.keyspace import changes, snapshot

ETL = """
from datetime import date


def etl(day: date, days: int = 1, region: str = "eu") -> int:
    return days
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "etl.py").write_text(ETL)
    return tmp_path


def test_the_readme_example_records_what_the_cli_records(
    broker: Broker, runq: Invoke, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    made = broker.create_deployment(
        name="nightly",
        entrypoint="flows/etl.py:etl",
        parameters={"region": "us"},
        work_queue_name="etl",
    )
    runq("deployment", "create", "by-cli", "--entrypoint", "flows/etl.py:etl", "-q", "etl")
    by_cli = json.loads(runq("deployment", "inspect", "by-cli", "-o", "json").stdout)
    assert made.path == by_cli["path"] == str(project.resolve())
    assert made.parameter_schema == by_cli["parameter_schema"]
    assert list(made.parameter_schema["properties"]) == ["day", "days", "region"]
    before = snapshot(broker)
    with pytest.raises(InvalidInput, match="Parameter 'days': 'many' is not of type 'integer'"):
        broker.create_flow_run(
            deployment="nightly", parameters={"day": "2024-05-01", "days": "many"}
        )
    with pytest.raises(InvalidInput, match="Missing parameter 'day'"):
        broker.create_flow_run(deployment="nightly")
    assert changes(before, snapshot(broker)) == []  # no run was written
    run = broker.create_flow_run(deployment="nightly", parameters={"day": "2024-05-01"})
    assert run.parameters == {"region": "us", "day": "2024-05-01"}


def test_code_from_names_the_directory_and_bad_code_is_refused_whole(
    broker: Broker, project: Path
) -> None:
    made = broker.create_deployment(name="etl", entrypoint="flows/etl.py:etl", code_from=project)
    assert made.path == str(project.resolve()) and made.parameter_schema is not None
    before = snapshot(broker)
    with pytest.raises(EntrypointError, match="'flows/etl.py' has no function 'nope'") as refused:
        broker.create_deployment(name="bad", entrypoint="flows/etl.py:nope", code_from=project)
    assert "check_code=False" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(InvalidInput, match="Default parameters: Parameter 'days'"):
        broker.create_deployment(
            name="bad", entrypoint="flows/etl.py:etl", code_from=project, parameters={"days": "x"}
        )
    assert changes(before, snapshot(broker)) == []  # no deployment, no queue


def test_code_that_is_not_here_warns_or_is_refused_as_asked(broker: Broker, tmp_path: Path) -> None:
    with pytest.warns(CodeNotChecked, match=r"No flow file 'flows/etl.py' in .*check_code=False"):
        made = broker.create_deployment(
            name="elsewhere", entrypoint="flows/etl.py:etl", code_from=tmp_path
        )
    assert made.path is None and made.parameter_schema is None
    with pytest.raises(EntrypointError, match="No flow file 'flows/etl.py'.*check_code=False"):
        broker.create_deployment(
            name="strict", entrypoint="flows/etl.py:etl", code_from=tmp_path, check_code=True
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # check_code=False: stored as given, silently
        skipped = broker.create_deployment(
            name="agents-only", entrypoint="flows/etl.py:etl", code_from=tmp_path, check_code=False
        )
        assert skipped.path is None and skipped.parameter_schema is None
        command = broker.create_deployment(name="cmd", command=["true"])  # no code to check
        assert command.parameter_schema is None


def test_moving_the_code_checks_it_again(broker: Broker, project: Path, tmp_path: Path) -> None:
    (project / "flows" / "other.py").write_text("def other(n: int) -> int:\n    return n\n")
    broker.create_deployment(name="etl", entrypoint="flows/etl.py:etl", code_from=project)
    moved = broker.update_deployment("etl", entrypoint="flows/other.py:other", code_from=project)
    assert list(moved.parameter_schema["properties"]) == ["n"]
    with pytest.raises(InvalidInput, match="Parameter 'n'"):
        broker.create_flow_run(deployment="etl", parameters={"n": "x"})
    kept = broker.update_deployment("etl", retries=2)  # the code did not move: nothing run
    assert kept.parameter_schema == moved.parameter_schema
