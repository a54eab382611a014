"""Snakemake entry point: write one table (CSV and Markdown) from its summary table."""

# First: the rest of this file runs in a runner process shared with other jobs (config: pack),
# which has imported what follows already.
from robust_transfer.runner import delegate

delegate(snakemake, "light")


import pandas as pd

from robust_transfer import plots
from robust_transfer.joblog import to_log

to_log(snakemake)
summary = pd.read_csv(snakemake.input.summary, dtype={"size": str})
plots.write_table(summary, snakemake.params.spec, snakemake.output.csv, snakemake.output.md)
