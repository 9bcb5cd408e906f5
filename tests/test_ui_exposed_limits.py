"""``runq ui`` against hostile input, on a real ``runq ui`` process over a real Redis:
slow clients under a descriptor limit, bodies larger than the bound, JSON nested
100,000 deep, an out-of-range log cursor, a form that is not UTF-8, liveness apart from
readiness, and JSON log lines for everything the server writes."""

from __future__ import annotations

import json
import selectors
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from runq.broker import Broker
from tests.ui_helpers import TOKEN, UIServer, UIServers, ui_servers, wait_for  # noqa: F401

JSON_BODY = {"content-type": "application/json"}
FORM_BODY = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def ui(ui_servers: UIServers) -> UIServer:
    return ui_servers.start()


@pytest.fixture
def client(ui: UIServer) -> httpx.Client:
    with httpx.Client(base_url=ui.url, timeout=30) as http:
        yield http


def refused(response: httpx.Response, status: int, words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"], body
    assert words in body["error"], body
    return str(body["error"])


def address(ui: UIServer) -> tuple[str, int]:
    parts = urlsplit(ui.url)
    return str(parts.hostname), int(parts.port or 80)


def raw_exchange(ui: UIServer, request: bytes, timeout: float = 30) -> bytes:
    """Send ``request`` as it is, then read until the server closes (or ``timeout``)."""
    with socket.create_connection(address(ui), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


# ---- slow clients and large bodies --------------------------------------------------------


@pytest.mark.slow
def test_slow_clients_under_a_descriptor_limit_cost_a_few_log_lines(ui_servers: UIServers) -> None:
    """300 clients that never finish their headers, against a UI that may open 256 files:
    it cuts them after --request-timeout, turns away what is over its cap, logs one line
    per kind of overload, and serves again."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    ui = ui_servers.start("--request-timeout", "1s", prefix=("prlimit", "--nofile=256:256"))
    selector = selectors.DefaultSelector()
    for _ in range(300):
        sock = socket.create_connection(address(ui), timeout=30)
        sock.sendall(b"GET /api/work-queues HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)

    def all_closed_by_the_server() -> bool:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            try:
                data = sock.recv(65536)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                sock.close()  # type: ignore[union-attr]
        return not selector.get_map()

    wait_for(all_closed_by_the_server, 120, "the server to close every slow connection")
    with httpx.Client(base_url=ui.url, timeout=30) as http:
        assert http.get("/api/work-queues").status_code == 200
    assert ui.proc.poll() is None
    output = ui.output()
    assert "Traceback" not in output and "Too many open files" not in output
    lines = output.splitlines()
    slow = [line for line in lines if "--request-timeout" in line]
    full = [line for line in lines if "--max-connections" in line]
    assert 1 <= len(slow) <= 3 and len(full) <= 3, output
    assert len(lines) < 30, output


def test_a_large_body_is_refused_before_it_is_read(ui: UIServer, broker: Broker) -> None:
    # a declared 100 MB: refused on its Content-Length, not a byte of it read
    head = (
        b"POST /api/work-queues HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
    )
    reply = raw_exchange(ui, head)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    assert b"over 1048576 bytes" in reply
    # a chunked body with no end: refused as soon as it passes the bound
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    reply = raw_exchange(
        ui,
        (
            b"POST /api/work-queues HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        + chunk * 16
        + b"1\r\n \r\n",
    )
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    assert broker.work_queue_names() == []
    assert httpx.get(ui.url + "/api/work-queues", timeout=30).json() == []


# ---- bad input is one line, a 4xx ---------------------------------------------------------


def test_json_nested_100000_deep_is_a_400(
    client: httpx.Client, ui: UIServer, broker: Broker
) -> None:
    broker.create_deployment(
        name="d", entrypoint="flows.py:f", work_queue_name="q", check_code=False
    )
    deep_list = "[" * 100_000 + "]" * 100_000
    deep_object = '{"a":' * 100_000 + "1" + "}" * 100_000
    for body in (deep_list, deep_object):
        refused(
            client.post("/api/work-queues", content=body, headers=JSON_BODY),
            400,
            "nests deeper than",
        )
        wrapped = '{"parameters": ' + body + "}"
        refused(
            client.post("/api/deployments/d/run", content=wrapped, headers=JSON_BODY),
            400,
            "nests deeper",
        )
    # as the text of the form's parameters field (percent-encoded: three bytes a bracket)
    refused(
        client.post("/api/deployments/d/run", data={"parameters": deep_list}),
        400,
        "parameters nests deeper",
    )
    shallow_enough = {"parameters": {"a": json.loads("[" * 60 + "]" * 60)}}
    nested = json.loads('{"a":' * 70 + "1" + "}" * 70)
    refused(client.post("/api/deployments/d/run", json={"parameters": nested}), 400, "nests deeper")
    assert client.post("/api/deployments/d/run", json=shallow_enough).status_code == 200
    assert "Traceback" not in ui.output() and "RecursionError" not in ui.output()


def test_an_out_of_range_log_cursor_is_a_400(client: httpx.Client, broker: Broker) -> None:
    run = broker.create_flow_run("q")
    broker.append_logs(run.id, [("stdout", "line")])
    for cursor in ("99999999999999999999-0", "0-99999999999999999999", "18446744073709551616"):
        refused(
            client.get(f"/api/flow-runs/{run.id}/logs", params={"after": cursor}),
            400,
            "log line id",
        )
    assert (
        client.get(
            f"/api/flow-runs/{run.id}/logs", params={"after": "18446744073709551615-0"}
        ).json()
        == []
    )


def test_a_form_that_is_not_utf8_is_refused(client: httpx.Client, broker: Broker) -> None:
    for body in (b"name=caf%E9", b"name=caf\xe9", b"name=%FF%FE", b"description=%C3%28&name=ok"):
        refused(client.post("/api/work-queues", content=body, headers=FORM_BODY), 400, "UTF-8")
    refused(
        client.post("/api/work-queues", content=b'{"name": "caf\xe9"}', headers=JSON_BODY), 400, ""
    )
    assert broker.work_queue_names() == []
    assert (
        client.post("/api/work-queues", content=b"name=caf%C3%A9", headers=FORM_BODY).status_code
        == 200
    )
    assert broker.work_queue_names() == ["café"]


# ---- probes and logs ----------------------------------------------------------------------


def test_liveness_is_the_process_readiness_is_redis(tmp_path: Path) -> None:
    from tests.conftest import BINARIES
    from tests.redis_server import RedisServer

    binary = BINARIES["redis7"] or BINARIES["redis6"]
    if binary is None:
        pytest.skip("no redis-server installed")
    redis = RedisServer(binary, tmp_path / "redis")
    redis.start()
    ui = UIServer(redis.url, tmp_path).wait_ready()
    try:
        with httpx.Client(base_url=ui.url, timeout=30) as http:
            assert http.get("/readyz").json() == {"status": "ok"}
            redis.stop()
            assert http.get("/healthz").json() == {"status": "ok"}  # alive: no restart
            ready = http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["error"] == "Redis is unavailable"
            redis.start()
            wait_for(lambda: http.get("/readyz").status_code == 200, 60, "ready again")
    finally:
        ui.stop()
        redis.stop()


@pytest.mark.slow
def test_with_json_logs_every_line_is_json_from_the_wait_for_redis_on(tmp_path: Path) -> None:
    """Started before Redis, it waits (the outage lines), then serves; a failed login, a
    malformed request and a slow client later, every line it wrote is one JSON object."""
    from tests.conftest import BINARIES
    from tests.redis_server import RedisServer

    binary = BINARIES["redis7"] or BINARIES["redis6"]
    if binary is None:
        pytest.skip("no redis-server installed")
    redis = RedisServer(binary, tmp_path / "redis")
    ui = UIServer(
        redis.url,
        tmp_path,
        "--log-format",
        "json",
        "--request-timeout",
        "1s",
        env={"RUNQ_UI_TOKEN": TOKEN},
    )
    try:
        wait_for(
            lambda: (
                "Redis" in ui.output() and redis.url.split("@")[-1].split("/")[2] in ui.output()
            ),
            60,
            "the wait for Redis said",
        )
        redis.start()
        ui.wait_ready()
        with httpx.Client(base_url=ui.url, timeout=30) as http:
            assert http.post("/login", data={"token": "wrong-guess-0123456789"}).status_code == 401
        assert b"400" in raw_exchange(ui, b"NOT HTTP AT ALL\r\n\r\n")
        with socket.create_connection(address(ui), timeout=30) as slow:
            slow.sendall(b"GET / HTTP/1.1\r\n")
            assert slow.recv(100) == b""  # cut by --request-timeout
        wait_for(lambda: "--request-timeout" in ui.output(), what="the slow client's line")
        wait_for(lambda: "failed login" in ui.output(), what="the failed login's line")
    finally:
        ui.stop()
        redis.stop()
    records = [json.loads(line) for line in ui.output().splitlines()]  # each line parses
    assert all(isinstance(record, dict) and record["message"] for record in records)
    messages = " ".join(record["message"] for record in records)
    assert "runq ui on http://" in messages and "Invalid HTTP request" in messages
    assert any(
        record["level"] == "WARNING" and record["logger"].startswith("runq") for record in records
    )
