"""Redis ACL users (deploy/redis-acl.conf) and TLS (rediss://) against real servers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from broker import Broker, BrokerUnavailable, StateType
from tests import agent_helpers
from tests.agent_helpers import Agents, deploy, ended, wait_for
from tests.figures import Figure
from tests.redis_server import RedisServer, available_binaries

ROOT = Path(__file__).resolve().parent.parent
ACL_FILE = ROOT / "deploy" / "redis-acl.conf"

redis_server = agent_helpers.redis_server  # one server (Redis 7 when installed)
workdir = agent_helpers.workdir


def acl_rules() -> dict[str, list[str]]:
    """The ``user NAME RULES...`` lines of deploy/redis-acl.conf, by user."""
    users = {}
    for line in ACL_FILE.read_text().splitlines():
        if line.startswith("user ") and not line.startswith("user default"):
            _, name, *rules = line.split()
            users[name] = rules
    return users


@pytest.fixture
def acl_users(redis_url: str):
    admin = redis.Redis.from_url(redis_url)
    for name, rules in acl_rules().items():
        admin.execute_command("ACL", "SETUSER", name, "reset", *rules)
    yield redis_url.replace("redis://", "redis://{user}:{password}@")
    for name in acl_rules():
        admin.execute_command("ACL", "DELUSER", name)
    admin.close()


def test_the_documented_agent_user_runs_a_flow_end_to_end(
    broker: Broker, acl_users: str, workdir: Path
) -> None:
    url = acl_users.format(user="runq", password="change-me-runq")
    deploy(broker, "hello", "hello", "acl")
    run = broker.create_flow_run(deployment="hello")
    pool = Agents(url, workdir)
    try:
        pool.start("acl")
        wait_for(lambda: ended(broker, run.id), 30, "the run to end")
    finally:
        pool.stop_all()
    assert broker.read_flow_run(run.id).state.type is StateType.COMPLETED


def test_a_user_without_write_rights_gets_one_clear_error(broker: Broker, acl_users: str, figure: Figure) -> None:
    broker.create_work_queue("existing")
    url = acl_users.format(user="runq-viewer", password="change-me-viewer")
    keys_before = sorted(broker.client.keys("*"))
    listed = subprocess.run(
        [sys.executable, "-m", "control", "work-queue", "ls", "--api", url, "-o", "json"],
        capture_output=True, text=True, timeout=60,
    )
    assert listed.returncode == 0 and '"existing"' in listed.stdout, listed.stderr
    created = subprocess.run(
        [sys.executable, "-m", "control", "work-queue", "create", "new", "--api", url],
        capture_output=True, text=True, timeout=60,
    )
    figure("exit_code", created.returncode)
    figure("stderr_lines", created.stderr.count("\n"))
    figure("keys_changed", len(set(broker.client.keys("*")) ^ set(keys_before)))
    assert created.returncode == 1
    assert created.stderr.count("\n") == 1 and "Traceback" not in created.stderr
    assert "lacks a permission" in created.stderr and "change-me-viewer" not in created.stderr
    assert sorted(broker.client.keys("*")) == keys_before, "nothing was written"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A Redis 7 listening with TLS only, its certificate signed by a CA made here."""
    binary = available_binaries()["redis7"]
    if binary is None or shutil.which("openssl") is None:
        pytest.skip("TLS tests need Redis 7 (Debian's, built with TLS) and openssl")
    certs = tmp_path_factory.mktemp("tls")
    make_certificates(certs)
    server = RedisServer(binary, certs / "data", extra_args=(
        "--port", "0", "--tls-port", "PORT", "--tls-cert-file", str(certs / "server.crt"),
        "--tls-key-file", str(certs / "server.key"), "--tls-ca-cert-file", str(certs / "ca.crt"),
        "--tls-auth-clients", "no",
    ))
    server.extra_args = tuple(str(server.port) if a == "PORT" else a for a in server.extra_args)
    server.start(tls_ca=str(certs / "ca.crt"))
    yield server, certs / "ca.crt"
    server.stop()


def make_certificates(directory: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=runq test CA",
            "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server.key", "-out", "server.csr")
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.crt")


def test_rediss_with_a_ca_file(tls_server, monkeypatch: pytest.MonkeyPatch) -> None:
    server, ca = tls_server
    url = f"rediss://localhost:{server.port}/0"
    with_query = Broker.from_url(f"{url}?ssl_ca_certs={ca}")
    assert with_query.create_work_queue("over-tls").name == "over-tls"
    with_query.close()
    monkeypatch.setenv("RUNQ_REDIS_CA_FILE", str(ca))
    from_env = Broker.from_url(url)
    assert [q.name for q in from_env.list_work_queues()] == ["over-tls"]
    from_env.client.flushall()
    from_env.close()


def test_rediss_without_the_ca_is_refused_clearly(tls_server, monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = tls_server
    monkeypatch.delenv("RUNQ_REDIS_CA_FILE", raising=False)
    with pytest.raises(BrokerUnavailable, match="certificate verify failed") as caught:
        Broker.from_url(f"rediss://localhost:{server.port}/0")
    assert "\n" not in str(caught.value)
