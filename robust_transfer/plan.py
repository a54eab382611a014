"""What a target costs before it runs: fine-tuning runs, images, device hours and disk.

    python -m robust_transfer.plan figures/fig5c.pdf            # one figure (972 runs)
    python -m robust_transfer.plan                              # everything (`snakemake all`)
    python -m robust_transfer.plan all --workflow-profile profiles/demo     # the demo (CPU rates)

Targets expand into runs exactly as the workflow does (robust_transfer.grid); a run trains on
n x epochs images and evaluates the whole test set at every logged epoch. Device seconds come
from one cost model whose constants live in benchmarks/costs.yaml, one entry per device, each
either measured (by benchmarks/side_by_side.py: machine, command and date recorded there) or an
estimate with its basis. `time_limit` is the same model for one job: its SLURM `runtime`, with a margin.

Pure Python (PyYAML, and NumPy through the dataset registry): no torch.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from . import grid, recipes, sizes, studies

COSTS = Path(__file__).resolve().parents[1] / "benchmarks" / "costs.yaml"


# ---------------------------------------------------------------------------------------------
# The cost model


@functools.lru_cache(maxsize=4)
def _read_costs(path: str) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def load_costs(path: Path | str | None = None) -> dict:
    return copy.deepcopy(_read_costs(str(path or COSTS)))  # a copy the caller may edit


def _costs() -> dict:
    """The costs file as read once per process, not to be edited (per job and per run below)."""
    return _read_costs(str(COSTS))


def device_entry(costs: dict, name: str | None = None) -> dict:
    name = name or costs["default"]
    if name not in costs["devices"]:
        raise SystemExit(f"plan: no device {name!r} in the costs file; one of {sorted(costs['devices'])}")
    return {"name": name, **costs["devices"][name]}


def _rate(device: dict, k: int) -> float:
    """Training images per second of a run that trains k blocks; k = -1 (every parameter, Salman
    et al.'s full-network, and pretraining) at the slowest rate listed: at least the work of the
    whole network (the authors' k = 16 rate is their from-scratch runs, without augmentation on
    the MNISTs, so not the slowest)."""
    rates = {int(key): v for key, v in device["train"].items()}
    rate = min(rates.values()) if k == -1 else rates.get(k)
    if rate is None:
        raise ValueError(f"plan: device {device.get('name')!r} has no training rate for k={k}")
    return rate


def arch_cost(costs: dict, arch: str | None) -> float:
    """Per-image compute of an architecture relative to a ResNet-50 (the rates are a ResNet-50's)."""
    return float((costs.get("arch_compute") or {}).get(arch or "resnet50", 1.0))


def run_seconds(settings: dict, n: int, test_size: int, k: int, device: dict, arch_factor: float = 1.0) -> float:
    """Device seconds of one fine-tuning run: per-run start-up, then every epoch (a fixed cost and
    n images at the training rate of its k) and every logged evaluation (the whole test set).
    Rates are a ResNet-50's at device["input_size"]; another input size scales them by its pixel
    count, another architecture by its compute (arch_factor)."""
    scale = (settings["input_size"] / device["input_size"]) ** 2 * arch_factor
    epochs, evals = settings["epochs"], len(settings["eval_epochs"])
    train = n * epochs * scale / _rate(device, k) + epochs * device.get("epoch_seconds", 0.0)
    return device["run_seconds"] + train + test_size * evals * scale / device["eval"]


def run_minutes(settings: dict, n: int, test_size: int, k: int, device: dict) -> float:
    """run_seconds in minutes."""
    return run_seconds(settings, n, test_size, k, device) / 60


# The time limit a job asks for (its `resources: runtime`, rules/common.smk) is this model's
# estimate on the config's device (device_for), with a margin: slower GPUs, busy file systems.
SAFETY = 3  # time limit = SAFETY x estimate
MIN_MINUTES = 10  # never ask for less (start-up of Snakemake and the job itself)


def _limit(seconds: float, attempt: int) -> int:
    return attempt * max(MIN_MINUTES, math.ceil(SAFETY * seconds / 60))


def time_limit(config: dict, run: grid.Run, attempt: int = 1) -> int:
    """Minutes a fine-tuning job asks for: SAFETY x its estimate, at least MIN_MINUTES, times the
    attempt (1, then 2, 3 when profiles/slurm retries it). Sizes the registry cannot tell before
    preparing are estimated (sizes.split_size)."""
    costs = _costs()
    device = device_for(config, costs)
    settings = recipes.settings_of(config, run)
    n = sizes.split_size(config, run.dataset, "train") if run.size == grid.FULL else int(run.size)
    test = sizes.split_size(config, run.dataset, "test")
    arch = arch_cost(costs, config["sources"][run.source].get("arch"))
    return _limit(run_seconds(settings, n, test, run.k, device, arch), attempt)


def pretrain_limit(config: dict, source: str, attempt: int = 1) -> int:
    """Minutes pretraining a source asks for: every epoch over its training split at the rate of
    the whole network, each image 1 + PGD steps times (an adversarial step costs a forward and
    backward pass per PGD step); one clean and one adversarial test pass at the end."""
    costs = _costs()
    device = device_for(config, costs)
    cfg = recipes.pretrain_settings(config, source)
    attack = cfg.get("attack") or {}
    passes = 1 + (attack.get("steps") or 0 if attack.get("eps") else 0)
    scale = (cfg["input_size"] / device["input_size"]) ** 2
    train = sizes.split_size(config, cfg["dataset"], "train") * cfg["epochs"] * passes * scale / _rate(device, -1)
    test = sizes.split_size(config, cfg["dataset"], "test") * (1 + passes) * scale / device["eval"]
    return _limit(device["run_seconds"] + train + cfg["epochs"] * device.get("epoch_seconds", 0.0) + test, attempt)


# ---------------------------------------------------------------------------------------------
# Targets -> runs


def target_runs(config: dict, target: str) -> list[grid.Run]:
    """The fine-tuning runs a target needs: `all`, results/runs.csv, a study (salman2020), a
    figure or table (figures/fig5c.pdf, figures/table7.md, fig5c, figures/salman2020/headline.md;
    figures/compare/... too), a claims table, one run's file. Published numbers
    (figures/published/..., salman2020_published) need none."""
    studies = list(config.get("studies") or {})
    if target in ("all", "results/runs.csv"):
        return grid.all_runs(config)
    if target in studies:
        return grid.all_runs(config, target)
    if target.startswith("figures/published/") or target.removesuffix("_published") in studies:
        return []
    m = re.fullmatch(r"results/runs/([^/]+)/([^/]+)/([^/]+)/n(\d+|full)/s(\d+)(?:\.csv|\.json)?", target)
    if m:
        return [grid.Run.of(argparse.Namespace(dataset=m[1], source=m[2], tuning=m[3], size=m[4], seed=m[5]))]
    fig = re.sub(r"\.(pdf|png|md|csv)$", "", target.removeprefix("figures/").removeprefix("compare/"))
    if fig == "claims" or fig.removesuffix("/claims") in studies:
        study = config["studies"][fig.removesuffix("/claims")] if fig != "claims" else config
        return [r for c in study.get("claims") or [] for r in grid.figure_runs(config, c["figure"])]
    if fig not in config["figures"]:
        raise SystemExit(f"plan: {target!r} is not a figure or table of the config ({', '.join(config['figures'])})")
    return grid.figure_runs(config, fig)


def expand(config: dict, targets: list[str]) -> list[grid.Run]:
    """Every run of the targets, each once, in a stable order."""
    seen: dict[grid.Run, None] = {}
    for target in targets:
        for run in target_runs(config, target):
            seen.setdefault(run, None)
    return list(seen)


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass
class Row:
    runs: int = 0
    train_images: int = 0
    eval_images: int = 0
    seconds: float = 0.0


@dataclass
class Plan:
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)  # (dataset, size) -> totals
    unknown: set[str] = field(default_factory=set)  # datasets whose sizes the registry does not know
    datasets: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)

    @property
    def total(self) -> Row:
        out = Row()
        for r in self.rows.values():
            out.runs += r.runs
            out.train_images += r.train_images
            out.eval_images += r.eval_images
            out.seconds += r.seconds
        return out


