"""The numbers of a finished demo copy (both demos), or how far two copies' numbers are apart.

    python benchmarks/demo_numbers.py COPY            # one copy's numbers
    python benchmarks/demo_numbers.py COPY OTHER      # both, and the largest differences

COPY is a workflow folder where `snakemake all salman2020 --workflow-profile profiles/demo` ran.
Used to measure how much the demos move on another CPU (docs/demo.md): run both demos in two
copies, one with the kernels another CPU would use, e.g. an AVX2-only one:

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        snakemake all salman2020 --workflow-profile profiles/demo

Printed per copy: the first demo's mean final accuracy per target and source at n = 80; the
second demo's mean best accuracy per target, mode and source; every pretrained source's clean
accuracy; the second demo's peak-table margins. With two copies: each table's largest absolute
difference, and the margins side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from robust_transfer import checkpoints

MARGINS = ("best robust - eps 0", "interior peak - better end")


def numbers(root: Path) -> dict[str, pd.Series]:
    """Named series of one finished copy (index: what the number is of)."""
    out = {}
    runs = pd.read_csv(root / "results" / "runs.csv", dtype={"size": str})
    final = runs.sort_values("epoch").groupby(["dataset", "source", "k", "size", "seed"]).tail(1)
    out["first demo: mean final accuracy at n = 80"] = (
        final[final["size"] == "80"].groupby(["dataset", "source"])["test_acc"].mean()
    )
    study = pd.concat(pd.read_csv(f) for f in (root / "results" / "figures" / "salman2020").glob("*/runs.csv"))
    best = study.groupby(["dataset", "mode", "source", "seed"])["test_acc"].max().groupby(level=[0, 1, 2]).mean()
    out["second demo: mean best accuracy"] = best
    sources = sorted((root / "results" / "sources").glob("*.pt"))
    clean = {p.stem: float(checkpoints.load(p)[1]["test_acc"]) for p in sources}
    out["sources: clean accuracy on held-out digits 0-4"] = pd.Series(clean)
    peak = pd.read_csv(root / "figures" / "salman2020" / "peak.csv").set_index(["dataset", "mode", "arch"])
    out["second demo: peak-table margins"] = peak[list(MARGINS)].stack()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("copies", nargs="+", type=Path, help="one or two finished workflow copies")
    args = p.parse_args()
    if len(args.copies) > 2:
        p.error("one or two copies")
    got = [numbers(root) for root in args.copies]
    for name in got[0]:
        table = pd.concat([g[name].rename(str(root)) for g, root in zip(got, args.copies)], axis=1)
        print(f"\n{name}\n{table.round(2).to_string()}")
        if len(got) == 2:
            diff = (table.iloc[:, 1] - table.iloc[:, 0]).abs()
            at = diff.idxmax()
            where = " / ".join(map(str, at)) if isinstance(at, tuple) else at
            print(f"largest difference: {diff.max():.2f} points ({where})")


if __name__ == "__main__":
    main()
