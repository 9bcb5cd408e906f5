"""A queue's description (and its limit) can be changed after its creation: ``runq
work-queue update``, ``Broker.update_work_queue``, ``POST /api/work-queues/Q/update``;
one atomic write, or none."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from runq.broker import Broker, InvalidInput, WorkQueueNotFound
from runq.broker.errors import ScriptError
from runq.broker.work_queues import MAX_DESCRIPTION_BYTES
from tests.cli_helpers import Invoke
from tests.ui_helpers import TOKEN, UIServers, ui_servers  # noqa: F401

ON_CLUSTER = True


def config(broker: Broker, name: str) -> dict[str, str]:
    return dict(broker.client.hgetall(broker.keys.queue(name).config))


def test_the_cli_changes_the_description_and_the_limit(runq: Invoke, broker: Broker) -> None:
    queue = broker.create_work_queue("etl", concurrency_limit=2, description="old")
    out = runq("work-queue", "update", "etl", "--description", "nightly loads, owner: data").stdout
    assert out == "Updated work queue 'etl':\n    description - 'nightly loads, owner: data'\n"
    assert broker.read_work_queue("etl").description == "nightly loads, owner: data"
    runq("work-queue", "update", str(queue.id), "-d", "", "-l", "5")  # by id, both at once
    found = broker.read_work_queue("etl")
    assert (found.description, found.concurrency_limit) == ("", 5)
    assert "concurrency limit - None" in runq("work-queue", "update", "etl", "--no-limit").stdout
    assert broker.read_work_queue("etl").concurrency_limit is None
    assert "description='', " in runq("work-queue", "inspect", "etl").stdout.replace("\n    ", " ")


def test_the_cli_refuses_with_one_line_and_changes_nothing(runq: Invoke, broker: Broker) -> None:
    broker.create_work_queue("etl", concurrency_limit=2, description="kept")
    before = config(broker, "etl")
    for args, code, words in [
        ((), 2, "Nothing to update"),
        (("-l", "3", "--no-limit"), 2, "not both"),
        (("-d", "new", "-l", "-1"), 1, "Invalid concurrency limit -1"),
        (("-d", "x" * (MAX_DESCRIPTION_BYTES + 1)), 1, f"{MAX_DESCRIPTION_BYTES:,} bytes"),
        (
            ("-d", "é" * (MAX_DESCRIPTION_BYTES // 2 + 1)),
            1,
            "bytes of UTF-8",
        ),  # bytes, not characters
    ]:
        error = runq("work-queue", "update", "etl", *args, code=code).stderr
        assert words in error and "Traceback" not in error, error
    assert config(broker, "etl") == before
    error = runq("work-queue", "update", "nope", "-d", "x", code=1).stderr
    assert error.count("\n") == 1 and "nope" in error


def test_the_python_api(broker: Broker) -> None:
    broker.create_work_queue("q", concurrency_limit=1)
    assert broker.update_work_queue("q", description="d").concurrency_limit == 1  # limit kept
    assert broker.update_work_queue("q", concurrency_limit=None).concurrency_limit is None
    assert broker.update_work_queue("q", concurrency_limit=0).description == "d"
    with pytest.raises(InvalidInput, match="Nothing to update"):
        broker.update_work_queue("q")
    with pytest.raises(InvalidInput, match="must be text"):
        broker.update_work_queue("q", description=7)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not valid text"):
        broker.update_work_queue("q", description="\ud800")
    with pytest.raises(InvalidInput, match="bytes of UTF-8"):
        broker.create_work_queue("big", description="x" * (MAX_DESCRIPTION_BYTES + 1))
    with pytest.raises(WorkQueueNotFound):
        broker.update_work_queue("nope", description="x")
    # the script itself takes only the queue's settings, and writes nothing otherwise
    before = config(broker, "q")
    with pytest.raises(ScriptError, match="BAD_FIELD name"):
        broker.scripts.queue_update(
            broker.keys.queue("q"), name="q", fields={"description": "x", "name": "evil"}
        )
    assert config(broker, "q") == before


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def test_the_json_api_and_its_write_rules(ui_servers: UIServers, broker: Broker) -> None:  # noqa: F811
    queue = broker.create_work_queue("q", concurrency_limit=3)
    ui = ui_servers.start(env={"RUNQ_UI_TOKEN": TOKEN})
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=ui.url, timeout=60) as http:
        assert http.post("/api/work-queues/q/update", json={"description": "x"}).status_code == 401
        row = ok(
            http.post(
                f"/api/work-queues/{queue.id}/update",
                json={"description": "<b>loads</b>"},
                headers=bearer,
            )
        )
        assert row["description"] == "<b>loads</b>" and row["concurrency_limit"] == 3
        row = ok(
            http.post("/api/work-queues/q/update", json={"concurrency_limit": None}, headers=bearer)
        )
        assert row["concurrency_limit"] is None and row["description"] == "<b>loads</b>"
        refused = http.post(
            "/api/work-queues/q/update", json={"concurrency_limit": -2}, headers=bearer
        )
        assert refused.status_code == 400 and "Invalid concurrency limit" in refused.json()["error"]
        row = ok(http.post("/api/work-queues/q/update", json={"fair_by": "tenant"}, headers=bearer))
        assert row["fair_by"] == "tenant" and row["concurrency_limit"] is None
        refused = http.post("/api/work-queues/q/update", json={"fair_by": "a:b"}, headers=bearer)
        assert refused.status_code == 400 and "fair-by key" in refused.json()["error"]
        refused = http.post("/api/work-queues/q/update", json={}, headers=bearer)
        assert refused.status_code == 400 and "Nothing to update" in refused.json()["error"]
        # the queue page: a form holding the description, escaped (logged in, with the cookie)
        assert http.post("/login", data={"token": TOKEN}).status_code in (200, 303)
        html = http.get(f"/work-queues/{queue.id}").text
        assert f'data-action="/api/work-queues/{queue.id}/update"' in html
        assert 'value="&lt;b&gt;loads&lt;/b&gt;"' in html and "<b>loads" not in html
    read_only = ui_servers.start("--read-only")
    with httpx.Client(base_url=read_only.url, timeout=60) as http:
        assert http.post("/api/work-queues/q/update", json={"description": "y"}).status_code == 403
        assert "/update" not in http.get(f"/work-queues/{queue.id}").text
    assert broker.read_work_queue("q").description == "<b>loads</b>"
