"""Snakemake entry point: the authors' published per-run logs (local mirror first)."""

from robust_transfer.files import fetch
from robust_transfer.joblog import to_log

to_log(snakemake)
fetch(
    snakemake.params.url,
    snakemake.output.consolidated,
    snakemake.params.sha256,
    snakemake.params.mirror,
    fix="Offline? Set published.mirror to a local copy of that file "
    "(e.g. --config 'published={mirror: path/to/consolidated_results.csv}').",
    lock=snakemake.params.lock,
)
