"""Random deployment specs, as YAML files or API fields, are refused cleanly and leave Redis untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz_deployment_inputs import (
    CREATE_FLAGS,
    ENTRYPOINT,
    JSON_KEY,
    JSON_SCALAR,
    JSON_VALUE,
    PARAMETERS,
)
from tests.fuzz_helpers import (
    FUZZ,
    World,
    call_api,
    run_cli,
    world,  # noqa: F401
)
from tests.fuzz_names import NAME, NAMES, TEXT_CHAR, WILD, Value, mutated
from tests.fuzz_schedules import CRON, INTERVAL, ISO_TIME, RRULE, TIMEZONE

# ---- the CLI: deployment files ---------------------------------------------------------

STRING_MAP = st.dictionaries(
    st.from_regex(r"[A-Za-z_]{1,8}", fullmatch=True), st.text(TEXT_CHAR, max_size=8), max_size=2
)
INFRASTRUCTURE = Value(
    st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("process")},
            optional={"env": STRING_MAP, "stream_output": st.booleans()},
        ),
        st.fixed_dictionaries(
            {"type": st.just("docker")},
            optional={
                "image": CREATE_FLAGS["--image"].valid,
                "env": STRING_MAP,
                "labels": STRING_MAP,
                "auto_remove": st.booleans(),
                "image_pull_policy": st.sampled_from(["always", "if-not-present", "never"]),
            },
        ),
        st.fixed_dictionaries(
            {"type": st.just("kubernetes")},
            optional={
                "namespace": NAME.valid.filter(str.isalnum),
                "backoff_limit": st.integers(0, 5),
                "image_pull_policy": st.sampled_from(["Always", "IfNotPresent", "Never"]),
                "pod_watch_timeout_seconds": st.integers(1, 600),
                "customizations": st.lists(
                    st.dictionaries(JSON_KEY, JSON_VALUE, max_size=2), max_size=2
                ),
            },
        ),
    ),
    st.one_of(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["process", "docker", "kubernetes", "ssh", None, 1])},
            optional={
                "image": WILD,
                "env": st.dictionaries(JSON_KEY, JSON_SCALAR, max_size=2),
                "command": st.lists(WILD, max_size=2) | WILD,
                "namespace": WILD,
                "image_pull_policy": st.sampled_from(["always", "Always", "never", "sometimes"]),
                "backoff_limit": st.integers(),
                "pod_watch_timeout_seconds": st.integers(),
                "labels": JSON_VALUE,
                "volumes": JSON_VALUE,
                "auto_remove": JSON_SCALAR,
                "customizations": JSON_VALUE,
                "resources": JSON_VALUE,
                "extra_field": JSON_SCALAR,
            },
        ),
        JSON_VALUE,
    ),
)
SCHEDULE = Value(
    st.one_of(
        st.fixed_dictionaries({"cron": CRON.valid}, optional={"timezone": TIMEZONE.valid}),
        st.fixed_dictionaries(
            {"interval": st.floats(1, 1e6) | INTERVAL.valid},
            optional={"timezone": TIMEZONE.valid, "anchor_date": ISO_TIME.valid},
        ),
        st.fixed_dictionaries({"rrule": RRULE.valid}, optional={"timezone": TIMEZONE.valid}),
    ),
    st.one_of(
        st.fixed_dictionaries(
            {"cron": CRON.any}, optional={"timezone": TIMEZONE.any, "day_or": JSON_SCALAR}
        ),
        st.fixed_dictionaries(
            {"interval": INTERVAL.any | JSON_SCALAR},
            optional={"timezone": TIMEZONE.any, "anchor_date": ISO_TIME.any | JSON_SCALAR},
        ),
        st.fixed_dictionaries({"rrule": RRULE.any}, optional={"timezone": TIMEZONE.any}),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["cron", "interval", "rrule", "daily"])},
            optional={"cron": CRON.any, "interval": INTERVAL.any, "rrule": RRULE.any},
        ),
        JSON_VALUE,
    ),
)


def field(valid: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any]) -> Value:
    """A YAML field: valid, or anything including the wrong type."""
    return Value(valid, st.one_of(valid, wrong, JSON_SCALAR))


#: The fields of a deployment file (DeploymentSpec) besides its name and entrypoint.
SPEC_FIELDS: dict[str, Value] = {
    "command": field(st.lists(NAME.valid, min_size=1, max_size=2), st.lists(WILD, max_size=2)),
    "flow_name": field(NAME.valid, WILD),
    "parameters": field(st.dictionaries(JSON_KEY, JSON_VALUE, max_size=3), JSON_VALUE),
    "work_queue_name": field(NAME.valid, NAMES),
    "infrastructure": field(INFRASTRUCTURE.valid, INFRASTRUCTURE.any),
    "tags": field(st.lists(NAME.valid, max_size=2), st.lists(WILD, max_size=2) | JSON_VALUE),
    "retries": field(st.integers(0, 5), st.integers()),
    "retry_delay_seconds": field(st.floats(0, 3600), st.floats()),
    "description": field(st.text(TEXT_CHAR, max_size=30), WILD),
    "schedule": field(SCHEDULE.valid, SCHEDULE.any),
    "is_schedule_active": field(st.booleans(), JSON_SCALAR),
    "skip_if_late_by_seconds": field(st.floats(0, 1e6), st.floats()),
    "unknown_field": field(st.nothing(), JSON_SCALAR),
}


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """A deployment file's fields: valid but for at most one (name and entrypoint too)."""
    table = {
        "name": field(st.sampled_from(["plain-dep", "new-dep"]) | NAME.valid, NAMES),
        "entrypoint": field(ENTRYPOINT.valid, ENTRYPOINT.any),
        **SPEC_FIELDS,
    }
    optional = sorted(set(SPEC_FIELDS) - {"command", "unknown_field"})
    chosen = ["name", "entrypoint", *draw(st.lists(st.sampled_from(optional), unique=True))]
    broken = draw(st.sampled_from([None, *chosen, "command", "unknown_field"]))
    fields = {key: draw(table[key].valid) for key in chosen if key != broken}
    if broken is not None:
        fields[broken] = draw(table[broken].any)
    return fields


