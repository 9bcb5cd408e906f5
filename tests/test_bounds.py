"""Everything stored is bounded in bytes: parameters and deployment documents.

The bounds are bytes of the compact JSON runq stores, 1 MiB each by default
(RUNQ_MAX_PARAMETERS_BYTES, RUNQ_MAX_DEPLOYMENT_BYTES). A refusal is one line naming the
size, the limit and the variable, and nothing is written. A YAML file is measured on its
node graph before it is built, aliases and ``<<`` merges expanded, so a few kilobytes
that stand for gigabytes are refused in milliseconds with a few megabytes of memory.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from runq.broker import Broker, BrokerSettings, FlowRunCreate, InvalidInput
from runq.broker.models import MAX_DEPLOYMENT_BYTES, MAX_PARAMETERS_BYTES
from runq.control.specfile import _expanded_size, load_deployment_spec
from tests.cli_helpers import Invoke
from tests.figures import Figure
from tests.keyspace import Snapshot, changes, snapshot

LIMIT = 1_048_576
BIG = "x" * (2 * 1024 * 1024)  # a 2 MiB parameter
PARAMETERS_VAR, DEPLOYMENT_VAR = "RUNQ_MAX_PARAMETERS_BYTES", "RUNQ_MAX_DEPLOYMENT_BYTES"


def keyspace(broker: Broker) -> Snapshot:
    """Every key, its value and expiry (tests/keyspace.py): ``changes(before, keyspace(broker))``
    empty means nothing was written; a key that expired by itself meanwhile is no write."""
    return snapshot(broker)


def one_line(text: str) -> bool:
    return text.count("\n") == 1 and text.endswith("\n") and "Traceback" not in text


def write(tmp_path: Path, text: str, name: str = "deployment.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- the bombs ---------------------------------------------------------------------------


def reported_bomb(levels: int = 4) -> str:
    """The reported shape: 4 KB of `customizations` entries repeating one anchor, nested,
    which became a 256 MB deployment record (1 s and 512 MB in the loader, 6 s and 1 GB
    RSS for the whole `deployment apply` before the bound)."""
    lines = [
        "name: bomb",
        "entrypoint: flows/etl.py:main",
        "infrastructure:",
        "  type: kubernetes",
        "  customizations:",
        f'    - {{op: add, path: /metadata/annotations/a, value: &l0 "{"x" * 3150}"}}',
    ]
    for level in range(1, levels + 1):
        items = ", ".join([f"*l{level - 1}"] * 10)
        lines.append(
            f"    - {{op: add, path: /metadata/annotations/l{level}, value: &l{level} [{items}]}}"
        )
    for copy in range(7):
        lines.append(f"    - {{op: add, path: /metadata/annotations/c{copy}, value: *l{levels}}}")
    return "\n".join(lines) + "\n"


def billion_laughs() -> str:
    """The classic: nine levels of ten aliases each, 10^9 strings of 4 bytes in 1 KB."""
    lines = ["name: laughs", "entrypoint: a.py:f", "parameters:", '  l0: &l0 "lol"']
    for level in range(1, 10):
        lines.append(f"  l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


def merge_bomb() -> str:
    """``<<`` merges: each mapping merges the one before and holds it again (2^40 copies)."""
    lines = [
        "name: merge",
        "entrypoint: a.py:f",
        "parameters:",
        "  m0: &m0 {" + ", ".join(f"k{i}: v" for i in range(8)) + "}",
    ]
    for level in range(1, 41):
        lines.append(f"  m{level}: &m{level} {{<<: *m{level - 1}, x{level}: *m{level - 1}}}")
    return "\n".join(lines) + "\n"


BOMBS: dict[str, Callable[[], str]] = {
    "reported": reported_bomb,
    "billion_laughs": billion_laughs,
    "merge": merge_bomb,
}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_an_alias_bomb_is_refused_at_once_and_nothing_is_written(
    runq: Invoke, broker: Broker, tmp_path: Path, figure: Figure, kind: str
) -> None:
    path = write(tmp_path, BOMBS[kind]())
    before = keyspace(broker)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        error = runq("deployment", "apply", str(path), code=1).stderr
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert one_line(error), error
    assert error.startswith(f"{path}: with its aliases expanded, the deployment is ")
    assert f"over the limit of {LIMIT:,} bytes (raise it with {DEPLOYMENT_VAR})" in error
    assert keyspace(broker).keys == before.keys == {}  # not even the work queue
    assert peak < 16 * 2**20, peak  # bounded memory: megabytes, not the gigabytes it stands for
    figure("file_bytes", path.stat().st_size, unit="B")
    figure("expanded_bytes", estimate(path.read_text())[0], unit="B")
    figure("refusal_seconds", round(seconds, 3), unit="s")
    figure("refusal_peak_memory", round(peak / 2**20, 2), unit="MiB")


def estimate(text: str) -> tuple[int, bool]:
    loader = yaml.SafeLoader(text)
    try:
        return _expanded_size(loader.get_single_node())
    finally:
        loader.dispose()


def test_the_expanded_size_is_close_to_what_is_stored(
    runq: Invoke, broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The estimate is the stored size but for the fields the file leaves out (their
    defaults, the id, timestamps), so the bound means what it says."""
    monkeypatch.setenv(DEPLOYMENT_VAR, str(4 * 2**20))
    text = reported_bomb(levels=2)  # the same shape, 2.5 MB expanded
    runq("deployment", "apply", str(write(tmp_path, text)))
    stored = record_bytes(broker, "bomb")
    size, shared = estimate(text)
    assert shared and stored - 1500 <= size <= stored, (size, stored)
    assert estimate(reported_bomb())[0] > 250_000_000  # what 4 KB stood for


