"""The Dagster UI of a real ``telemetry demo``, looked at in headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright; no browser is ever downloaded).

Checked as a user sees them: no first-run dialog in front of the graph; the lineage
raw_points -> rollup_15m -> rollup_1h -> site_1h -> portfolio_1h (and rollup_15m ->
site_15m -> portfolio_15m) read from the edges the graph draws; a materialised partition
with its metadata; each of its checks passed for that partition; the metadata plots.
Screenshots go to the test's folder, or to docs/img/ (the README's) with
TELEMETRY_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from telemetry_cli.dagster_graphql import graphql
from tests.conftest import need_service
from tests.daemon.conftest import wait_until
from tests.e2e.test_demo_first_minute import Demo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
EDGES = {
    ("raw_points", "rollup_15m"),
    ("rollup_15m", "rollup_1h"),
    ("rollup_1h", "site_1h"),
    ("site_1h", "portfolio_1h"),
    ("rollup_15m", "site_15m"),
    ("site_15m", "portfolio_15m"),
}
ASSETS = {name for edge in EDGES for name in edge}
CHECKS = """
query Checks($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
  ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name } } } } } }
"""
EXECUTIONS = """
query Runs($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 20) {
    status evaluation { success partition } } }
"""
# The graph as drawn: each node a foreignObject (graph coordinates), each edge an SVG path
# from the right side of its source to just left of its target.
GRAPH_JS = """() => {
  const nodes = [...document.querySelectorAll('foreignObject')].map(e => ({
    name: e.textContent.trim(), x: +e.getAttribute('x'), y: +e.getAttribute('y'),
    w: +e.getAttribute('width'), h: +e.getAttribute('height')}));
  const edges = [...document.querySelectorAll('path[marker-end]')].map(e => e.getAttribute('d'));
  return {nodes, edges};
}"""


def need_browser() -> None:
    if not Path(CHROMIUM).exists():
        need_service("chromium not installed (Debian package chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        need_service("playwright not installed (pip install playwright)")


def drawn_edges(graph: dict) -> set[tuple[str, str]]:
    """(source, target) of every drawn edge, matched to the nodes by geometry. A node's
    text is its name alone when zoomed out, its name then its state when drawn in full."""
    nodes = []
    for n in graph["nodes"]:  # no asset's name begins another's
        named = [a for a in ASSETS if n["name"].startswith(a)]
        if named:
            nodes.append({**n, "name": named[0]})

    def node_at(x: float, y: float, side: str) -> str | None:
        for n in nodes:
            edge_x = n["x"] + n["w"] if side == "right" else n["x"]
            if abs(x - edge_x) <= 12 and n["y"] <= y <= n["y"] + n["h"]:
                return n["name"]
        return None

    found = set()
    for d in graph["edges"]:
        numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
        (x1, y1), (x2, y2) = numbers[:2], numbers[-2:]
        source, target = node_at(x1, y1, "right"), node_at(x2, y2, "left")
        if source and target:
            found.add((source, target))
    return found


def until_shown(action, shown, timeout: float = 240, per_try: float = 5) -> None:
    """Repeat ``action`` until ``shown`` appears: a page that is still loading re-renders
    and can swallow a click or a key press, and on a loaded machine that lasts minutes."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    deadline = time.monotonic() + timeout
    while True:
        try:
            action()
            expect(shown).to_be_visible(timeout=per_try * 1000)
            return
        except (AssertionError, PlaywrightTimeout):
            if time.monotonic() > deadline:
                raise


def passed_for(url: str, asset: str, partition: str) -> list[str]:
    """Names of the asset's checks that passed for ``partition`` (GraphQL)."""
    key = {"path": [asset]}
    node = graphql(url, CHECKS, {"key": key})["assetNodeOrError"]
    names = [c["name"] for c in node["assetChecksOrError"]["checks"]]
    passed = []
    for name in names:
        runs = graphql(url, EXECUTIONS, {"key": key, "check": name})["assetCheckExecutions"]
        mine = [r for r in runs if (r["evaluation"] or {}).get("partition") == partition]
        if mine and all(r["evaluation"]["success"] for r in mine):
            passed.append(name)
    return passed if len(passed) == len(names) else []


