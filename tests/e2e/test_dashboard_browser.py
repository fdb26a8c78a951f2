"""The dashboard in a real browser (Debian's Chromium, headless, driven by Playwright) while
the demo's traffic flows through the live stack: every chart gets data, and a screenshot
is saved under the test output folder (test-output/, or $BR_TEST_OUTPUT)."""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ("traffic", "quality", "cost", "latency", "errors", "version")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def output_dir() -> Path:
    out = Path(os.environ.get("BR_TEST_OUTPUT", ROOT / "test-output"))
    out.mkdir(parents=True, exist_ok=True)
    return out


async def test_the_dashboard_draws_the_demo_traffic_in_chromium(tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed (./run.sh test installs it)"
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stack.demo", "--queries", "700", "--warm-rows", "300", "--concurrency", "4",
        "--out", str(tmp_path / "demo-out"), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    seen = []
    try:
        url = None
        while url is None:
            line = (await asyncio.wait_for(demo.stdout.readline(), 240)).decode()
            assert line, "the demo ended before its services were up:\n" + "".join(seen[-40:])
            seen.append(line)
            found = re.search(r"dashboard (http://\S+/dashboard/)", line)
            url = found and found.group(1)
        drain = asyncio.create_task(demo.stdout.read())
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 1500})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(url)
            await page.wait_for_function(
                "names => names.every(n => window.dashboard && window.dashboard.points(n) > 0)"
                " && document.querySelectorAll('#recent tbody tr').length > 0"
                " && window.dashboard.last.totals.decisions >= 300 && window.dashboard.last.totals.rewards >= 100",
                arg=list(CHARTS), timeout=120_000)
            points = {n: await page.evaluate("n => window.dashboard.points(n)", n) for n in CHARTS}
            why = await page.inner_text("#recent tbody tr:first-child td.why")
            tiles = await page.inner_text("#tiles")
            shot = output_dir() / "dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            await browser.close()
        print(f"\ndashboard screenshot: {shot}; points per chart: {json.dumps(points)}")
        assert not errors, errors
        assert all(points[n] > 0 for n in CHARTS), points
        assert "grouped_ts" in tiles and "=" in why and "p " in why   # score parts of each expert
        assert shot.stat().st_size > 20_000
        assert await asyncio.wait_for(demo.wait(), 300) == 0, (await drain).decode()[-3000:]
    finally:
        if demo.returncode is None:
            demo.terminate()
            await demo.wait()
