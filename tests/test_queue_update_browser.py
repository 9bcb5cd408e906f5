"""The queue page's description form, in a real headless Chromium against a real
``runq ui``: the new text is saved and shown, as text, without a reload."""

from __future__ import annotations

from typing import Any

import pytest

from runq.broker import Broker
from tests import agent_helpers
from tests.test_ui_browser import browser, not_reloaded, open_marked, ui, until  # noqa: F401
from tests.ui_helpers import UIServer

selenium_by = pytest.importorskip("selenium.webdriver.common.by")
By = selenium_by.By

redis_server = agent_helpers.redis_server  # the browser tests' one Redis
pytestmark = pytest.mark.slow


def test_the_description_form_saves_and_shows_it(
    browser: Any, ui: UIServer, broker: Broker
) -> None:  # noqa: F811
    queue = broker.create_work_queue("q", description="old")
    open_marked(browser, f"{ui.url}/work-queues/{queue.id}")
    box = browser.find_element(By.CSS_SELECTOR, "#set-description input[name=description]")
    assert box.get_attribute("value") == "old"
    box.clear()
    box.send_keys("<i>nightly</i> loads")
    browser.find_element(By.CSS_SELECTOR, "#set-description button[type=submit]").click()
    until(
        browser,
        lambda d: "<i>nightly</i> loads" in d.find_element(By.CSS_SELECTOR, "dl.facts").text,
        "the new description",
    )
    assert broker.read_work_queue("q").description == "<i>nightly</i> loads"
    assert browser.find_elements(By.CSS_SELECTOR, "dl.facts i") == []  # shown as text
    assert not_reloaded(browser)
