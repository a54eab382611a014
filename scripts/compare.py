"""Snakemake entry point: ours next to the authors' numbers, and an overlay of both figures."""

import pandas as pd

from robust_transfer import plots, stats
from robust_transfer.joblog import to_log

to_log(snakemake)
ours = pd.read_csv(snakemake.input.ours, dtype={"size": str})
theirs = pd.read_csv(snakemake.input.theirs, dtype={"size": str})
stats.compare(ours, theirs).to_csv(snakemake.output.table, index=False, float_format="%.3f")
plots.plot_figure(ours, snakemake.params.spec, snakemake.output.pdf, reference=theirs)
