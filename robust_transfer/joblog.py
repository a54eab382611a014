"""Send a Snakemake job's output to its `log:` file."""

from __future__ import annotations

import logging
import sys
import traceback

from .disk import writing


def to_log(smk) -> None:
    """Route print, warnings and tracebacks of a `script:` job into its `log:` file. A job that
    fails also prints its error's last line where Snakemake shows it (the terminal, the cluster
    job's output), with the log's path: the cause is seen without opening the log."""
    if smk.log:
        with writing(smk.log[0], "job log"):
            stream = open(smk.log[0], "w", buffering=1)
        console = sys.stderr
        sys.stdout = sys.stderr = stream

        def hook(kind, err, tb):
            traceback.print_exception(kind, err, tb, file=stream)
            print(f"{kind.__name__}: {err}\n(traceback in {smk.log[0]})", file=console, flush=True)

        sys.excepthook = hook
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s", force=True)
