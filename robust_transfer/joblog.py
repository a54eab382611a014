"""Send a Snakemake job's output to its `log:` file."""

from __future__ import annotations

import logging
import sys


def to_log(smk) -> None:
    """Route print, warnings and tracebacks of a `script:` job into its `log:` file."""
    if smk.log:
        stream = open(smk.log[0], "w", buffering=1)
        sys.stdout = sys.stderr = stream
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s", force=True)
