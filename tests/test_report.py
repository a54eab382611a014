"""`snakemake --report report.html` after the README's demo (the session fixture `demo`), looked
at as a reader does: in a real headless Chromium, clicking through the report's own pages to a
figure, and reading its captions and labels. Needs Chromium (Debian: `apt-get install chromium`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import clone_results, load_config, missing

from robust_transfer import grid

pytestmark = pytest.mark.slow
CONFIG = load_config("config.demo.yaml")
FIGURES = [f for f in grid.in_all(CONFIG) if CONFIG["figures"][f]["kind"] != "table"]
TABLES = [f for f in grid.in_all(CONFIG) if CONFIG["figures"][f]["kind"] == "table"]
WINDOW = (1400, 900)


@pytest.fixture(scope="module")
def report(demo, tmp_path_factory) -> Path:
    """The report of the finished demo, made as the README says (same workflow profile)."""
    root = clone_results(demo, tmp_path_factory.mktemp("report") / "wf")
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/demo", "--report", "report.html"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "report.html"


def results(report: Path) -> dict:
    """The report's results, as its page script holds them: path -> name, caption, labels, data."""
    text = report.read_text()
    found = re.search(r'<script id="results">\s*var results = (\{.*?\});\s*</script>', text, re.S)
    assert found, "the report holds no results"
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def browser() -> str:
    """Chromium's executable, looked for before the report is made."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    missing("Chromium is not installed (Debian: apt-get install chromium)")


# Clicks through the report as a reader would: Results, the category, then the eye button of the
# row whose first cell is the result's id, and the menu's close button (the view gets the window).
CLICKS = """<script>
const link = (text) => [...document.querySelectorAll("nav a")].find((a) => a.textContent.trim() === text);
const row = (id) => [...document.querySelectorAll("nav tr")].find((r) => r.cells[0].textContent.trim() === id);
const steps = [() => link("Results").click(), () => link(%(category)s).click()];
if (%(id)s) steps.push(() => row(%(id)s).querySelector("a[iconname=eye]").click());
if (%(id)s) steps.push(() => document.querySelector("nav h1 a[type=button]").click());
window.addEventListener("load", () => steps.forEach((step, i) => setTimeout(step, 300 * (i + 1))));
</script>"""


def browse(browser: str, report: Path, category: str, fig: str | None, out: Path, what: str) -> Path:
    """The report in headless Chromium after clicking to `category` (and to `fig`'s view):
    `what` = "screenshot" (a PNG) or "dump-dom" (the rendered page)."""
    head, body, tail = report.read_text().rpartition("</body>")
    page = out.with_suffix(".html")
    page.write_text(head + CLICKS % {"category": json.dumps(category), "id": json.dumps(fig)} + body + tail)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
        cmd += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
        cmd += [f"--user-data-dir={profile}", "--virtual-time-budget=5000", f"--window-size={WINDOW[0]},{WINDOW[1]}"]
        cmd += [f"--screenshot={out}"] if what == "screenshot" else ["--dump-dom"]
        proc = subprocess.run([*cmd, page.as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    if what == "dump-dom":  # the rendered elements, without the page's scripts
        out.write_text(re.sub(r"<script.*?</script>", "", proc.stdout, flags=re.S))
    return out


@pytest.mark.parametrize("fig", ["fig2a", "fig2b"])
def test_each_figure_shows_as_a_drawn_image_in_chromium(browser, report, fig, tmp_path):
    """Clicking a figure's eye button (and closing the menu) shows its drawing: the screenshot is
    the figure's white page with its ink (axes, lines, text), not the empty pane a PDF leaves in
    headless Chromium."""
    shot = (
        plt.imread(browse(browser, report, "Figures", fig, tmp_path / f"{fig}.png", "screenshot"))[..., :3] * 255
    ).round()
    assert shot.shape[:2] == (WINDOW[1], WINDOW[0])
    colours, counts = np.unique(shot.reshape(-1, 3), axis=0, return_counts=True)
    background = colours[counts.argmax()]
    ink = (np.abs(shot - background).max(axis=-1) > 64).mean()  # lines, markers, text
    print(f"{fig}: background {background.astype(int).tolist()}, ink {100 * ink:.2f} % of the window")
    assert background.min() >= 240 and ink > 0.01, f"{fig}: the report shows an empty pane ({background}, {ink:.4f})"
    page = browse(browser, report, "Figures", fig, tmp_path / f"{fig}.dom", "dump-dom").read_text()
    shown = re.findall(r'<img src="(data:[^;"]+)', page.split("</nav>")[-1])
    assert shown == ["data:image/png"], shown


def test_figure_rows_show_their_counts_including_zero(browser, report, tmp_path):
    """The Figures page lists each figure with its counts; a count of 0 reads 0, never blank."""
    page = browse(browser, report, "Figures", None, tmp_path / "figures.dom", "dump-dom").read_text()
    heads = [re.sub(r"<[^>]+>", "", h).strip().lower() for h in re.findall(r"<th[^>]*>(.*?)</th>", page)]
    rows = {
        cells[0]: dict(zip(heads, cells))
        for tr in re.findall(r"<tr>(.*?)</tr>", page)
        if (cells := [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)])
    }
    assert sorted(rows) == sorted(FIGURES), sorted(rows)
    for fig, row in rows.items():
        assert row["collapsed runs"] == "0" and row["points short of seeds"] == "0", (fig, row)
        assert row["seeds (grid)"] == "3" and row["points"].isdigit(), (fig, row)


def test_captions_are_filled_from_the_demo_config_in_readable_names(report):
    """Every figure and table of `all` and the run table are in the report; each caption has
    its title's placeholders filled, the demo's names (its L2 source is 0.5, not the paper's 3;
    digits 5-9, not `digits`), and says how many seeds and collapsed runs it has."""
    entries = results(report)
    wanted = [f"figures/{f}.png" for f in FIGURES] + [f"figures/{f}.csv" for f in TABLES] + ["results/runs.csv"]
    assert not set(wanted) - set(entries), f"not in the report: {sorted(set(wanted) - set(entries))}"
    assert not [p for p in entries if p.endswith(".pdf")], "a PDF in the report shows as an empty pane"
    captions = {p: re.sub(r"<[^>]+>", "", entries[p]["caption"]) for p in wanted[:-1]}
    for path, text in captions.items():
        assert not re.search(r"[{}$\\]|\bl2_3\b|\blinf_\d\b", text), (path, text)
        assert "seed" in text and "(demo)" in text, (path, text)
    assert "Fig 2b: ‖δ‖₂ ≤ 0.5 - natural, k=3 (demo)" in captions["figures/fig2b.png"]
    assert "datasets digits 5-9, LFW faces" in captions["figures/fig2b.png"]
    assert "n=20 (demo)" in captions["figures/fig3a.png"] and "robust (‖δ‖₂ ≤ 0.5)" in captions["figures/fig3a.png"]
    assert "‖δ‖₂ ≤ 0.5" in captions["figures/table7.csv"] and "≤ 3" not in captions["figures/table7.csv"]
    assert "collapsed" in entries["results/runs.csv"]["caption"]


def test_figure_targets_make_the_png_beside_the_pdf(report):
    """The PDF stays the target a user builds; its job writes the PNG the report shows, the same
    figure (a drawn image of the PDF's aspect ratio)."""
    root = report.parent
    for fig in FIGURES:
        pdf, png = root / "figures" / f"{fig}.pdf", root / "figures" / f"{fig}.png"
        assert pdf.read_bytes().startswith(b"%PDF") and png.exists(), fig
        box = [float(v) for v in re.search(rb"/MediaBox \[([^\]]+)\]", pdf.read_bytes()).group(1).split()]
        image = plt.imread(png)
        assert image.shape[1] / image.shape[0] == pytest.approx((box[2] - box[0]) / (box[3] - box[1]), rel=0.01), fig
        assert np.std(image[..., :3]) > 0.05, fig
