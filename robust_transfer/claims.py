"""The papers' headline claims, checked against a figure's summary (ours or the published one).

A claim (config: `claims`) is a dict::

    {id: l2_beats_natural_small, text: "...", figure: fig2b,
     where: {dataset: [cifar10], size: ["100", "200"]},   # optional: keep rows whose column
                                                           # value is one of these (as strings)
     expect: positive}                                     # or negative, {at_least: x}, {at_most: x}

Optional keys: `column`, the summary column holding the value (default `mean`; the 95 % interval
ci_low..ci_high belongs to `mean` only, so another column is decided on its value alone); and
`source` / `against` (with `by`, default "source") for a curves figure or table: each cell is
then value(source) - value(against) of two rows that share every other key. That difference is
unpaired, so its interval is the widest the two 95 % CIs allow, [low_a - high_b, high_a - low_b]:
the claim is supported only where the two intervals do not overlap, in the expected direction,
and contradicted only where they do not overlap the other way; where either side has no
interval, the difference of the means decides alone. (The paired deltas of a `delta` figure
are the sharper test; use them where a figure has them.) And `origins` (e.g. [ours]) limits
the origins a claim is checked on (table).

Decision, over the selected cells (rows): the expected side is `> 0` (positive), `< 0`
(negative), `>= x` (at_least) or `<= x` (at_most). A cell is *supported* when its whole 95 %
interval lies on the expected side, *contradicted* when it lies wholly on the other side, and
*inconclusive* when it straddles the boundary. A cell without an interval (runs < 2, or no CI:
the published Salman numbers are single runs) is decided on its value alone. The claim is
contradicted if any cell is, supported if every cell is, inconclusive otherwise. The deciding
cell shown is the worst one (a cell with an interval before a single run): the cell furthest on
the wrong side if contradicted, else the one whose interval comes nearest the boundary (or
crosses it most)."""

from __future__ import annotations

import math

import pandas as pd

from .stats import COUNTS

VERDICTS = ("supported", "inconclusive", "contradicted")
NOT_CHECKED = "not checked"  # a claim whose origins are not in the table (ours only, in a published-only one)
NUMBERS = ("mean", "ci_low", "ci_high", "n", *COUNTS)  # a summary's non-key columns
KEYS = ("id", "text", "figure", "where", "expect", "column", "source", "against", "by", "origins")
SINGLE = "single run: no interval"
COLUMNS = [
    "id",
    "text",
    "origin",
    "figure",
    "expect",
    "verdict",
    "cells",
    "deciding",
    "value",
    "ci_low",
    "ci_high",
    "runs",
    "note",
]


def _text(value) -> str:
    """A key value as a string, so that size 100, "100" and 100.0 are the same."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def expectation(claim: dict) -> tuple[float, int, bool, str]:
    """(threshold, direction +1 above / -1 below, strict, words) of a claim's `expect`."""
    expect = claim.get("expect")
    if expect == "positive":
        t, d, strict = 0.0, 1, True
    elif expect == "negative":
        t, d, strict = 0.0, -1, True
    elif isinstance(expect, dict) and len(expect) == 1 and next(iter(expect)) in ("at_least", "at_most"):
        (kind, t), strict = next(iter(expect.items())), False
        if isinstance(t, bool) or not isinstance(t, int | float):
            raise ValueError(f"claim {claim.get('id')!r}: expect {expect} needs a number")
        d = 1 if kind == "at_least" else -1
    else:
        raise ValueError(
            f"claim {claim.get('id')!r}: expect {expect!r}: use positive, negative, {{at_least: x}} or {{at_most: x}}"
        )
    sign = {(1, True): ">", (-1, True): "<", (1, False): ">=", (-1, False): "<="}[(d, strict)]
    side = f"{claim['source']} - {claim['against']} " if claim.get("source") is not None else ""
    return float(t), d, strict, f"{side}{sign} {float(t):g}"


def _validate(claim: dict) -> None:
    name = claim.get("id")
    unknown = sorted(set(claim) - set(KEYS))
    if unknown:
        raise ValueError(f"claim {name!r}: unknown keys {unknown}; a claim has {list(KEYS)}")
    lacking = [k for k in ("id", "text", "figure", "expect") if claim.get(k) is None]
    if lacking:
        raise ValueError(f"claim {name!r}: lacks {lacking}")
    if (claim.get("source") is None) != (claim.get("against") is None):
        raise ValueError(f"claim {name!r}: give both `source` and `against`, or neither")
    if not isinstance(claim.get("where") or {}, dict):
        raise ValueError(f"claim {name!r}: `where` must map columns to values")


def _present(rows: pd.DataFrame, columns) -> str:
    parts = []
    for c in columns:
        if c in rows:
            values = list(dict.fromkeys(_text(v) for v in rows[c]))
            parts.append(f"{c}: {', '.join(values)}")
    return "; ".join(parts)


