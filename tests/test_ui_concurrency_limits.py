"""The UI's concurrency limits through an HTTP client against a real ``runq ui`` process on
a real Redis: the JSON API (its errors and its write checks), the pages (escaped, linked,
nothing fetched from elsewhere) and why a run waiting for a slot waits."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from runq.broker import Broker, FlowRun, Waiting
from tests.ui_helpers import TOKEN, UIServer, UIServers, ui_servers  # noqa: F401

QUEUE = "q"
HOSTILE = "<img src=x>"


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


def path_of(name: str) -> str:
    return "/api/concurrency-limits/" + quote(name, safe="")


def waiting_runs(
    broker: Broker, name: str, runs: int = 3, **run_args: Any
) -> tuple[FlowRun, list[FlowRun]]:
    """Limit ``name`` of 1 and ``runs`` runs tagged with it, claimed and their slots taken
    as an agent takes them: the first holds, the others wait in order."""
    broker.create_concurrency_limit(name, 1, description=f"about {name}")
    broker.create_deployment(
        name="dep", entrypoint="flows.py:f", work_queue_name=QUEUE, tags=[name], check_code=False
    )
    for _ in range(runs):
        broker.create_flow_run(deployment="dep", **run_args)
    claimed = broker.claim(QUEUE, "a1", max_runs=runs)
    names = broker.limit_names()
    taken = [broker.take_limit_slots(run, QUEUE, run.claim_token, names) for run in claimed]
    assert not isinstance(taken[0], Waiting)
    assert all(isinstance(result, Waiting) for result in taken[1:])
    return claimed[0], claimed[1:]


# ---- the JSON API ----------------------------------------------------------------------


def test_limits_are_created_listed_changed_and_deleted(client: httpx.Client) -> None:
    made = ok(
        client.post(
            "/api/concurrency-limits",
            json={"name": "w", "limit": 2, "rate": "10/1m", "description": "d"},
        )
    )
    assert (made["name"], made["limit"], made["rate_text"], made["description"]) == (
        "w",
        2,
        "10/m",
        "d",
    )
    assert made["rate"] == {"count": 10, "window_ms": 60_000} and made["per_value"] is False
    # a form, as a page posts it: an empty limit box is no limit
    form = ok(
        client.post("/api/concurrency-limits", data={"name": "api", "limit": "", "rate": "5/30s"})
    )
    assert (form["limit"], form["rate_text"]) == (None, "5/30s")
    ok(client.post("/api/concurrency-limits", json={"name": "customer:*", "limit": 1}))
    listed = ok(client.get("/api/concurrency-limits"))
    assert [(item["name"], item["active"], item["waiting"]) for item in listed] == [
        ("api", 0, 0),
        ("customer:*", 0, 0),
        ("w", 0, 0),
    ]
    assert listed[1]["per_value"] is True
    changed = ok(client.patch(path_of("w"), json={"limit": 5}))
    assert (changed["limit"], changed["rate_text"], changed["description"]) == (5, "10/m", "d")
    changed = ok(client.patch(path_of("w"), json={"limit": None, "rate": "3/h", "description": ""}))
    assert (changed["limit"], changed["rate_text"], changed["description"]) == (None, "3/h", "")
    changed = ok(client.patch(path_of("w"), data={"limit": "4", "rate": ""}))  # a form
    assert (changed["limit"], changed["rate"]) == (4, None)
    detail = ok(client.get(path_of("customer:*")))
    assert detail["limit"]["name"] == "customer:*" and detail["holders"] == detail["waiting"] == []
    assert ok(client.delete(path_of("w"))) == {"deleted": "w"}
    assert [item["name"] for item in ok(client.get("/api/concurrency-limits"))] == [
        "api",
        "customer:*",
    ]


def test_a_name_holding_a_slash_or_markup_is_one_path(client: httpx.Client) -> None:
    for name in ("team/etl", HOSTILE):
        ok(client.post("/api/concurrency-limits", json={"name": name, "limit": 1}))
        assert ok(client.get(path_of(name)))["limit"]["name"] == name
        assert ok(client.patch(path_of(name), json={"limit": 3}))["limit"] == 3
        assert ok(client.delete(path_of(name))) == {"deleted": name}
    assert ok(client.get("/api/concurrency-limits")) == []


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"name": "x", "limit": -1}, 400, "-1"),
        ({"name": "x", "limit": 1.5}, 400, "integer"),
        ({"name": "x", "limit": "many"}, 400, "integer"),
        ({"name": "x", "limit": True}, 400, "integer"),
        ({"name": "x", "rate": "0/1m"}, 400, "0/1m"),
        ({"name": "x", "rate": 10}, 400, "rate must be a string"),
        ({"name": "a\x1bb", "limit": 1}, 400, "control characters"),
        ({"name": "", "limit": 1}, 400, "empty"),
        ({"name": "x"}, 400, "needs a limit, a rate or both"),
        ({"name": "w", "limit": 3}, 409, "already exists"),
    ],
)
def test_creation_mistakes_are_one_line_4xx_and_write_nothing(
    client: httpx.Client, broker: Broker, body: dict[str, Any], status: int, words: str
) -> None:
    broker.create_concurrency_limit("w", 1)
    refused(client.post("/api/concurrency-limits", json=body), status, words)
    assert [(item.name, item.limit) for item in broker.list_concurrency_limits()] == [("w", 1)]


def test_change_and_delete_mistakes_are_one_line_4xx(client: httpx.Client, broker: Broker) -> None:
    broker.create_concurrency_limit("w", 1, rate="5/1m")
    before = broker.read_concurrency_limit("w")
    refused(client.patch(path_of("w"), json={}), 400, "Nothing to update")
    refused(client.patch(path_of("w"), json={"limit": -2}), 400, "-2")
    refused(client.patch(path_of("w"), json={"rate": "often"}), 400, "often")
    refused(client.patch(path_of("w"), json={"limit": None, "rate": None}), 400, "needs a limit")
    refused(client.patch(path_of("w"), json={"description": 7}), 400, "description must be")
    refused(
        client.patch(
            path_of("w"), content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
        "not JSON",
    )
    refused(client.patch(path_of("nope"), json={"limit": 1}), 404, "nope")
    refused(client.delete(path_of("nope")), 404, "nope")
    refused(client.get(path_of("nope")), 404, "nope")
    refused(client.get(path_of("a{b}")), 400, "'{'")
    assert broker.read_concurrency_limit("w") == before


def test_detail_lists_holders_and_waiting_runs_in_order(
    client: httpx.Client, broker: Broker
) -> None:
    holder, waiting = waiting_runs(broker, "w")
    [row] = ok(client.get("/api/concurrency-limits"))
    assert (row["name"], row["limit"], row["active"], row["waiting"]) == ("w", 1, 1, 2)
    detail = ok(client.get(path_of("w")))
    assert detail["limit"]["active"] == 1 and detail["limit"]["waiting"] == 2
    assert [(h["run_id"], h["run_name"], h["queue"], h["value"]) for h in detail["holders"]] == [
        (str(holder.id), holder.name, QUEUE, "")
    ]
    assert [(w["run_id"], w["run_name"], w["queue"], w["place"]) for w in detail["waiting"]] == [
        (str(waiting[0].id), waiting[0].name, QUEUE, 1),
        (str(waiting[1].id), waiting[1].name, QUEUE, 2),
    ]
    assert {"since"} <= set(detail["holders"][0]) and {"due"} <= set(detail["waiting"][0])


def test_writes_pass_the_ui_write_checks(ui_servers: UIServers, broker: Broker) -> None:
    broker.create_concurrency_limit("w", 1)
    before = broker.read_concurrency_limit("w")
    read_only = ui_servers.start("--read-only")
    with httpx.Client(base_url=read_only.url) as http:
        refused(
            http.post("/api/concurrency-limits", json={"name": "z", "limit": 1}), 403, "read-only"
        )
        refused(http.patch(path_of("w"), json={"limit": 5}), 403, "read-only")
        refused(http.delete(path_of("w")), 403, "read-only")
        assert [item["name"] for item in ok(http.get("/api/concurrency-limits"))] == ["w"]
    tokened = ui_servers.start(env={"RUNQ_UI_TOKEN": TOKEN})
    with httpx.Client(base_url=tokened.url) as http:
        refused(http.patch(path_of("w"), json={"limit": 5}), 401, "token")
        refused(http.delete(path_of("w")), 401, "token")
        evil = {"Origin": "https://evil.example", "Authorization": f"Bearer {TOKEN}"}
        refused(http.delete(path_of("w"), headers=evil), 403, "Cross-site")
        assert broker.read_concurrency_limit("w") == before
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert ok(http.patch(path_of("w"), json={"limit": 5}, headers=bearer))["limit"] == 5
        assert ok(http.delete(path_of("w"), headers=bearer)) == {"deleted": "w"}
    assert broker.list_concurrency_limits() == []


# ---- the pages -------------------------------------------------------------------------


def assert_offline(html: str) -> None:
    """Every script, style, image and link of the page is this server's own."""
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(("/", "?", "#")) and not url.startswith("//"), url


