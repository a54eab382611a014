"""Snakemake entry point: the authors' published per-run logs (local mirror first)."""

from robust_transfer.files import fetch
from robust_transfer.logs import to_log

to_log(snakemake)
cfg = snakemake.config["published"]
fetch(
    cfg["url"],
    snakemake.output.logs,
    cfg.get("sha256"),
    cfg.get("mirror"),
    fix="Offline? Set published.mirror to a local copy of that file "
    "(e.g. --config 'published={mirror: path/to/consolidated_results.csv}').",
)
