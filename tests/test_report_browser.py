"""The report looked at in a real browser: headless Chromium renders every figure.

Slow (it may install Debian's chromium first): run by `make bench`, not in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deepfake_lth.report import build_report

from test_report import config, fabricate

pytestmark = pytest.mark.slow

CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 50 && i.naturalHeight > 50);
  const out = document.createElement('pre');
  out.id = 'render-check';
  out.textContent = `images=${imgs.length} rendered=${ok.length}`;
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
    binary = chromium()
    results, benchmarks = fabricate(tmp_path / "study", seeds=(0, 1))
    report = Path(build_report(results, config(seeds=(0, 1)), tmp_path / "report.html",
                               benchmarks_dir=benchmarks))
    html = report.read_text()
    n_images = html.count("<img")
    assert n_images >= 4
    checked = tmp_path / "checked.html"
    checked.write_text(html.replace("</body>", CHECK + "</body>"))
    profile = tmp_path / "profile"
    dom = run_chromium(binary, f"--user-data-dir={profile}", "--dump-dom", checked.as_uri())
    m = re.search(r"images=(\d+) rendered=(\d+)", dom.stdout)
    assert m, dom.stderr[-2000:]
    assert int(m.group(1)) == n_images
    assert int(m.group(2)) == n_images, "some figures did not render"
    shot = tmp_path / "report.png"
    run_chromium(binary, f"--user-data-dir={profile}", f"--screenshot={shot}",
                 "--window-size=1280,2400", report.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000  # a page with figures, not a blank one
    keep = os.environ.get("REPORT_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