def _select(claim: dict, summary: pd.DataFrame, origin: str) -> pd.DataFrame:
    """The rows a claim's `where` keeps; no row (or an unknown column) fails, naming what there is."""
    where = claim.get("where") or {}
    label = f"claim {claim['id']!r}: {claim['figure']}" + (f" ({origin})" if origin else "")
    keep = pd.Series(True, index=summary.index)
    for column, wanted in where.items():
        if column not in summary:
            raise ValueError(f"{label} has no column {column!r} (where: {where}); its columns: {list(summary.columns)}")
        values = {_text(v) for v in (wanted if isinstance(wanted, list | tuple) else [wanted])}
        keep &= summary[column].map(_text).isin(values)
    rows = summary[keep]
    by = claim.get("by", "source")
    if claim.get("source") is not None:
        if by not in summary:
            raise ValueError(f"{label} has no column {by!r} to compare {claim['source']} with {claim['against']}")
        sides = {_text(claim["source"]), _text(claim["against"])}
        rows = rows[rows[by].map(_text).isin(sides)]
    if rows.empty:
        shown = [*where, *([by] if claim.get("source") is not None else [])]
        raise ValueError(
            f"{label}: no rows match where {where}"
            + (f" with {by} in [{claim['source']}, {claim['against']}]" if claim.get("source") is not None else "")
            + f"; present: {_present(summary, shown) if not summary.empty else 'no rows at all'}"
        )
    return rows


def _keys(rows: pd.DataFrame, column: str) -> list[str]:
    return [c for c in rows.columns if c not in NUMBERS and c != column and rows[c].notna().any()]