def run_seconds_of(config: dict, run: grid.Run, device: dict) -> float:
    """The plan's device seconds of one run (0 where the dataset's sizes are unknown yet)."""
    settings = recipes.settings_of(config, run)
    n = sizes.train_size(config, run.dataset) if run.size == grid.FULL else int(run.size)
    test = sizes.test_size(config, run.dataset)
    arch = arch_cost(_costs(), config["sources"][run.source].get("arch"))
    return 0.0 if n is None or test is None else run_seconds(settings, n, test, run.k, device, arch)


def make_plan(config: dict, runs: list[grid.Run], device: dict) -> Plan:
    plan = Plan()
    rows: dict[tuple[str, str], Row] = defaultdict(Row)
    for run in runs:
        settings = recipes.settings_of(config, run)
        n = sizes.train_size(config, run.dataset) if run.size == grid.FULL else int(run.size)
        test = sizes.test_size(config, run.dataset)
        plan.datasets.add(run.dataset)
        plan.sources.add(run.source)
        row = rows[run.dataset, run.size]
        row.runs += 1
        if n is None or test is None:
            plan.unknown.add(run.dataset)
            continue
        row.train_images += n * settings["epochs"]
        row.eval_images += test * len(settings["eval_epochs"])
        row.seconds += run_seconds_of(config, run, device)
    order = {d: i for i, d in enumerate(config["datasets"])}
    plan.rows = dict(sorted(rows.items(), key=lambda kv: (order[kv[0][0]], grid.size_key(kv[0][1]))))
    return plan


