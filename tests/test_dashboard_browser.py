"""The dashboard in a real browser: headless Chromium loads every page of a running app.

Streamlit runs as a subprocess on a free port against a snapshot published into ``tmp_path``;
Playwright drives the system Chromium (Debian's ``chromium`` package; its own browser download
does not work offline). Each page is screenshotted into ``tmp_path/screenshots`` and, when
``UBAP_SCREENSHOT_DIR`` is set, copied there too. ``UBAP_DASHBOARD_SNAPSHOT_DIR`` serves an
existing snapshot folder instead (for example ``data/snapshots`` after ``make up``), so the same
test checks the dashboard on the real pipeline's data.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from test_dashboard import APP, build_snapshot

from ubap_assets.warehouse import tables as t
from ubap_assets.warehouse.introspect import warehouse_tables
from ubap_assets.warehouse.snapshots import current_snapshot

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


def _wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"streamlit exited with {process.returncode}:\n{log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


@contextmanager
def _serve(snapshots: Path, workdir: Path) -> Iterator[str]:
    """Run the dashboard on a free port against ``snapshots``; yield its base URL."""
    port = _free_port()
    env = {
        **os.environ,
        "UBAP_DATA_DIR": str(workdir),
        "UBAP_SNAPSHOT_DIR": str(snapshots.resolve()),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    log_path = workdir / f"streamlit-{port}.log"
    command = [sys.executable, "-m", "streamlit", "run", str(APP)]
    command += ["--server.address", "127.0.0.1", "--server.port", str(port)]
    command += ["--server.headless", "true", "--server.fileWatcherType", "none"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=APP.parents[1], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, process, log_path)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _copy_out(shots: list[Path]) -> None:
    """Copy screenshots to UBAP_SCREENSHOT_DIR when it is set."""
    target = os.environ.get("UBAP_SCREENSHOT_DIR")
    if not target:
        return
    Path(target).mkdir(parents=True, exist_ok=True)
    for shot in shots:
        shutil.copy2(shot, Path(target) / shot.name)


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
    page.wait_for_timeout(100)  # let the last layout pass land


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


def _check_empty_state(page, url: str, shots: Path) -> Path:
    """Before the first pipeline run the app explains itself and names the command."""
    page.goto(f"{url}/trends", wait_until="domcontentloaded")
    _settle(page, "No data yet")
    shot = shots / "empty_state.png"
    page.screenshot(path=str(shot))
    assert page.locator(ERROR_BOXES[0]).count() == 0
    assert "make up" in page.locator('[data-testid="stCode"]').first.inner_text()
    return shot


def _check_page(page, url: str, path: str, title: str, shots: Path) -> Path:
    link = page.locator(f'[data-testid="stSidebarNav"] a[href$="/{path}"]')
    if path and link.count():
        link.first.click()  # through the sidebar, as a person would
    else:
        page.goto(f"{url}/{path}", wait_until="domcontentloaded")
    _settle(page, title)
    shot = shots / f"{path or 'overview'}.png"
    _full_page_screenshot(page, shot)
    for selector in ERROR_BOXES:
        boxes = page.locator(selector)
        assert boxes.count() == 0, (
            f"page '{title}' shows an error: {boxes.first.inner_text()[:500]}"
        )
    if path != "pipeline":  # the pipeline page has a chart only when input rows were rejected
        assert page.locator('[data-testid="stVegaLiteChart"]').count() > 0, f"'{title}': no chart"
    assert page.locator('[data-testid="stDownloadButton"]').count() > 0, (
        f"page '{title}' offers no CSV download"
    )
    return shot


def _incident_labels(snapshots: Path) -> list[str]:
    """The headline labels the dashboard draws for the served snapshot's incidents."""
    with duckdb.connect(str(current_snapshot(snapshots).path), read_only=True) as con:
        if t.INCIDENTS not in warehouse_tables(con):
            return []
        return [
            row[0] for row in con.execute(f"SELECT headline_label FROM {t.INCIDENTS}").fetchall()
        ]


def _check_incident_annotation(page, url: str, labels: list[str], shots: Path) -> Path:
    """The Trends chart shades each incident and writes its headline on it (SVG elements)."""
    page.goto(f"{url}/trends", wait_until="domcontentloaded")
    _settle(page, "Trends")
    chart = page.locator('[data-testid="stVegaLiteChart"]').first
    windows = chart.locator('[aria-roledescription="incident window"]')
    windows.first.wait_for(timeout=15_000)
    assert windows.count() == len(labels), f"{windows.count()} shaded windows for {labels}"
    drawn = chart.locator("text").all_text_contents()
    for label in labels:
        assert any(text.startswith(label) for text in drawn), f"no '{label}' on the chart: {drawn}"
    caption = page.locator('[data-testid="stCaptionContainer"]').filter(has_text="Shaded:")
    assert caption.count() == 1 and caption.first.is_visible()
    shot = shots / "trends_incidents.png"
    chart.screenshot(path=str(shot))
    return shot


def _check_shared_range(page, url: str, shots: Path) -> Path:
    """A shared URL opens Trends on its date range; picking another preset writes it back."""
    page.goto(f"{url}/trends?period=7+days", wait_until="domcontentloaded")
    _settle(page, "Trends")
    sidebar = page.locator('[data-testid="stSidebar"]')
    range_caption = sidebar.locator('[data-testid="stCaptionContainer"]').filter(has_text="→")
    assert "(7 days)" in range_caption.last.inner_text()
    assert "period=7+days" in page.url or "period=7%20days" in page.url
    shot = shots / "trends_compare_7_days.png"
    page.locator('[data-testid="stVegaLiteChart"]').first.screenshot(path=str(shot))
    sidebar.get_by_text("All", exact=True).click()
    page.wait_for_function("() => location.search.includes('period=All')", timeout=15_000)
    _settle(page, "Trends")
    assert "(7 days)" not in range_caption.last.inner_text()
    return shot


def test_every_page_renders_without_an_error_box(browser, tmp_path):
    """Empty state first; then a snapshot is published and the same server shows every page.

    With UBAP_DASHBOARD_SNAPSHOT_DIR set, that folder is served as it is (no empty state).
    """
    shots = tmp_path / "screenshots"
    shots.mkdir()
    served = os.environ.get("UBAP_DASHBOARD_SNAPSHOT_DIR")  # e.g. data/snapshots after `make up`
    snapshots = Path(served) if served else tmp_path / "snapshots"
    taken: list[Path] = []
    with _serve(snapshots, tmp_path) as url:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        js_errors: list[str] = []
        page.on("pageerror", lambda err: js_errors.append(str(err)))
        try:
            if not served:
                taken.append(_check_empty_state(page, url, shots))
                build_snapshot(snapshots)  # the running app picks it up on the next load
            for path, title in PAGES.items():
                taken.append(_check_page(page, url, path, title, shots))
            labels = _incident_labels(snapshots)
            assert labels or served, "the test snapshot has no incident to annotate"
            if labels:
                taken.append(_check_incident_annotation(page, url, labels, shots))
            taken.append(_check_shared_range(page, url, shots))
        finally:
            context.close()
            _copy_out(taken)
    assert {p.stem for p in taken} >= {p or "overview" for p in PAGES} | (
        set() if served else {"trends_incidents"}
    )
    assert all(p.stat().st_size > 10_000 for p in taken), "a screenshot is blank"
    assert not js_errors, f"JavaScript errors in the page: {js_errors[:3]}"
