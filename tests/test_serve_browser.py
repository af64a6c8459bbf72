"""The web page driven in a real headless Chromium (selenium): upload an image and see the
matches, enrol a new identity, see it listed and then recognised. Skipped without chromium."""

from __future__ import annotations

import shutil

import pytest

from deploy_helpers import make_onnx_bundle, noise_png
from serve_helpers import running

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tripletlab.serve.app import create_app  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TOKEN = "browser-token-42"
#: Seconds to wait for the page to react (a loaded 2-core machine is slow, not broken).
WAIT_S = 20

pytestmark = pytest.mark.skipif(
    not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)), reason="chromium is absent"
)


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_upload_see_matches_enrol_and_see_the_new_identity(tmp_path, browser):
    images = {}
    for seed in (1, 2, 3):
        images[seed] = tmp_path / f"face{seed}.png"
        images[seed].write_bytes(noise_png(seed))
    app = create_app(make_onnx_bundle(tmp_path), token=TOKEN)
    app.state.recognizer.enrol("alice", [noise_png(1)])
    wait = WebDriverWait(browser, WAIT_S)
    with running(app) as url:
        browser.get(url + "/")
        wait.until(ec.text_to_be_present_in_element((By.ID, "health"), "writes enabled"))
        wait.until(ec.text_to_be_present_in_element((By.ID, "identities"), "alice"))

        # Upload a known face: the decision and the top match with its thumbnail.
        browser.find_element(By.ID, "query-file").send_keys(str(images[1]))
        wait.until(ec.text_to_be_present_in_element((By.ID, "decision"), "alice"))
        match = browser.find_element(By.CSS_SELECTOR, "#results .match")
        assert match.get_attribute("data-identity") == "alice"
        assert "distance 0.0000" in match.text
        assert wait.until(
            lambda d: d.execute_script(
                "const i = document.querySelector('#results .match img');"
                "return i.complete && i.naturalWidth > 0;"
            )
        )

        # A stranger is unknown; enrol them (with the dropped image and another one).
        browser.find_element(By.ID, "query-file").send_keys(str(images[2]))
        wait.until(ec.text_to_be_present_in_element((By.ID, "decision"), "unknown"))
        browser.find_element(By.ID, "enrol-name").send_keys("bob")
        browser.find_element(By.ID, "enrol-files").send_keys(str(images[3]))
        browser.find_element(By.ID, "enrol-use-query").click()
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "enrol-button").click()
        wait.until(
            ec.text_to_be_present_in_element((By.ID, "enrol-status"), "enrolled bob (2 image(s))")
        )
        wait.until(ec.text_to_be_present_in_element((By.ID, "identities"), "bob"))

        # The same image is now recognised as the new identity.
        browser.find_element(By.ID, "query-file").send_keys(str(images[2]))
        wait.until(ec.text_to_be_present_in_element((By.ID, "decision"), "bob"))

        # A wrong token is reported on the page, and nothing is enrolled.
        token = browser.find_element(By.ID, "token")
        token.clear()
        token.send_keys("wrong")
        browser.find_element(By.ID, "enrol-name").send_keys("mallory")
        browser.find_element(By.ID, "enrol-files").send_keys(str(images[3]))
        browser.find_element(By.ID, "enrol-button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "enrol-status"), "wrong bearer token"))
        names = {i.identity for i in app.state.recognizer.identities()}
        assert names == {"alice", "bob"}
