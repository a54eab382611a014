"""Snakemake entry point: one fine-tuning run (dataset, source, k, n, seed)."""

from robust_transfer.grid import Run
from robust_transfer.joblog import to_log
from robust_transfer.runs import run_job

to_log(snakemake)
w = snakemake.wildcards
run = Run(w.dataset, w.source, int(w.k), w.size, int(w.seed))
run_job(snakemake.input, snakemake.output, run, snakemake.params.settings, snakemake.threads, snakemake.params.state)