def test_the_loader_refuses_the_reported_bomb_in_milliseconds(
    tmp_path: Path, figure: Figure
) -> None:
    path = write(tmp_path, reported_bomb())
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(InvalidInput, match=DEPLOYMENT_VAR):
            load_deployment_spec(path, MAX_DEPLOYMENT_BYTES)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak
    figure("loader_refusal_seconds", round(seconds, 4), unit="s")
    figure("loader_refusal_peak_memory", round(peak / 2**20, 2), unit="MiB")


def test_an_astronomical_size_is_shown_in_scientific_notation(tmp_path: Path) -> None:
    lines = ["name: x", "entrypoint: a.py:f", "parameters:", '  l0: &l0 "lol"']
    lines += [f"  l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 31)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(InvalidInput, match=r"deployment is about 6\.9e\+30 bytes as JSON, over"):
        load_deployment_spec(path, LIMIT)  # 10^30 strings of 6 bytes ("lol", quotes, comma)


def test_an_alias_cycle_is_refused_with_its_line(
    runq: Invoke, broker: Broker, tmp_path: Path
) -> None:
    path = write(tmp_path, "name: x\nentrypoint: a.py:f\nparameters:\n  a: &p {b: *p}\n")
    error = runq("deployment", "apply", str(path), code=1).stderr
    assert error == (
        f"{path}, line 4: an alias refers to a node that contains it: "
        "the document would be infinite.\n"
    )
    assert keyspace(broker).keys == {}


def test_a_huge_scalar_without_aliases_is_refused_before_it_is_built(
    runq: Invoke, broker: Broker, tmp_path: Path
) -> None:
    path = write(tmp_path, f'name: x\nentrypoint: a.py:f\ndescription: "{"y" * 1_500_000}"\n')
    error = runq("deployment", "apply", str(path), code=1).stderr
    assert one_line(error), error
    assert error.startswith(f"{path}: the deployment is about 1,500,0")  # no alias involved
    assert f"{LIMIT:,} bytes (raise it with {DEPLOYMENT_VAR})" in error
    assert keyspace(broker).keys == {}


def test_a_file_far_over_the_bound_is_refused_unread(
    runq: Invoke, broker: Broker, tmp_path: Path
) -> None:
    path = write(tmp_path, "name: x\nentrypoint: a.py:f\n# " + "z" * (2 * LIMIT) + "\n")
    error = runq("deployment", "apply", str(path), code=1).stderr
    assert error == (
        f"{path} is more than {2 * LIMIT:,} bytes: a deployment file may hold 2 times the "
        f"deployment bound at most (raise it with {DEPLOYMENT_VAR}).\n"
    )
    assert keyspace(broker).keys == {}


def test_aliases_that_expand_under_the_bound_are_accepted(
    runq: Invoke, broker: Broker, tmp_path: Path
) -> None:
    """Aliases are fine: only the expanded size counts (here about 1,000,000 bytes)."""
    row = "[" + ", ".join(["*s"] * 100) + "]"
    text = (
        "name: shared\nentrypoint: a.py:f\nparameters:\n"
        f'  s: &s "{"w" * 998}"\n  rows: &rows [{row}]\n'
        f"  more: [{', '.join(['*rows'] * 9)}]\n"
    )
    runq("deployment", "apply", "--skip-validation", str(write(tmp_path, text)))
    stored = broker.client.strlen(broker.keys.deployment(str(broker.read_deployment("shared").id)))
    assert 1_000_000 < stored <= LIMIT
    found = broker.read_deployment("shared")
    assert len(found.parameters["more"]) == 9 and found.parameters["more"][8][0][99] == "w" * 998
    assert "shared" in runq("deployment", "ls").stdout


# ---- the deployment document: exactly at the bound, one byte over ------------------------


def record_bytes(broker: Broker, name: str) -> int:
    return broker.client.strlen(broker.keys.deployment(str(broker.read_deployment(name).id)))


def test_a_document_at_the_bound_is_accepted_and_one_byte_more_refused(broker: Broker) -> None:
    broker.create_deployment(name="edge", entrypoint="a.py:f")
    overhead = record_bytes(broker, "edge")  # the record with an empty description
    broker.update_deployment("edge", description="d" * (LIMIT - overhead))
    # the updated timestamp may print without microseconds (7 bytes fewer), one time in 10^6
    assert LIMIT - 7 <= record_bytes(broker, "edge") <= LIMIT
    before = keyspace(broker)
    with pytest.raises(InvalidInput) as refused:
        broker.update_deployment("edge", description="d" * (LIMIT - overhead + 8))
    assert str(refused.value).startswith("The deployment is 1,048,5")
    assert str(refused.value).endswith(
        f"bytes as JSON, over the limit of {LIMIT:,} bytes (raise it with {DEPLOYMENT_VAR})."
    )
    assert changes(before, keyspace(broker)) == []


def test_apply_at_the_bound_is_accepted_and_over_it_refused(
    runq: Invoke, broker: Broker, tmp_path: Path
) -> None:
    spec = "name: edge\nentrypoint: a.py:f\ndescription: {}\n"
    runq("deployment", "apply", "--skip-validation", str(write(tmp_path, spec.format('""'))))
    overhead = record_bytes(broker, "edge")
    text = spec.format("d" * (LIMIT - overhead))
    runq("deployment", "apply", "--skip-validation", str(write(tmp_path, text)))
    assert LIMIT - 7 <= record_bytes(broker, "edge") <= LIMIT
    before = keyspace(broker)
    path = write(tmp_path, spec.format("d" * LIMIT))
    error = runq("deployment", "apply", "--skip-validation", str(path), code=1).stderr
    assert one_line(error) and DEPLOYMENT_VAR in error and f"{LIMIT:,} bytes" in error, error
    assert changes(before, keyspace(broker)) == []


# ---- parameters ------------------------------------------------------------------------


def test_create_flow_run_refuses_a_2_mib_parameter(broker: Broker) -> None:
    broker.create_work_queue("q")
    before = keyspace(broker)
    with pytest.raises(InvalidInput) as refused:
        broker.create_flow_run("q", parameters={"blob": BIG})
    assert str(refused.value) == (
        f"Parameters are {len(BIG) + 11:,} bytes as JSON, over the limit of {LIMIT:,} bytes "
        f"(raise it with {PARAMETERS_VAR})."
    )
    for create in (broker.create_flow_runs, broker.enqueue_flow_runs):  # the one before it too
        with pytest.raises(InvalidInput, match=PARAMETERS_VAR):
            create("q", [FlowRunCreate(parameters={"a": 1}), {"parameters": {"blob": BIG}}])
    assert changes(before, keyspace(broker)) == []


def test_parameters_at_the_bound_are_accepted_one_byte_more_refused(broker: Broker) -> None:
    at_limit = {"p": "v" * (LIMIT - len('{"p":""}'))}
    run = broker.create_flow_run("q", parameters=at_limit)
    assert broker.read_flow_run(run.id).parameters == at_limit
    before = keyspace(broker)
    with pytest.raises(InvalidInput, match=f"Parameters are {LIMIT + 1:,} bytes"):
        broker.create_flow_run("q", parameters={"p": at_limit["p"] + "v"})
    assert changes(before, keyspace(broker)) == []


def test_a_runs_parameters_are_bounded_merged_with_the_deployments(broker: Broker) -> None:
    half = "h" * 600_000
    broker.create_deployment(name="etl", entrypoint="a.py:f", parameters={"a": half})
    before = keyspace(broker)
    with pytest.raises(InvalidInput, match=r"Parameters are 1,200,0\d\d bytes"):
        broker.create_flow_run(deployment="etl", parameters={"b": half})
    assert changes(before, keyspace(broker)) == []


def test_deployment_default_parameters_are_bounded(broker: Broker) -> None:
    with pytest.raises(InvalidInput, match=f"Default parameters are .* {PARAMETERS_VAR}"):
        broker.create_deployment(name="etl", entrypoint="a.py:f", parameters={"blob": BIG})
    assert keyspace(broker).keys == {}
    broker.create_deployment(name="etl", entrypoint="a.py:f")
    before = keyspace(broker)
    with pytest.raises(InvalidInput, match=PARAMETERS_VAR):
        broker.update_deployment("etl", parameters={"blob": BIG})
    assert changes(before, keyspace(broker)) == []


def test_deployment_create_refuses_a_2_mib_param(runq: Invoke, broker: Broker) -> None:
    error = runq(
        "deployment",
        "create",
        "etl",
        "--entrypoint",
        "a.py:f",
        "--skip-validation",
        "--param",
        f"blob={BIG}",
        code=1,
    ).stderr
    assert error == (
        f"Default parameters are {len(BIG) + 11:,} bytes as JSON, over the limit of "
        f"{LIMIT:,} bytes (raise it with {PARAMETERS_VAR}).\n"
    )
    assert keyspace(broker).keys == {}  # neither the deployment nor its work queue


def test_deployment_run_refuses_a_2_mib_param(runq: Invoke, broker: Broker) -> None:
    runq(
        "deployment",
        "create",
        "etl",
        "--entrypoint",
        "a.py:f",
        "--skip-validation",
        "--param",
        "day=1",
    )
    before = keyspace(broker)
    error = runq("deployment", "run", "etl", "--param", f"blob={BIG}", code=1).stderr
    assert error == (
        f"Parameters are {len(BIG) + 19:,} bytes as JSON, over the limit of {LIMIT:,} bytes "
        f"(raise it with {PARAMETERS_VAR}).\n"
    )
    assert changes(before, keyspace(broker)) == []


def test_raising_the_bounds_lets_a_2_mib_parameter_in(
    runq: Invoke, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PARAMETERS_VAR, str(4 * 2**20))
    # the document holds its default parameters: it is refused until its bound is raised too
    error = runq(
        "deployment",
        "create",
        "etl",
        "--entrypoint",
        "a.py:f",
        "--skip-validation",
        "--param",
        f"blob={BIG}",
        code=1,
    ).stderr
    assert error.startswith("The deployment is 2,097,") and DEPLOYMENT_VAR in error, error
    monkeypatch.setenv(DEPLOYMENT_VAR, str(4 * 2**20))
    runq(
        "deployment",
        "create",
        "etl",
        "--entrypoint",
        "a.py:f",
        "--skip-validation",
        "--param",
        f"blob={BIG}",
    )
    assert broker.read_deployment("etl").parameters == {"blob": BIG}
    out = runq("deployment", "run", "etl", "--param", "blob=small", "--param", f"other={BIG}")
    out = out.stdout
    assert out.startswith("Created flow run")
    (run,) = broker.list_flow_runs()
    assert run.parameters == {"blob": "small", "other": BIG}
    roomy = Broker(broker.client, settings=BrokerSettings.from_env())  # the API reads the same
    assert roomy.settings.max_parameters_bytes == 4 * 2**20
    assert roomy.create_flow_run("q", parameters={"blob": BIG}).parameters == {"blob": BIG}


@pytest.mark.parametrize("value", ["0", "-5", "lots", str(2**40)])
def test_a_bad_bound_names_its_variable(
    runq: Invoke, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(PARAMETERS_VAR, value)
    error = runq("work-queue", "ls", code=1).stderr
    assert one_line(error) and error.startswith(f"Invalid {PARAMETERS_VAR} {value!r}: "), error


def test_the_defaults_are_one_mebibyte() -> None:
    settings = BrokerSettings()
    assert settings.max_parameters_bytes == settings.max_deployment_bytes == LIMIT
    assert MAX_PARAMETERS_BYTES == MAX_DEPLOYMENT_BYTES == LIMIT
