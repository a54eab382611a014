"""Render each figure rebuilt from the authors' logs next to the paper's page (docs images).

    snakemake published_figures            # figures/published/*.pdf from the April-2020 logs
    python docs/side_by_side.py PAPER.pdf  # needs pdftoppm (Debian/Ubuntu: poppler-utils)

Writes docs/side_by_side/<fig>.png: left the paper's page, right our figure.
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

# Figure id -> (page of the ICLR 2021 PDF, top and bottom of the figure as fractions of the page).
PAGES = {f: (4, 0.35, 0.61) for f in ("fig2a", "fig2b")} | {f: (4, 0.60, 0.86) for f in ("fig3a", "fig3b")}
PAGES |= {f: (5, 0.67, 0.88) for f in ("fig4a", "fig4b")} | {f"fig5{p}": (6, 0.44, 0.67) for p in "abcde"}
PAGES |= {f"fig10{p}_{n}": (16, 0.08, 0.46) for p in "ab" for n in (800, 12800)}
PAGES |= {f"fig11{p}_{s}": (17, 0.08, 0.77) for p in "ab" for s in ("l2", "linf4", "linf8")}


def png(pdf: Path, out: Path, page: int = 1, dpi: int = 80) -> Path:
    subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-f", str(page), "-l", str(page), "-singlefile", str(pdf), str(out)], check=True)
    return out.with_suffix(".png")


def main(paper: Path, figures: Path = Path("figures/published"), dest: Path = Path("docs/side_by_side")) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pages = {p: mpimg.imread(png(paper, Path(tmp) / f"page{p}", p, dpi=150)) for p, _, _ in PAGES.values()}
        for fig, (page, top, bottom) in PAGES.items():
            ours = png(figures / f"{fig}.pdf", Path(tmp) / fig, dpi=110)
            f, (a, b) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1.4, 1]})
            img = pages[page]
            a.imshow(img[int(top * len(img)) : int(bottom * len(img))])
            a.set_title(f"paper, page {page}", fontsize=9)
            b.imshow(mpimg.imread(ours))
            b.set_title(f"{fig}: ours, rebuilt from the authors' April-2020 logs", fontsize=9)
            for ax in (a, b):
                ax.axis("off")
            f.tight_layout()
            f.savefig(dest / f"{fig}.png", dpi=90)
            plt.close(f)
            print(dest / f"{fig}.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
