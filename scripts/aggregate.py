"""Snakemake entry point: the tidy run table of a figure and its summary (mean, bootstrap CI)."""

from robust_transfer import grid, stats
from robust_transfer.logs import to_log

to_log(snakemake)
cfg = snakemake.config["aggregate"]
runs = stats.flag_collapsed(stats.read_runs(snakemake.input.runs), cfg["collapse_margin"])
runs.to_csv(snakemake.output.runs, index=False)
spec = grid.figure_spec(snakemake.config, snakemake.wildcards.fig)
summary = stats.figure_summary(runs, spec, cfg["bootstrap_seed"], cfg["include_collapsed"])
summary.to_csv(snakemake.output.summary, index=False)
left_out = int(summary["excluded"].sum())
print(f"{runs[stats.RUN_KEYS].drop_duplicates().shape[0]} runs; {left_out} collapsed run values left out" + (" (included: aggregate.include_collapsed)" if cfg["include_collapsed"] else ""))
