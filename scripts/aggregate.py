"""Snakemake entry point: the tidy run table of one figure and its summary (mean, bootstrap CI).

The same for every origin of runs: our per-run metrics, or the authors' converted logs."""

from robust_transfer import stats
from robust_transfer.joblog import to_log

to_log(snakemake)
spec, cfg = snakemake.params.statistics, snakemake.params.settings
runs = stats.select(stats.read_runs(snakemake.input.runs), spec)
runs = stats.flag_collapsed(runs, cfg["collapse_margin"])
runs.to_csv(snakemake.output.runs, index=False)
summary = stats.figure_summary(runs, spec, cfg["bootstrap_seed"], cfg["include_collapsed"])
summary.to_csv(snakemake.output.summary, index=False)
left_out = int(summary["excluded"].sum())
kept = " (included: aggregate.include_collapsed)" if cfg["include_collapsed"] else ""
print(f"{runs[stats.RUN_KEYS].drop_duplicates().shape[0]} runs; {left_out} collapsed run values left out{kept}")
