"""Display names of datasets, sources and k, and the titles and report captions made from them.
Pure Python: the Snakefile resolves report captions with it at parse time.

A name comes from a figure's resolved `labels` (grid.figure_spec): the config's top-level
`labels` (the one place a dataset's or source's name lives, so an overlay that renames a source
renames it everywhere), overridden, for that figure only, by the figure's own `labels` (a role
there: "robust", "Natural"). Names may use matplotlib's mathtext (`$\\|\\delta\\|_2 \\leq 3$`);
`plain` turns them into Unicode text for tables and the HTML report.
"""

from __future__ import annotations

import re

from .grid import FULL

DELTA = " - "  # a paired delta's name, "a - b" (stats.DELTA; a test checks they agree)


def is_delta(name) -> bool:
    return DELTA in str(name)


def name(spec, value, by: str = "source") -> str:
    """Display name of a dataset, source or k (by="k": "k=3", unless labelled); a delta
    'a - b' is named part by part."""
    if is_delta(value):
        return DELTA.join(name(spec, v, by) for v in str(value).split(DELTA))
    key = f"k={value}" if by == "k" else str(value)
    return str(spec.get("labels", {}).get(key, key))


def size(value) -> str:
    """A training-set size as shown: 12,800 or full."""
    return str(value) if str(value) == FULL else f"{int(value):,}"


class Names(dict):
    """Title placeholders: {dataset} and {size} (a figure's only one), {source_task} (what a
    study's sources trained on: ImageNet, the demo's digits), or any source, dataset or k=K by
    its display name."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec

    def __missing__(self, key):
        if key == "size":
            return ", ".join(map(size, self.spec["sizes"]))
        if key == "source_task":
            return self.spec.get("source_task", "ImageNet")
        if key == "dataset":
            return ", ".join(name(self.spec, v) for v in self.spec["datasets"])
        return name(self.spec, key)


def title(spec) -> str:
    """The figure's title with its placeholders filled in, and the config's title tag."""
    text = spec.get("title", "").format_map(Names(spec))
    return f"{text} {spec['title_tag']}" if spec.get("title_tag") else text


# mathtext -> Unicode, for the names the configs use; anything else loses only its markup
SYMBOLS = {r"\|": "‖", r"\delta": "δ", r"\epsilon": "ε", r"\leq": "≤", r"\geq": "≥", r"\infty": "∞"}
SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def plain(text) -> str:
    """A name without mathtext, for Markdown and HTML: "$\\|\\delta\\|_2 \\leq 3$" -> "‖δ‖₂ ≤ 3"."""
    text = str(text)
    if "$" not in text:
        return text
    for command, symbol in SYMBOLS.items():
        text = re.sub(re.escape(command) + r"(?![A-Za-z])", symbol, text)
    text = re.sub(r"_\{?(\d+)\}?", lambda m: m.group(1).translate(SUBSCRIPTS), text)
    text = re.sub(r"_\{?(\S)\}?", r"\1", text)  # no Unicode subscript: ‖δ‖∞, as the paper's table
    return re.sub(r"[${}\\]", "", text)


def caption(spec, labels=None) -> dict[str, str]:
    """What the report's caption of a figure or table says, in readable names (the active
    config's labels, mathtext made plain): title, runs selected, delta. A source the figure
    renames for its role is given its top-level name (`labels`) too: "robust (‖δ‖₂ ≤ 3)"."""
    by_k = spec.get("k_by_source") or {}
    top = {"labels": labels or {}}

    def source(s):
        shown, own = name(spec, s), name(top, s)
        notes = ([] if own in (s, shown) else [own]) + ([f"k {', '.join(map(str, by_k[s]))}"] if s in by_k else [])
        return shown + (f" ({', '.join(notes)})" if notes else "")

    sources = [source(s) for s in spec["sources"]]
    out = {
        "title": title(spec),
        "datasets": ", ".join(name(spec, d) for d in spec["datasets"]),
        "sources": ", ".join(sources),
        "k": ", ".join(map(str, spec["k"])),
        "sizes": ", ".join(map(size, spec["sizes"])),
        "seeds": ", ".join(f"{size(n)}: {c}" for n, c in spec["seeds"].items()),
    }
    if spec.get("delta"):
        d = spec["delta"]
        out["delta"] = name(spec, f"{d['a']}{DELTA}{d['b']}", d["by"])
    return {key: plain(text) for key, text in out.items()}
