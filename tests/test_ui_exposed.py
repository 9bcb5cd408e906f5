"""``runq ui`` exposed beyond loopback, against a real ``runq ui`` process on a real
Redis: who may read, which Host is answered (DNS rebinding), failed logins throttled
per client and logged, sessions that end on the server at logout and after their age,
and a Secure cookie behind an https public URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from runq.broker import Broker
from tests.ui_helpers import TOKEN, UIServer, UIServers, ui_servers, wait_for  # noqa: F401

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def refused(response: httpx.Response, status: int, words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"], body
    assert words in body["error"], body
    return str(body["error"])


def exposed(ui_servers: UIServers, tmp_path: Path, *args: str) -> tuple[UIServer, str]:
    """A UI on every address with a token file, and the loopback URL to reach it."""
    (tmp_path / "token").write_text(TOKEN + "\n")
    ui = ui_servers.start("--host", "0.0.0.0", "--token-file", str(tmp_path / "token"), *args)
    return ui, ui.url.replace("0.0.0.0", "127.0.0.1")


def login(http: httpx.Client, token: str = TOKEN, **headers: str) -> httpx.Response:
    return http.post("/login?next=/work-queues", data={"token": token}, headers=headers)


def csrf_of(http: httpx.Client, **headers: Any) -> str:
    page = http.get("/work-queues", **headers).text
    return page.split('name="csrf-token" content="')[1].split('"')[0]


def session_keys(broker: Broker) -> list[str]:
    return list(broker.client.scan_iter(match=broker.keys.ui_session_prefix + "*"))


# ---- reads off loopback, and the Host ---------------------------------------------------


def test_off_loopback_every_read_needs_the_token(
    ui_servers: UIServers, tmp_path: Path, broker: Broker
) -> None:
    broker.create_work_queue("q")
    run = broker.create_flow_run("q", parameters={"secret": "s3cr3t"})
    broker.append_logs(run.id, [("stdout", "a log line")])
    _, url = exposed(ui_servers, tmp_path)
    with httpx.Client(base_url=url, timeout=30) as http:
        for path in (
            "/api/work-queues",
            f"/api/flow-runs/{run.id}",
            f"/api/flow-runs/{run.id}/logs",
            "/api/flow-runs",
            "/api/deployments",
            "/api/agents",
            "/api/events",
            "/metrics",
        ):
            refused(http.get(path), 401, "needs the token to read")
        for path in ("/work-queues", f"/flow-runs/{run.id}", "/agents"):
            page = http.get(path)  # a page sends the browser to the login form
            assert page.status_code == 303 and page.headers["location"] == f"/login?next={path}", (
                path
            )
            assert "s3cr3t" not in page.text
        # what a page's script fetches is refused, not redirected (it reloads to log in)
        assert http.get("/work-queues", params={"fragment": "queues_table"}).status_code == 401
        # open: the probes, the login form and its script and style
        for path in ("/healthz", "/readyz", "/login", "/static/runq.js", "/static/runq.css"):
            assert http.get(path).status_code == 200, path
        assert http.get(f"/api/flow-runs/{run.id}", headers=BEARER).json()["parameters"] == {
            "secret": "s3cr3t"
        }
        refused(
            http.get(
                "/api/work-queues", headers={"Authorization": "Bearer wrong-token-0123456789"}
            ),
            401,
            "Wrong",
        )
        assert login(http).status_code == 303  # a session reads as the bearer does
        assert http.get(f"/api/flow-runs/{run.id}/logs").json()[0]["message"] == "a log line"
        assert "s3cr3t" in http.get(f"/flow-runs/{run.id}").text


def test_off_loopback_only_an_ip_or_the_public_url_is_a_host(
    ui_servers: UIServers, tmp_path: Path
) -> None:
    _, url = exposed(ui_servers, tmp_path, "--public-url", "https://runq.example.com")
    port = url.rsplit(":", 1)[1]
    with httpx.Client(base_url=url, timeout=30) as http:
        # a DNS-rebinding page sends its own name as Host: refused before anything else
        for host in ("evil.example", f"evil.example:{port}", "runq.example.com.evil.example", ""):
            refused(
                http.get("/api/work-queues", headers={**BEARER, "Host": host}), 421, "--public-url"
            )
        for host in (
            f"127.0.0.1:{port}",
            f"10.1.2.3:{port}",
            f"[::1]:{port}",
            f"localhost:{port}",
            "runq.example.com",
        ):
            assert (
                http.get("/api/work-queues", headers={**BEARER, "Host": host}).status_code == 200
            ), host
        assert (
            http.get("/healthz", headers={"Host": "10.0.0.7:4200"}).status_code == 200
        )  # a kubelet probe


def test_public_read_opens_reads_only(
    ui_servers: UIServers, tmp_path: Path, broker: Broker
) -> None:
    broker.create_work_queue("q")
    _, url = exposed(ui_servers, tmp_path, "--public-read")
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/api/work-queues").json()[0]["name"] == "q"
        assert http.get("/work-queues").status_code == 200
        refused(http.post("/api/work-queues/q/pause"), 401, "token")
        refused(http.get("/api/work-queues", headers={"Host": "evil.example"}), 421, "")
    assert not broker.read_work_queue("q").is_paused
    result = ui_servers.run("--public-read")  # nothing to open without a token
    assert (
        result.returncode == 1
        and "--public-read" in result.stderr
        and "Traceback" not in result.stderr
    )


# ---- failed logins ----------------------------------------------------------------------


def test_failed_logins_are_throttled_per_client_and_logged(
    ui_servers: UIServers, broker: Broker
) -> None:
    broker.create_work_queue("q")
    ui = ui_servers.start(env={"RUNQ_UI_TOKEN": TOKEN})
    with httpx.Client(base_url=ui.url, timeout=30) as http:
        for attempt in range(5):
            guess = login(http, f"guess-number-{attempt}-0123456789")
            assert guess.status_code == 401 and "Wrong token." in guess.text
        # the client is locked out: even the right token is refused, by form or header
        locked = login(http)
        assert locked.status_code == 429 and "Too many failed logins" in locked.text
        assert 0 < int(locked.headers["retry-after"]) <= 300
        refused(
            http.post("/api/work-queues/q/pause", headers=BEARER), 429, "Too many failed logins"
        )
        # another client (behind the trusted local proxy: X-Forwarded-For) is not
        other = {"X-Forwarded-For": "203.0.113.9"}
        assert login(http, **other).status_code == 303
        assert http.post("/api/work-queues/q/pause", headers={**BEARER, **other}).status_code == 200
        refused(
            http.get("/api/work-queues", headers={"Authorization": "Bearer no", **other}),
            401,
            "Wrong",
        )
    wait_for(
        lambda: ui.output().count("failed login from 127.0.0.1") == 5, what="each failure logged"
    )
    wait_for(lambda: "failed login from 203.0.113.9" in ui.output(), what="a bearer guess logged")
    assert "refused for" in ui.output() and TOKEN not in ui.output()


# ---- sessions ---------------------------------------------------------------------------


def test_logout_ends_the_session_on_the_server(ui_servers: UIServers, broker: Broker) -> None:
    broker.create_work_queue("q")
    ui = ui_servers.start(env={"RUNQ_UI_TOKEN": TOKEN})
    with httpx.Client(base_url=ui.url, timeout=30) as http:
        assert login(http).status_code == 303
        cookie = http.cookies["runq_session"]
        csrf = csrf_of(http)
        assert (
            http.post("/api/work-queues/q/pause", headers={"X-CSRF-Token": csrf}).status_code == 200
        )
        assert len(session_keys(broker)) == 1
        assert http.post("/logout", headers={"Origin": ui.url}).status_code == 303
    assert session_keys(broker) == []
    # the cookie copied before logging out opens nothing any more
    with httpx.Client(base_url=ui.url, timeout=30, cookies={"runq_session": cookie}) as thief:
        refused(
            thief.post("/api/work-queues/q/resume", headers={"X-CSRF-Token": csrf}), 401, "token"
        )
        assert 'id="login"' in thief.get("/work-queues").text
    assert broker.read_work_queue("q").is_paused


def test_sessions_end_after_their_age(ui_servers: UIServers, broker: Broker) -> None:
    broker.create_work_queue("q")
    ui = ui_servers.start("--session-max-age", "1s", env={"RUNQ_UI_TOKEN": TOKEN})
    with httpx.Client(base_url=ui.url, timeout=30) as http:
        response = login(http)
        assert response.status_code == 303 and "Max-Age=1" in response.headers["set-cookie"]
        csrf = csrf_of(http)
        # Redis ends the session by its own clock; the cookie opens nothing after that
        wait_for(lambda: session_keys(broker) == [], 60, "the session to end")
        refused(http.post("/api/work-queues/q/pause", headers={"X-CSRF-Token": csrf}), 401, "token")
    assert not broker.read_work_queue("q").is_paused
    result = ui_servers.run("--session-max-age", "soon")
    assert result.returncode == 2 and "not a duration" in result.stderr


@pytest.mark.parametrize(
    ("public_url", "secure"),
    [("https://runq.example.com", True), ("http://runq.example.com", False)],
)
def test_an_https_public_url_makes_the_cookie_secure(
    ui_servers: UIServers, public_url: str, secure: bool
) -> None:
    ui = ui_servers.start("--public-url", public_url, env={"RUNQ_UI_TOKEN": TOKEN})
    with httpx.Client(base_url=ui.url, timeout=30) as http:
        # through the proxy: the public Host and Origin, plain http on this side
        response = login(http, Host="runq.example.com", Origin=public_url)
        assert response.status_code == 303, response.text
        cookie = response.headers["set-cookie"]
        assert ("; secure" in cookie.lower()) is secure, cookie
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
