"""Random flow run and schedule input, by CLI and API, is refused cleanly and leaves Redis untouched."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from runq.broker import StateType
from tests.fuzz_deployment_inputs import (
    PARAMETERS,
    RUN_ID,
    SCHEDULE_KINDS,
    STATE,
    any_flags,
    command_flags,
    schedule_flags,
)
from tests.fuzz_helpers import (
    FUZZ,
    World,
    call_api,
    run_cli,
    world,  # noqa: F401
)
from tests.fuzz_names import INTEGER_TEXT, NAME, NAMES, TEXT_NAMES, WILD, Value, mostly, value
from tests.fuzz_schedules import ISO_TIME, TIMEZONE

# ---- the CLI: flow runs and schedules ---------------------------------------------------


@FUZZ
@given(
    command=st.sampled_from(["inspect", "cancel", "logs"]),
    choice=st.integers(0, 4),
    run_id=RUN_ID,
    form=st.sampled_from(["plain", "upper", "braces", "urn", "hex", "padded"]),
)
def test_flow_run_commands(world: World, command: str, choice: int, run_id: str, form: str) -> None:
    if choice < len(world.run_ids):  # a run of the seeded keyspace, as people write ids
        known = uuid.UUID(world.run_ids[choice])
        run_id = {
            "plain": str(known),
            "upper": str(known).upper(),
            "braces": f"{{{known}}}",
            "urn": known.urn,
            "hex": known.hex,
            "padded": f" {known} ",
        }[form]
    run_cli(world, ["flow-run", command, run_id])


@FUZZ
@given(
    extra=command_flags(
        {
            "--queue": NAME,
            "--state": STATE,
            "--deployment": Value(st.sampled_from(["plain-dep", "cron-dep"]), NAMES | RUN_ID),
            "--limit": Value(st.integers(1, 50).map(str), INTEGER_TEXT),
            "-o": value(st.sampled_from(["json", "table"])),
        }
    )
)
def test_flow_run_ls(world: World, extra: list[str]) -> None:
    run_cli(world, ["flow-run", "ls", *extra])


@FUZZ
@given(
    schedule=mostly(
        schedule_flags(),
        any_flags({**SCHEDULE_KINDS, "--timezone": TIMEZONE, "--anchor": ISO_TIME}),
    ),
    extra=command_flags(
        {
            "--start": ISO_TIME,
            "-n": Value(st.integers(1, 50).map(str), INTEGER_TEXT),
            "-o": value(st.sampled_from(["json", "table"])),
        }
    ),
)
def test_schedule_preview(world: World, schedule: list[str], extra: list[str]) -> None:
    run_cli(world, ["schedule", "preview", *schedule, *extra])


MOMENTS = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.none() | st.timezones(),
    ),
)
SECONDS = st.one_of(st.floats(), st.floats(0, 10**6), st.sampled_from([1e300, 1e18, 1e15]))


@FUZZ
@given(
    queue=st.none() | NAMES,
    deployment=st.none() | mostly(st.sampled_from(["plain-dep", "cron-dep"]), TEXT_NAMES),
    parameters=st.none() | PARAMETERS,
    when=MOMENTS,
    start_in=SECONDS,
    key=st.none() | WILD,
    tags=st.lists(WILD, max_size=2),
    name=st.none() | WILD,
)
def test_api_create_flow_run(
    world: World,
    queue: str | None,
    deployment: str | None,
    parameters: Any,
    when: datetime | None,
    start_in: float,
    key: str | None,
    tags: list[str],
    name: str | None,
) -> None:
    call_api(
        world,
        lambda b: b.create_flow_run(
            queue,
            deployment=deployment,
            parameters=parameters,
            scheduled_start_time=when,
            start_in_seconds=start_in,
            idempotency_key=key,
            tags=tags,
            name=name,
        ),
    )


STATES = st.one_of(STATE.any, st.sampled_from(list(StateType)))


@FUZZ
@given(
    choice=st.integers(0, 4),
    run_id=RUN_ID,
    state=STATES,
    token=st.none() | st.integers() | st.just(-1),
    from_states=st.none() | st.lists(STATES, max_size=3),
    when=MOMENTS,
    message=st.none() | WILD,
    name=st.none() | WILD,
)
def test_api_flow_runs(
    world: World,
    choice: int,
    run_id: str,
    state: Any,
    token: int | None,
    from_states: list[Any] | None,
    when: datetime | None,
    message: str | None,
    name: str | None,
) -> None:
    if choice < len(world.run_ids):
        run_id = world.run_ids[choice]
        if choice == 1 and token == -1:
            token = world.running_token  # the RUNNING run's real fencing token
    call_api(world, lambda b: b.read_flow_run(run_id))
    call_api(world, lambda b: b.cancel_flow_run(run_id, message=message))
    call_api(world, lambda b: b.read_logs(run_id))
    call_api(world, lambda b: b.list_flow_runs(states=from_states, limit=5))
    call_api(
        world,
        lambda b: b.set_state(
            run_id,
            state,
            token=token,
            from_states=from_states,
            scheduled_start_time=when,
            message=message,
            name=name,
        ),
    )
