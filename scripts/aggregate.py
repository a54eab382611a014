"""Snakemake entry point: the tidy run table of a figure and its summary (mean, bootstrap CI).

Runs come from our per-run logs (input `runs`) or from the authors' converted logs (input
`published`, filtered to the figure's selection)."""

import pandas as pd

from robust_transfer import published, stats
from robust_transfer.logs import to_log

to_log(snakemake)
cfg = snakemake.params.settings
spec = snakemake.params.spec
if "published" in snakemake.input.keys():
    runs = published.select(pd.read_csv(snakemake.input.published, dtype={"size": str}), spec)
else:
    runs = stats.flag_collapsed(stats.read_runs(snakemake.input.runs), cfg["collapse_margin"])
runs.to_csv(snakemake.output.runs, index=False)
summary = stats.figure_summary(runs, spec, cfg["bootstrap_seed"], cfg["include_collapsed"])
summary.to_csv(snakemake.output.summary, index=False)
left_out = int(summary["excluded"].sum())
print(f"{runs[stats.RUN_KEYS].drop_duplicates().shape[0]} runs; {left_out} collapsed run values left out" + (" (included: aggregate.include_collapsed)" if cfg["include_collapsed"] else ""))