#: YAML that only YAML can say: tags, anchors, merges, recursion, deep nesting, bad bytes.
YAML_EDGES = st.sampled_from(
    [
        "",
        "---\n...\n",
        "- a\n- b\n",
        "name: [",
        "name: !!python/object:os.system x\n",
        "name: x\nname: y\nentrypoint: a.py:f\n",
        "name: x\nentrypoint: a.py:f\nparameters: &p {a: *p}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {a: &l [*l]}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {b: !!binary gIGC}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {d: 2024-05-01, t: 2024-05-01T10:00:00}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {n: .nan, i: .inf}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {s: !!set {a, b}}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {1: a}\n",
        "name: x\nentrypoint: a.py:f\nparameters: {? [a, b] : c}\n",
        'name: x\nentrypoint: a.py:f\nparameters: {u: "\\ud800"}\n',
        'name: x\nentrypoint: a.py:f\ndescription: "\\ud800"\n',
        "name: x\nentrypoint: a.py:f\n"
        "infrastructure: {type: kubernetes, customizations: &c [*c]}\n",
        "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e]\n"
        "name: x\nentrypoint: a.py:f\nparameters: {bomb: [*f, *f, *f, *f, *f, *f, *f, *f]}\n",
        "base: &b {entrypoint: a.py:f}\nname: x\n<<: *b\n",
        "name: x\nentrypoint: a.py:f\nretries: 99999999999999999999999999\n",
        "name: x\nentrypoint: a.py:f\nretry_delay_seconds: .inf\n",
        "name: x\nentrypoint: a.py:f\nskip_if_late_by_seconds: .nan\n",
        "name: x\nentrypoint: a.py:f\nschedule: {interval: .inf}\n",
        "name: x\nentrypoint: a.py:f\nschedule: {interval: 1e300}\n",
        "name: x\nentrypoint: a.py:f\nschedule: {interval: 1, anchor_date: 0001-01-01}\n",
        "name: x\nentrypoint: a.py:f\nschedule: {interval: 86400, anchor_date: 9999-12-31}\n",
        "name: x\nentrypoint: a.py:f\nschedule: {rrule: 'FREQ=DAILY;INTERVAL=0'}\n",
        "name: x\nentrypoint: a.py:f\nskip_if_late_by_seconds: 1e300\n",
        "\ufeffname: x\nentrypoint: a.py:f\n",
        "name: x\tentrypoint: a.py:f\n",
        "\x1fname: x\n",
    ]
)


@st.composite
def yaml_files(draw: st.DrawFn) -> bytes:
    """A deployment file: a near-valid spec as YAML, that text edited, YAML's corner
    cases, deep nesting, or bytes."""
    choice = draw(st.sampled_from(["spec", "spec", "edited", "edge", "deep", "bytes"]))
    if choice == "edge":
        return draw(YAML_EDGES).encode()
    if choice == "deep":
        depth = draw(st.integers(1, 3000))
        nesting = "[" * depth + "]" * depth
        return f"name: x\nentrypoint: a.py:f\nparameters: {{a: {nesting}}}\n".encode()
    if choice == "bytes":
        return draw(st.binary(max_size=200))
    text = yaml.safe_dump(draw(specs()), allow_unicode=draw(st.booleans()))
    if choice == "edited":
        text = draw(mutated(st.just(text)))
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(content=yaml_files())
def test_deployment_apply(world: World, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "deployment.yaml"
    path.write_bytes(content)
    run_cli(world, ["deployment", "apply", str(path)])


@st.composite
def deployment_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments of create_deployment: valid but for at most one."""
    fields = draw(specs())
    if draw(st.booleans()):
        fields["parameters"] = draw(PARAMETERS)  # what YAML cannot hold: NaN, objects, cycles
    return fields


@FUZZ
@given(fields=deployment_fields(), changes=deployment_fields())
def test_api_deployments(world: World, fields: dict[str, Any], changes: dict[str, Any]) -> None:
    call_api(world, lambda b: b.create_deployment(**fields))
    changes.pop("name", None)
    call_api(world, lambda b: b.update_deployment(world.deployment, **changes))
