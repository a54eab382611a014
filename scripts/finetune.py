"""Snakemake entry point: one fine-tuning run (dataset, source, k, n, seed)."""

# First: the rest of this file runs in a runner process shared with other jobs (config: pack),
# which has imported what follows already.
from robust_transfer.runner import delegate

delegate(snakemake, "train")

from robust_transfer.grid import Run
from robust_transfer.joblog import to_log
from robust_transfer.recipes import placement
from robust_transfer.runs import run_job

to_log(snakemake)
run = Run.of(snakemake.wildcards)
# allow_cpu and channels_last, like threads, say how the job runs: read from the config, not
# params (no rerun)
how = placement(snakemake.config, recipe=run.recipe)
log = snakemake.log[0] if snakemake.log else None
run_job(
    snakemake.input,
    snakemake.output,
    run,
    snakemake.params.settings,
    snakemake.threads,
    snakemake.params.state,
    how,
    log,
)
