"""The web chat in a real headless Chromium: upload an image, send two turns, see thumbnails, the explanation and
the history; a reload resumes the thread.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: apt-get install -y chromium chromium-driver) and
selenium. Selenium is given the driver's path, so Selenium Manager never runs (and never downloads anything).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cirgraph.chat.api import create_app
from cirgraph.chat.store import ChatStore
from cirgraph.chat.threads import Conversations

from .conftest import World

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
                       reason="needs /usr/bin/chromium and /usr/bin/chromedriver "
                              "(apt-get install -y chromium chromium-driver)"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, World]]:
    """The web chat on 127.0.0.1 (a free port), over the toy gallery with rerank on (verdicts to show)."""
    import uvicorn

    world = World(tmp_path, preset="rerank")
    store = ChatStore(tmp_path / "checkpoints.sqlite")
    app = create_app(Conversations(store, world.retriever))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", world
    srv.should_exit = True
    thread.join(10)
    store.close()
    world.retriever.close()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(driver: object, condition: str, timeout: float = 30) -> None:
    """Wait until the JavaScript expression `condition` is truthy; on timeout, fail with the page's error text."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(f"return !!({condition})"))
    except Exception:
        shown = driver.execute_script("return document.getElementById('error').textContent")
        pytest.fail(f"timed out waiting for {condition!r}; error shown on the page: {shown!r}")


THUMBS_LOADED = ("document.querySelectorAll('#results img.thumb').length > 0 && [...document.querySelectorAll("
                 "'#results img.thumb')].every(i => i.complete && i.naturalWidth > 0)")


def send(driver: object, text: str, image: Path | None = None) -> None:
    from selenium.webdriver.common.by import By

    if image is not None:
        driver.find_element(By.ID, "file").send_keys(str(image))
    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "send").click()


def test_upload_two_turns_thumbnails_and_history(server: tuple[str, World], browser: object) -> None:
    from selenium.webdriver.common.by import By

    url, world = server
    browser.get(url + "/")
    wait(browser, "document.body.dataset.ready === '1'")
    send(browser, "make it red", world.image("blue-dress"))
    wait(browser, "document.querySelectorAll('#history li').length === 1")
    wait(browser, THUMBS_LOADED)
    assert browser.find_element(By.ID, "description").text == "a red dress on a hanger"
    first = [e.get_attribute("data-id") for e in browser.find_elements(By.CSS_SELECTOR, "#results .hit")]
    assert first[0] == "red-dress"
    assert browser.execute_script("return document.querySelectorAll('#progress li').length") >= 3

    send(browser, "with long sleeves")
    wait(browser, "document.querySelectorAll('#history li').length === 2")
    wait(browser, THUMBS_LOADED)
    assert browser.find_element(By.ID, "description").text == "a red dress on a hanger with long sleeves"
    assert "refining: a red dress on a hanger" in browser.find_element(By.ID, "caption").text
    assert browser.execute_script("return document.getElementById('reference-img').naturalWidth") > 0
    # the explanation: propositions and verdicts of the verified candidates
    browser.find_element(By.CSS_SELECTOR, "#why summary").click()
    assert "must show: the dress is red" in browser.find_element(By.ID, "propositions").text
    assert "red-dress: " in browser.find_element(By.ID, "verdicts").text

    # a reload resumes the thread from the server
    thread_id = browser.find_element(By.ID, "thread-id").text
    browser.refresh()
    wait(browser, "document.body.dataset.ready === '1' && document.querySelectorAll('#history li').length === 2")
    assert browser.find_element(By.ID, "thread-id").text == thread_id
    wait(browser, THUMBS_LOADED)
    # no script error, failed request or content-security-policy violation on the way
    assert [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_pick_by_clicking_and_errors_are_shown(server: tuple[str, World], browser: object) -> None:
    from selenium.webdriver.common.by import By

    url, world = server
    browser.get(url + "/")
    wait(browser, "document.body.dataset.ready === '1'")
    send(browser, "make it red")  # no reference yet: the server's message is shown
    wait(browser, "!document.getElementById('error').hidden")
    assert "needs a reference image" in browser.find_element(By.ID, "error").text
    send(browser, "make it red", world.image("blue-dress"))
    wait(browser, THUMBS_LOADED + " && document.querySelectorAll('#history li').length === 1")
    second = browser.find_elements(By.CSS_SELECTOR, "#results .hit")[1]
    picked = second.get_attribute("data-id")
    second.click()
    assert not browser.find_element(By.ID, "pick-chip").get_attribute("hidden")
    send(browser, "make it black")
    wait(browser, "document.querySelectorAll('#history li').length === 2")
    wait(browser, THUMBS_LOADED)
    assert browser.execute_script("return document.getElementById('reference-img').src").endswith(f"/{picked}")
    browser.find_element(By.ID, "undo").click()
    wait(browser, "document.querySelectorAll('#history li').length === 1")
    assert os.path.basename(browser.current_url).startswith("#thread=")
