"""The web demo in a real browser: headless Chromium (Debian's chromium, driven by Playwright) opens the page,
uploads a photo, presses the buttons, finds the depth image and the download links, and takes a screenshot.
Skipped when Chromium or Playwright is missing (.ci/run installs both).

The screenshot docs/INFERENCE.md shows (docs/app.png) is this test run with the quick start's trained student
instead of random weights; it is the only run that writes into docs/:

    DA2_APP_SCREENSHOT_FROM=demo_output/student/latest.pth python -m pytest tests/test_app_browser.py
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from app_server import INPUT_SIZE, ROOT, save_model, serve_app

from dataset.synthetic import Scene, random_intrinsics

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is missing (pip install playwright)")

SCREENSHOT = ROOT / "docs" / "app.png"
SCREENSHOT_FROM = os.environ.get("DA2_APP_SCREENSHOT_FROM")  # a trained camera model's checkpoint, for docs/app.png
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


def room_photo(path: Path) -> Path:
    """A synthetic room (dataset.synthetic) seen through a 60 degree lens, 320 x 240 px."""
    rng = np.random.default_rng(3)
    rgb, _ = Scene.random(rng).render(random_intrinsics(rng, 320, 240, (60, 60)), 320, 240)
    cv2.imwrite(str(path), rgb[..., ::-1])
    return path


def test_page_in_headless_chromium(tmp_path):
    checkpoint = SCREENSHOT_FROM or save_model(tmp_path / "camera_metric_vits.pth", camera=True, max_depth=20.0)
    photo = room_photo(tmp_path / "room.png")
    flags = ("--load-from", str(checkpoint), "--input-size", str(INPUT_SIZE))
    with serve_app(tmp_path, *flags) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # an empty user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=BROWSER_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url, wait_until="domcontentloaded")
            page.locator("#upload input[type=file]").set_input_files(str(photo))
            page.get_by_text("320 x 240 px").wait_for()
            page.get_by_label("field of view").check()
            page.get_by_label("Horizontal field of view (degrees)").fill("60")
            page.locator("#run").click()

            links = page.locator("#downloads a")
            links.nth(3).wait_for()
            names = sorted(Path(link.get_attribute("download") or link.inner_text()).name for link in links.all())
            assert names == ["room.depth16.png", "room.gray.png", "room.npy", "room.ply"], names
            npy = next(link for link in links.all() if "room.npy" in link.get_attribute("href"))
            response = page.request.get(npy.get_attribute("href"))
            assert response.ok and response.body()[:6] == b"\x93NUMPY"
            assert page.locator("#slider img").count() == 2
            depth_image = page.locator("#depth_view img").first
            assert depth_image.evaluate("img => img.naturalWidth") == 320
            depth_image.click(position={"x": 40, "y": 30})
            readout = page.locator("#readout textarea")
            page.wait_for_function("el => el.value.startsWith('depth at (')", arg=readout.element_handle())
            assert readout.input_value().endswith(" m")
            assert "60 degrees horizontal field of view" in page.locator("#status").inner_text()

            page.locator("#sweep").click()
            page.get_by_text("focal x 2: fx").first.wait_for()
            page.locator("#viewer canvas").first.scroll_into_view_if_needed()
            page.wait_for_timeout(3000)  # the point cloud viewer draws once it is on screen
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "app.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if SCREENSHOT_FROM:
        shutil.copyfile(tmp_path / "app.png", SCREENSHOT)
