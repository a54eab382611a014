"""Snakemake entry point: the authors' logs as our tidy run table."""

# First: the rest of this file runs in a runner process shared with other jobs (config: pack),
# which has imported what follows already.
from robust_transfer.runner import delegate

delegate(snakemake, "light")

import pandas as pd

from robust_transfer import published, stats
from robust_transfer.joblog import to_log

to_log(snakemake)
runs = published.to_run_table(pd.read_csv(snakemake.input.consolidated))
runs.to_csv(snakemake.output.runs, index=False)
print(f"{runs[stats.RUN_KEYS].drop_duplicates().shape[0]} runs, {len(runs)} logged epochs")
