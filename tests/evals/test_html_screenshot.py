"""An example suite through `keel eval run` into its terminal, JUnit and HTML reports, and the HTML
report opened in headless Chromium (Debian's, installed by `bash scripts/services.sh`): the charts
must show in the screenshot, every mark must be in the DOM, and the page must fetch nothing.

The suite: two prompts × two priced fake models, four cases, two repeats. `echo` passes a and b
(50%, under the 60% threshold: red bars), `loud` passes a, b and d (75%: green bars); `pricey`
costs 30 times `cheap` per token.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

import keel.cli as cli

KEEL_TOML = """\
[models.cheap]
provider = "fake"
model = "cheap-v1"
[models.cheap.price]
input_per_mtok = 1
output_per_mtok = 2

[models.pricey]
provider = "fake"
model = "pricey-v1"
[models.pricey.price]
input_per_mtok = 30
output_per_mtok = 60
"""

SUITE = """\
prompts:
  - name: echo
    messages: [{role: user, content: "{{ text }}"}]
  - name: loud
    messages: [{role: user, content: "{{ text }}!"}]
models: [cheap, pricey]
dataset:
  cases:
    - {id: a, vars: {text: one}, expected: "Echo: one"}
    - {id: b, vars: {text: two}, expected: "Echo: two"}
    - {id: c, vars: {text: three}, expected: "Echo: nope"}
    - {id: d, vars: {text: four}, expected: "Echo: four!"}
assertions:
  - {type: starts-with}
