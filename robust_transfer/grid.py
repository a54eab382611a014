"""The experiment grid: which runs exist, which each figure needs, and their schedules.

Pure Python (no torch, numpy or pandas): the Snakefile imports this at parse time, and the
Snakefile is re-parsed for every cluster job.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

FULL = "full"


@dataclass(frozen=True)
class Run:
    dataset: str
    source: str
    k: int
    size: str  # "100", ..., or "full"
    seed: int

    @property
    def path(self) -> str:
        return f"results/runs/{self.dataset}/{self.source}/k{self.k}/n{self.size}/s{self.seed}"


def size_key(size) -> float:
    """Sort key and numeric value of a size label; "full" sorts last."""
    return float("inf") if str(size) == FULL else float(size)


def seeds(config: dict, size) -> list[int]:
    """Seeds of a training-set size: seed i is base + step * i (the paper: 20000000 + 100000 i)."""
    spec = config["grid"]["seeds"]
    by_size = {str(k): v for k, v in spec.get("by_size", {}).items()}  # YAML may give int keys
    count = by_size.get(str(size), spec["count"])
    return [spec["base"] + spec["step"] * i for i in range(count)]


def schedule(config: dict, size) -> dict:
    """Epochs and evaluation epochs of a run of this size (first matching max_size wins)."""
    for rule in config["finetune"]["schedule"]:
        limit = rule.get("max_size")
        if limit is None or size_key(size) <= limit:
            epochs, every = rule["epochs"], rule["eval_every"]
            evals = sorted(set(range(1, epochs + 1, every)) | {epochs})
            return {"epochs": epochs, "eval_epochs": evals}
    raise ValueError(f"finetune.schedule has no entry for size {size}: add one without max_size")


def figure_selection(config: dict, fig: str) -> dict:
    """The runs a figure or table uses, with every default filled in from `grid`."""
    spec = config["figures"][fig]
    grid = config["grid"]
    delta = spec.get("delta")
    sel = {
        "datasets": spec.get("datasets", grid["datasets"]),
        "sources": spec.get("sources", grid["sources"]),
        "k": spec.get("k", grid["k"]),
        "sizes": [str(s) for s in spec.get("sizes", grid["sizes"])],
        "k_by_source": spec.get("k_by_source", {}),
    }
    if delta:
        key = {"source": "sources", "k": "k"}[delta["by"]]
        sel[key] = [delta["a"], delta["b"]] if spec["kind"] == "delta" else _union(sel[key], [delta["a"], delta["b"]])
    return sel


def source_ks(selection: dict, source: str) -> list[int]:
    """The k values a figure uses for one source (`k_by_source` overrides `k`)."""
    return [int(k) for k in selection["k_by_source"].get(source, selection["k"])]


def figure_spec(config: dict, fig: str) -> dict:
    """A figure's config entry with its run selection resolved."""
    spec = {**config["figures"][fig], **figure_selection(config, fig), "palette": list(config["datasets"])}
    spec["labels"] = {**config.get("labels", {}), **spec.get("labels", {})}
    return spec


def _union(a: list, b: list) -> list:
    return a + [x for x in b if x not in a]


def figure_runs(config: dict, fig: str) -> list[Run]:
    sel = figure_selection(config, fig)
    return [
        Run(d, s, k, size, seed)
        for d in sel["datasets"]
        for s in sel["sources"]
        for k in source_ks(sel, s)
        for size in sel["sizes"]
        for seed in seeds(config, size)
    ]


def in_all(config: dict) -> list[str]:
    """The figures and tables `snakemake` (rule all) builds: all but the named variants."""
    return [f for f, spec in config["figures"].items() if spec.get("in_all", True)]


def all_runs(config: dict) -> list[Run]:
    """Every run some figure or table of `all` needs, each once, in a stable order."""
    seen: dict[Run, None] = {}
    for fig in in_all(config):
        for run in figure_runs(config, fig):
            seen.setdefault(run, None)
    return list(seen)


def subsets(runs: list[Run]) -> list[tuple[str, str, int]]:
    """The (dataset, size, seed) subsets behind some runs, each once."""
    return list(dict.fromkeys((r.dataset, r.size, r.seed) for r in runs))


def digest(obj) -> str:
    """A short, stable digest of a JSON-serialisable object (run metadata, caching)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