def test_dagster_ui_in_chromium(tmp_path: Path):
    need_browser()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)
    started = time.monotonic()

    def stage(what: str) -> None:
        print(f"[{time.monotonic() - started:5.0f}s] {what}", flush=True)

    shots = DOCS_IMG if os.environ.get("TELEMETRY_UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    demo = Demo(tmp_path / "state", sites=3, devices=12, hours=24).start()
    try:
        demo.wait_line(r"Dagster UI ready", 300)
        partition = demo.wait_line(r"newest window (\S+) rolled up as the schedule does", 600)[1]
        checks: list[str] = []

        def recorded() -> bool:
            checks[:] = passed_for(demo.url, "rollup_15m", partition)
            return bool(checks)

        wait_until(
            recorded,
            300,
            f"rollup_15m's checks recorded for {partition}",
            interval=2.0,
        )
        stage("checks recorded for the newest window")
        assert graphql(demo.url, "query { shouldShowNux }")["shouldShowNux"] is False

        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
                executable_path=CHROMIUM,
                args=FLAGS,
                headless=True,
                viewport={"width": 1600, "height": 1000},
            )
            try:
                page = context.new_page()
                page.set_default_timeout(60_000)

                # the asset graph: nothing in front of it, the lineage as drawn
                page.goto(demo.url + "/asset-groups", wait_until="networkidle", timeout=120_000)
                expect(page.get_by_text("Global asset lineage")).to_be_visible()
                assert page.locator('[role="dialog"]').count() == 0
                page.get_by_text("Hide navigation").click()
                # and the asset tree beside the graph: the graph gets the whole width
                page.locator("button:has([aria-label='panel_show_right'])").first.click()
                # "Expand all groups" (a toggle) once the collapsed groups are drawn; again
                # only if a page still loading swallowed the key press
                expect(page.locator("foreignObject", has_text="rollups").first).to_be_visible()
                until_shown(
                    lambda: page.keyboard.press("Alt+e"),
                    page.locator("foreignObject", has_text="portfolio_1h").first,
                    per_try=20,
                )
                page.wait_for_timeout(1500)  # the layout animates into place
                stage("asset graph drawn")
                assert drawn_edges(page.evaluate(GRAPH_JS)) == EDGES
                # each node drawn in full, with its state (latest event, checks, partitions
                # filled): zoomed out, Dagster draws bare names; one step in when it does
                filled = page.locator("foreignObject", has_text="filled").first
                if not filled.is_visible():
                    zoom_in = page.locator("button:has([aria-label='zoom_in'])").first
                    until_shown(zoom_in.click, filled, per_try=5)
                page.wait_for_timeout(1500)  # the zoom animates
                page.screenshot(path=str(shots / "asset-graph.png"))

                stage("asset graph checked")
                # the partition, materialised, with its metadata
                page.goto(f"{demo.url}/assets/rollup_15m?view=partitions&partition={partition}")
                expect(page.get_by_text("Materialized", exact=True).first).to_be_visible()
                for key in ("devices_reporting", "completeness_pct", "energy.energy_kwh.sum"):
                    expect(page.get_by_text(key, exact=True).first).to_be_visible()

                stage("partition checked")
                # each check of that partition, passed, as the check's partition view says
                for check in checks:
                    page.goto(f"{demo.url}/assets/rollup_15m?view=checks&checkDetail={check}")
                    # the check's own tabs (Overview, Execution history, ..., Partitions)
                    expect(page.get_by_text("Execution history", exact=True)).to_be_visible()
                    page.get_by_text("Partitions", exact=True).last.click()
                    in_list = page.get_by_text(partition, exact=True).filter(visible=True).last
                    until_shown(
                        functools.partial(in_list.click, timeout=30_000),
                        page.get_by_text("Latest execution", exact=True),
                    )
                    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()

                stage("checks checked")
                # the metadata plots, one point per partition
                page.goto(f"{demo.url}/assets/rollup_15m?view=overview")
                page.locator('[aria-label="asset_plot"]').first.click()
                plot = page.get_by_text("energy.energy_kwh.sum", exact=True).first
                expect(plot).to_be_visible()
                page.wait_for_timeout(2000)  # the charts lay out, then scroll to this one
                plot.evaluate("e => e.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(1500)
                assert page.locator("canvas").count() > 0
                page.screenshot(path=str(shots / "partition-plot.png"))
            except BaseException:
                page.screenshot(path=str(tmp_path / "failure.png"))  # what the page showed
                print(f"\nthe page at the failure: {tmp_path / 'failure.png'}")
                raise
            finally:
                context.close()
        code, output = demo.stop()
        assert code == 0, output[-3000:]
    finally:
        demo.stop()
        if shots == tmp_path:
            print(f"\nscreenshots in {shots}")
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
