"""Snakemake entry point: draw one figure from its summary table."""

import pandas as pd

from robust_transfer import plots
from robust_transfer.joblog import to_log

to_log(snakemake)
summary = pd.read_csv(snakemake.input.summary, dtype={"size": str})
plots.plot_figure(summary, snakemake.params.spec, snakemake.output.pdf)
