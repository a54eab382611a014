"""Snakemake entry point: one fine-tuning run (dataset, source, k, n, seed)."""

from robust_transfer.runs import run_job
from robust_transfer.logs import to_log

to_log(snakemake)
run_job(snakemake.input, snakemake.output, snakemake.wildcards, snakemake.config, snakemake.threads)
