"""Snakemake entry point: one tidy table of every run of the configured grid."""

from robust_transfer import stats
from robust_transfer.joblog import to_log

to_log(snakemake)
runs = stats.flag_collapsed(stats.read_runs(snakemake.input.runs), snakemake.params.margin)
runs.to_csv(snakemake.output.runs, index=False)
print(f"{len(runs)} rows, {int(runs.drop_duplicates(stats.RUN_KEYS)['collapsed'].sum())} collapsed runs")
