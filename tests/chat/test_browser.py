"""The web chat in a real headless Chromium: upload an image, send two turns, see thumbnails, the explanation and
the history; a reload resumes the thread. A caption-only gallery's conversation started from a gallery item shows
caption cards and no broken image; with an access token, the page asks for it first.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: apt-get install -y chromium chromium-driver) and
selenium. Selenium is given the driver's path, so Selenium Manager never runs (and never downloads anything).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cirgraph.chat.api import create_app
from cirgraph.chat.store import ChatStore
from cirgraph.chat.threads import Conversations

from .conftest import CaptionWorld, World, serve

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
    """The web chat over the toy gallery with rerank on (verdicts to show)."""
    world = World(tmp_path, preset="rerank")
    store = ChatStore(tmp_path / "checkpoints.sqlite")
    for url in serve(create_app(Conversations(store, world.retriever))):
        yield url, world
    store.close()
    world.retriever.close()


@pytest.fixture
def caption_server(tmp_path: Path) -> Iterator[tuple[str, CaptionWorld]]:
    """The web chat over the toy items as a caption-only gallery (no image files), behind an access token."""
    world = CaptionWorld(tmp_path)
    store = ChatStore(tmp_path / "checkpoints.sqlite")
    for url in serve(create_app(Conversations(store, world.retriever), token=TOKEN)):
        yield url, world
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
        script = f"try {{ return !!({condition}) }} catch (e) {{ return false }}"  # pages come and go meanwhile
        WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))
    except Exception:
        shown = driver.execute_script("const e = document.getElementById('error'); return e && e.textContent")
        pytest.fail(f"timed out waiting for {condition!r}; error shown on the page: {shown!r}")


TOKEN = "browser-test-token"
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


NO_BROKEN_IMAGE = ("[...document.querySelectorAll('img')].filter(i => !i.hidden && i.offsetParent !== null)"
                   ".every(i => i.getAttribute('src') && i.complete && i.naturalWidth > 0)")


def log_in(driver: object, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "token")
    box.clear()
    box.send_keys(token)
    driver.find_element(By.ID, "login-button").click()


def test_login_then_a_caption_gallery_conversation_from_a_gallery_item(caption_server, browser: object) -> None:
    from selenium.webdriver.common.by import By

    url, world = caption_server
    browser.get(url + "/")  # no cookie yet: the page asks for the token
    wait(browser, "location.pathname === '/login' && !!document.getElementById('token')")
    log_in(browser, url, "not-the-token")
    wait(browser, "location.pathname === '/login' && !document.getElementById('error').hidden")
    assert "Wrong token" in browser.find_element(By.ID, "error").text
    log_in(browser, url, TOKEN)
    wait(browser, "location.pathname === '/' && document.body.dataset.ready === '1'")
    assert browser.get_cookie("cirgraph_token")["httpOnly"] is True
    assert browser.execute_script("return document.cookie") == ""  # not readable by scripts

    # an empty thread offers a random sample of the gallery: caption cards, no chip until one is chosen
    wait(browser, "document.querySelectorAll('#items .item').length === 8")
    assert browser.find_element(By.ID, "pick-chip").is_displayed() is False
    assert browser.execute_script("return document.querySelectorAll('#items img').length") == 0
    browser.find_element(By.ID, "item-query").send_keys("blue dress")
    browser.find_element(By.ID, "item-find").click()
    wait(browser, "document.querySelectorAll('#items .item').length === 1")
    card = browser.find_element(By.CSS_SELECTOR, "#items .item")
    assert card.get_attribute("data-id") == "blue-dress" and "a blue dress on a hanger" in card.text
    card.click()
    assert browser.find_element(By.ID, "pick-chip").is_displayed()
    assert "blue-dress" in browser.find_element(By.ID, "pick-label").text

    send(browser, "make it red")
    wait(browser, "document.querySelectorAll('#history li').length === 1")
    wait(browser, "document.querySelectorAll('#results .hit').length > 0")
    assert browser.find_element(By.ID, "description").text == "a red dress on a hanger"
    assert browser.find_element(By.ID, "reference-caption").text == "a blue dress on a hanger"
    first = browser.find_elements(By.CSS_SELECTOR, "#results .hit")
    assert first[0].get_attribute("data-id") == "red-dress"
    assert "a red dress on a hanger" in first[0].find_element(By.CSS_SELECTOR, ".caption-card").text
    assert browser.find_element(By.ID, "pick-chip").is_displayed() is False  # the chip went with the turn

    send(browser, "with long sleeves")
    wait(browser, "document.querySelectorAll('#history li').length === 2")
    assert browser.find_element(By.ID, "description").text == "a red dress on a hanger with long sleeves"
    assert browser.execute_script(f"return {NO_BROKEN_IMAGE}")
    assert browser.execute_script("return document.querySelectorAll('#results .caption-card').length") >= 3
    # no script error, failed request (a broken image is one) or content-security-policy violation on the way,
    # but the wrong token's 401
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert [m for m in severe if not m.startswith(f"{url}/login - ")] == []
    assert len(severe) == 1 and "status of 401" in severe[0]


def test_api_docs_render_from_the_apps_own_assets(server: tuple[str, World], browser: object) -> None:
    """/docs draws every route with scripts served by the app (a headless browser here has no network)."""
    url, _ = server
    browser.get(url + "/docs")
    wait(browser, "document.querySelectorAll('.opblock').length >= 10")
    assert "/api/threads/{thread_id}/turns" in browser.find_element("css selector", ".swagger-ui").text
    sources = browser.execute_script("return [...document.scripts].map(s => s.src).filter(Boolean)")
    assert sources and all(s.startswith(url + "/") for s in sources)
    assert [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
