"""Is bf16 autocast safe for the paper's numbers? The same grid, fine-tuned in fp32 and in bf16.

    python benchmarks/precision.py --out /tmp/precision            # CPU: 32 px, n 100 and 400
    python benchmarks/precision.py --out /tmp/precision --size 224  # on a GPU

Runs the real workflow twice on one grid (the demo's sources and digits target, overlaid: input
size, sizes n, seeds, k), once with `finetune.amp: none` (fp32, the authors' setting) and once
with `bf16`, then compares per (source, n): each precision's mean final accuracy with its 95 %
seed bootstrap CI, the difference of the means, whether that difference lies inside both CIs,
and the seed-paired difference (same images, same draws) with its CI. Prints a Markdown table
for docs/precision.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from robust_transfer import files, stats

REPO = Path(__file__).resolve().parents[1]


def overlay(args, amp: str) -> dict:
    """The demo, reduced to one figure (Table 7's layout) over the grid the comparison needs."""
    return {
        "grid": {
            "datasets": ["digits"],
            "sources": list(args.sources),
            "k": [3],
            "sizes": list(args.n),
            # every n named: an overlay merges by_size, so the demo's own entries would stay
            "seeds": {"count": args.seeds, "by_size": {str(n): args.seeds for n in args.n}},
        },
        "finetune": {"input_size": args.size, "amp": amp},
        "figures": {
            **{fig: {"in_all": False} for fig in yaml.safe_load((REPO / "config.yaml").read_text())["figures"]},
            "table7": {"in_all": True, "sources": list(args.sources), "sizes": None, "datasets": ["digits"]},
        },
    }


def run(args, amp: str) -> pd.DataFrame:
    root = args.out / amp
    if not (root / "Snakefile").exists():
        files.copy_workflow(root)
    (root / "precision.yaml").write_text(yaml.safe_dump(overlay(args, amp)))
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/demo", "--cores", str(args.cores)]
    cmd += ["--configfile", "config.demo.yaml", "precision.yaml"]
    start = time.time()
    subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    print(f"{amp}: workflow {time.time() - start:.0f} s", file=sys.stderr)
    values = stats.per_run(
        stats.flag_collapsed(pd.read_csv(root / "results" / "runs.csv", dtype={"size": str})), "final"
    )
    return values.assign(amp=amp)


def compare(fp32: pd.DataFrame, bf16: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    keys = ["source", "size", "seed"]
    both = fp32.merge(bf16, on=keys, suffixes=("_fp32", "_bf16"))
    rows = []
    for (source, size), g in both.groupby(["source", "size"], sort=False):
        a, b = g["value_fp32"].to_numpy(), g["value_bf16"].to_numpy()
        ci_a, ci_b, ci_d = stats.bootstrap_ci(a, seed), stats.bootstrap_ci(b, seed), stats.bootstrap_ci(b - a, seed)
        diff = b.mean() - a.mean()
        inside = all(lo - m <= diff <= hi - m for (lo, hi), m in ((ci_a, a.mean()), (ci_b, b.mean())))
        rows.append(
            dict(source=source, n=size, seeds=len(g), fp32=a.mean(), fp32_ci=ci_a, bf16=b.mean(), bf16_ci=ci_b,
                 difference=diff, inside_both_cis=inside, paired_ci=ci_d, identical=int((a == b).sum()))
        )  # fmt: skip
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    def ci(c):
        return f"[{c[0]:.2f}, {c[1]:.2f}]"

    lines = [
        "| source | n | seeds | fp32 mean [95 % CI] | bf16 mean [95 % CI] | bf16 - fp32 | inside both CIs "
        "| paired difference [95 % CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.source} | {r.n} | {r.seeds} | {r.fp32:.2f} {ci(r.fp32_ci)} | {r.bf16:.2f} {ci(r.bf16_ci)} | "
            f"{r.difference:+.2f} | {'yes' if r.inside_both_cis else 'no'} | {r.difference:+.2f} {ci(r.paired_ci)} |"
        )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="working folder (two workflow copies)")
    p.add_argument("--size", type=int, default=32, help="input size (px)")
    p.add_argument("--n", nargs="+", type=int, default=[100, 400])
    p.add_argument("--sources", nargs="+", default=["natural", "l2_3"])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--cores", type=int, default=2)
    args = p.parse_args()
    table = compare(run(args, "none"), run(args, "bf16"))
    print(markdown(table))
    ok = table["inside_both_cis"].all()
    print(f"\nall differences of means inside both seed CIs: {'yes' if ok else 'no'}")


if __name__ == "__main__":
    main()
