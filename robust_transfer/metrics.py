"""A figure's lines and headline numbers, for DVC (`dvc plots show`, `dvc metrics show`), read
from its summary table (results/figures/<fig>/summary.csv).

Pure Python (csv, no pandas): one quick job per figure."""

from __future__ import annotations

import csv
import math
from collections import defaultdict

DELTA = " - "  # the name of a paired delta, "a - b" (stats.DELTA; a test checks they agree)
LINE_COLUMNS = ["dataset", "line", "series", "x", "mean", "ci_low", "ci_high", "runs"]


def is_delta(name) -> bool:
    return DELTA in str(name)


def read_summary(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _number(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def figure_lines(summary: list[dict]) -> list[dict]:
    """A figure's lines as one tidy table with the same columns for every figure (LINE_COLUMNS):
    `line` is the source, or "k=<k>" where one source's k varies (with the source where several
    do), deltas by their name ("l2_3 - natural", "k=3 - 1"); `series` is "<dataset>: <line>";
    `x` is n, or the epoch for figures over epochs."""
    if not summary:
        return []
    x = "epoch" if "epoch" in summary[0] else "n"
    ks = defaultdict(set)
    for row in summary:
        ks[row["source"]].add(row["k"])
    k_varies = any(is_delta(row["k"]) for row in summary) or any(len(v) > 1 for v in ks.values())

    def line(row):
        if not k_varies:
            return row["source"]
        return f"k={row['k']}" if len(ks) == 1 else f"{row['source']} k={row['k']}"

    lines = [
        {
            "dataset": row["dataset"],
            "line": line(row),
            "series": f"{row['dataset']}: {line(row)}",
            "x": int(row[x]),
            **{c: row[c] for c in ("mean", "ci_low", "ci_high", "runs")},
        }
        for row in summary
    ]
    return sorted(lines, key=lambda r: (r["dataset"], r["line"], r["x"]))


def write_lines(lines: list[dict], path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LINE_COLUMNS)
        writer.writeheader()
        writer.writerows(lines)


def figure_metrics(lines: list[dict], digits: int = 3) -> dict:
    """A figure's headline numbers, one per line, each the mean over the figure's datasets: an
    accuracy line's value at the largest x (the largest n, or the last epoch); a delta line's
    average over x (the mean gain). None where a value is missing."""
    points = defaultdict(list)  # (line, dataset) -> means in order of x
    for row in sorted(lines, key=lambda r: r["x"]):
        points[row["line"], row["dataset"]].append(_number(row["mean"]))
    per_line = defaultdict(list)
    for (line, _), values in points.items():
        per_line[line].append(sum(values) / len(values) if is_delta(line) else values[-1])
    out = {}
    for line in sorted(per_line):
        value = sum(per_line[line]) / len(per_line[line])
        out[line] = None if math.isnan(value) else round(value, digits)
    return out