def test_pages_list_and_detail_escape_a_hostile_name_and_link_runs(
    client: httpx.Client, broker: Broker
) -> None:
    holder, waiting = waiting_runs(broker, HOSTILE)
    escaped = "&lt;img src=x&gt;"
    listing = client.get("/concurrency-limits")
    assert (
        listing.status_code == 200
        and "default-src 'none'" in listing.headers["content-security-policy"]
    )
    html = listing.text
    assert HOSTILE not in html and escaped in html
    assert '<a href="/concurrency-limits" class="current">Concurrency Limits</a>' in html
    assert f'href="/concurrency-limits/{quote(HOSTILE, safe="/")}"' in html
    assert re.search(r"<td>1</td>\s*<td>—</td>\s*<td>1</td>\s*<td>2</td>", html), html
    assert_offline(html)
    detail = client.get("/concurrency-limits/" + quote(HOSTILE, safe=""))
    assert detail.status_code == 200
    page = detail.text
    assert HOSTILE not in page and f"Concurrency limit {escaped}" in page
    assert f"about {escaped}" in page  # the description too
    assert f'<a href="/flow-runs/{holder.id}">{holder.name}</a>' in page
    places = [page.index(f'<a href="/flow-runs/{run.id}">{run.name}</a>') for run in waiting]
    assert page.index('id="holders"') < page.index('id="waiting-runs"') < places[0] < places[1]
    assert_offline(page)
    fragment = client.get(
        "/concurrency-limits/" + quote(HOSTILE, safe=""), params={"fragment": "limit_detail"}
    ).text
    assert "<html" not in fragment and str(waiting[1].id) in fragment and HOSTILE not in fragment
    table = client.get("/concurrency-limits", params={"fragment": "limits_table"}).text
    assert "<html" not in table and escaped in table and HOSTILE not in table
    # the run pages it links to exist
    assert client.get(f"/flow-runs/{waiting[0].id}").status_code == 200


