"""The report in a real browser: Debian's chromium, headless, driven by Playwright for Python.

Playwright cannot download a browser here, so the set-up installs the Debian packages chromium
and chromium-driver when /usr/bin/chromium is missing (we run as root). The report folder is
served over http on 127.0.0.1 by a thread, as a user would open it from a web server.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers_report import build_demo_store

from harness.report.site import task_page, write_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> Path:
    if not CHROMIUM.exists():
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "chromium", "chromium-driver"], check=True, capture_output=True)
    assert CHROMIUM.exists() or shutil.which("chromium"), "chromium did not install"
    return CHROMIUM


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # keep pytest's output for failures


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("browser")
    demo = build_demo_store(folder / "results.sqlite", folder / "adapters")
    out = write_report(demo.store, folder / "reports").parent
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _adapter_order(page: object) -> list[str]:
    return page.eval_on_selector_all("#leaderboard tbody tr", "rows => rows.map(r => r.dataset.adapter)")  # type: ignore[attr-defined]


def _assert_plots_rendered(page: object) -> int:
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d.querySelector('svg.main-svg'))",
        timeout=20_000,
    )
    return page.locator(".plotly-graph-div").count()  # type: ignore[attr-defined]


# Every visible table's width against its box: the box must not need to scroll sideways to show it.
TABLES_FIT = """() => [...document.querySelectorAll('table')].filter(t => t.offsetParent !== null).map(t => ({
    id: t.id || t.className, width: Math.ceil(t.getBoundingClientRect().width),
    room: t.parentElement.clientWidth, scroll: t.parentElement.scrollWidth - t.parentElement.clientWidth}))"""
PAGE_OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


def _assert_tables_fit(page: object) -> None:
    for table in page.evaluate(TABLES_FIT):  # type: ignore[attr-defined]
        assert table["width"] <= table["room"] and table["scroll"] <= 0, f"table {table['id']} is {table['width']} px wide in {table['room']} px"
    assert page.evaluate(PAGE_OVERFLOW) <= 0  # type: ignore[attr-defined]


def test_report_in_headless_chromium(site: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    problems: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir for every run
            executable_path=str(executable),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = context.new_page()
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))

            # index: the overall table and every plot drawn as SVG
            page.goto(site + "index.html")
            assert page.locator("#overall tbody tr").count() == 6
            # singular-value decay, effective rank, stable rank, relative update, intruders, training curves
            assert _assert_plots_rendered(page) == 6
            assert page.locator("#overall .tier").count() > 0 and "McNemar" in page.locator("#how-tiers").inner_text()
            _assert_tables_fit(page)
            page.screenshot(path=str(tmp_path / "index.png"), full_page=True)

            # the task leaderboard: expected rows, the failure and its reason, sorting by a header
            page.goto(site + task_page("resume_json"))
            assert _adapter_order(page) == ["base", "ia3", "lora_r4", "lora_r8", "lora_r16", "lora_r32"]
            assert "trained for another base" in page.locator("tr.status-failed").inner_text()
            assert _assert_plots_rendered(page) == 3
            # tiers: every finished row has one, the best row is in tier 1, the failed row has none
            tiers = page.eval_on_selector_all("#leaderboard tbody tr", "rows => rows.map(r => (r.querySelector('.tier') || {}).textContent || null)")
            assert tiers[4] == "1" and tiers[5] is None and all(t is not None for t in tiers[:5])
            assert page.locator("#pairwise tbody tr").count() == 5
            assert page.locator("tr[data-adapter='lora_r32'] .badge.incomplete").count() == 1
            _assert_tables_fit(page)  # with per-field and cost columns collapsed, the board fits 1400 px
            page.click("#leaderboard th:text-is('field_f1')")
            assert _adapter_order(page) == ["base", "lora_r4", "ia3", "lora_r8", "lora_r16", "lora_r32"]
            page.click("#leaderboard th:text-is('field_f1')")
            assert _adapter_order(page) == ["lora_r16", "lora_r8", "ia3", "lora_r4", "base", "lora_r32"]
            # the filter and the collapsible column groups
            page.select_option("select[data-filter='method']", "IA3")
            assert page.locator("#leaderboard tbody tr:not([hidden])").count() == 1
            page.select_option("select[data-filter='method']", "")
            page.select_option("select[data-filter='rank']", "8")
            assert page.eval_on_selector_all("#leaderboard tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.adapter)") == ["lora_r8"]
            page.select_option("select[data-filter='rank']", "")
            assert not page.locator("#leaderboard th:text-is('f1_name')").is_visible()
            page.check("input[data-toggle='fields']")
            assert page.locator("#leaderboard th:text-is('f1_name')").is_visible()
            page.uncheck("input[data-toggle='fields']")
            assert page.evaluate("window.__pwned") is None  # the error message's <img onerror> stayed text
            page.screenshot(path=str(tmp_path / "task.png"), full_page=True)

            # drill-down from a row: the injected prediction shows as text and never runs
            page.click("tr[data-adapter='lora_r4'] a.drill")
            page.wait_for_selector("article.example")
            assert page.locator("article.example").count() == 4
            assert "<script>window.__pwned = 1;</script>" in page.locator("pre.prediction").nth(1).inner_text()
            assert page.evaluate("window.__pwned") is None
            assert page.locator("img").count() == 0  # no injected <img> became an element
            page.select_option("#order", "worst")
            scores = page.eval_on_selector_all("article.example", "els => els.map(e => parseFloat(e.dataset.score))")
            assert scores == sorted(scores)
            page.select_option("#compare", label="lora_r16")
            assert page.locator("article.example:not([hidden])").count() == 4  # r16 is perfect, r4 is not anywhere
            page.screenshot(path=str(tmp_path / "examples.png"), full_page=True)

            # a phone: nothing makes the page wider than the screen (wide tables scroll in their box)
            page.set_viewport_size({"width": 390, "height": 844})
            for path in ("index.html", task_page("resume_json"), task_page("glue_sst2")):
                page.goto(site + path)
                _assert_plots_rendered(page)
                assert page.evaluate(PAGE_OVERFLOW) <= 0, f"{path} overflows a 390 px screen"
            page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
        finally:
            context.close()
    assert problems == [], problems
    assert (tmp_path / "task.png").stat().st_size > 10_000
