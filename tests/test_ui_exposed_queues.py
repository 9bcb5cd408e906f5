"""The Work Queues page with 2,000 queues, against a real ``runq ui`` process: it shows
one page of them, and a live change re-fetches only the row of the queue that changed
(a headless Chromium watches what the page's script fetches)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from runq.broker import Broker
from tests.test_ui_browser import browser, not_reloaded, open_marked, text_of, until  # noqa: F401
from tests.ui_helpers import UIServer, UIServers, ui_servers  # noqa: F401

pytestmark = pytest.mark.slow
QUEUES = [f"q-{n:04d}" for n in range(2000)]
ROW = re.compile(r'<tr data-queue="([^"]+)"')
#: Records every fetch of the page's script and how many queue rows its answer held.
RECORD_FETCHES = """
window.__fetched = [];
var original = window.fetch;
window.fetch = function (url, options) {
  return original(url, options).then(function (response) {
    response.clone().text().then(function (text) {
      window.__fetched.push([String(url), (text.match(/<tr data-queue=/g) || []).length]);
    });
    return response;
  });
};
"""


@pytest.fixture
def many(broker: Broker) -> Broker:
    for name in QUEUES:
        broker.create_work_queue(name)
    return broker


@pytest.fixture
def ui(ui_servers: UIServers, many: Broker) -> UIServer:
    return ui_servers.start()


def rows(html: str) -> list[str]:
    return ROW.findall(html)


def test_the_page_shows_one_page_of_2000_queues(ui: UIServer) -> None:
    with httpx.Client(base_url=ui.url, timeout=60) as http:
        first = http.get("/work-queues").text
        assert rows(first) == QUEUES[:50] and "Queues 1–50 of 2000" in first
        assert 'href="?prefix=&amp;page=2" rel="next"' in first
        assert rows(http.get("/work-queues", params={"page": 40}).text) == QUEUES[1950:]
        assert (
            rows(http.get("/work-queues", params={"page": 999}).text) == QUEUES[1950:]
        )  # the last
        assert rows(http.get("/work-queues", params={"page": "x"}).text) == QUEUES[:50]
        filtered = http.get("/work-queues", params={"prefix": "q-19", "page": 2}).text
        assert rows(filtered) == QUEUES[1950:] and "of 100" in filtered
        # what the live refresh fetches: only the rows asked for (a deleted one is left out)
        fragment = {"fragment": "queue_rows", "queue": ["q-0007", "gone", "q-1500"]}
        assert rows(http.get("/work-queues", params=fragment).text) == ["q-0007", "q-1500"]
        # the JSON API still lists them all, as `work-queue ls -o json` does
        assert len(http.get("/api/work-queues").json()) == 2000


def test_a_change_fetches_only_the_row_that_changed(
    browser: Any, ui: UIServer, many: Broker
) -> None:
    from selenium.webdriver.common.by import By

    open_marked(browser, ui.url + "/work-queues")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#queues tr[data-queue]")) == 50
    browser.execute_script(RECORD_FETCHES)
    live = lambda d: "live-on" in d.find_element(By.ID, "live-status").get_attribute("class")  # noqa: E731
    until(browser, live, "the stream connected")
    many.pause_work_queue("q-1999")  # on another page: nothing to fetch
    many.pause_work_queue("q-0003")  # on this one: its row only
    row = '#queues tr[data-queue="q-0003"] .status'
    until(browser, lambda d: "Paused" in text_of(d, row), "the row Paused")
    fetched = browser.execute_script("return window.__fetched")
    assert any("fragment=queue_rows" in url and "queue=q-0003" in url for url, _ in fetched), (
        fetched
    )
    assert not any("q-1999" in url for url, _ in fetched), fetched
    assert all(count <= 50 for _, count in fetched), fetched  # never the whole table
    assert [count for url, count in fetched if "queue=q-0003" in url] == [1]
    assert not_reloaded(browser)
    browser.find_element(By.CSS_SELECTOR, "#queues-pager a[rel=next]").click()
    until(browser, lambda d: "q-0050" in text_of(d, "#queues tr[data-queue] td a"), "page 2")
