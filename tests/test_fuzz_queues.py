"""Random work queue input, by CLI and API, is refused cleanly and leaves Redis untouched."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz_helpers import (
    FUZZ,
    World,
    call_api,
    run_cli,
    world,  # noqa: F401
)
from tests.fuzz_names import COUNT, INTEGER_TEXT, NAMES, TEXT_NAMES, WILD, mostly

# ---- the CLI: work queues -------------------------------------------------------------


@FUZZ
@given(name=NAMES, limit=st.none() | COUNT.any, description=st.none() | WILD)
def test_work_queue_create(
    world: World, name: str, limit: str | None, description: str | None
) -> None:
    args = ["work-queue", "create", name]
    args += [] if limit is None else ["--limit", limit]
    args += [] if description is None else ["-d", description]
    if run_cli(world, args).exit_code == 0:  # what was created can be named again
        assert run_cli(world, ["work-queue", "inspect", name], reset=False).exit_code == 0


@FUZZ
@given(
    command=st.sampled_from(
        [
            "inspect",
            "preview",
            "delete",
            "pause",
            "resume",
            "clear-concurrency-limit",
            "set-concurrency-limit",
            "ls",
        ]
    ),
    name=mostly(st.just("seeded"), NAMES),
    extra=st.lists(
        st.one_of(
            INTEGER_TEXT,
            st.sampled_from(["--force", "--hours", "-o", "json", "-m", "inf", "nan", "1e308"]),
        ),
        max_size=3,
    ),
)
def test_work_queue_commands(world: World, command: str, name: str, extra: list[str]) -> None:
    run_cli(world, ["work-queue", command, *(["-m"] if command == "ls" else []), name, *extra])


# ---- the Python API -------------------------------------------------------------------

ANY_LIMIT = st.one_of(
    st.none(), st.integers(), st.integers(-2, 5), st.floats(), st.booleans(), st.text(max_size=5)
)


@FUZZ
@given(
    name=NAMES,
    limit=ANY_LIMIT,
    description=WILD,
    other=mostly(st.just("seeded"), TEXT_NAMES),
    hours=st.floats(min_value=-10, max_value=1e300),  # inf and nan: test_api_preview_hours
)
def test_api_work_queues(
    world: World, name: str, limit: Any, description: str, other: str, hours: float
) -> None:
    create = dict(concurrency_limit=limit, description=description)
    call_api(world, lambda b: b.create_work_queue(name, **create))
    call_api(world, lambda b: b.set_concurrency_limit(name, limit))
    call_api(world, lambda b: b.set_concurrency_limit(world.queue, limit))
    call_api(world, lambda b: b.read_work_queue(other))
    call_api(world, lambda b: b.preview(other, hours=hours))
    call_api(world, lambda b: b.delete_work_queue(other))
