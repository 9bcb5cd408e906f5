"""Random deployment commands are refused cleanly and leave Redis untouched."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz_deployment_inputs import (
    CREATE_FLAGS,
    ENTRYPOINT,
    PAIR,
    SCHEDULE_KINDS,
    any_flags,
    command_flags,
    schedule_flags,
)
from tests.fuzz_helpers import (
    FUZZ,
    World,
    run_cli,
    world,  # noqa: F401
)
from tests.fuzz_names import DEPLOYMENTS, NAME, NAMES, mostly
from tests.fuzz_schedules import DURATION, ISO_TIME, TIMEZONE

# ---- the CLI: deployments -------------------------------------------------------------


@FUZZ
@given(
    name=mostly(NAME.valid, NAMES),
    entrypoint=mostly(ENTRYPOINT.valid, ENTRYPOINT.any),
    extra=command_flags(CREATE_FLAGS),
    schedule=st.none()
    | schedule_flags()
    | any_flags({**SCHEDULE_KINDS, "--timezone": TIMEZONE, "--anchor": ISO_TIME}),
    container=st.booleans(),
)
def test_deployment_create(
    world: World,
    name: str,
    entrypoint: str,
    extra: list[str],
    schedule: list[str] | None,
    container: bool,
) -> None:
    args = ["deployment", "create", name, "--entrypoint", entrypoint, *extra, *(schedule or [])]
    if container and "--image" in args:
        args += ["--infra", "docker"]  # else --image is a usage error on the process default
    run_cli(world, args)


@FUZZ
@given(
    name=DEPLOYMENTS,
    params=st.lists(PAIR.any, max_size=3),
    timing=st.lists(
        st.tuples(st.sampled_from(["--start-in", "--start-at"]), DURATION.any | ISO_TIME.any),
        max_size=2,
    ),
)
def test_deployment_run(
    world: World, name: str, params: list[str], timing: list[tuple[str, str]]
) -> None:
    args = ["deployment", "run", name]
    for param in params:
        args += ["--param", param]
    for flag, text in timing:
        args += [flag, text]
    run_cli(world, args)


@FUZZ
@given(
    command=st.sampled_from(
        [
            "inspect",
            "delete",
            "set-work-queue",
            "set-schedule",
            "clear-schedule",
            "pause-schedule",
            "resume-schedule",
            "ls",
        ]
    ),
    name=DEPLOYMENTS,
    schedule=schedule_flags(),
    queue=NAMES,
)
def test_deployment_commands(
    world: World, command: str, name: str, schedule: list[str], queue: str
) -> None:
    args = ["deployment", command, *([] if command == "ls" else [name])]
    if command == "set-work-queue":
        args.append(queue)
    elif command == "set-schedule":
        args += schedule
    run_cli(world, args)
