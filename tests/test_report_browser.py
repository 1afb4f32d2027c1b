"""The report looked at in a real browser: headless Chromium renders every figure.

Slow (it may install Debian's chromium first): run by `make bench`, not in CI.
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

pytestmark = pytest.mark.slow

CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 50 && i.naturalHeight > 50);
  // the content width: the body's box less its padding
  const body = getComputedStyle(document.body);
  const content = document.body.clientWidth - parseFloat(body.paddingLeft)
                  - parseFloat(body.paddingRight);
  const narrow = imgs.filter(i => i.getBoundingClientRect().width < 0.9 * content)
                     .map(i => i.alt.slice(0, 60));
  // a column that is empty ("", "–", "-") in every row of its table
  const empty = [];
  for (const table of document.querySelectorAll('table')) {
    const rows = Array.from(table.tBodies[0] ? table.tBodies[0].rows : []);
    if (!rows.length) continue;
    const head = Array.from(table.tHead ? table.tHead.rows[0].cells : []);
    head.forEach((th, i) => {
      const blank = rows.every(r => !r.cells[i] || ['', '–', '-'].includes(
        r.cells[i].textContent.trim()));
      if (blank) empty.push(`${table.caption ? table.caption.textContent : '?'}: ${th.textContent}`);
    });
  }
  const out = document.createElement('pre');
  out.id = 'render-check';
  out.textContent = `images=${imgs.length} rendered=${ok.length} content=${content} ` +
    `narrow=${JSON.stringify(narrow)} empty=${JSON.stringify(empty)}`;
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False,
                       capture_output=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("chromium")
    if not found:
        pytest.skip("chromium is not installed and could not be installed (apt-get install chromium)")
    return found


def run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--virtual-time-budget=5000"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120)


def test_every_figure_renders_in_chromium(tmp_path):
    """Every figure renders at ≥ 90 % of the content width, and no table has a column that
    is empty in every row."""
    binary = chromium()
    results, benchmarks = fabricate(tmp_path / "study", seeds=(0, 1, 2))
    fabricate_beyond(tmp_path / "study")
    report = Path(build_report(results, beyond_config(), tmp_path / "report.html",
                               benchmarks_dir=benchmarks))
    html = report.read_text()
    n_images = html.count("<img")
    assert n_images >= 4
    checked = tmp_path / "checked.html"
    checked.write_text(html.replace("</body>", CHECK + "</body>"))
    profile = tmp_path / "profile"
    dom = run_chromium(binary, f"--user-data-dir={profile}", "--dump-dom", checked.as_uri())
    m = re.search(r"images=(\d+) rendered=(\d+) content=([\d.]+) narrow=(.*?) empty=(.*?)</pre>",
                  dom.stdout)
    assert m, dom.stderr[-2000:]
    assert int(m.group(1)) == n_images
    assert int(m.group(2)) == n_images, "some figures did not render"
    assert float(m.group(3)) > 600
    assert json.loads(htmllib.unescape(m.group(4))) == [], "figures narrower than 90 %"
    assert json.loads(htmllib.unescape(m.group(5))) == [], "columns empty in every row"
    shot = tmp_path / "report.png"
    run_chromium(binary, f"--user-data-dir={profile}", f"--screenshot={shot}",
                 "--window-size=1280,6000", report.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000  # a page with figures, not a blank one
    keep = os.environ.get("REPORT_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
