"""The real app in a real browser: headless Debian Chromium driven by Playwright.

Needs the Debian `chromium` package (installed by .ci/run); it never skips. Screenshots of every tab
go to tests/artifacts/ (gitignored; `COLLAB_ARTIFACTS=DIR` puts them elsewhere).
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("COLLAB_ARTIFACTS", ROOT / "tests" / "artifacts"))
PUBLIC = ("/compare", "/edit", "/generate", "/influence")


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


@pytest.fixture(scope="module")
def app_url(model_dir, tmp_path_factory):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "app.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", str(model_dir), "--port", str(port),
                                 "--evaluator", str(tmp_path_factory.mktemp("none"))], cwd=ROOT, env=env, stdout=log,
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


@pytest.fixture()
def page(app_url):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        expect(page.locator("#generate-btn")).to_be_visible(timeout=60_000)
        yield page
        browser.close()


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def upload(page, button: str, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.locator(f"#{button}").click()
    chooser.value.set_files(str(path))


def no_error_badges(page) -> None:
    from playwright.sync_api import expect

    badges = page.locator(".error:not(.toast-title)").filter(has_text=re.compile(r"^\s*Error\s*$"))
    expect(badges).to_have_count(0)  # the red "Error" mark a failed event leaves on its outputs


def test_generate_examples_masks_stop_and_errors(page, tmp_path):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    status = page.locator("#gen-status")
    page.screenshot(path=ARTIFACTS / "01_start.png", full_page=True)

    # an example (text + mask + seed) runs on click; its seed comes back, its mask shows in the preview
    page.locator("#gen-examples").get_by_text("This woman is a teen.", exact=True).click()
    expect(status).to_contain_text("seed 15", timeout=120_000)
    expect(status).to_contain_text("mask + text")
    expect(page.locator("#gen-seed input")).to_have_value("15")
    expect(page.locator("#gen-gallery img").first).to_be_visible()
    expect(page.locator("#gen-overlay img")).to_be_visible()
    expect(page.locator("#gen-settings")).to_contain_text('"seed": 15')
    preview = page.locator("#gen-preview img")
    expect(preview).to_be_visible(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "02_example_ran.png", full_page=True)

    # paint a hat stroke across the forehead, then fill a region by clicking the preview: it follows
    before = preview.get_attribute("src")
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
    painted = preview.get_attribute("src")
    page.locator("#gen-class").get_by_text("earring", exact=True).click()
    preview.click(position={"x": 3, "y": 3})  # the background corner of the picture
    expect(preview).not_to_have_attribute("src", painted, timeout=30_000)
    page.screenshot(path=ARTIFACTS / "03_painted_and_filled.png", full_page=True)

    # a bad upload says why on the page and keeps the mask loaded before it
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    upload(page, "gen-upload", bad)
    expect(page.get_by_text("cannot read mask file notes.png").first).to_be_visible(timeout=30_000)
    page.evaluate("window.scrollTo(0, 0)")  # the message is a toast at the top right
    page.screenshot(path=ARTIFACTS / "04_bad_upload.png", full_page=False)
    set_number(page, "gen-steps", 0)  # corrected to 1, shown in the box
    page.locator("#gen-seed input").fill("3.7")  # run as 4, shown in the box
    page.locator("#generate-btn").click()
    expect(status).to_contain_text("seed 4", timeout=60_000)
    expect(status).to_contain_text("mask + text")  # the mask is still there
    expect(status).to_contain_text("1 steps")
    expect(page.locator("#gen-steps input[type=number]")).to_have_value("1")
    expect(page.locator("#gen-seed input")).to_have_value("4")

    # Stop ends the job with what it has; the next click runs at once
    set_number(page, "gen-batch", 8)
    set_number(page, "gen-steps", 200)
    page.locator("#generate-btn").click()
    expect(status).to_contain_text("/200: predicted x0", timeout=60_000)
    page.locator("#generate-stop").click()
    expect(status).to_contain_text("stopped", timeout=60_000)
    set_number(page, "gen-batch", 1)
    set_number(page, "gen-steps", 3)
    page.locator("#generate-btn").click()
    expect(status).to_contain_text("3 steps", timeout=30_000)
    expect(status).to_contain_text("done")
    page.screenshot(path=ARTIFACTS / "05_stop_then_generate.png", full_page=False)

    # "Steer the mix": the mask takes part in the first half of the run only, and the status says so
    page.locator("#gen-controls").get_by_text("Steer the mix", exact=False).first.click()
    expect(page.locator("#ctl-lead-canvas")).to_be_visible(timeout=30_000)
    set_number(page, "ctl-mask-end", 0.5)
    set_number(page, "ctl-text-strength", 2)
    page.locator("#gen-controls").scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "05b_steer_the_mix.png", full_page=False)
    page.locator("#generate-btn").click()
    expect(status).to_contain_text("window mask=0:0.5", timeout=60_000)
    expect(status).to_contain_text("strength text=2")
    expect(page.locator("#gen-settings")).to_contain_text('"window"')

    # a request the model cannot serve is a message; the outputs carry no error mark
    page.locator("#gen-text textarea").fill("")
    page.locator("#gen-clear").click()
    expect(preview).to_be_hidden(timeout=30_000)
    page.locator("#generate-btn").click()
    expect(page.get_by_text("give a condition this model reads").first).to_be_visible(timeout=30_000)
    no_error_badges(page)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=ARTIFACTS / "06_error.png", full_page=False)


def test_influence_compare_edit_about_and_the_api_page(page):
    from playwright.sync_api import expect

    # influence: an example records on click; titled panels, a colour bar, a step slider, a GIF
    page.get_by_role("tab", name="Influence functions").click()
    page.locator("#influence-examples").get_by_text("This man has no beard. He is in his 30s.", exact=True).click()
    status = page.locator("#influence-status")
    expect(status).to_contain_text("seed 22", timeout=120_000)
    expect(page.locator("#influence-frame img")).to_be_visible()
    expect(page.locator("#influence-gif img")).to_be_visible()
    first = page.locator("#influence-frame img").get_attribute("src")
    set_number(page, "influence-slider", 30)
    expect(status).to_contain_text("step 30/50", timeout=30_000)
    expect(page.locator("#influence-frame img")).not_to_have_attribute("src", first)
    page.screenshot(path=ARTIFACTS / "07_influence.png", full_page=True)

    # compare: four images side by side, captions whole
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-btn").click()
    expect(page.locator("#compare-status")).to_contain_text("done: 4 runs", timeout=120_000)
    expect(page.locator("#compare-gallery img")).to_have_count(4)
    expect(page.locator("#compare-gallery").get_by_text("collaborative (rule paper)", exact=True)).to_be_visible()
    page.screenshot(path=ARTIFACTS / "08_compare.png", full_page=True)

    # edit: an example face + target text + seed runs on click (fast preset on the tiny model)
    page.get_by_role("tab", name="Edit").click()
    set_number(page, "edit-steps", 3)
    page.locator("#edit-examples img").first.click()
    expect(page.locator("#edit-face img")).to_be_visible(timeout=30_000)
    expect(page.locator("#edit-status")).to_contain_text("done (fast preset", timeout=300_000)
    expect(page.locator("#edit-strip img")).to_have_count(5)
    no_error_badges(page)
    page.screenshot(path=ARTIFACTS / "09_edit.png", full_page=True)

    # about: the model is loaded now, with links to the paper and the code
    page.get_by_role("tab", name="About").click()
    about = page.locator("#about-text")
    expect(about).to_contain_text("loaded", timeout=30_000)
    expect(about.get_by_role("link", name="paper")).to_have_attribute("href", "https://arxiv.org/abs/2304.10530")
    expect(page.get_by_text("Responsible use.")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "10_about.png", full_page=True)

    # the API page (footer link) lists exactly the four jobs
    page.get_by_text("Use via API").click()
    expect(page.get_by_text("4 API endpoints")).to_be_visible(timeout=30_000)
    names = set(re.findall(r'api_name="(/[a-z_0-9]+)"', page.locator("body").inner_text()))
    assert names == set(PUBLIC)
    page.screenshot(path=ARTIFACTS / "11_api.png", full_page=False)
