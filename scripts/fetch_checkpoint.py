"""Snakemake entry point: download a source checkpoint, sha256-verified when configured."""

from pathlib import Path

from robust_transfer.files import fetch
from robust_transfer.joblog import to_log

to_log(snakemake)
raw = Path(snakemake.output.raw)
fetch(
    snakemake.params.url,
    raw,
    snakemake.params.sha256,
    fix=f"Fix sources.{snakemake.wildcards.source}.url (a local path works) or put the file at {raw}.",
    lock=snakemake.params.lock,
)
