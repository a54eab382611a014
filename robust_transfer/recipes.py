"""Per-job settings: a recipe section of the config (finetune, salman, pretrain) turned into the
resolved values one job computes with.

Pure Python (the Snakefile resolves each job's `params:` with it at parse time): a rule hands its
script exactly these, so editing a key reruns exactly the jobs that use it.
"""

from __future__ import annotations

from .grid import DEFAULT_RECIPE, Run, size_key

# Training keys that say where and how a job executes, not what it computes: never params, so
# changing one reruns nothing (threads reach a job as its `threads:`, the others through the
# config: `placement`). channels_last changes float rounding only, as threads do.
PLACEMENT = ("threads", "allow_cpu", "channels_last")


def schedule(finetune: dict, size) -> dict:
    """Epochs and evaluation epochs of a run of this size (first matching max_size wins)."""
    for rule in finetune["schedule"]:
        limit = rule.get("max_size")
        if limit is None or size_key(size) <= limit:
            epochs, every = rule["epochs"], rule["eval_every"]
            evals = sorted(set(range(1, epochs + 1, every)) | {epochs})
            return {"epochs": epochs, "eval_epochs": evals}
    raise ValueError(f"finetune.schedule has no entry for size {size}: add one without max_size")


NO_AUGMENT = {"pad": 0, "flip": False, "jitter": 0, "degrees": 0}


def run_settings(config: dict, dataset: str, source: str, size, recipe: str = DEFAULT_RECIPE, lr=None) -> dict:
    """Everything one fine-tuning run computes with: its recipe's section (`finetune`, or another
    study's such as `salman`) resolved for its size (epochs and evaluation epochs instead of the
    schedule table), without placement, and its source's recipe: a source model's weights
    normalised with ImageNet's statistics and an N(0, head_std) head; or, from scratch
    (`random_init`), the authors' switches: a fresh init per run seed (init: run), PyTorch's
    default head (head_std: null), the target's own statistics, no augmentation on the listed
    loaders. Another recipe takes the run's learning rate (`lr`), normalises as that study's
    code does (its `normalize`: the statistics of the loaders it normalises; every other loader
    not at all, mean 0 and std 1) and logs mean per-class accuracy on its `per_class` loaders."""
    from .datasets import LOADERS  # numpy, no torch: still cheap at parse time

    cfg = config[recipe]
    name = config["datasets"][dataset]["loader"]
    loader = LOADERS[name]
    out = {k: v for k, v in cfg.items() if k not in ("schedule", "normalize", "per_class", *PLACEMENT)}
    out.update(schedule(cfg, size), init=None, normalize="imagenet")
    stats = {"dataset": (loader.mean, loader.std), "none": ((0.0,) * 3, (1.0,) * 3)}
    if recipe != DEFAULT_RECIPE:
        out["lr"] = float(lr)
        out["normalize"] = "recipe" if name in cfg["normalize"] else "none"
        stats["recipe"] = cfg["normalize"].get(name)
        out["per_class"] = name in cfg["per_class"]
    scratch = config["sources"][source].get("random_init")
    if scratch is not None:
        out["init"] = "run" if scratch["seed"] == "run" else None
        out["head_std"] = None if scratch.get("head", "default") == "default" else cfg["head_std"]
        out["normalize"] = scratch.get("normalize", "dataset")
        if name in scratch.get("no_augment", []):
            out["augment"] = NO_AUGMENT
    mean, std = stats.get(out["normalize"], (None, None))
    out["mean"], out["std"] = (list(x) if x else None for x in (mean, std))
    return out


def settings_of(config: dict, run: Run) -> dict:
    """run_settings of a run."""
    return run_settings(config, run.dataset, run.source, run.size, run.recipe, run.lr)


def subset_rule(config: dict, source: str) -> str:
    """Which subset rule a source's runs use (data.SUBSET_RULES): the paper's make_mask, or the
    robustness library's make_loaders for from-scratch runs (the authors' `subset` switch)."""
    scratch = config["sources"][source].get("random_init")
    return scratch.get("subset", "make_loaders") if scratch is not None else "make_mask"


def pretrain_settings(config: dict, source: str) -> dict:
    """Everything pretraining a source computes with: the `pretrain` section, overridden by the
    source's own `train` entry (dataset, seed, width, attack, and any `pretrain` key), and its
    architecture where it is not a ResNet-50 (so a ResNet-50 source's settings, and the jobs
    that used them, stay as they were before sources had other architectures)."""
    spec = config["sources"][source]
    merged = {**config["pretrain"], **spec["train"]}
    if spec.get("arch", "resnet50") != "resnet50":
        merged["arch"] = spec["arch"]
    return {k: v for k, v in merged.items() if k not in PLACEMENT}


def placement(config: dict, source: str | None = None, recipe: str = DEFAULT_RECIPE) -> dict:
    """How a training job executes, read from the config by its script (no params, no rerun):
    a fine-tuning run's recipe section (finetune, salman), or pretraining `source`'s pretrain
    section with its train entry on top. allow_cpu: with device auto, train on the CPU when no
    GPU is visible; channels_last: the memory layout training runs in (auto: channels-last on a
    GPU and in bf16; true or false: measured for the shapes at hand, docs/benchmarks.md)."""
    section = config[recipe] if source is None else {**config["pretrain"], **config["sources"][source]["train"]}
    return {"allow_cpu": bool(section["allow_cpu"]), "channels_last": section.get("channels_last", "auto")}
