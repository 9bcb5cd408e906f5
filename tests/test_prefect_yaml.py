"""A ``prefect deployment build`` file applies as it is: the Prefect 2 fields with no
meaning here are ignored and named in one warning line; every field runq cannot take is
reported at once, each with its line."""

from __future__ import annotations

import json
from pathlib import Path

from runq.broker import Broker
from tests.cli_helpers import Invoke

FLOW = """
from typing import List


def etl_parent_flow(months: List[int] = [1, 2], year: int = 2021, color: str = "yellow"):
    return len(months)
"""

# What `prefect deployment build etl_flow.py:etl_parent_flow -n "Parameterized ETL" -q etl
# --cron "0 5 1 * *" --tag nyc` writes with Prefect 2.10 (path and values are this test's).
PREFECT_YAML = """\
###
### A complete description of a Prefect Deployment for flow 'etl-parent-flow'
###
name: Parameterized ETL
description: null
version: 4c8d2b9e1f0a7c3d5e6b8a9f0c1d2e3f
# The work queue that will handle this deployment's runs
work_queue_name: etl
work_pool_name: null
tags:
- nyc
parameters:
  color: green
schedule:
  cron: 0 5 1 * *
  timezone: null
  day_or: true
is_schedule_active: null
infra_overrides: {}
infrastructure:
  type: process
  env:
    LOG_LEVEL: debug
  labels: {}
  name: null
  command: null
  stream_output: true
  working_dir: null
  block_type_slug: process
  _block_type_slug: process

###
### DO NOT EDIT BELOW THIS LINE
###
flow_name: etl-parent-flow
manifest_path: null
storage: null
path: PROJECT
entrypoint: etl_flow.py:etl_parent_flow
parameter_openapi_schema:
  title: Parameters
  type: object
  properties:
    months:
      title: months
      default:
      - 1
      - 2
      position: 0
      type: array
      items:
        type: integer
    year:
      title: year
      default: 2021
      position: 1
      type: integer
    color:
      title: color
      default: yellow
      position: 2
      type: string
  required: null
  definitions: null
timestamp: '2024-03-01T09:14:33.871657+00:00'
triggers: []
enforce_parameter_schema: null
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "etl_flow.py").write_text(FLOW)
    target = tmp_path / "etl_flow-deployment.yaml"
    target.write_text(text.replace("PROJECT", str(tmp_path)))
    return target


def test_a_prefect_2_build_file_applies_with_one_warning(
    runq: Invoke, broker: Broker, tmp_path: Path
) -> None:
    result = runq("deployment", "apply", str(write(tmp_path, PREFECT_YAML)))
    (warning,) = result.stderr.splitlines()  # one line
    assert warning.startswith("Warning: ") and "ignored Prefect 2 fields" in warning
    for field in (
        "version",
        "manifest_path",
        "storage",
        "infra_overrides",
        "work_pool_name",
        "parameter_openapi_schema",
        "timestamp",
        "triggers",
        "enforce_parameter_schema",
        "description: null",
        "is_schedule_active: null",
        "schedule.timezone: null",
        "infrastructure._block_type_slug",
        "infrastructure.block_type_slug",
        "infrastructure.name",
        "infrastructure.labels",
    ):
        assert field in warning, field
    assert "Created deployment 'Parameterized ETL'" in result.stdout
    stored = json.loads(runq("deployment", "inspect", "Parameterized ETL", "-o", "json").stdout)
    assert stored["flow_name"] == "etl-parent-flow" and stored["work_queue_name"] == "etl"
    assert stored["schedule"] == {
        "type": "cron",
        "cron": "0 5 1 * *",
        "timezone": "UTC",
        "day_or": True,
    }
    assert stored["is_schedule_active"] is True and stored["description"] == ""
    assert stored["tags"] == ["nyc"] and stored["parameters"] == {"color": "green"}
    assert stored["infrastructure"]["env"] == {"LOG_LEVEL": "debug"}
    assert stored["path"] == str(tmp_path)
    assert list(stored["parameter_schema"]["properties"]) == [
        "months",
        "year",
        "color",
    ]  # runq's own
    assert len(broker.preview("etl", hours=24 * 62)) >= 1  # its schedule made runs
    # applied again unchanged: an update, and the same single warning
    again = runq("deployment", "apply", str(write(tmp_path, PREFECT_YAML)))
    assert "Updated deployment" in again.stdout and len(again.stderr.splitlines()) == 1


def test_every_field_runq_cannot_take_is_reported_at_once(
    runq: Invoke, broker: Broker, tmp_path: Path
) -> None:
    text = (
        PREFECT_YAML.replace(
            "storage: null", "storage:\n  bucket_path: flows/etl\n  _block_type_slug: s3"
        )
        .replace("work_queue_name: etl", "work_queue_name: etl\nretry_count: 3")
        .replace("  stream_output: true", "  stream_output: true\n  cpu: 2")
        .replace("tags:", "schedule_active: false\ntags:")
    )
    path = write(tmp_path, text)
    lines = path.read_text().splitlines()
    line_of = {
        key: lines.index(next(ln for ln in lines if ln.startswith(key))) + 1
        for key in ("retry_count:", "schedule_active:", "  cpu:", "storage:")
    }
    error = runq("deployment", "apply", str(path), code=1).stderr
    assert len(error.splitlines()) == 1, error
    assert f"{path}: 4 problems: " in error
    assert f"line {line_of['retry_count:']}, field 'retry_count': unknown field" in error
    assert f"line {line_of['schedule_active:']}, field 'schedule_active': unknown field" in error
    assert f"line {line_of['  cpu:']}, field 'infrastructure.cpu': unknown field" in error
    assert f"line {line_of['storage:']}, field 'storage': runq runs the code" in error
    assert broker.list_deployments() == [] and broker.list_work_queues() == []


def test_one_problem_keeps_its_one_line_form(runq: Invoke, tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nentrypoint: etl_flow.py:etl_parent_flow\nretries: many\n")
    error = runq("deployment", "apply", str(path), code=1).stderr
    assert error.startswith(f"{path}, line 3, field 'retries': Input should be a valid integer")


def test_a_refused_file_with_prefect_fields_is_one_line(runq: Invoke, tmp_path: Path) -> None:
    """The warning about ignored Prefect fields comes only once a file applied: a file that
    is refused (here: its flow file is missing) still answers with one line."""
    path = tmp_path / "deployment.yaml"
    path.write_text("name: d\nentrypoint: _.py:f\nis_schedule_active: null\n", encoding="utf-8")
    error = runq("deployment", "apply", str(path), code=1).stderr
    assert len(error.splitlines()) == 1 and "No flow file" in error
