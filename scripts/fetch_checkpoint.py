"""Snakemake entry point: download a source checkpoint, sha256-verified when configured."""

from pathlib import Path

from robust_transfer.files import fetch
from robust_transfer.logs import to_log

to_log(snakemake)
spec = snakemake.config["sources"][snakemake.wildcards.source]
raw = Path(snakemake.output.raw)
fetch(
    spec["url"],
    raw,
    spec.get("sha256"),
    fix=f"Fix sources.{snakemake.wildcards.source}.url (a local path works) or put the file at {raw}.",
)
