"""Bugs the fuzz tests found in the broker's API stay fixed."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from runq.broker import Broker, DeploymentExists, InvalidInput
from tests.fuzz_helpers import (
    World,
    call_api,
    world,  # noqa: F401
)

# ---- bugs this test found in broker/api.py, kept as plain regression tests ------------


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.create_work_queue("fresh", description="\udcff"),
        lambda b: b.read_work_queue("\udcff"),
        lambda b: b.read_deployment("\udcff"),
        lambda b: b.cancel_flow_run(b.list_flow_runs(states=["SCHEDULED"])[0].id, message="\udcff"),
    ],
    ids=["queue-description", "queue-lookup", "deployment-lookup", "state-message"],
)
def test_api_lone_surrogates(world: World, call: Callable[[Broker], Any]) -> None:
    """Text with a lone surrogate (undecodable bytes, "\\udcff") is refused up front."""
    assert isinstance(call_api(world, call), InvalidInput)


def test_api_create_deployment_of_a_taken_name(world: World) -> None:
    """A taken name is refused before the deployment's new work queue is created."""
    error = call_api(
        world,
        lambda b: b.create_deployment(name="plain-dep", entrypoint="a.py:f", work_queue_name="new"),
    )
    assert isinstance(error, DeploymentExists)


@pytest.mark.parametrize("hours", [math.inf, math.nan, -1.0], ids=["inf", "nan", "negative"])
def test_api_preview_hours(world: World, hours: float) -> None:
    assert isinstance(call_api(world, lambda b: b.preview(world.queue, hours=hours)), InvalidInput)


@pytest.mark.parametrize("limit", [0, -5, 10**20])
def test_api_list_limit(world: World, limit: int) -> None:
    assert isinstance(call_api(world, lambda b: b.list_flow_runs(limit=limit)), InvalidInput)
