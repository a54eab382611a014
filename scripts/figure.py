"""Snakemake entry point: draw one figure (PDF and PNG) from its summary table; with the authors' summary
(`theirs`, rule compare), ours next to theirs in a table and both in one figure. Rule table (and
its kin, whose outputs are `csv` and `md`): the table (CSV and Markdown) instead."""

# First: the rest of this file runs in a runner process shared with other jobs (config: pack),
# which has imported what follows already.
from robust_transfer.runner import delegate

delegate(snakemake, "light")

import pandas as pd

from robust_transfer import plots, stats, sweeps
from robust_transfer.joblog import to_log

to_log(snakemake)
spec = snakemake.params.spec
study = "study" in spec  # a study's figure or table (Salman et al.): robust_transfer.sweeps
summary = pd.read_csv(snakemake.input.summary, dtype={"size": str})
if "md" in snakemake.output.keys():  # a table
    (sweeps if study else plots).write_table(summary, spec, snakemake.output.csv, snakemake.output.md)
else:
    theirs = None
    if "theirs" in snakemake.input.keys():
        theirs = pd.read_csv(snakemake.input.theirs, dtype={"size": str})
        compared = sweeps.compare(summary, theirs) if study else stats.compare(summary, theirs)
        compared.to_csv(snakemake.output.table, index=False, float_format="%.3f")
    draw = sweeps.plot if study else plots.plot_figure
    draw(summary, spec, snakemake.output.pdf, reference=theirs, png=snakemake.output.png)