def disk(config: dict, plan: Plan, costs: dict, made: tuple[set, set] | None = None) -> dict[str, float]:
    """Bytes on disk: run files, prepared datasets (uint8 arrays at their stored size), canonical
    source checkpoints. Resume states are transient (one per running job, removed at its end).
    made: the datasets and sources to be made (default: all the plan's; those that exist already
    cost nothing more)."""
    d = costs["disk"]
    datasets, sources = made or (plan.datasets, plan.sources)
    evals = sum(
        r.runs * len(recipes.schedule(config["finetune"], size)["eval_epochs"]) for (_, size), r in plan.rows.items()
    )
    runs = plan.total.runs * (d["run_json_bytes"] + d["run_csv_header_bytes"]) + evals * d["run_csv_row_bytes"]
    data = 0.0
    for name in datasets:
        pixels = stored_pixels(config, name)
        counts = [sizes.train_size(config, name), sizes.test_size(config, name)]
        if pixels is None or None in counts:
            continue
        data += sum(counts) * (pixels * 3 + 8)  # images, int64 labels
    return {
        "run files": runs,
        "prepared datasets": data,
        "source checkpoints": len(sources) * d["checkpoint_bytes"],
    }


def stored_pixels(config: dict, dataset: str) -> int | None:
    """Pixels of one stored image: `size` x `size` when set (a canvas of whole images is at least
    that), else the loader's image shape."""
    from .datasets import LOADERS

    spec = config["datasets"][dataset]
    if spec.get("size"):
        return spec["size"] ** 2
    shape = LOADERS[spec["loader"]].shape
    return shape[0] * shape[1] if shape else None


# ---------------------------------------------------------------------------------------------
# Command line


def load_config(base: Path, overlays: list[Path], profile: str | None = None) -> dict:
    """config.yaml, then the workflow profile's overlays, then `overlays`: as the workflow
    composes them (robust_transfer.configs)."""
    import yaml

    from .configs import merge, profile_overlays, workflow_profile

    files = profile_overlays(workflow_profile(["--workflow-profile", profile])) if profile else []
    config = yaml.safe_load(base.read_text())
    for path in [*files, *overlays]:
        merge(config, yaml.safe_load(Path(path).read_text()))
    studies.expand(config, base.resolve().parent)
    return config


def describe(device: dict) -> str:
    if device.get("status") == "measured":
        return (
            f"{device['name']}: measured on {device['machine']} by `{device['command']}` on {device['date']}, "
            f"at {device['input_size']} px"
        )
    return f"{device['name']}: ESTIMATE, not measured here; basis: {device['basis']}"


