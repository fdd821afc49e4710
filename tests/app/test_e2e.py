"""The real app in a real browser: headless Debian Chromium driven by Playwright.

Needs the Debian `chromium` package (installed by .ci/run); screenshots go to tests/artifacts/.
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
                "(.ci/run does this) — the end-to-end test does not skip")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def app_url(model_dir, tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False")
    log = open(tmp_path / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", str(model_dir), "--port", str(port),
                             "--evaluator", str(tmp_path / "none")], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    while time.time() - t0 < 120:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("the app exited: " + (tmp_path / "app.log").read_text()[-2000:])
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the app did not answer within 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_generate_then_step_through_influence_maps(app_url):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url)
        expect(page.get_by_role("button", name="Generate", exact=True)).to_be_visible(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "01_start.png", full_page=True)

        # an example prompt and an example mask, then generate
        page.get_by_text("This woman is a teen.", exact=True).first.click()
        page.get_by_text("Mask tools: upload, examples, fill").first.click()
        page.wait_for_timeout(500)
        page.screenshot(path=ARTIFACTS / "01b_mask_tools.png", full_page=True)
        page.get_by_text("mask_03.png").first.click()
        page.wait_for_timeout(2000)
        page.get_by_label("Steps").first.fill("6")
        page.get_by_role("button", name="Generate", exact=True).click()
        expect(page.locator("#gen-status")).to_contain_text("done", timeout=120_000)
        expect(page.locator("#gen-gallery img").first).to_be_visible()
        page.screenshot(path=ARTIFACTS / "02_generated.png", full_page=True)

        # the influence tab: record a run, then move the step slider
        page.get_by_role("tab", name="Influence functions").click()
        page.locator("#influence-btn").click()
        expect(page.locator("#influence-status")).to_contain_text("rule", timeout=120_000)
        expect(page.locator("#influence-frame img")).to_be_visible()
        first = page.locator("#influence-frame img").get_attribute("src")
        slider = page.locator("#influence-slider input[type=number]")
        slider.fill("30")
        slider.press("Enter")
        expect(page.locator("#influence-status")).to_contain_text("step 30/", timeout=30_000)
        page.wait_for_timeout(500)
        assert page.locator("#influence-frame img").get_attribute("src") != first
        page.screenshot(path=ARTIFACTS / "03_influence.png", full_page=True)
        browser.close()