def test_pages_without_limits_and_of_an_unknown_limit(client: httpx.Client) -> None:
    empty = client.get("/concurrency-limits").text
    assert "No concurrency limits." in empty and "runq concurrency-limit create" in empty
    missing = client.get("/concurrency-limits/" + quote("<b>nope", safe=""))
    assert missing.status_code == 404 and "&lt;b&gt;nope" in missing.text
    assert "<b>nope" not in missing.text


def test_a_per_value_limit_page_shows_each_value(client: httpx.Client, broker: Broker) -> None:
    broker.create_concurrency_limit("customer:*", 1)
    broker.create_deployment(
        name="acme",
        entrypoint="flows.py:f",
        work_queue_name=QUEUE,
        tags=["customer:acme"],
        check_code=False,
    )
    for _ in range(2):
        broker.create_flow_run(deployment="acme")
    claimed = broker.claim(QUEUE, "a1", max_runs=2)
    for run in claimed:
        broker.take_limit_slots(run, QUEUE, run.claim_token, broker.limit_names())
    page = client.get("/concurrency-limits/" + quote("customer:*", safe="")).text
    assert "<th>Value</th>" in page and page.count("<td>acme</td>") == 2
    assert "<dd>1 (at most 1 per value)</dd>" in page


# ---- why a run waits -------------------------------------------------------------------


def test_a_waiting_run_says_its_limit_holders_and_place(
    client: httpx.Client, broker: Broker
) -> None:
    due = broker.server_time() - timedelta(hours=1)  # long past the late threshold
    holder, waiting = waiting_runs(broker, HOSTILE, scheduled_start_time=due)
    run = ok(client.get(f"/api/flow-runs/{waiting[1].id}"))
    assert run["state"]["name"] == "AwaitingConcurrencySlot" and run["awaiting_limit"] == HOSTILE
    kinds = [reason["kind"] for reason in run["waiting"]]
    assert kinds[0] == "awaiting_limit" and "late" not in kinds and "due_now" not in kinds
    text = run["waiting"][0]["text"]
    assert text == (
        f"Waiting for concurrency limit {HOSTILE!r}: 1/1 slots held; place 2 of 2 in line. "
        f"The slots are held by {holder.name}."
    )
    first = ok(client.get(f"/api/flow-runs/{waiting[0].id}"))
    assert "place 1 of 2 in line" in first["waiting"][0]["text"]
    assert "awaiting_limit" not in [
        r["kind"] for r in ok(client.get(f"/api/flow-runs/{holder.id}"))["waiting"]
    ]
    page = client.get(f"/flow-runs/{waiting[1].id}").text
    assert 'class="reason reason-awaiting_limit"' in page
    assert HOSTILE not in page and "&lt;img src=x&gt;" in page


def test_the_deployments_page_shows_its_own_limit_and_timeout(
    client: httpx.Client, broker: Broker
) -> None:
    created = broker.create_deployment(
        name="sync",
        entrypoint="flows.py:f",
        work_queue_name=QUEUE,
        concurrency_limit=2,
        collision_strategy="cancel-new",
        timeout_seconds=1800,
        check_code=False,
    )
    [row] = ok(client.get("/api/deployments"))
    assert row["controls_text"] == "at most 2 in flight (cancel-new); timeout 30m"
    page = client.get("/deployments").text
    assert f'href="/concurrency-limits/deployment%3A{created.id}"' in page
    assert "at most 2 in flight (cancel-new); timeout 30m" in page
    assert client.get(f"/concurrency-limits/deployment%3A{created.id}").status_code == 200
