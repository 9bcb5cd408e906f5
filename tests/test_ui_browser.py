"""The UI in a real headless Chromium (Debian's chromium + chromedriver, via selenium),
against a real ``runq ui`` process, real agents and the real CLI.

Each test waits on what the page shows (WebDriverWait on conditions), never on time. A
page that updates "without a reload" is checked by a marker set in its window before
the change: a reload would lose it. The screenshots of the main pages go to a temporary
folder, or to the folder ``RUNQ_SCREENSHOTS_DIR`` names: ``make screenshots`` points it at
docs/screenshots/ (the README shows the Work Queues page), so running the tests never
rewrites a file of the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import Agents, deploy, wait_for
from tests.ui_helpers import TOKEN, UIServer, UIServers

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# Fixtures of this module: one Redis for these slow tests, a flows folder, agent processes.
redis_server = agent_helpers.redis_server
workdir = agent_helpers.workdir
agents = agent_helpers.agents

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOTS_ENV = "RUNQ_SCREENSHOTS_DIR"  # set by `make screenshots` to docs/screenshots
EVIL = "<img src=x onerror=alert(1)>"
GATED = """
import os, sys, time


def gated(gate: str, say: str = "working") -> str:
    print(say, flush=True)
    while not os.path.exists(gate):
        time.sleep(0.02)
    print("gate opened", flush=True)
    return say
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        pytest.skip(
            f"the browser tests need Debian's chromium and chromium-driver: {', '.join(missing)} missing"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="runq-chromium-")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: RUNQ_SCREENSHOTS_DIR, else a temporary folder."""
    chosen = os.environ.get(SCREENSHOTS_ENV)
    return Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def ui(redis_url: str, tmp_path: Path) -> Iterator[UIServer]:
    servers = UIServers(redis_url, tmp_path)
    yield servers.start()
    servers.stop_all()


@pytest.fixture
def gated_flows(workdir: Path) -> Path:
    (workdir / "gated.py").write_text(GATED)
    return workdir


def until(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = 120) -> Any:
    """Wait for what the page shows; stale elements (a fragment just replaced) retry."""
    return WebDriverWait(
        driver, timeout, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition, message=f"the page never showed {what}")


def text_of(driver: Any, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return " ".join(element.text for element in found)


def open_marked(driver: Any, url: str) -> None:
    """Open ``url`` and mark its window: the mark survives live updates, not a reload."""
    driver.get(url)
    until(
        driver, lambda d: d.execute_script("return document.readyState") == "complete", "the page"
    )
    driver.execute_script("window.__runq_mark = 'no reload';")


def not_reloaded(driver: Any) -> bool:
    return bool(driver.execute_script("return window.__runq_mark === 'no reload'"))


def runq_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "runq", *args, "--api", redis_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


def screenshot(driver: Any, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / name))


def no_alert(driver: Any) -> bool:
    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


# ---- the tests ------------------------------------------------------------------------


def test_create_a_queue_through_its_form_then_pause_it(
    browser: Any, ui: UIServer, broker: Broker
) -> None:
    open_marked(browser, ui.url + "/work-queues")
    browser.find_element(By.CSS_SELECTOR, "#create-queue summary").click()
    form = browser.find_element(By.ID, "create-queue-form")
    form.find_element(By.NAME, "name").send_keys("made-in-the-browser")
    form.find_element(By.NAME, "concurrency_limit").send_keys("4")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    row = '#queues tr[data-queue="made-in-the-browser"]'
    until(browser, lambda d: "0/4" in text_of(d, row), "the new queue with its limit 0/4")
    assert broker.read_work_queue("made-in-the-browser").concurrency_limit == 4
    browser.find_element(By.CSS_SELECTOR, f"{row} button.pause").click()
    until(browser, lambda d: "Paused" in text_of(d, f"{row} .status"), "Paused")
    assert broker.read_work_queue("made-in-the-browser").is_paused and not_reloaded(browser)


def test_with_a_token_actions_appear_after_logging_in(
    browser: Any, broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    broker.create_work_queue("guarded")
    servers = UIServers(redis_url, tmp_path)
    try:
        ui = servers.start(env={"RUNQ_UI_TOKEN": TOKEN})
        browser.get(ui.url + "/work-queues")
        assert browser.find_elements(By.CSS_SELECTOR, "form[data-action]") == []
        browser.find_element(By.ID, "login").click()
        browser.find_element(By.NAME, "token").send_keys("not-the-token")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        until(browser, lambda d: "Wrong token." in text_of(d, ".error-message"), "the refusal")
        browser.find_element(By.NAME, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        row = '#queues tr[data-queue="guarded"]'
        until(
            browser,
            lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} button.pause"),
            "the actions",
        )
        browser.find_element(By.CSS_SELECTOR, f"{row} button.pause").click()
        until(browser, lambda d: "Paused" in text_of(d, f"{row} .status"), "Paused")
        assert broker.read_work_queue("guarded").is_paused
    finally:
        browser.delete_all_cookies()
        servers.stop_all()


def test_a_dropped_event_stream_reconnects_by_itself(
    browser: Any, broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    broker.create_work_queue("steady")
    servers = UIServers(redis_url, tmp_path)
    try:
        first = servers.start()
        port = first.url.rsplit(":", 1)[1]
        open_marked(browser, first.url + "/work-queues")
        live = lambda d: "live-on" in d.find_element(By.ID, "live-status").get_attribute("class")  # noqa: E731
        until(browser, live, "the stream connected")
        first.stop()  # the stream drops with the server
        until(browser, lambda d: not live(d), "the stream lost")
        servers.start("--port", port)  # same address: EventSource retries it
        until(browser, live, "the stream back")
        broker.pause_work_queue("steady")
        until(
            browser,
            lambda d: "Paused" in text_of(d, '#queues tr[data-queue="steady"] .status'),
            "Paused",
        )
        assert not_reloaded(browser)
    finally:
        servers.stop_all()


def test_a_refused_delete_is_shown_as_a_message(browser: Any, ui: UIServer, broker: Broker) -> None:
    broker.create_deployment(name="etl", entrypoint="flows.py:etl", work_queue_name="used")
    open_marked(browser, ui.url + "/work-queues")
    browser.find_element(By.CSS_SELECTOR, '#queues tr[data-queue="used"] button.danger').click()
    until(browser, lambda d: not no_alert(d), "the confirmation")
    browser.switch_to.alert.accept()
    until(browser, lambda d: "deployment(s) 'etl'" in text_of(d, "#flash.error"), "the refusal")
    assert broker.read_work_queue("used").name == "used"


def test_a_cli_started_run_goes_scheduled_running_completed_live(
    browser: Any, ui: UIServer, broker: Broker, agents: Agents, gated_flows: Path, redis_url: str
) -> None:
    gate = gated_flows / "gate"
    broker.create_deployment(
        name="gated",
        entrypoint="gated.py:gated",
        work_queue_name="live",
        parameters={"gate": str(gate)},
    )
    broker.pause_work_queue("live")  # so the page can see it Scheduled first
    agents.start("live")
    open_marked(browser, ui.url + "/flow-runs?queue=live")
    runq_cli(redis_url, "deployment", "run", "gated")
    [run] = broker.list_flow_runs("live")
    row = f'#runs tr[data-run="{run.id}"] .state'
    until(browser, lambda d: text_of(d, row) == "Scheduled", "the run Scheduled")
    runq_cli(redis_url, "work-queue", "resume", "live")
    until(browser, lambda d: text_of(d, row) == "Running", "the run Running")
    gate.touch()
    until(browser, lambda d: text_of(d, row) == "Completed", "the run Completed")
    assert not_reloaded(browser)


def test_cancel_a_running_run_from_its_page(
    browser: Any, ui: UIServer, broker: Broker, agents: Agents, gated_flows: Path, screenshots: Path
) -> None:
    deploy_gated(broker, gated_flows, "cancel-me")
    run = broker.create_flow_run(deployment="gated", parameters={"say": "<b>not bold</b>"})
    agents.start("cancel-me")
    wait_for(lambda: broker.read_flow_run(run.id).state.type is StateType.RUNNING, 120, "RUNNING")
    open_marked(browser, f"{ui.url}/flow-runs/{run.id}")
    until(
        browser,
        lambda d: "<b>not bold</b>" in d.find_element(By.ID, "logs").text,
        "the streamed log line",
    )
    screenshot(browser, screenshots, "flow-run.png")
    browser.find_element(By.ID, "cancel").click()
    until(browser, lambda d: text_of(d, "#run-state") == "Cancelled", "Cancelled")
    assert broker.read_flow_run(run.id).state.type is StateType.CANCELLED and not_reloaded(browser)


def deploy_gated(broker: Broker, workdir: Path, queue: str) -> None:
    broker.create_deployment(
        name="gated",
        entrypoint="gated.py:gated",
        work_queue_name=queue,
        parameters={"gate": str(workdir / "gate-never")},
    )


def test_the_run_page_says_why_a_run_waits(
    browser: Any, ui: UIServer, broker: Broker, redis_url: str, screenshots: Path
) -> None:
    broker.create_work_queue("full", concurrency_limit=1)
    holder = broker.create_flow_run("full", name="slot-holder")
    broker.claim("full", "agent-x")
    waiting = broker.create_flow_run("full", name="patient-run")
    open_marked(browser, f"{ui.url}/flow-runs/{waiting.id}")
    reasons = "#waiting .reason"
    until(browser, lambda d: "at its limit 1/1" in text_of(d, reasons), "the limit reason")
    assert "slot-holder (Pending)" in text_of(browser, reasons)
    runq_cli(redis_url, "work-queue", "pause", "full")
    until(browser, lambda d: "'full' is paused" in text_of(d, reasons), "the paused reason")
    screenshot(browser, screenshots, "flow-run-waiting.png")
    broker.cancel_flow_run(holder.id)
    until(browser, lambda d: "at its limit" not in text_of(d, reasons), "the limit reason gone")
    assert not_reloaded(browser)


def test_names_are_shown_as_text_never_run(browser: Any, ui: UIServer, broker: Broker) -> None:
    broker.create_work_queue(EVIL)
    run = broker.create_flow_run(EVIL, name=EVIL, parameters={EVIL: EVIL})
    broker.create_deployment(name=EVIL, entrypoint="flows.py:f", work_queue_name=EVIL)
    pages = [
        ("/work-queues", "#queues td a"),
        (f"/work-queues/{broker.read_work_queue(EVIL).id}", "h1"),
        ("/flow-runs", "#runs td a"),
        (f"/flow-runs/{run.id}", "h1"),
        ("/deployments", "#deployments td"),
    ]
    for path, css in pages:
        browser.get(ui.url + path)
        until(browser, lambda d: EVIL in text_of(d, css), f"the name as text on {path}")
        assert browser.find_elements(By.CSS_SELECTOR, "main img") == [] and no_alert(browser), path


def test_screenshots_of_the_main_pages(
    browser: Any, ui: UIServer, broker: Broker, agents: Agents, gated_flows: Path, screenshots: Path
) -> None:
    broker.create_work_queue("high", concurrency_limit=4, description="interactive work")
    broker.create_work_queue("low", concurrency_limit=1)
    broker.create_work_queue("nightly")
    broker.pause_work_queue("nightly")
    broker.create_deployment(
        name="hello",
        entrypoint="flows.py:hello",
        work_queue_name="high",
        schedule={"cron": "0 6 * * *"},
    )
    deploy(broker, "report", "hello", "low", parameters={"name": "report"})
    done = [broker.create_flow_run(deployment="report") for _ in range(3)]
    agents.start("high", "low")
    wait_for(
        lambda: all(broker.read_flow_run(r.id).state.is_terminal for r in done),
        120,
        "the runs to end",
    )
    broker.create_flow_run("low", start_in_seconds=900, name="later-today")
    shots = [
        ("/work-queues", "work-queues.png", "#queues"),
        (f"/work-queues/{broker.read_work_queue('low').id}", "work-queue.png", "#recent"),
        ("/flow-runs", "flow-runs.png", "#runs"),
        ("/deployments", "deployments.png", "#deployments"),
        ("/agents", "agents.png", "#agents"),
    ]
    for path, name, css in shots:
        browser.get(ui.url + path)
        until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, css), css)
        until(
            browser,
            lambda d: "live-on" in d.find_element(By.ID, "live-status").get_attribute("class"),
            "live",
        )
        screenshot(browser, screenshots, name)
    assert {path.name for path in screenshots.glob("*.png")} >= {name for _, name, _ in shots}
