"""The page at ``GET /`` in a real headless browser (Chromium, driven by Selenium): type a sentence, run NER and
fill-mask, read what the page rendered, and no JavaScript error in the console. Skips where Chromium or its driver
is not installed (CI installs Debian's chromium and chromium-driver)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.integration.serve_util import httpx, serve_in_thread, tiny_base_with_adapters

webdriver = pytest.importorskip("selenium.webdriver")

from bertforge.serve import create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
TEXT = "Ada Lovelace wrote the first program in London."


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    base, adapters = tiny_base_with_adapters(tmp_path_factory.mktemp("page_models"), ("ner",))
    with serve_in_thread(create_app(model=str(base), adapters=adapters)) as url:
        yield url


def _run(browser, task: str, text: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.CSS_SELECTOR, f'button[data-task="{task}"]').click()
    box = browser.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "status").text.endswith("ms") or d.find_element(By.ID, "error").text
    )
    assert browser.find_element(By.ID, "error").text == ""


def test_the_page_renders_entities_and_mask_predictions(browser, page_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url = page_server
    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda d: "float32" in d.find_element(By.ID, "meta").text)
    Select(browser.find_element(By.ID, "adapter")).select_by_value("ner")
    _run(browser, "ner", TEXT)
    want = httpx.post(url + "/ner", json={"inputs": TEXT, "adapter": "ner"}).json()
    assert want, "the random NER adapter finds no entity: pick another seed"
    marks = browser.find_elements(By.CSS_SELECTOR, "mark.entity")
    assert [m.get_attribute("data-label") for m in marks] == [e["entity_group"] for e in want]
    for mark, entity in zip(marks, want):  # the words, then the label beside them
        label = mark.find_element(By.CSS_SELECTOR, ".label").text
        assert label == entity["entity_group"].upper()
        assert mark.text.replace(label, "").strip() == TEXT[entity["start"] : entity["end"]]
    legend = {s.text for s in browser.find_elements(By.CSS_SELECTOR, ".legend span")}
    assert legend == {e["entity_group"] for e in want}
    os.makedirs(tmp_path, exist_ok=True)
    browser.save_screenshot(str(tmp_path / "serve-page-ner.png"))

    Select(browser.find_element(By.ID, "adapter")).select_by_value("")
    _run(browser, "fill-mask", "The capital of France is [MASK].")
    want = httpx.post(url + "/fill-mask", json={"inputs": "The capital of France is [MASK].", "top_k": 5}).json()
    rows = browser.find_elements(By.CSS_SELECTOR, ".prediction .name")
    assert [r.text for r in rows] == [w["token_str"] for w in want]
    browser.save_screenshot(str(tmp_path / "serve-page-fill-mask.png"))
    shots = os.environ.get("BERTFORGE_SCREENSHOTS")  # where the documentation's screenshots are refreshed from
    if shots:
        shutil.copy(tmp_path / "serve-page-ner.png", shots)
        shutil.copy(tmp_path / "serve-page-fill-mask.png", shots)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
