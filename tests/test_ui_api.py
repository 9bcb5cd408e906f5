"""The UI's JSON API through an HTTP client against a real ``runq ui`` process on a real
Redis: every endpoint, its errors, read-only and token refusals, and the live events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from runq.broker import Broker, StateType
from tests.ui_helpers import TOKEN, EventListener, UIServer, UIServers, ui_servers, wait_for  # noqa: F401

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "times": {"type": "integer"}},
    "required": ["name"],
}


@pytest.fixture
def ui(ui_servers: UIServers) -> UIServer:
    return ui_servers.start()


@pytest.fixture
def client(ui: UIServer) -> httpx.Client:
    with httpx.Client(base_url=ui.url, timeout=60) as http:
        yield http


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: httpx.Response, status: int, words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"], body
    assert words in body["error"], body
    return str(body["error"])


# ---- work queues ----------------------------------------------------------------------


def test_work_queues_are_created_listed_and_filtered(client: httpx.Client) -> None:
    made = ok(
        client.post(
            "/api/work-queues",
            json={"name": "etl-high", "concurrency_limit": 3, "description": "d"},
        )
    )
    assert (
        made["name"] == "etl-high" and made["concurrency_limit"] == 3 and made["description"] == "d"
    )
    ok(client.post("/api/work-queues", data={"name": "etl-low", "concurrency_limit": ""}))  # a form
    ok(client.post("/api/work-queues", json={"name": "other"}))
    listed = ok(client.get("/api/work-queues"))
    assert [q["name"] for q in listed] == ["etl-high", "etl-low", "other"]
    # the CLI's `work-queue ls -o json` field names
    assert {
        "id",
        "name",
        "concurrency_limit",
        "is_paused",
        "active_runs",
        "scheduled_runs",
        "late_runs",
        "agents",
        "last_polled",
        "is_healthy",
        "status",
    } <= set(listed[0])
    assert listed[0]["status"] == "unhealthy" and listed[0]["ui_status"] == "Not ready"
    assert [q["name"] for q in ok(client.get("/api/work-queues", params={"prefix": "etl-"}))] == [
        "etl-high",
        "etl-low",
    ]


def test_ready_means_a_live_agent_polled_the_queue(client: httpx.Client, broker: Broker) -> None:
    ok(client.post("/api/work-queues", json={"name": "q"}))
    broker.register_agent("alive", name="a", work_queues=["q"])
    broker.claim("q", "alive")  # a poll that found nothing
    (row,) = ok(client.get("/api/work-queues"))
    assert row["ui_status"] == "Ready" and row["problems"] == []
    broker.deregister_agent("alive")  # polled a moment ago, but gone
    (row,) = ok(client.get("/api/work-queues"))
    assert row["ui_status"] == "Not ready" and row["problems"] == ["no live agent polls it"]


def test_work_queue_creation_errors_are_one_line_4xx(client: httpx.Client) -> None:
    ok(client.post("/api/work-queues", json={"name": "q"}))
    refused(client.post("/api/work-queues", json={"name": "q"}), 409, "already exists")
    refused(client.post("/api/work-queues", json={"name": "a{b}"}), 400, "name")
    refused(client.post("/api/work-queues", json={"name": "x", "concurrency_limit": -1}), 400, "-1")
    refused(
        client.post("/api/work-queues", json={"name": "x", "concurrency_limit": "many"}),
        400,
        "integer",
    )
    refused(
        client.post(
            "/api/work-queues", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
        "not JSON",
    )
    refused(client.post("/api/work-queues", json=[1]), 400, "JSON object")
    assert [q["name"] for q in ok(client.get("/api/work-queues"))] == ["q"]


def test_pause_resume_and_limits(client: httpx.Client, broker: Broker) -> None:
    queue = ok(client.post("/api/work-queues", json={"name": "q"}))
    assert ok(client.post("/api/work-queues/q/pause"))["status"] == "paused"
    assert broker.read_work_queue("q").is_paused
    assert ok(client.post(f"/api/work-queues/{queue['id']}/resume"))["is_paused"] is False  # by id
    assert (
        ok(client.post("/api/work-queues/q/set-concurrency-limit", json={"limit": 2}))[
            "concurrency_limit"
        ]
        == 2
    )
    refused(
        client.post("/api/work-queues/q/set-concurrency-limit", json={}), 400, "limit is required"
    )
    refused(
        client.post("/api/work-queues/q/set-concurrency-limit", data={"limit": "-3"}), 400, "-3"
    )
    assert (
        ok(client.post("/api/work-queues/q/clear-concurrency-limit"))["concurrency_limit"] is None
    )
    refused(client.post("/api/work-queues/nope/pause"), 404, "nope")
    refused(client.get("/api/work-queues/nope"), 404, "nope")
    slashed = ok(client.post("/api/work-queues", json={"name": "team/etl"}))
    assert ok(client.get("/api/work-queues/team/etl"))["queue"]["id"] == slashed["id"]
    assert ok(client.post(f"/api/work-queues/{slashed['id']}/pause"))["name"] == "team/etl"
    assert client.get("/work-queues/team/etl").status_code == 200


def test_one_queue_preview_in_flight_and_recent(client: httpx.Client, broker: Broker) -> None:
    broker.create_work_queue("q", concurrency_limit=5)
    later = broker.create_flow_run("q", start_in_seconds=600, name="later-run")
    now_run = broker.create_flow_run("q", name="now-run")
    [claimed] = broker.claim("q", "agent-1")
    assert str(claimed.id) == str(now_run.id)
    page = ok(client.get("/api/work-queues/q"))
    assert page["queue"]["name"] == "q" and page["queue"]["active_runs"] == 1
    assert [r["name"] for r in page["upcoming"]] == ["later-run"]
    assert [(r["name"], r["agent_id"]) for r in page["in_flight"]] == [("now-run", "agent-1")]
    assert {r["name"] for r in page["recent"]} == {"later-run", "now-run"}
    preview = ok(client.get("/api/work-queues/q/preview", params={"hours": 1}))
    assert [(r["id"], r["is_late"]) for r in preview] == [(str(later.id), False)]
    assert ok(client.get("/api/work-queues/q/preview", params={"hours": 0.01})) == []
    refused(client.get("/api/work-queues/q/preview", params={"hours": "soon"}), 400, "hours")
    refused(client.get("/api/work-queues/q/preview", params={"hours": -1}), 400, "hours")


def test_deleting_a_queue_shows_the_cli_refusals(client: httpx.Client, broker: Broker) -> None:
    broker.create_deployment(name="etl", entrypoint="flows.py:etl", work_queue_name="used")
    refused(client.post("/api/work-queues/used/delete"), 409, "etl")
    ok(client.post("/api/work-queues/used/delete", json={"force": True}))
    broker.create_work_queue("busy")
    run = broker.create_flow_run("busy")
    broker.claim("busy", "agent-1")
    refused(client.post("/api/work-queues/busy/delete", json={"force": True}), 409, "in flight")
    broker.cancel_flow_run(run.id)
    assert ok(client.post("/api/work-queues/busy/delete")) == {"deleted": "busy"}
    refused(client.get("/api/work-queues/busy"), 404, "busy")
    refused(client.post("/api/work-queues/busy/delete"), 404, "busy")


# ---- flow runs ------------------------------------------------------------------------


def test_flow_runs_filtered_newest_first_and_paged(client: httpx.Client, broker: Broker) -> None:
    broker.create_deployment(name="etl", entrypoint="flows.py:etl", work_queue_name="a")
    ids = [str(broker.create_flow_run("a", name=f"a-{i}").id) for i in range(5)]
    dep_run = str(broker.create_flow_run(deployment="etl").id)
    other = str(broker.create_flow_run("b", name="b-0").id)
    listed = ok(client.get("/api/flow-runs"))
    assert [r["id"] for r in listed] == [other, dep_run, *reversed(ids)]
    assert {"id", "name", "state", "work_queue_name", "expected_start_time"} <= set(listed[0])
    assert [r["id"] for r in ok(client.get("/api/flow-runs", params={"queue": "b"}))] == [other]
    assert [r["id"] for r in ok(client.get("/api/flow-runs", params={"deployment": "etl"}))] == [
        dep_run
    ]
    assert [r["id"] for r in ok(client.get("/api/flow-runs", params={"flow": "etl"}))] == [dep_run]
    page = ok(client.get("/api/flow-runs", params={"queue": "a", "limit": 2}))
    assert [r["id"] for r in page] == [dep_run, ids[4]]
    page = ok(
        client.get("/api/flow-runs", params={"queue": "a", "limit": 2, "before": page[-1]["id"]})
    )
    assert [r["id"] for r in page] == [ids[3], ids[2]]
    assert ok(client.get("/api/flow-runs", params={"state": "COMPLETED"})) == []
    assert len(ok(client.get("/api/flow-runs", params={"state": "scheduled"}))) == 7
    refused(client.get("/api/flow-runs", params={"state": "BOGUS"}), 400, "BOGUS")
    refused(client.get("/api/flow-runs", params={"queue": "nope"}), 404, "nope")
    refused(client.get("/api/flow-runs", params={"deployment": "nope"}), 404, "nope")
    refused(client.get("/api/flow-runs", params={"limit": "x"}), 400, "limit")


def test_a_run_with_its_history_logs_and_why_it_waits(client: httpx.Client, broker: Broker) -> None:
    broker.create_work_queue("q", concurrency_limit=1)
    holder = broker.create_flow_run("q", name="holder")
    broker.register_agent("agent-1", name="a", work_queues=["q"])  # a live agent
    broker.claim("q", "agent-1")
    waiting = broker.create_flow_run("q", name="waiting", parameters={"x": 1})
    run = ok(client.get(f"/api/flow-runs/{waiting.id}"))
    assert run["name"] == "waiting" and run["parameters"] == {"x": 1}
    assert run["state_history"][0]["type"] == "SCHEDULED"
    kinds = {reason["kind"]: reason["text"] for reason in run["waiting"]}
    assert "at its limit 1/1" in kinds["at_limit"] and "holder (Pending)" in kinds["at_limit"]
    assert "no_agent" not in kinds  # agent-1 polled it just now
    idle = broker.create_flow_run("idle")
    kinds = {r["kind"]: r["text"] for r in ok(client.get(f"/api/flow-runs/{idle.id}"))["waiting"]}
    assert set(kinds) == {"no_agent"} and "never polled" in kinds["no_agent"]
    broker.pause_work_queue("q")
    kinds = {
        r["kind"]: r["text"] for r in ok(client.get("/api/flow-runs/waiting"))["waiting"]
    }  # by name
    assert "is paused" in kinds["paused"]
    later = broker.create_flow_run("q", start_in_seconds=240)
    kinds = {r["kind"]: r["text"] for r in ok(client.get(f"/api/flow-runs/{later.id}"))["waiting"]}
    assert kinds["due_later"].startswith("Due in ")
    assert ok(client.get(f"/api/flow-runs/{holder.id}"))["waiting"][0]["kind"] == "claimed"
    broker.append_logs(holder.id, [("stdout", "first line"), ("stderr", "<b>second</b>")])
    lines = ok(client.get(f"/api/flow-runs/{holder.id}/logs"))
    assert [line["message"] for line in lines] == ["first line", "<b>second</b>"]
    assert (
        ok(client.get(f"/api/flow-runs/{holder.id}/logs", params={"after": lines[0]["id"]}))[0][
            "message"
        ]
        == "<b>second</b>"
    )
    refused(client.get(f"/api/flow-runs/{holder.id}/logs", params={"after": "x"}), 400, "")
    refused(client.get("/api/flow-runs/0190f1c2-6a1e-7b3c-9d4e-5f6a7b8c9d0e"), 404, "0190f1c2")


def test_cancel_retry_and_delete_a_run(client: httpx.Client, broker: Broker) -> None:
    run = broker.create_flow_run("q", name="r")
    cancelled = ok(client.post(f"/api/flow-runs/{run.id}/cancel"))
    assert cancelled["state"]["type"] == "CANCELLED"
    refused(client.post(f"/api/flow-runs/{run.id}/cancel"), 409, "")
    retried = ok(client.post(f"/api/flow-runs/{run.id}/retry"))
    assert retried["state"]["type"] == "SCHEDULED" and "retried" in retried["state"]["message"]
    refused(client.post(f"/api/flow-runs/{run.id}/retry"), 400, "")
    broker.claim("q", "agent-1")
    refused(client.post(f"/api/flow-runs/{run.id}/delete"), 400, "")
    ok(client.post(f"/api/flow-runs/{run.id}/cancel"))
    assert ok(client.post(f"/api/flow-runs/{run.id}/delete")) == {"deleted": str(run.id)}
    refused(client.get(f"/api/flow-runs/{run.id}"), 404, "")
    refused(client.post(f"/api/flow-runs/{run.id}/retry"), 404, "")


# ---- deployments and agents -----------------------------------------------------------


def test_deployments_run_now_and_schedule(client: httpx.Client, broker: Broker) -> None:
    broker.create_deployment(
        name="hello",
        entrypoint="flows.py:hello",
        work_queue_name="q",
        parameter_schema=SCHEMA,
        parameters={"name": "world"},
        schedule={"interval": 3600},
    )
    [listed] = ok(client.get("/api/deployments"))
    assert listed["name"] == "hello" and listed["work_queue_name"] == "q"
    assert listed["is_schedule_active"] is True and listed["next_run_time"] is not None
    assert listed["schedule_text"]
    run = ok(client.post("/api/deployments/hello/run", data={"parameters": '{"times": 2}'}))
    assert (
        run["parameters"] == {"name": "world", "times": 2} and run["state"]["type"] == "SCHEDULED"
    )
    assert ok(client.get("/api/deployments/hello"))["recent_runs"][0]["id"] == run["id"]
    refused(
        client.post("/api/deployments/hello/run", json={"parameters": {"times": "two"}}),
        400,
        "times",
    )
    refused(client.post("/api/deployments/hello/run", data={"parameters": "{"}), 400, "not JSON")
    refused(client.post("/api/deployments/hello/run", json={"parameters": [1]}), 400, "JSON object")
    refused(client.post("/api/deployments/nope/run"), 404, "nope")
    paused = ok(client.post("/api/deployments/hello/pause-schedule"))
    assert paused["is_schedule_active"] is False
    assert (
        ok(client.post(f"/api/deployments/{listed['id']}/resume-schedule"))["is_schedule_active"]
        is True
    )


def test_agents_with_their_runs_in_flight(client: httpx.Client, broker: Broker) -> None:
    broker.register_agent("agent-1", name="a1", work_queues=["high", "low"], hostname="h", pid=7)
    broker.create_flow_run("low", name="busy-run")
    broker.claim("low", "agent-1")
    [agent] = ok(client.get("/api/agents"))
    assert agent["id"] == "agent-1" and agent["work_queues"] == ["high", "low"]
    assert agent["status"] == "online" and [r["name"] for r in agent["runs_in_flight"]] == [
        "busy-run"
    ]


def test_unknown_endpoints_are_json_404(client: httpx.Client) -> None:
    refused(client.get("/api/nothing-here"), 404, "/api/nothing-here")
    refused(client.post("/api/work-queues/q/explode"), 404, "")


# ---- live events ----------------------------------------------------------------------


def test_the_event_stream_reports_changes_made_elsewhere(ui: UIServer, broker: Broker) -> None:
    broker.create_work_queue("q")
    listener = EventListener(
        ui.url,
        lambda events: any(e["queue"] == "q" and e["message"].startswith("run ") for e in events),
    )
    # the hub subscribes once per process; its hello comes after the subscription
    wait_for(
        lambda: broker.client.execute_command("PUBSUB", "NUMPAT") >= 1, 120, "the UI's subscription"
    )
    broker.pause_work_queue("q")
    run = broker.create_flow_run("q")
    events = listener.wait()
    assert {"queue": "q", "message": "queue"} in events, events
    assert any(e["message"].startswith(f"run {run.id}") for e in events), events


# ---- security -------------------------------------------------------------------------


def test_browser_writes_need_this_origin_and_the_csrf_token(
    client: httpx.Client, ui: UIServer
) -> None:
    page = client.get("/work-queues").text
    csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
    origin = {"Origin": ui.url}
    refused(
        client.post(
            "/api/work-queues", json={"name": "x"}, headers={"Origin": "http://evil.example"}
        ),
        403,
        "Cross-site",
    )
    refused(
        client.post(
            "/api/work-queues", json={"name": "x"}, headers={"Sec-Fetch-Site": "cross-site"}
        ),
        403,
        "Cross-site",
    )
    refused(client.post("/api/work-queues", json={"name": "x"}, headers=origin), 403, "CSRF")
    ok(
        client.post(
            "/api/work-queues", json={"name": "x"}, headers={**origin, "X-CSRF-Token": csrf}
        )
    )
    refused(client.get("/api/work-queues", headers={"Host": "rebound.example"}), 421, "127.0.0.1")


def test_read_only_refuses_every_write_and_hides_actions(
    ui_servers: UIServers, broker: Broker
) -> None:
    broker.create_work_queue("q")
    run = broker.create_flow_run("q")
    broker.create_deployment(name="d", entrypoint="flows.py:f", work_queue_name="q")
    ui = ui_servers.start("--read-only")
    writes = [
        "/api/work-queues",
        "/api/work-queues/q/pause",
        "/api/work-queues/q/resume",
        "/api/work-queues/q/set-concurrency-limit",
        "/api/work-queues/q/clear-concurrency-limit",
        "/api/work-queues/q/delete",
        f"/api/flow-runs/{run.id}/cancel",
        f"/api/flow-runs/{run.id}/retry",
        f"/api/flow-runs/{run.id}/delete",
        "/api/deployments/d/run",
        "/api/deployments/d/pause-schedule",
        "/api/deployments/d/resume-schedule",
    ]
    with httpx.Client(base_url=ui.url) as http:
        for path in writes:
            refused(http.post(path, json={"name": "z", "limit": 1}), 403, "read-only")
        for path in ("/work-queues", "/work-queues/q", f"/flow-runs/{run.id}", "/deployments"):
            html = http.get(path).text
            assert "data-action" not in html and "read-only" in html, path
        assert ok(http.get("/api/work-queues"))[0]["name"] == "q"
    assert (
        not broker.read_work_queue("q").is_paused
        and broker.read_flow_run(run.id).state.type is StateType.SCHEDULED
    )


def test_with_a_token_every_write_needs_it(ui_servers: UIServers, broker: Broker) -> None:
    ui = ui_servers.start(env={"RUNQ_UI_TOKEN": TOKEN})
    with httpx.Client(base_url=ui.url) as http:
        refused(http.post("/api/work-queues", json={"name": "a"}), 401, "token")
        refused(
            http.post(
                "/api/work-queues", json={"name": "a"}, headers={"Authorization": "Bearer wrong"}
            ),
            401,
            "Wrong",
        )
        ok(
            http.post(
                "/api/work-queues", json={"name": "a"}, headers={"Authorization": f"Bearer {TOKEN}"}
            )
        )
        assert ok(http.get("/api/work-queues"))[0]["name"] == "a"  # reads stay open
        assert http.post("/login", data={"token": "wrong"}).status_code == 401
        login = http.post("/login?next=/work-queues", data={"token": TOKEN})
        assert login.status_code == 303 and login.headers["location"] == "/work-queues"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        refused(
            http.post("/api/work-queues/a/pause"), 403, "CSRF"
        )  # the cookie alone is not enough
        csrf = http.get("/work-queues").text.split('name="csrf-token" content="')[1].split('"')[0]
        ok(http.post("/api/work-queues/a/pause", headers={"X-CSRF-Token": csrf}))
        assert (
            http.post("/login?next=//evil.example", data={"token": TOKEN}).headers["location"]
            == "/"
        )
    assert broker.read_work_queue("a").is_paused


def test_refuses_to_listen_off_loopback_without_a_token(ui_servers: UIServers, tmp_path) -> None:
    result = ui_servers.run("--host", "0.0.0.0")
    assert (
        result.returncode == 1
        and "without a token" in result.stderr
        and "Traceback" not in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1
    result = ui_servers.run("--host", "0.0.0.0", env={"RUNQ_UI_TOKEN": "short"})
    assert result.returncode == 1 and "at least 16" in result.stderr
    result = ui_servers.run("--host", "0.0.0.0", "--token-file", str(tmp_path / "missing"))
    assert result.returncode == 1 and "Cannot read the token file" in result.stderr
    (tmp_path / "empty").write_text("\n")
    result = ui_servers.run("--host", "0.0.0.0", "--token-file", str(tmp_path / "empty"))
    assert result.returncode == 1 and "is empty" in result.stderr
    result = ui_servers.run("--port", "70000")
    assert result.returncode == 2


def test_a_token_file_opens_another_address(ui_servers: UIServers, tmp_path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    ui = ui_servers.start("--host", "0.0.0.0", "--token-file", str(tmp_path / "token"))
    with httpx.Client(base_url=ui.url.replace("0.0.0.0", "127.0.0.1")) as http:
        refused(http.post("/api/work-queues", json={"name": "a"}), 401, "token")
        ok(
            http.post(
                "/api/work-queues", json={"name": "a"}, headers={"Authorization": f"Bearer {TOKEN}"}
            )
        )
        # off loopback reads need the token too, and only an IP (or --public-url) is a Host
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        refused(http.get("/api/work-queues"), 401, "token")
        assert ok(http.get("/api/work-queues", headers=bearer))[0]["name"] == "a"
        refused(
            http.get("/api/work-queues", headers={**bearer, "Host": "runq.example.com"}),
            421,
            "--public-url",
        )


def test_the_redis_url_never_reaches_the_browser(
    client: httpx.Client, broker: Broker, redis_url: str
) -> None:
    broker.create_work_queue("q")
    run = broker.create_flow_run("q")
    for path in (
        "/work-queues",
        "/work-queues/q",
        "/flow-runs",
        f"/flow-runs/{run.id}",
        "/deployments",
        "/agents",
        "/api/work-queues",
        "/api/work-queues/q",
        f"/api/flow-runs/{run.id}",
        "/healthz",
    ):
        body = client.get(path).text
        assert redis_url not in body and "redis://" not in body and "unix://" not in body, path


def test_pages_render_names_escaped(client: httpx.Client, broker: Broker) -> None:
    name = "<img src=x onerror=alert(1)>"
    broker.create_work_queue(name)
    run = broker.create_flow_run(name, name=name)
    for path in (
        "/work-queues",
        f"/work-queues/{broker.read_work_queue(name).id}",
        "/flow-runs",
        f"/flow-runs/{run.id}",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        assert name not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text, path
        assert "script-src 'self'" in page.headers["content-security-policy"]


# ---- review findings: bad input is a 4xx, never a 500 or a leak -------------------------


def test_non_ascii_csrf_tokens_and_cookies_are_refused_not_500(ui_servers: UIServers) -> None:
    ui = ui_servers.start()
    with httpx.Client(base_url=ui.url) as http:
        headers = {"Origin": ui.url, "X-CSRF-Token": "é".encode()}
        refused(http.post("/api/work-queues", json={"name": "x"}, headers=headers), 403, "CSRF")
    tokened = ui_servers.start(env={"RUNQ_UI_TOKEN": TOKEN})
    with httpx.Client(base_url=tokened.url) as http:
        cookie = {"Cookie": "runq_session=abc.é".encode()}
        assert http.get("/work-queues", headers=cookie).status_code == 200  # not logged in
        refused(http.post("/api/work-queues", json={"name": "x"}, headers=cookie), 401, "token")
        refused(
            http.post(
                "/api/work-queues",
                json={"name": "x"},
                headers={"Authorization": "Bearer é".encode()},
            ),
            401,
            "Wrong",
        )
        assert ok(http.get("/api/work-queues")) == []


def test_a_token_keeps_the_loopback_host_check(ui_servers: UIServers) -> None:
    ui = ui_servers.start(env={"RUNQ_UI_TOKEN": TOKEN})
    with httpx.Client(base_url=ui.url) as http:
        refused(http.get("/api/work-queues", headers={"Host": "evil.example"}), 421, "127.0.0.1")
        assert http.get("/api/work-queues", headers={"Host": "localhost"}).status_code == 200


def test_limits_that_are_not_integers_are_400(client: httpx.Client) -> None:
    json_body = {"content-type": "application/json"}
    for limit in ("1e400", "2.7", "-1e400", "1e20000000"):
        body = f'{{"name": "x", "concurrency_limit": {limit}}}'.encode()
        refused(client.post("/api/work-queues", content=body, headers=json_body), 400, "integer")
    ok(client.post("/api/work-queues", json={"name": "q"}))
    refused(
        client.post(
            "/api/work-queues/q/set-concurrency-limit",
            content=b'{"limit": 1e400}',
            headers=json_body,
        ),
        400,
        "integer",
    )
    refused(
        client.post("/api/work-queues/q/set-concurrency-limit", json={"limit": 2.7}), 400, "integer"
    )
    assert [q["name"] for q in ok(client.get("/api/work-queues"))] == ["q"]
    assert ok(client.get("/api/work-queues/q"))["queue"]["concurrency_limit"] is None


def test_the_public_url_origin_may_write_behind_a_tls_proxy(
    ui_servers: UIServers, broker: Broker
) -> None:
    public = {"Host": "runq.example.com", "Origin": "https://runq.example.com"}
    for args, env in (
        (("--public-url", "https://runq.example.com/"), None),
        ((), {"RUNQ_UI_PUBLIC_URL": "https://RUNQ.example.com:443"}),
    ):
        ui = ui_servers.start(*args, env=env)
        with httpx.Client(base_url=ui.url) as http:
            page = http.get(
                "/work-queues", headers={"Host": "runq.example.com"}
            ).text  # the proxy's Host
            csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
            ok(
                http.post(
                    "/api/work-queues",
                    json={"name": f"q{len(env or {})}"},
                    headers={**public, "X-CSRF-Token": csrf},
                )
            )
            evil = {**public, "Origin": "https://evil.example", "X-CSRF-Token": csrf}
            refused(
                http.post("/api/work-queues", json={"name": "z"}, headers=evil), 403, "Cross-site"
            )
            refused(
                http.get("/api/work-queues", headers={"Host": "evil.example"}), 421, "127.0.0.1"
            )
    assert broker.read_work_queue("q0").name == "q0" and broker.read_work_queue("q1").name == "q1"
    result = ui_servers.run("--public-url", "ftp://runq.example.com")
    assert (
        result.returncode == 1
        and "public URL" in result.stderr
        and "Traceback" not in result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_stopped_redis_is_503_without_its_address(tmp_path) -> None:
    from tests.conftest import BINARIES
    from tests.redis_server import RedisServer

    binary = BINARIES["redis7"] or BINARIES["redis6"]
    if binary is None:
        pytest.skip("no redis-server installed")
    redis = RedisServer(binary, tmp_path / "redis")
    redis.start()
    ui = UIServer(redis.url, tmp_path).wait_ready()
    try:
        redis.stop()
        address = f"127.0.0.1:{redis.port}"
        with httpx.Client(base_url=ui.url, timeout=30) as http:
            assert ok(http.get("/healthz")) == {"status": "ok"}  # alive: liveness is not Redis
            health = http.get("/readyz")
            assert health.status_code == 503 and health.json() == {
                "status": "unavailable",
                "error": "Redis is unavailable",
            }
            refused(http.get("/api/work-queues"), 503, "Redis is unavailable")
            refused(http.post("/api/work-queues", json={"name": "q"}), 503, "Redis is unavailable")
            replies = [
                health,
                http.get("/work-queues"),
                http.get("/api/flow-runs"),
                http.get("/agents"),
            ]
            for reply in replies:
                assert reply.status_code == 503, reply.text
                assert (
                    address not in reply.text
                    and str(redis.port) not in reply.text
                    and "redis://" not in reply.text
                )
        wait_for(lambda: str(redis.port) in ui.output(), what="the detail in the server's log")
    finally:
        ui.stop()
        redis.stop()


def test_a_closed_loop_drops_its_stream_and_keeps_the_subscription(broker: Broker) -> None:
    import asyncio

    from runq.ui.live import EventHub

    hub = EventHub(broker)
    closed = asyncio.new_event_loop()
    closed.close()
    open_loop = asyncio.new_event_loop()
    try:
        alive: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        hub._streams.update({(closed, asyncio.Queue()), (open_loop, alive)})
        hub.publish({"queue": "q", "message": "m"})  # raised RuntimeError before
        assert [loop for loop, _ in hub._streams] == [open_loop]
        open_loop.run_until_complete(asyncio.sleep(0))  # run the scheduled hand-over
        assert alive.get_nowait() == {"queue": "q", "message": "m"}
    finally:
        open_loop.close()
