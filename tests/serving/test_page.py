"""The page at ``/`` in a real headless browser (Debian's chromium driven by selenium), against
real ``rankpref serve`` processes: a PULSE artifact (search by text, nearest items, a user's
history, recommendations with their rationales) and a SESA artifact (search with concept
contributions; recommending is switched off with the reason).

Without chromium and chromedriver these tests skip, unless ``RANKPREF_REQUIRE_BROWSER=1`` (set
by ``.ci/run``, which installs them), where a missing browser fails. With
``RANKPREF_SCREENSHOT_DIR`` set, the screenshots are also written there (``make screenshot``
makes the README's picture this way).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
from live_server import start_server, stop_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
USER = "SYN0000007"


def _browser_or_skip():
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER))
               if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        reason = (f"the browser test needs {', '.join(missing)} (apt-get install chromium "
                  "chromium-driver; .ci/run installs them)")
        if os.environ.get("RANKPREF_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def serve():
    procs = []

    def start(artifact: Path) -> str:
        proc, url = start_server(artifact)
        procs.append(proc)
        return url

    yield start
    for proc in procs:
        stop_server(proc)


@pytest.fixture(scope="module")
def pulse_artifact(tmp_path_factory) -> Path:
    from rankpref.tasks import next_item

    out = tmp_path_factory.mktemp("page_pulse")
    cfg = next_item.load_config(None, [
        "data.name=demo", "model.name=pulse", "pulse.rationales=template", "model.hidden=32",
        "data.max_len=20", "train.epochs=2", "train.progress=false", "train.resume=false",
        "train.batch_size=256", "train.threads=1", f"output_dir={out / 'run'}"])
    # the default data.cache_dir: its text embeddings are shared with the PULSE tests
    return next_item.fit(cfg).artifact


@pytest.fixture(scope="module")
def sesa_artifact(tmp_path_factory) -> Path:
    from rankpref.tasks import sesa

    out = tmp_path_factory.mktemp("page_sesa")
    cfg = sesa.load_config(None, ["data.name=onet-slice", "data.task=titles", "model.hidden=64",
                                  "train.epochs=2", "train.batch_size=64", "train.threads=1",
                                  "model.concept_weights=true", f"output_dir={out / 'run'}"])
    sesa.fit(cfg)
    return out / "run" / "model"


def _wait(driver, condition, what: str, timeout: float = 60):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(lambda d: condition(d))
    except TimeoutException:
        notes = [n.text for n in driver.find_elements("css selector", ".note, .error")]
        raise AssertionError(f"timed out waiting for {what}; the page says {notes}") from None


def _results(driver, list_id: str):
    return driver.find_elements("css selector", f"#{list_id} li.result")


def _open(driver, url: str) -> None:
    driver.get_log("browser")  # what earlier pages logged is not this page's
    driver.get(url + "/")
    _wait(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1",
          "the page to read /health")


def _screenshot(driver, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000, "a blank screenshot"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    extra = os.environ.get("RANKPREF_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(extra) / name)
    return shot


def _no_script_errors(driver) -> None:
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_pulse_page_search_similar_user_and_why(browser, serve, pulse_artifact, tmp_path):
    url = serve(pulse_artifact)
    driver = browser
    _open(driver, url)
    assert "pulse" in driver.find_element("id", "model").text

    # search by text: the page shows what /search answers, in its order
    driver.find_element("id", "query").send_keys("vanilla lip balm")
    driver.find_element("id", "search-btn").click()
    _wait(driver, lambda d: len(_results(d, "search-results")) == 10, "search results")
    api = httpx.post(f"{url}/search", json={"query": "vanilla lip balm", "k": 10}).json()
    shown = [li.get_attribute("data-item") for li in _results(driver, "search-results")]
    assert shown == [r["item_id"] for r in api["results"]]

    # click a result: its nearest items, itself left out
    first = _results(driver, "search-results")[0]
    picked, picked_title = first.get_attribute("data-item"), first.find_element(
        "css selector", ".title").text
    first.find_element("css selector", ".title").click()
    _wait(driver, lambda d: len(_results(d, "similar-results")) == 10, "nearest items")
    assert picked_title in driver.find_element("id", "similar-title").text
    near = [li.get_attribute("data-item") for li in _results(driver, "similar-results")]
    assert picked not in near
    api = httpx.get(f"{url}/items/{picked}/similar", params={"k": 10}).json()
    assert near == [r["item_id"] for r in api["results"]]

    # a known user's history fills the basket; recommendations come with rationales
    driver.find_element("id", "user-id").send_keys(USER)
    driver.find_element("id", "user-btn").click()
    _wait(driver, lambda d: len(_results(d, "recommend-results")) == 10, "recommendations")
    basket = [c.get_attribute("data-item") for c in driver.find_elements("css selector", "#basket .chip")]
    history = [h["item_id"] for h in httpx.get(f"{url}/users/{USER}").json()["history"]]
    assert basket == history and len(basket) >= 3
    api = httpx.post(f"{url}/recommend", json={"history": basket, "k": 10}).json()
    recs = _results(driver, "recommend-results")
    assert [li.get_attribute("data-item") for li in recs] == [r["item_id"] for r in api["results"]]
    why = recs[0].find_elements("css selector", ".why .rationale")
    assert len(why) == 3 and all(len(w.text) > 20 for w in why)  # explain_k rationales, whole

    # "+ basket" adds a search result; the basket grows by one and recommending still works
    driver.find_element("css selector", "#similar-results li.result .add").click()
    _wait(driver, lambda d: len(d.find_elements("css selector", "#basket .chip")) == len(basket) + 1,
          "the basket to grow")
    driver.find_element("id", "recommend-btn").click()
    _wait(driver, lambda d: f"after {len(basket) + 1} in the basket" in d.find_element(
        "id", "recommend-note").text, "recommendations for the larger basket")
    _screenshot(driver, tmp_path, "page-pulse.png")
    _no_script_errors(driver)


def test_page_shows_an_unknown_user_as_one_line(browser, serve, pulse_artifact):
    url = serve(pulse_artifact)
    _open(browser, url)
    browser.find_element("id", "user-id").send_keys("nobody-here")
    browser.find_element("id", "user-btn").click()
    _wait(browser, lambda d: "unknown user id 'nobody-here'" in d.find_element(
        "id", "recommend-note").text, "the unknown-user message")
    assert not _results(browser, "recommend-results")


def test_sesa_page_search_explains_with_concepts(browser, serve, sesa_artifact, tmp_path):
    url = serve(sesa_artifact)
    driver = browser
    _open(driver, url)
    driver.find_element("id", "query").send_keys("software developer")
    driver.find_element("id", "search-btn").click()
    _wait(driver, lambda d: len(_results(d, "search-results")) == 10, "search results")
    api = httpx.post(f"{url}/search", json={"query": "software developer", "k": 10,
                                            "explain": True}).json()
    rows = _results(driver, "search-results")
    assert [li.get_attribute("data-item") for li in rows] == [r["item_id"] for r in api["results"]]
    bars = rows[0].find_elements("css selector", ".why .concept")
    concepts = [c["concept"] for c in api["results"][0]["explanation"]]
    assert bars and [b.find_element("css selector", "span").text for b in bars] == concepts
    # SESA has no histories: the recommend panel is off and says why
    assert not driver.find_element("id", "recommend-btn").is_enabled()
    assert "no histories" in driver.find_element("id", "recommend-note").text
    _screenshot(driver, tmp_path, "page-sesa.png")
    _no_script_errors(driver)
