"""The report looked at in a real browser: headless Chromium (Debian's package) renders it.

Every figure is drawn, no script error reaches the console, the verdict summary fits the first
1280×800 screen, the interactive parts respond (tabs, legend toggles, hover values, sorting,
the Grad-CAM slider), and the page is at most a third of the old report's height. Part of
`make test`: `.ci/run` installs Chromium as it starts the SLURM test cluster; where Chromium is
missing and cannot be installed, the test skips and says so.
"""

from __future__ import annotations

import html as htmllib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import beyond_config, fabricate, fabricate_beyond

from deepfake_lth.report import build_report

OLD_HEIGHT = 49_000  # px at 1280 px wide: the report before the verdict summary and tabs

# Runs before the page's own script: every error and console.error is kept.
TRAP = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message)));
const __error = console.error;
console.error = function () { window.__errors.push(Array.from(arguments).join(' '));
                              __error.apply(console, arguments); };
</script>"""

# Runs after it: measures, then clicks, hovers and slides, and writes what it saw.
CHECK = """<script>
window.addEventListener('load', () => {
  const r = {errors: window.__errors};
  const imgs = Array.from(document.images);
  r.images = imgs.length;
  r.drawn = imgs.filter(i => i.complete && i.naturalWidth > 50 && i.naturalHeight > 50).length;
  const charts = Array.from(document.querySelectorAll('.chart svg'));
  r.charts = charts.length;
  // a chart in another dataset's tab is drawn but hidden: it counts once its tab is shown
  r.charts_drawn = charts.filter(s => (s.getBoundingClientRect().width > 200
                                       || s.closest('.part[hidden]'))
                                 && s.querySelectorAll('.series [data-tip]').length > 0).length;
  r.height = document.documentElement.scrollHeight;
  r.width = document.documentElement.clientWidth;
  const rows = Array.from(document.querySelectorAll('#summary table.summary tbody tr'));
  r.summary_rows = rows.length;
  r.summary_bottom = rows.length ? Math.max(...rows.map(x => x.getBoundingClientRect().bottom)) : 1e9;
  r.summary_estimates = rows.filter(x => x.cells[2].textContent.trim()).length;
  r.details_open = Array.from(document.querySelectorAll('details')).filter(d => d.open).length;
  r.rules_collapsed = !document.getElementById('rules').open;
  // tabs: the second dataset's tab hides the first dataset's parts
  const bar = document.querySelector('.tabs[role=tablist]');
  if (bar && bar.children.length > 1) {
    const sec = bar.parentElement;
    const first = bar.children[0].dataset.group, second = bar.children[1].dataset.group;
    const before = sec.querySelector(`.part[data-group="${first}"]`).offsetHeight > 0;
    bar.children[1].click();
    r.tabs = before && sec.querySelector(`.part[data-group="${first}"]`).offsetHeight === 0
             && sec.querySelector(`.part[data-group="${second}"]`).offsetHeight > 0;
    bar.children[0].click();
  }
  // legend toggle: a method's series disappears and comes back
  const btn = document.querySelector('.legend button[data-series="1"]');
  if (btn) {
    const series = btn.closest('figure').querySelector('.series[data-series="1"]');
    btn.click();
    const hidden = getComputedStyle(series).display === 'none';
    btn.click();
    r.legend = hidden && getComputedStyle(series).display !== 'none';
  }
  // hover: a marker's value appears in the tooltip
  const mark = Array.from(document.querySelectorAll('.chart .series [data-tip]'))
    .find(x => x.getBoundingClientRect().width > 0);
  if (mark) {
    mark.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
    const tip = document.getElementById('tip');
    r.hover = getComputedStyle(tip).display === 'block' && /accuracy \\d/.test(tip.textContent);
  }
  // sorting: a numeric column sorts ascending, then descending
  const table = Array.from(document.querySelectorAll('section table.sortable'))
    .find(t => t.tBodies[0] && t.tBodies[0].rows.length > 3 && t.tHead.rows[0].cells.length > 3);
  if (table) {
    const th = table.tHead.rows[0].cells[2];
    const col = () => Array.from(table.tBodies[0].rows).map(x =>
      parseFloat(x.cells[2].textContent.replace('\\u2212', '-'))).filter(x => !isNaN(x));
    th.click();
    const up = col();
    th.click();
    const down = col();
    r.sort = up.length > 1 && up.every((x, i) => i === 0 || up[i - 1] <= x)
             && down.every((x, i) => i === 0 || down[i - 1] >= x) && up[0] < up[up.length - 1];
  }
  // the Grad-CAM slider: another sparsity shows another image
  const slider = document.querySelector('figure.frames input[type=range]');
  if (slider) {
    const img = slider.closest('figure').querySelector('img');
    const src = img.src;
    slider.value = slider.max;
    slider.dispatchEvent(new Event('input', {bubbles: true}));
    r.slider = +slider.max > 0 && img.src !== src;
  }
  const out = document.createElement('pre');
  out.id = 'render-check';
  out.textContent = JSON.stringify(r);
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False,
                       capture_output=True, env=env)
        found = shutil.which("chromium")
    if not found:
        pytest.skip("Chromium is not installed and could not be installed here "
                    "(`apt-get install chromium` as root; .ci/run does it)")
    return found


def run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", "--window-size=1280,800", "--virtual-time-budget=5000"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The report of a study with three seeds and every section beyond the paper, as
    Chromium saw it at 1280×800."""
    binary = chromium()
    tmp = tmp_path_factory.mktemp("browser")
    results, benchmarks = fabricate(tmp / "study", seeds=(0, 1, 2))
    fabricate_beyond(tmp / "study")
    report = Path(build_report(results, beyond_config(), tmp / "report.html",
                               benchmarks_dir=benchmarks))
    page = report.read_text()
    checked = tmp / "checked.html"
    checked.write_text(page.replace("<head>", "<head>" + TRAP, 1)
                       .replace("</body>", CHECK + "</body>"))
    dom = run_chromium(binary, f"--user-data-dir={tmp / 'profile'}", "--dump-dom",
                       checked.as_uri())
    m = re.search(r'<pre id="render-check">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert m, f"Chromium did not run the page's checks: {dom.stderr[-2000:]}"
    return json.loads(htmllib.unescape(m.group(1))), dom, page, binary, report, tmp


def test_every_figure_is_drawn_and_no_console_error(rendered):
    seen, dom, page, *_ = rendered
    assert seen["errors"] == [], seen["errors"]
    assert "Uncaught" not in dom.stderr
    assert seen["images"] == page.count("<img") and seen["drawn"] == seen["images"]
    assert seen["charts"] >= 2 and seen["charts_drawn"] == seen["charts"]


def test_the_first_screen_shows_every_verdict(rendered):
    seen, _, page, binary, report, tmp = rendered
    assert seen["summary_rows"] >= 12 and seen["summary_estimates"] == seen["summary_rows"]
    assert seen["summary_bottom"] <= 800, "the verdict summary does not fit 1280×800"
    assert seen["rules_collapsed"] and seen["details_open"] == 0  # rules, evidence folded
    shot = tmp / "first-screen.png"
    run_chromium(binary, f"--user-data-dir={tmp / 'profile2'}", f"--screenshot={shot}",
                 report.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000  # a page, not a blank one
    keep = os.environ.get("REPORT_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_interactive_elements_respond(rendered):
    seen = rendered[0]
    for part in ("tabs", "legend", "hover", "sort", "slider"):
        assert seen.get(part) is True, f"{part} did not respond: {seen}"


def test_the_report_is_a_third_of_the_old_height(rendered):
    seen = rendered[0]
    assert seen["width"] >= 1200
    assert seen["height"] <= OLD_HEIGHT / 3, seen["height"]
