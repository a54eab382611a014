"""Snakemake entry point: one tidy table of every run of the configured grid."""

# First: the rest of this file runs in a runner process shared with other jobs (config: pack),
# which has imported what follows already.
from robust_transfer.runner import delegate

delegate(snakemake, "light")

from robust_transfer import stats
from robust_transfer.joblog import to_log

to_log(snakemake)
runs = stats.flag_collapsed(stats.read_runs(snakemake.input.runs), snakemake.params.margin)
runs.to_csv(snakemake.output.runs, index=False)
print(f"{len(runs)} rows, {int(runs.drop_duplicates(stats.RUN_KEYS)['collapsed'].sum())} collapsed runs")
