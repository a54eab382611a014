"""Studies: each paper's datasets, sources, recipe, grid and figures, declared once.

Utrera et al. (ICLR 2021) is the top-level `grid`, `finetune` and the figures without a `study`
key: its paths and targets are the workflow's original ones. Every other study is an entry of
`studies:` (config.yaml): its recipe (a settings section, like `finetune`), its datasets, its
source families (one URL pattern over architectures, norms and epsilons, expanded here into
`sources` entries that carry their architecture, norm, epsilon and ImageNet top-1; or, with
`sources.train`, pretrained here: the demo), `extra` sources of its own, its grid
(modes, learning rates, seeds) and its published numbers; its figures are the `figures` entries
with `study: <name>`, whose ids start with `<name>/` (figures/salman2020/headline.md).

Pure Python (csv, no pandas): the Snakefile expands the studies at parse time.
"""

from __future__ import annotations

import csv
from pathlib import Path

from . import grid

UTRERA = "utrera2021"  # the top-level study

# Short, path-friendly names of the robustness library's architectures (their URL names).
ARCH_NAMES = {
    "resnet18": "r18",
    "resnet50": "r50",
    "wide_resnet50_2": "wrn50_2",
    "wide_resnet50_4": "wrn50_4",
    "densenet": "densenet",
    "mnasnet": "mnasnet",
    "mobilenet": "mobilenet",
    "resnext50_32x4d": "resnext50",
    "shufflenet": "shufflenet",
    "vgg16_bn": "vgg16bn",
}
# Width of the four ResNets of the width study: bottleneck channels of the first block (x64).
WIDTH = {"resnet18": 1, "resnet50": 1, "wide_resnet50_2": 2, "wide_resnet50_4": 4}


def eps_label(eps: str | float) -> str:
    """An epsilon as a name shows it: "4.0" -> "4", "0.25" -> "0.25"."""
    return format(float(eps), "g")


def source_name(arch: str, norm: str, eps) -> str:
    """r50_l2_3, r18_linf_0.5, wrn50_4_l2_0.01: the name of a study's source."""
    return f"{ARCH_NAMES[arch]}_{norm}_{eps_label(eps)}"


def read_imagenet(path: Path) -> dict[tuple[str, str, float], float]:
    """(arch, norm, eps) -> ImageNet top-1 % of the source, from the reference CSV. Where it lists a
    model twice (the submission's table and the final README), the final README's wins."""
    out: dict[tuple[str, str, float], float] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["arch"], row["norm"], float(row["eps"]))
            if key not in out or "README" in row["source"]:
                out[key] = float(row["imagenet_top1"])
    return out


def family_sources(study: dict, basedir: Path) -> dict[str, dict]:
    """The `sources` entries of a study's source families, in the families' order: fetched from
    the study's `url` pattern, or, where the study sets `train`, pretrained here (rule
    pretrain_source) with those pretrain keys and the family's own `train` (width_per_group):
    naturally at eps 0, else with PGD in the family's norm at its eps (L-infinity in /255)."""
    spec = study.get("sources") or {}
    imagenet = read_imagenet(basedir / spec["imagenet"]) if spec.get("imagenet") else {}
    out = {}
    for family in spec.get("families", []):
        norm = family["norm"]
        for arch in family["archs"]:
            for eps in family["eps"]:
                eps_text = str(eps)
                top1 = imagenet.get((arch, norm, float(eps)))
                entry = {
                    "url": spec["url"].format(arch=arch, norm=norm, eps=eps_text) if spec.get("url") else None,
                    "arch": arch,
                    "norm": norm,
                    "eps": float(eps),
                    "imagenet_top1": top1,
                    "note": f"{arch} {norm} eps={eps_text}" + (f", ImageNet {top1:.2f}%" if top1 is not None else ""),
                }
                if spec.get("train") is not None:
                    entry.update(url=None, train=pretraining(spec["train"], family, norm, float(eps)))
                    entry["note"] = f"{arch} {norm} eps={eps_text}, pretrained here on {spec['train']['dataset']}"
                out[source_name(arch, norm, eps)] = entry
    return out


def pretraining(train: dict, family: dict, norm: str, eps: float) -> dict:
    """A family source's `train` entry: the study's pretrain keys, the family's own, and its
    attack (PGD with the study's `steps`; none at eps 0; L-infinity eps from /255 to [0, 1])."""
    keys = {k: v for k, v in train.items() if k != "steps"}
    attack = None
    if eps > 0:
        attack = {"norm": norm, "eps": eps / 255 if norm == "linf" else eps, "steps": train["steps"]}
    return {**keys, **(family.get("train") or {}), "attack": attack}


def expand(config: dict, basedir: Path) -> None:
    """Add every study's family sources to config["sources"] (in place). A user's own entry of the
    same name wins key by key: `sources: {r50_l2_3: {url: /data/r50_l2_3.ckpt}}` points one source
    at a local file and keeps its architecture and metadata."""
    for study in (config.get("studies") or {}).values():
        for name, spec in family_sources(study, basedir).items():
            config["sources"][name] = {**spec, **config["sources"].get(name, {})}


def study_sources(config: dict, study: str) -> list[str]:
    """A study's sources, in its families' order."""
    spec = config["studies"][study].get("sources") or {}
    names = [
        source_name(arch, f["norm"], eps) for f in spec.get("families", []) for arch in f["archs"] for eps in f["eps"]
    ]
    return list(dict.fromkeys(names + list(spec.get("extra") or [])))


def study_of(config: dict, fig: str) -> str:
    return config["figures"][fig].get("study") or UTRERA


def figures_of(config: dict, study: str) -> list[str]:
    return [f for f in config["figures"] if study_of(config, f) == study]


def seeds(study: dict) -> list[int]:
    spec = study["seeds"]
    return [spec["base"] + spec["step"] * i for i in range(spec["count"])]


def source_meta(config: dict, source: str) -> dict:
    spec = config["sources"][source]
    return {k: spec.get(k) for k in ("arch", "norm", "eps", "imagenet_top1")}


def selection(config: dict, fig: str) -> dict:
    """The runs of a study figure, every default filled in from its study: datasets, sources
    (the study's, narrowed by the figure's archs, norm and eps), modes, learning rates (the
    figure's `lr`: a narrower grid), seeds."""
    spec, study = config["figures"][fig], config["studies"][study_of(config, fig)]
    sources = spec.get("sources") or [
        s
        for s in study_sources(config, study_of(config, fig))
        if _matches(config["sources"].get(s, {}), spec.get("archs"), spec.get("norm"), spec.get("eps"))
    ]
    return {
        "study": study_of(config, fig),
        "recipe": study["recipe"],
        "datasets": spec.get("datasets") or study["datasets"],
        "sources": sources,
        "modes": spec.get("modes") or study["modes"],
        "lr": [float(x) for x in spec.get("lr") or study["lr"]],
        "seeds": seeds(study),
        "sizes": [grid.FULL],
    }


def _matches(source: dict, archs, norm, eps) -> bool:
    return (
        (not archs or source.get("arch") in archs)
        and (not norm or source.get("norm") == norm)
        and (eps is None or source.get("eps") in [float(e) for e in eps])
    )


def figure_runs(config: dict, fig: str) -> list[grid.Run]:
    sel = selection(config, fig)
    return [
        grid.Run(d, s, grid.MODE_K[mode], grid.FULL, seed, sel["recipe"], lr)
        for d in sel["datasets"]
        for mode in sel["modes"]
        for s in sel["sources"]
        for lr in sel["lr"]
        for seed in sel["seeds"]
    ]