def cells(claim: dict, summary: pd.DataFrame, origin: str = "") -> pd.DataFrame:
    """The selected cells of a claim: their keys, `value`, `low`, `high` (NaN: no interval) and `runs`."""
    column = claim.get("column", "mean")
    rows = _select(claim, summary, origin)
    if column not in rows:
        raise ValueError(f"claim {claim['id']!r}: {claim['figure']} has no column {column!r}")
    keys = _keys(rows, column)

    def interval(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[keys].copy()
        out["value"] = pd.to_numeric(frame[column], errors="coerce")
        runs = frame["runs"] if "runs" in frame else pd.Series(float("nan"), index=frame.index)
        single = runs < 2
        if column == "mean" and {"ci_low", "ci_high"} <= set(frame.columns):
            out["low"] = frame["ci_low"].where(~single)
            out["high"] = frame["ci_high"].where(~single)
        else:
            out["low"] = out["high"] = float("nan")
        out["runs"] = runs
        return out

    if claim.get("source") is None:
        return interval(rows).reset_index(drop=True)
    by = claim.get("by", "source")
    side = rows[by].map(_text)
    a = interval(rows[side == _text(claim["source"])])
    b = interval(rows[side == _text(claim["against"])])
    on = [k for k in keys if k != by]
    both = a.drop(columns=by).merge(b.drop(columns=by), on=on, suffixes=("_a", "_b"))
    if both.empty:
        raise ValueError(
            f"claim {claim['id']!r}: {claim['figure']}" + (f" ({origin})" if origin else "") + f": no cell has both "
            f"{by} {claim['source']} and {claim['against']} with the same {on}; present: "
            f"{_present(_select({**claim, 'source': None}, summary, origin), [by])}"
        )
    out = both[on].assign(**{by: f"{claim['source']} - {claim['against']}"})[keys]
    out["value"] = both["value_a"] - both["value_b"]
    out["low"] = both["low_a"] - both["high_b"]  # unpaired: the two CIs' widest difference
    out["high"] = both["high_a"] - both["low_b"]
    out["runs"] = both[["runs_a", "runs_b"]].min(axis=1)
    return out.reset_index(drop=True)


def decide(cells: pd.DataFrame, threshold: float, direction: int, strict: bool) -> pd.DataFrame:
    """Each cell's `status` (supported / inconclusive / contradicted), whether it has an
    `interval`, and its `margin`: how far inside the expected side it lies (its near end;
    for a contradicted cell, its far end), negative outside."""
    out = cells.copy()
    interval = out["low"].notna() & out["high"].notna()
    # flip a "below" claim into an "above" one: expected side is x > t (strict) or x >= t
    value, t = direction * out["value"], direction * threshold
    low, high = (out["low"], out["high"]) if direction > 0 else (-out["high"], -out["low"])
    low, high = low.where(interval, value), high.where(interval, value)

    def inside(x):
        return x > t if strict else x >= t

    status = pd.Series("inconclusive", index=out.index)
    status[inside(low)] = "supported"
    status[~inside(high) & high.notna()] = "contradicted"
    out["status"] = status
    out["interval"] = interval
    out["margin"] = (high - t).where(status == "contradicted", low - t)
    return out


def check(claim: dict, summary: pd.DataFrame, origin: str = "") -> dict:
    """One claim against one summary: its verdict, the number of cells, the deciding cell (its
    keys in words, value, interval, runs) and a note. See the module's docstring for the rule."""
    _validate(claim)
    t, d, strict, words = expectation(claim)
    decided = decide(cells(claim, summary, origin), t, d, strict)
    rank = decided["status"].map({v: i for i, v in enumerate(VERDICTS)})
    worst = int(rank.max())
    verdict = VERDICTS[worst]
    # the worst cell: one with an interval before a single run, then the least margin
    candidates = decided[rank == worst].assign(_m=lambda c: c["margin"].fillna(-math.inf))
    row = candidates.sort_values(["interval", "_m"], ascending=[False, True], kind="stable").iloc[0]
    keys = [c for c in decided.columns if c not in ("value", "low", "high", "runs", "status", "interval", "margin")]
    counts = decided["status"].value_counts()
    total = len(decided)
    note = [
        f"{counts.get('supported', 0)} of {total} cells {words}"
        + "".join(f", {counts[s]} {s}" for s in VERDICTS[1:] if counts.get(s, 0))
    ]
    singles = int((~decided["interval"]).sum())
    if singles:
        note.append(SINGLE + ("" if singles == total else f" in {singles} of {total} cells"))
    if not row["interval"] and singles != total:
        note.append(f"deciding cell: {SINGLE}")
    if pd.isna(row["value"]):
        note.append("deciding cell has no value")
    return {
        "id": claim["id"],
        "text": claim["text"],
        "origin": origin,
        "figure": claim["figure"],
        "expect": words,
        "verdict": verdict,
        "cells": total,
        "deciding": ", ".join(f"{k}={_text(row[k])}" for k in keys),
        "value": float(row["value"]),
        "ci_low": float(row["low"]) if row["interval"] else float("nan"),
        "ci_high": float(row["high"]) if row["interval"] else float("nan"),
        "runs": row["runs"],
        "note": "; ".join(note),
    }


def table(claims: list[dict], summaries: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """One row per claim and origin (ours first, then published) whose summary of the claim's
    figure is given; summaries are keyed by (origin, figure). A claim's optional `origins`
    (e.g. [ours]: the authors' logs lack k = 9) limits where it is checked: where none of them is
    in this table (a table of the published numbers only), its row says so (verdict `not
    checked`). A claim whose origin is given without its figure's summary fails, naming it."""
    given = list(dict.fromkeys(o for o, _ in summaries))
    origins = sorted(given, key=lambda o: (o != "ours", given.index(o)))
    rows = []
    for claim in claims:
        _validate(claim)
        wanted = claim.get("origins") or origins
        have = [o for o in origins if o in wanted and (o, claim["figure"]) in summaries]
        if not any(o in origins for o in wanted):
            note = f"checked on {', '.join(wanted)} only; none in this table"
            rows.append({"id": claim["id"], "text": claim["text"], "origin": "-", "figure": claim["figure"]})
            rows[-1].update(expect=expectation(claim)[3], verdict=NOT_CHECKED, cells=0, deciding="", note=note)
            continue
        if not have:
            figures = sorted({f for _, f in summaries})
            raise ValueError(
                f"claim {claim['id']!r}: no summary of figure {claim['figure']!r} from {list(wanted)}; given: {figures}"
            )
        rows += [check(claim, summaries[(o, claim["figure"])], o) for o in have]
    return pd.DataFrame(rows, columns=COLUMNS)


def _escape(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _interval(row) -> str:
    if pd.isna(row["value"]):
        return "n/a"
    if pd.isna(row["ci_low"]) or pd.isna(row["ci_high"]):
        return f"{row['value']:.2f} (single run)"
    return f"{row['value']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def markdown(df: pd.DataFrame) -> str:
    """The claims table as Markdown: one row per claim and origin."""
    head = ["claim", "origin", "figure", "expect", "verdict", "cells", "deciding cell", "value [95 % CI]", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for _, r in df.iterrows():
        cols = [
            f"**{r['id']}**: {r['text']}",
            r["origin"],
            r["figure"],
            r["expect"],
            r["verdict"],
            str(r["cells"]),
            r["deciding"],
            _interval(r),
            r["note"],
        ]
        lines.append("| " + " | ".join(_escape(c) for c in cols) + " |")
    counts = df["verdict"].value_counts() if not df.empty else {}
    tally = ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
    skipped = (
        f" ({counts[NOT_CHECKED]} {NOT_CHECKED}: their origins are not in this table)" if NOT_CHECKED in counts else ""
    )
    checked = len(df) - counts.get(NOT_CHECKED, 0)
    return "\n".join(lines) + f"\n\n{checked} checks: {tally}.{skipped}\n"
