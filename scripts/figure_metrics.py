"""Snakemake entry point: a figure's lines as one tidy table (`dvc plots show`) and its headline
numbers (`dvc metrics show`), from its summary table."""

# First: the rest of this file runs in a runner process shared with other jobs (config: pack),
# which has imported what follows already.
from robust_transfer.runner import delegate

delegate(snakemake, "light")

import json

from robust_transfer import metrics
from robust_transfer.joblog import to_log

to_log(snakemake)
lines = metrics.figure_lines(metrics.read_summary(snakemake.input.summary))
metrics.write_lines(lines, snakemake.output.plot)
with open(snakemake.output.metrics, "w") as f:
    json.dump(metrics.figure_metrics(lines), f, indent=1)
print(f"{len({r['series'] for r in lines})} lines, {len(lines)} points")