def _si(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


def _bytes(x: float) -> str:
    for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= div:
            return f"{x / div:.1f} {unit}"
    return f"{x:.0f} B"


def report(config: dict, targets: list[str], plan: Plan, device: dict, costs: dict, budget: float | None) -> str:
    out = [f"plan for {' '.join(targets)}: {plan.total.runs} fine-tuning runs", f"device: {describe(device)}"]
    wanted = config["finetune"]["input_size"]
    if wanted != device["input_size"]:
        out.append(f"(rates scaled from {device['input_size']} px to the config's {wanted} px by pixel count)")
    out += [
        "",
        "| dataset | n | runs | training images | evaluation images | device hours |",
        "|---|---|---|---|---|---|",
    ]
    for (ds, n), r in plan.rows.items():
        hours = f"{r.seconds / 3600:.1f}" if ds not in plan.unknown else "?"
        out.append(f"| {ds} | {n} | {r.runs} | {_si(r.train_images)} | {_si(r.eval_images)} | {hours} |")
    t = plan.total
    out.append(f"| total | | {t.runs} | {_si(t.train_images)} | {_si(t.eval_images)} | {t.seconds / 3600:.1f} |")
    if plan.unknown:
        out.append(f"(sizes unknown before preparing, left out of the totals: {', '.join(sorted(plan.unknown))})")
    share = t.eval_images / max(1, t.train_images + t.eval_images)
    out.append(f"\nevaluation is {share:.0%} of the images processed")
    if budget:
        out.append(f"to fit in {budget:g} device hours, runs must be {t.seconds / 3600 / budget:.1f}x as fast as these")
    parts = disk(config, plan, costs)
    out.append(
        "\ndisk: " + ", ".join(f"{k} {_bytes(v)}" for k, v in parts.items()) + f"; {_bytes(sum(parts.values()))}"
    )
    out.append(
        f"(plus one resume state of up to {_bytes(costs['disk']['resume_bytes'])} per running job, removed at its end; "
        "downloads in resources/ not counted)"
    )
    return "\n".join(out)


def device_for(config: dict, costs: dict) -> dict:
    """The costs entry of the device the config trains on: `cost.device`, else `cpu` when
    fine-tuning is set to the CPU, else the costs file's default."""
    name = (config.get("cost") or {}).get("device")
    if name is None and config["finetune"].get("device") == "cpu":
        name = "cpu"
    return device_entry(costs, name)


def summary(
    config: dict, runs: list[grid.Run], device: dict, costs: dict, made: tuple[set, set] | None = None
) -> tuple[str, float]:
    """A few lines on what `runs` cost (runs, images, device hours, disk), and the hours. made:
    the datasets and sources still to be made (see `disk`)."""
    plan = make_plan(config, runs, device)
    t = plan.total
    hours = t.seconds / 3600
    parts = disk(config, plan, costs, made)
    where = ", ".join(
        f"{d} {sum(r.runs for (ds, _), r in plan.rows.items() if ds == d)}" for d in sorted(plan.datasets)
    )
    text = [
        f"{t.runs} fine-tuning runs ({where}): {_si(t.train_images)} training and {_si(t.eval_images)} "
        f"evaluation images, about {_hours(hours)} device-hours on {device['name']}"
        + (" (an ESTIMATE: benchmarks/costs.yaml)" if device.get("status") != "measured" else " (measured rates)"),
        f"disk: up to {_bytes(sum(parts.values()))} written ("
        + ", ".join(f"{k} {_bytes(v)}" for k, v in parts.items())
        + ")",
    ]
    if plan.unknown:
        text.append(f"(sizes of {', '.join(sorted(plan.unknown))} unknown before preparing: not in the hours)")
    return "\n".join(text), hours


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 10 else f"{h:.2g}"


def gate(hours: float, limit: float | None, targets: list[str] = ()) -> str | None:
    """Why an invocation must stop before its first job, or None: more device-hours than the
    config's `cost.max_device_hours`."""
    if limit is None or hours <= limit:
        return None
    return (
        f"stopped before any job: this would train for about {_hours(hours)} device-hours, above "
        f"cost.max_device_hours ({limit:g}). To go ahead, raise the limit for this command: "
        f"--config 'cost={{max_device_hours: {math.ceil(hours)}}}' (or set it in your overlay); "
        f"to see the plan first: python -m robust_transfer.plan {' '.join(targets) or '<target>'}; "
        "or build a smaller target."
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m robust_transfer.plan", description=__doc__.split("\n\n")[0])
    p.add_argument("targets", nargs="*", default=["all"], help="figures/fig5c.pdf, figures/table7.md, all, ...")
    p.add_argument("--configfile", nargs="+", type=Path, default=[], help="overlays merged into config.yaml")
    p.add_argument("--config", type=Path, default=Path("config.yaml"), help="the base config (config.yaml)")
    p.add_argument("--workflow-profile", help="a workflow profile whose overlays apply (demo: config.demo.yaml)")
    p.add_argument("--costs", type=Path, default=COSTS, help="cost-model constants (benchmarks/costs.yaml)")
    p.add_argument("--device", help="an entry of the costs file (default: its `default`)")
    p.add_argument("--budget", type=float, help="device hours to fit in: prints the speed-up that needs")
    a = p.parse_args(argv)
    config = load_config(a.config, a.configfile, a.workflow_profile)
    costs = load_costs(a.costs)
    device = device_entry(costs, a.device) if a.device else device_for(config, costs)
    plan = make_plan(config, expand(config, a.targets), device)
    print(report(config, a.targets, plan, device, costs, a.budget))


if __name__ == "__main__":
    main(sys.argv[1:])
