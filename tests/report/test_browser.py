"""The report in a real browser: headless Chromium loads report.html with no console errors, every
figure decodes (naturalWidth/naturalHeight > 0), and a screenshot is saved.

How: no DevTools client is needed. The test writes check.html, a copy of report.html with one inline
script added that, on `load`, writes a JSON summary of document.images (complete, naturalWidth,
naturalHeight) and of any error events (captured, so failed resource loads count) into a
<pre id="bitscale-check">. `chromium --headless=new --dump-dom` prints the DOM after the page has
loaded (--virtual-time-budget lets the load event fire), and `--enable-logging=stderr --v=0` puts
every console message in stderr as `...:CONSOLE...] "message", source: URL (line)`. The script logs one
probe message, so the test knows console capture works; any other console line fails the test.
A second run with --screenshot saves a PNG of the unmodified report.html (to the test's tmp dir, and to
$BITSCALE_SCREENSHOT_DIR when set). --host-resolver-rules maps every host to nowhere, so a page that
tried to fetch anything could not. The test skips when no Chromium binary is found
($BITSCALE_CHROMIUM, else chromium, chromium-browser, google-chrome on PATH); on Debian:
apt-get install -y chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bitscale.report import build_report

from .test_report import _hand_store

PROBE = "bitscale-console-probe"
CHECK = """<script>
console.info("%s");
var bitscaleErrors = [];
window.addEventListener("error", function (e) {
  bitscaleErrors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || "error"));
}, true);
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (i) {
    return {complete: i.complete, width: i.naturalWidth, height: i.naturalHeight, alt: i.alt};
  });
  var out = document.createElement("pre");
  out.id = "bitscale-check";
  out.textContent = JSON.stringify({images: images, errors: bitscaleErrors, title: document.title});
  document.body.appendChild(out);
});
</script>""" % PROBE


def chromium_binary() -> str | None:
    candidates = [os.environ.get("BITSCALE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                  "google-chrome-stable"]
    for name in candidates:
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120)


def test_report_renders_in_headless_chromium(tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary (set BITSCALE_CHROMIUM or install it: apt-get install -y chromium)")
    db = tmp_path / "hand.db"
    _hand_store(db, lambda w: 0.5 * (16 / w))
    out = tmp_path / "report"
    result = build_report(db, out, law="power_N", bootstrap=10)
    page = result.html_path.read_text()
    assert "</body>" in page
    check = out / "check.html"
    check.write_text(page.replace("</body>", CHECK + "</body>"))

    proc = chromium(binary, "--virtual-time-budget=10000", "--dump-dom", check.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="bitscale-check">(.*?)</pre>', proc.stdout, re.S)
    assert found, "the check script did not run:\n" + proc.stdout[-2000:] + proc.stderr[-2000:]
    state = json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                       .replace("&amp;", "&"))
    assert state["errors"] == []
    assert len(state["images"]) >= 2
    for image in state["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image

    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert any(PROBE in line for line in console), "console messages are not captured:\n" + proc.stderr[-2000:]
    assert [line for line in console if PROBE not in line] == []

    shot = tmp_path / "report.png"
    proc = chromium(binary, f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars",
                    result.html_path.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 10_000
    if os.environ.get("BITSCALE_SCREENSHOT_DIR"):
        target = Path(os.environ["BITSCALE_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / "report.png")
