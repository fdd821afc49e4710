"""The real app in a real browser: headless Debian Chromium driven by Playwright.

Needs the Debian `chromium` package (installed by .ci/run); it never skips. Screenshots of every tab
go to tests/artifacts/ (gitignored).
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    for path in ("/usr/bin/chromium", "/usr/lib/chromium/chromium"):
        if Path(path).exists():
            return path
    pytest.fail("Debian chromium is not installed: run `apt-get install -y chromium chromium-driver` "
                "(.ci/run does this); the end-to-end test does not skip")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def app_url(model_dir, tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "app.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", str(model_dir), "--port", str(port),
                                 "--evaluator", str(tmp_path / "none")], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("the app exited: " + log_path.read_text()[-2000:])
            if time.time() > deadline:
                proc.kill()
                pytest.fail("the app did not answer within 120 s")
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log = log_path.read_text()
    assert "unexpected error in a handler" not in log, log[-3000:]  # no handler crashed
    assert "Content-Length" not in log, log[-3000:]  # no image was rewritten while the browser fetched it
    assert "UserError" not in log  # user mistakes go to the page, not to the log as stack traces


def test_generate_influence_compare_in_a_browser(app_url):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        generate = page.locator("#generate-btn")
        expect(generate).to_be_visible(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "01_start.png", full_page=True)

        # an example prompt and an example mask; the class picker recolours the brush
        page.get_by_text("This woman is a teen.", exact=True).first.click()
        expect(page.locator("#gen-text textarea")).to_have_value("This woman is a teen.")
        page.locator("#gen-tools").get_by_text("Mask tools").click()
        page.locator("#gen-tools").get_by_text("mask_03.png", exact=True).click()
        expect(page.locator("#gen-tools img").first).to_be_visible(timeout=30_000)  # the snapped preview
        preview = page.locator("#gen-tools img").first
        before = preview.get_attribute("src")
        # paint a hat stroke across the forehead: the snapped preview follows
        page.locator("#gen-class").get_by_text("hat", exact=True).click()
        painter = page.locator("#gen-painter")
        painter.scroll_into_view_if_needed()
        box = painter.bounding_box()
        x, y = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.3
        page.mouse.move(x, y)
        page.mouse.down()
        for k in range(20):
            page.mouse.move(x + 5 * k, y + k % 2)
        page.mouse.up()
        expect(preview).not_to_have_attribute("src", before, timeout=30_000)
        page.screenshot(path=ARTIFACTS / "02_mask_painted.png", full_page=True)

        # generate with few steps: streamed previews end in the result and the overlay
        steps = page.locator("#gen-steps input[type=number]")
        steps.fill("6")
        steps.press("Enter")
        generate.click()
        expect(page.locator("#gen-status")).to_contain_text("done", timeout=120_000)
        expect(page.locator("#gen-status")).to_contain_text("mask+text")
        expect(page.locator("#gen-gallery img").first).to_be_visible()
        expect(page.locator("#gen-overlay img")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "03_generated.png", full_page=True)

        # the influence tab: record a run, then move the step slider
        page.get_by_role("tab", name="Influence functions").click()
        page.locator("#influence-btn").click()
        status = page.locator("#influence-status")
        expect(status).to_contain_text("rule", timeout=120_000)
        expect(page.locator("#influence-frame img")).to_be_visible()
        expect(page.locator("#influence-gif img")).to_be_visible()
        first = page.locator("#influence-frame img").get_attribute("src")
        slider = page.locator("#influence-slider input[type=number]")
        slider.fill("30")
        slider.press("Enter")
        expect(status).to_contain_text("step 30/", timeout=30_000)
        expect(page.locator("#influence-frame img")).not_to_have_attribute("src", first)
        page.screenshot(path=ARTIFACTS / "04_influence.png", full_page=True)

        # compare: four images side by side
        page.get_by_role("tab", name="Compare").click()
        page.locator("#compare-btn").click()
        expect(page.locator("#compare-gallery img")).to_have_count(4, timeout=120_000)
        page.screenshot(path=ARTIFACTS / "05_compare.png", full_page=True)

        # edit an example face by text (fast preset on the tiny model), then the about page
        page.get_by_role("tab", name="Edit").click()
        page.locator("#edit-examples img").first.click()  # the first example face
        expect(page.locator("#edit-face img")).to_be_visible(timeout=30_000)
        page.locator("#edit-text textarea").fill("This man has a long beard. He is in his fifties.")
        page.locator("#edit-steps input[type=number]").fill("3")
        page.locator("#edit-steps input[type=number]").press("Enter")
        page.locator("#edit-btn").click()
        expect(page.locator("#edit-status")).to_contain_text("done (fast preset", timeout=300_000)
        expect(page.locator("#edit-strip img")).to_have_count(5)
        page.screenshot(path=ARTIFACTS / "06_edit.png", full_page=True)
        page.get_by_role("tab", name="About").click()
        expect(page.get_by_text("Responsible use.")).to_be_visible()

        # a bad request ends in a readable message on the page
        page.get_by_role("tab", name="Generate").click()
        page.locator("#gen-text textarea").fill("")
        page.locator("#gen-tools").get_by_role("button", name="Clear mask").click()
        generate.click()
        expect(page.get_by_text("give a condition this model reads").first).to_be_visible(timeout=30_000)
        page.screenshot(path=ARTIFACTS / "07_error.png", full_page=False)
        browser.close()
