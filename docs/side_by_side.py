"""Render each figure rebuilt from the authors' logs next to the paper's page (docs images).

    snakemake published_figures            # figures/published/*.pdf from the April-2020 logs
    python docs/side_by_side.py PAPER.pdf  # needs pdftoppm (Debian/Ubuntu: poppler-utils)

Writes docs/side_by_side/<fig>.png: left the paper's figure (cropped from its page), right ours;
tables too (ours drawn from figures/published/<table>.md).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

# Figure id -> (page of the ICLR 2021 PDF, left, top, right, bottom of the figure as fractions
# of the page).
PAGES = {"fig2a": (4, 0.12, 0.345, 0.585, 0.548), "fig2b": (4, 0.585, 0.345, 0.88, 0.548)}
PAGES |= {"fig3a": (4, 0.12, 0.655, 0.585, 0.85), "fig3b": (4, 0.585, 0.655, 0.88, 0.85)}
PAGES |= {"fig4a": (5, 0.12, 0.63, 0.585, 0.83), "fig4b": (5, 0.585, 0.63, 0.88, 0.83)}
PAGES |= {f: (6, 0.12, 0.455, 0.39, 0.645) for f in ("fig5a", "fig5b")}  # (a) and (b) share axes
PAGES |= {"fig5c": (6, 0.39, 0.455, 0.60, 0.645)} | {f: (6, 0.60, 0.455, 0.84, 0.645) for f in ("fig5d", "fig5e")}
for n, (top, bottom) in {800: (0.095, 0.27), 12800: (0.265, 0.445)}.items():
    PAGES |= {f"fig10a_{n}": (16, 0.12, top, 0.61, bottom), f"fig10b_{n}": (16, 0.585, top, 0.90, bottom)}
for s, (top, bottom) in {"l2": (0.10, 0.28), "linf4": (0.29, 0.47), "linf8": (0.48, 0.66)}.items():
    PAGES |= {f"fig11a_{s}": (17, 0.08, top, 0.585, bottom), f"fig11b_{s}": (17, 0.585, top, 0.92, bottom)}
TABLES = {"table2": (7, 0.08, 0.53, 0.92, 0.68), "table7": (20, 0.12, 0.06, 0.86, 0.86)}


def png(pdf: Path, out: Path, page: int = 1, dpi: int = 80) -> Path:
    subprocess.run(
        ["pdftoppm", "-png", "-r", str(dpi), "-f", str(page), "-l", str(page), "-singlefile", str(pdf), str(out)],
        check=True,
    )
    return out.with_suffix(".png")


def _crop(img, box):
    left, top, right, bottom = box
    h, w = img.shape[:2]
    return img[int(top * h) : int(bottom * h), int(left * w) : int(right * w)]


def _table(ax, md: Path) -> None:
    """Our table as a picture: the Markdown's cells (display names, bold best), or its note."""
    lines = [ln for ln in md.read_text().splitlines() if ln.startswith("|")]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if not set(ln) <= set("|:- ")]
    if len(rows) < 2:  # no runs: say so instead of drawing an empty grid
        ax.text(0.5, 0.5, md.read_text().strip().splitlines()[-1], ha="center", va="center", wrap=True, fontsize=9)
        return
    t = ax.table(
        cellText=[[c.replace("**", "") for c in r] for r in rows[1:]],
        colLabels=rows[0],
        loc="upper center",
        cellLoc="center",
    )
    t.auto_set_font_size(False)
    t.set_fontsize(6 if len(rows) > 20 else 9)
    t.scale(1, 0.9 if len(rows) > 20 else 1.6)
    for (r, c), cell in t.get_celld().items():
        cell.set_linewidth(0.2)
        if r > 0 and rows[r][c].startswith("**"):
            cell.set_text_props(fontweight="bold")


def main(paper: Path, figures: Path = Path("figures/published"), dest: Path = Path("docs/side_by_side")) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        needed = {page for page, *_ in [*PAGES.values(), *TABLES.values()]}
        pages = {p: mpimg.imread(png(paper, Path(tmp) / f"page{p}", p, dpi=200)) for p in needed}
        for fig, (page, *box) in {**PAGES, **TABLES}.items():
            tall = fig == "table7"
            f, (a, b) = plt.subplots(1, 2, figsize=(16, 11 if tall else 5.5))
            a.imshow(_crop(pages[page], box))
            a.set_title(f"paper, page {page}", fontsize=10)
            if fig in TABLES:
                _table(b, figures / f"{fig}.md")
            else:
                b.imshow(mpimg.imread(png(figures / f"{fig}.pdf", Path(tmp) / fig, dpi=150)))
            b.set_title(f"{fig}: ours, rebuilt from the authors' April-2020 logs", fontsize=10)
            for ax in (a, b):
                ax.axis("off")
            f.tight_layout()
            f.savefig(dest / f"{fig}.png", dpi=100)
            plt.close(f)
            print(dest / f"{fig}.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