repeat: 2
thresholds: {pass_rate: 0.6}
"""

# The chart colours of keel.evals.charts, as the screenshot must show them.
GREEN, RED, BLUE, PURPLE = (0x33, 0xAA, 0x33), (0xCC, 0x33, 0x33), (0x33, 0x66, 0xCC), (0x99, 0x66, 0xCC)
# Chromium must not reach out on its own either (update checks, sign-in): no name resolves.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars", "--force-device-scale-factor=1",
]


@dataclass
class Reports:
    terminal: str
    junit: Path
    html: Path


@pytest.fixture
def reports(project: Path, capsys: pytest.CaptureFixture[str]) -> Reports:
    (project / "keel.toml").write_text(KEEL_TOML)
    (project / "example.eval.yaml").write_text(SUITE)
    junit, html = project / "report.xml", project / "report.html"
    with pytest.raises(SystemExit) as exited:
        cli.main(["eval", "run", "example.eval.yaml", "--junit", str(junit), "--html", str(html)])
    assert exited.value.code == 1  # two cells miss the 60% threshold
    return Reports(capsys.readouterr().out, junit, html)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run `bash scripts/services.sh` (make test does)")
    profile = Path(tmp_path / "chromium-profile")
    shutil.rmtree(profile, ignore_errors=True)
    done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_the_example_suite_writes_terminal_junit_and_html_reports(reports: Reports) -> None:
    assert "FAILED" in reports.terminal and "threshold: echo × cheap: pass rate 50.0% < 60%" in reports.terminal
    [suite] = ET.parse(reports.junit).getroot().findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("16", "6", "0")
    page = reports.html.read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg class='chart-") == 3


def test_chromium_renders_the_charts(reports: Reports, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1400", reports.html.as_uri())
    image = Image.open(shot).convert("RGB")

    # Pass rate: 4 bars on a 260 px track, two rows of red 50% bars above two rows of green 75% ones.
    red_count, red = painted(image, RED)
    green_count, green = painted(image, GREEN)
    assert red is not None and green is not None, "no pass-rate bars in the screenshot"
    # (A box may lose an edge row or column to anti-aliasing where the page puts it between pixels.)
    assert near(red.width, 130) and near(red.height, 50) and near(green.width, 195) and near(green.height, 50)
    assert near(green.left, red.left) and near(green.top, red.bottom + 6)
    assert 0.9 * 2 * 130 * 22 <= red_count <= 2 * 130 * 22 and 0.9 * 2 * 195 * 22 <= green_count <= 2 * 195 * 22

    # Cost against quality: the cheap points sit 1/30 of the way along the 340 px axis, the
    # pricey ones at its end, the 75% points 45 px above the 50% ones; each dot is ~10 px across.
    blue_count, blue = painted(image, BLUE)
    assert blue is not None, "no points in the cost/quality chart"
    assert 340 * 29 / 30 + 6 <= blue.width <= 340 * 29 / 30 + 11 and 45 + 6 <= blue.height <= 45 + 11
    assert 4 * 30 <= blue_count <= 4 * 80

    # Latency: the tallest bucket is 170 px high, and buckets stand on one baseline.
    purple_count, purple = painted(image, PURPLE)
    assert purple is not None, "no latency histogram in the screenshot"
    assert near(purple.height, 170) and purple_count >= 168 * 30

    # The three charts are side by side or below one another, never on top of each other.
    assert not red.overlaps(blue) and not green.overlaps(blue) and not purple.overlaps(blue)
    assert purple.top > max(green.bottom, blue.bottom)


def test_chromium_finds_every_mark_in_the_dom(reports: Reports, tmp_path: Path) -> None:
    dom = Dom()
    dom.feed(chromium(tmp_path, "--dump-dom", reports.html.as_uri()).stdout)
    assert dom.svgs == ["chart-pass-rate", "chart-cost-quality", "chart-latency"]
    bars = [title for cls, title in dom.marks if cls == "bar"]
    assert [b.split(" (")[0] for b in bars] == [
        "echo × cheap: 50.0%", "echo × pricey: 50.0%", "loud × cheap: 75.0%", "loud × pricey: 75.0%"]
    points = sorted(title for cls, title in dom.marks if cls.startswith("point"))
    assert points == [
        "echo × cheap: 50.0% at $0.005 per 1,000 requests", "echo × pricey: 50.0% at $0.15 per 1,000 requests",
        "loud × cheap: 75.0% at $0.005 per 1,000 requests", "loud × pricey: 75.0% at $0.15 per 1,000 requests"]
    buckets = [int(title.split()[0]) for cls, title in dom.marks if cls == "bucket"]
    assert sum(buckets) == 2 * 2 * 4 * 2  # every answer's latency is in one bucket
    assert dom.links == []


def test_the_report_fetches_nothing(reports: Reports, tmp_path: Path) -> None:
    assert page_requests(tmp_path, reports.html) == []
    # The same check catches a page that does fetch something.
    leaky = tmp_path / "leaky.html"
    leaky.write_text(reports.html.read_text().replace("<h2>Charts</h2>", "<img src='https://example.invalid/logo.png'>"))
    assert page_requests(tmp_path, leaky) == ["https://example.invalid/logo.png"]


def near(measured: int, expected: float) -> bool:
    return abs(measured - expected) <= 1.5


def page_requests(tmp_path: Path, page: Path) -> list[str]:
    """The URLs the page itself asked for, from Chromium's network log (its own background
    requests have no initiator origin and are left out)."""
    log = tmp_path / "netlog.json"
    chromium(tmp_path, f"--log-net-log={log}", "--dump-dom", page.as_uri())
    data = json.loads(log.read_text())
    start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [event["params"]["url"] for event in data["events"]
            if event["type"] == start and "url" in event.get("params", {})
            and event["params"].get("initiator") != "not an origin"]


@dataclass
class Box:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def overlaps(self, other: Box) -> bool:
        return self.left < other.right and other.left < self.right and self.top < other.bottom and other.top < self.bottom


def painted(image: Image.Image, rgb: tuple[int, int, int]) -> tuple[int, Box | None]:
    """How many pixels are exactly this colour, and the box around them."""
    masks = [band.point(lambda v, want=want: 255 if v == want else 0) for band, want in zip(image.split(), rgb)]
    mask = ImageChops.multiply(ImageChops.multiply(masks[0], masks[1]), masks[2])
    box = mask.getbbox()
    return mask.histogram()[255], Box(*box) if box else None


class Dom(HTMLParser):
    """The charts' classes, each chart mark's class with its <title>, and any link out of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[str] = []
        self.marks: list[tuple[str, str]] = []
        self.links: list[str] = []
        self._mark: str | None = None
        self._title: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found: dict[str, Any] = dict(attrs)
        cls = found.get("class") or ""
        if tag == "svg":
            self.svgs.append(cls)
        elif cls.split() and cls.split()[0] in {"bar", "point", "bucket"}:
            self._mark = cls
        elif tag == "title" and self._mark is not None:
            self._title = []
        self.links += [value for name, value in attrs if name in {"src", "href", "xlink:href", "srcset", "action"} and value]
        self.links += re.findall(r"url\(([^)]*)\)", found.get("style") or "")

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)
        if self.lasttag == "style":
            self.links += re.findall(r"url\(([^)]*)\)|@import", data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title is not None and self._mark is not None:
            self.marks.append((self._mark, "".join(self._title)))
            self._mark = self._title = None
