"""Snakemake entry point: the authors' published numbers as our tidy run table: Utrera et al.'s
per-run logs, or (rule study_published_runs) a study's published tables."""

# First: the rest of this file runs in a runner process shared with other jobs (config: pack),
# which has imported what follows already.
from robust_transfer.runner import delegate

delegate(snakemake, "light")

import pandas as pd

from robust_transfer import published, stats
from robust_transfer.joblog import to_log

to_log(snakemake)
if "consolidated" in snakemake.input.keys():
    runs = published.to_run_table(pd.read_csv(snakemake.input.consolidated))
    print(f"{runs[stats.RUN_KEYS].drop_duplicates().shape[0]} runs, {len(runs)} logged epochs")
else:  # a study's tables (Salman et al.)
    read = dict(dtype=str, keep_default_na=False)
    datasets = snakemake.params.datasets
    runs = published.salman_run_table(
        pd.read_csv(snakemake.input.transfer, **read), pd.read_csv(snakemake.input.best_params, **read), datasets
    )
    runs = published.with_dataset_facts(runs, pd.read_csv(snakemake.input.facts), datasets)
    print(runs.groupby("origin").size().to_string())
runs.to_csv(snakemake.output.runs, index=False)
