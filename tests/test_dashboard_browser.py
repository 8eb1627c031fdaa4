"""The dashboard in a real browser: headless Chromium loads every page of a running app.

Streamlit runs as a subprocess on a free port against a snapshot published into ``tmp_path``;
Playwright drives the system Chromium (Debian's ``chromium`` package; its own browser download
does not work offline). Each page is screenshotted into ``tmp_path/screenshots`` and, when
``UBAP_SCREENSHOT_DIR`` is set, copied there too.
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
from test_dashboard import APP, build_snapshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("UBAP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# url path -> the page title the app shows
PAGES = {
    "": "Overview",
    "trends": "Trends",
    "funnels": "Funnels & retention",
    "segments": "Segments",
    "predictions": "Predictions",
    "anomalies": "Anomalies",
    "recommendations": "Recommendations",
    "admin": "Admin insights",
    "pipeline": "Pipeline",
}
VIEWPORT = {"width": 1400, "height": 1000}
ERROR_BOXES = (
    '[data-testid="stException"]',
    '[data-testid="stAlertContentError"]',
    '[data-testid="stAlert"] [data-testid="stAlertContentError"]',
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """A running dashboard on a free port, reading a freshly published snapshot."""
    root = tmp_path_factory.mktemp("dashboard-browser")
    build_snapshot(root / "snapshots")
    port = _free_port()
    env = {
        **os.environ,
        "UBAP_DATA_DIR": str(root),
        "UBAP_SNAPSHOT_DIR": str(root / "snapshots"),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    log = (root / "streamlit.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(APP),
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=APP.parents[1],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install it with `apt-get install -y chromium` "
            "(or point UBAP_CHROMIUM at a Chromium binary)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def _settle(page, title: str) -> None:
    """Wait until the page's script has finished and its charts have drawn."""
    page.get_by_role("heading", name=title, level=1).first.wait_for(timeout=30_000)
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=30_000
    )
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    for index in range(charts.count()):
        charts.nth(index).locator("canvas, svg").first.wait_for(timeout=15_000)
    page.wait_for_timeout(300)  # let the last layout pass land before the screenshot


def _full_page_screenshot(page, target: Path) -> None:
    """Streamlit scrolls inside its main block, so grow the viewport to the content first."""
    height = page.evaluate(
        '() => Math.max(...[...document.querySelectorAll(\'[data-testid="stMain"], '
        '[data-testid="stMainBlockContainer"]\')].map(e => e.scrollHeight), 800)'
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height) + 80, 9000)})
    page.wait_for_timeout(500)  # charts re-layout to the new size
    page.screenshot(path=str(target), full_page=True)
    page.set_viewport_size(VIEWPORT)


def test_every_page_renders_without_an_error_box(app_url, browser, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("pageerror", lambda err: console_errors.append(str(err)))
    taken = []
    try:
        for path, title in PAGES.items():
            page.goto(f"{app_url}/{path}", wait_until="domcontentloaded")
            _settle(page, title)
            name = path or "overview"
            target = shots / f"{name}.png"
            _full_page_screenshot(page, target)
            taken.append(target)
            for selector in ERROR_BOXES:
                boxes = page.locator(selector)
                assert boxes.count() == 0, (
                    f"page '{title}' shows an error: {boxes.first.inner_text()[:500]}"
                )
            assert page.locator('[data-testid="stVegaLiteChart"]').count() > 0 or name in (
                "pipeline",
            ), f"page '{title}' drew no chart"
            assert page.locator('[data-testid="stDownloadButton"]').count() > 0, (
                f"page '{title}' offers no CSV download"
            )
    finally:
        context.close()
        copy_to = os.environ.get("UBAP_SCREENSHOT_DIR")
        if copy_to:
            Path(copy_to).mkdir(parents=True, exist_ok=True)
            for shot in taken:
                shutil.copy2(shot, Path(copy_to) / shot.name)
    assert [p.stem for p in taken] == [p or "overview" for p in PAGES]
    assert all(p.stat().st_size > 10_000 for p in taken), "a screenshot is blank"
    assert not console_errors, f"JavaScript errors in the page: {console_errors[:3]}"


def test_empty_state_names_the_command(browser, tmp_path):
    """Before the first pipeline run the app explains itself instead of failing."""
    port = _free_port()
    env = {
        **os.environ,
        "UBAP_DATA_DIR": str(tmp_path),
        "UBAP_SNAPSHOT_DIR": str(tmp_path / "none"),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(APP),
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=APP.parents[1],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(f"{url}/trends", wait_until="domcontentloaded")
        _settle(page, "No data yet")
        page.screenshot(path=str(tmp_path / "empty_state.png"))
        assert page.locator(ERROR_BOXES[0]).count() == 0
        assert "make up" in page.locator('[data-testid="stCode"]').first.inner_text()
        page.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
