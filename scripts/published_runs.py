"""Snakemake entry point: the authors' logs as our tidy run table (collapsed runs flagged)."""

import pandas as pd

from robust_transfer import published, stats
from robust_transfer.logs import to_log

to_log(snakemake)
runs = published.to_run_table(pd.read_csv(snakemake.input.logs))
runs = stats.flag_collapsed(runs, snakemake.params.margin)
runs.to_csv(snakemake.output.runs, index=False)
flags = runs.drop_duplicates(stats.RUN_KEYS)["collapsed"]
print(f"{len(flags)} runs, {len(runs)} logged epochs, {int(flags.sum())} collapsed")
