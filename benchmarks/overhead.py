"""What a fine-tuning job costs besides training and evaluating, on this machine.

    python benchmarks/overhead.py                    # start-up phases of one job (fresh processes)
    python benchmarks/overhead.py --snakemake        # Snakemake's per-job cost, and a sequence of
                                                     # n = 100 runs: the share of wall time spent
                                                     # training and evaluating

Start-up: interpreter, imports (torch; torch._dynamo, which torch.optim and torchvision.ops
pull in; torchvision; the package), device set-up (CUDA initialisation on a GPU), a CIFAR-sized
training split (50,000 x 32 x 32 x 3) and the test split, a ResNet-50 checkpoint, the run put on
the device, the first training batch and the first evaluation against warm ones. The loading
steps are timed both as before (whole split; random init, then the weights copied in) and as
run_job does them now (the subset's rows; the model built on the meta device).

--snakemake: a workflow copy with config.demo.yaml's digits, a ResNet-50 source file and --runs
seeds at n = 100 (config.yaml's schedule: 100 epochs, 6 evaluations, at --input-size): Snakemake
on a one-rule Snakefile (its floor), a dry run of one run of the paper's grid (what every cluster
job parses), then the runs (a) one Snakemake per run, as unpacked cluster jobs, (b) one Snakemake
for all, each run in its own process (pack.runs: 1, as before packing), (c) one
Snakemake for all, the runs in a runner (the default packing, robust_transfer.runner), (d) one
Python process for all (imports once: the floor). Each run's training and evaluation seconds
come from its metadata (runs.run_job). Last, the per-run overhead inside a pack: --runs and
2 x --runs one-epoch runs through Snakemake with packing; the extra wall time of the second,
less its extra training and evaluation, per extra run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


# ---------------------------------------------------------------------------------------------
# Start-up phases, in a fresh process


def child_phases(spec: dict) -> dict:
    out = {}

    def lap(name, since=None):
        now = time.perf_counter()
        out[name] = now - (since if since is not None else lap.last)
        lap.last = now

    lap.last = T0
    import torch

    lap("import torch")
    import torch._dynamo  # noqa: F401

    lap("import torch._dynamo (torch.optim, torchvision.ops)")
    import torchvision  # noqa: F401

    lap("import torchvision")
    import numpy as np

    from robust_transfer import checkpoints, device, runs, store, train  # noqa: F401
    from robust_transfer.models import prepare_for_transfer, resnet50

    lap("import robust_transfer")
    device.setup(spec["threads"], True)
    dev = device.pick(spec["device"])
    if dev.type == "cuda":
        torch.zeros(1, device=dev).sum().item()  # the CUDA context
    lap("device set-up" + (" and CUDA context" if dev.type == "cuda" else ""))
    work = Path(spec["work"])
    for name in ("train.npz", "test.npz", "source.pt"):  # in the page cache for before and now alike
        (work / name).read_bytes()
    lap("files read once (page cache)")
    idx = np.load(work / "subset.npy")
    with np.load(work / "train.npz") as f:
        f["labels"].max()
    images, labels = store.load_split(work / "train.npz", rows=idx)
    lap("training split: the subset's rows")
    t = time.perf_counter()
    whole = store.load_split(work / "train.npz")
    whole[0][idx], whole[1][idx]
    lap("training split: whole (before)", t)
    test = store.load_split(work / "test.npz")
    lap("test split")
    t = time.perf_counter()
    model, _ = checkpoints.load(work / "source.pt")
    lap("checkpoint: on the meta device", t)
    t = time.perf_counter()
    payload = checkpoints.safe_load(work / "source.pt")
    resnet50(payload["num_classes"], payload["width_per_group"]).load_state_dict(payload["state_dict"])
    lap("checkpoint: random init, then copied (before)", t)
    prepare_for_transfer(model, 10, 3)
    cfg = {**spec["cfg"], "epochs": 100, "eval_epochs": []}
    loop = train.start(model, (images, labels), test, cfg, 0, dev)
    lap("run on the device (train.start)")
    for name in ("first training batch", "second training batch"):
        train.train_epoch(loop)
        lap(name)
    x, y = loop.test[0][:512], loop.test[1][:512]
    for name in ("first evaluation batch", "second evaluation batch"):
        train.evaluate(loop.net, x, y, cfg)
        lap(name)
    return out


def make_inputs(work: Path, n: int, seed: int) -> None:
    import numpy as np
    import torch

    from robust_transfer import checkpoints, store, subsets
    from robust_transfer.models import resnet50

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 50000)
    store.save_split(work / "train.npz", rng.integers(0, 256, (50000, 32, 32, 3), dtype=np.uint8), labels)
    store.save_split(work / "test.npz", rng.integers(0, 256, (10000, 32, 32, 3), dtype=np.uint8), labels[:10000])
    np.save(work / "subset.npy", subsets.subset(labels, n, seed))
    torch.manual_seed(0)
    checkpoints.save(resnet50(), work / "source.pt", {"note": "random init, benchmark stand-in"})


def phases(a, dev: str) -> None:
    import yaml

    from robust_transfer import recipes

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg = {**recipes.run_settings(config, "cifar10", "natural", 100), "input_size": a.input_size, "device": dev}
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        work = Path(tmp)
        make_inputs(work, 100, 20000000)
        spec = work / "spec.json"
        spec.write_text(json.dumps({"work": tmp, "threads": a.threads, "device": dev, "cfg": cfg}))
        bare, runs = [], []
        for _ in range(a.repeats):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            bare.append(time.perf_counter() - t)
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(spec)], capture_output=True, text=True, env=ENV
            )
            if proc.returncode:
                raise SystemExit(proc.stderr[-4000:])
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\nstart-up of one job, {a.input_size} px, medians of {a.repeats} fresh processes")
    print("| phase | seconds |\n|---|---|")
    print(f"| Python interpreter (python -c pass, whole process) | {statistics.median(bare):.2f} |")
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    for k, v in med.items():
        print(f"| {k} | {v:.2f} |")
    before = [k for k in med if "(before)" in k]
    now = [k for k in med if k.startswith(("training split: the", "checkpoint: on"))]
    shared = [k for k in med if k not in before + now and "second" not in k and "page cache" not in k]
    total_now = sum(med[k] for k in shared + now)
    total_before = sum(med[k] for k in shared + before)
    print(f"\nto the end of the first evaluation batch: {total_before:.2f} s before, {total_now:.2f} s now")
    warm = med["second training batch"], med["second evaluation batch"]
    print(
        f"first batches' extra cost over warm ones: training {med['first training batch'] - warm[0]:.2f} s, "
        f"evaluation {med['first evaluation batch'] - warm[1]:.2f} s"
    )


# ---------------------------------------------------------------------------------------------
# Snakemake's per-job cost, and a sequence of n = 100 runs


def timed(cmd, cwd, env=ENV) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return time.perf_counter() - t


def child_sequence(spec: dict) -> dict:
    """Every run of the sequence through runs.run_job in this one process."""
    from robust_transfer import grid, runs

    work = Path(spec["work"])
    for seed in spec["seeds"]:
        run = grid.Run(DATASET, "natural", 3, "100", seed)
        inputs = argparse.Namespace(
            train=work / f"results/data/{DATASET}/train.npz",
            test=work / f"results/data/{DATASET}/test.npz",
            subset=work / f"results/subsets/{DATASET}/make_mask/n100/s{seed}.npy",
            source=work / "results/sources/natural.pt",
        )
        outputs = argparse.Namespace(metrics=work / f"{run.path}.csv", meta=work / f"{run.path}.json")
        runs.run_job(inputs, outputs, run, spec["settings"], spec["threads"])
    return {}


DATASET = "digits10"  # scikit-learn's digits, all ten classes: about 900 training images


def sequence(a, dev: str) -> None:
    import torch

    from robust_transfer import checkpoints, files, grid
    from robust_transfer.models import resnet50

    smk = [sys.executable, "-m", "snakemake", "--workflow-profile", "none", "--cores", "1"]
    with tempfile.TemporaryDirectory(prefix="overhead-smk-") as tmp:
        work = Path(tmp)
        (work / "floor").mkdir()
        rule = 'rule touch:\n    output:\n        "out.txt"\n    shell:\n        "touch {output}"\n'
        (work / "floor" / "Snakefile").write_text(rule)
        floor = []
        for _ in range(a.repeats):
            (work / "floor" / "out.txt").unlink(missing_ok=True)
            floor.append(timed([*smk, "--quiet", "all"], work / "floor"))
        paper = files.copy_workflow(work / "workflow")
        first = "results/runs/cifar10/natural/k3/n100/s20000000.csv"
        parse = [timed([*smk, first, "-n", "--quiet", "all"], paper) for _ in range(a.repeats)]

        # the runs: config.yaml's fine-tuning (at --input-size) on digits, a ResNet-50 source file
        torch.manual_seed(0)
        checkpoints.save(resnet50(), work / "source.pt", {"note": "random init, benchmark stand-in"})
        seeds = [20000000 + 100000 * i for i in range(2 * a.runs)]
        targets = [f"{grid.Run(DATASET, 'natural', 3, '100', s).path}.csv" for s in seeds]
        schedule = [{"max_size": None, "epochs": a.epochs, "eval_every": a.eval_every}] if a.epochs else None
        quick = [{"max_size": None, "epochs": 1, "eval_every": 1}]  # per-job cost: one epoch, one evaluation
        alone = {"runs": 1, "idle": IDLE, "cluster_hours": 12}
        packed = {"runs": 1000, "idle": IDLE, "cluster_hours": 12}
        settings = {
            name: write_config(paper / f"{name}.yaml", work, a, dev, s, pack)
            for name, s, pack in [
                ("seq", schedule, alone),
                ("seqpack", schedule, packed),
                ("quick", quick, alone),
                ("quickpack", quick, packed),
            ]
        }
        runs = targets[: a.runs]
        timed([*smk, *targets, "--omit-from", "finetune", *conf("seq")], paper)  # the inputs, untimed

        def job_seconds(done=runs):
            meta = [json.loads((paper / t.replace(".csv", ".json")).read_text())["seconds"] for t in done]
            return sum(m["train"] for m in meta), sum(m["eval"] for m in meta)

        for name, seeds_of in (("seq", seeds[: a.runs]), ("quick", seeds[:1])):
            spec = {"work": str(paper), "settings": settings[name], "seeds": seeds_of, "threads": a.threads}
            (paper / f"{name}.json").write_text(json.dumps(spec))
        python = [sys.executable, str(Path(__file__).resolve()), "--child-sequence"]

        def each(name, *runs):  # targets first: the options after them take lists
            time.sleep(IDLE + 1)  # no runner of the mode before is left to reuse
            return [*smk, *runs, "--quiet", "all", "--forcerun", "finetune", *conf(name)]

        modes = {}
        wall = sum(timed(each("seq", t), paper) for t in runs)
        modes["one Snakemake per run (unpacked cluster jobs)"] = (wall, job_seconds())
        key = "one Snakemake for all, each run its own process (pack.runs: 1)"
        modes[key] = (timed(each("seq", *runs), paper), job_seconds())
        key = "one Snakemake for all, the runs in a runner (default packing)"
        modes[key] = (timed(each("seqpack", *runs), paper), job_seconds())
        modes["one Python process for all (imports once)"] = (timed([*python, "seq.json"], paper), job_seconds())
        one_job, one_smk = [], []
        for _ in range(a.repeats):  # interleaved: a drifting load hits both
            one_job.append(timed([*python, "quick.json"], paper))
            one_smk.append(timed(each("quick", targets[0]), paper))
        marginal = []
        for _ in range(a.repeats):  # the per-run overhead inside a pack: N more runs, less their work
            walls = [timed(each("quickpack", *targets[:count]), paper) for count in (a.runs, 2 * a.runs)]
            first, both = sum(job_seconds(targets[: a.runs])), sum(job_seconds(targets))
            marginal.append(((walls[1] - walls[0]) - (both - first)) / a.runs)

    floor, parse, one_job, one_smk = (statistics.median(x) for x in (floor, parse, one_job, one_smk))
    print(f"\nSnakemake, medians of {a.repeats}; one run: n = 100, one epoch, {a.input_size} px, {a.threads} thread(s)")
    print("| what | seconds |\n|---|---|")
    print(f"| a one-rule Snakefile, one job: Snakemake's floor | {floor:.2f} |")
    print(f"| dry run of one run of the paper's grid (parse, validate, DAG; every cluster job does it) | {parse:.2f} |")
    print(f"| one finetune job through Snakemake, in its own process (pack.runs: 1) | {one_smk:.2f} |")
    print(f"| the same run through run_job in a fresh Python process | {one_job:.2f} |")
    print(f"| Snakemake's cost per job (the difference) | {one_smk - one_job:.2f} |")
    epochs = f"{a.epochs} epochs" if a.epochs else "config.yaml's schedule"
    print(f"\na sequence of {a.runs} runs at n = 100, {epochs}, {a.input_size} px, {a.threads} thread(s)")
    print("| how | wall s | training s | evaluation s | share training and evaluating | overhead per run s |")
    print("|---|---|---|---|---|---|")
    for name, (wall, (tr, ev)) in modes.items():
        per_run = (wall - tr - ev) / a.runs
        print(f"| {name} | {wall:.1f} | {tr:.1f} | {ev:.1f} | {(tr + ev) / wall:.0%} | {per_run:.2f} |")
    print(
        f"\nper-run overhead inside a pack (one-epoch runs; {a.runs} more runs in one Snakemake, less their "
        f"training and evaluation, per run; median of {a.repeats}): {statistics.median(marginal):.2f} s "
        f"(each: {', '.join(f'{m:.2f}' for m in marginal)})"
    )


def conf(name: str) -> list[str]:
    return ["--configfile", f"{name}.yaml", "--replace-workflow-config"]


IDLE = 3  # seconds a runner waits for its next job (pack.idle) in these configs


def write_config(path: Path, work: Path, a, dev: str, schedule, pack: dict) -> dict:
    """A whole config: the demo's, with these runs' dataset, source and fine-tuning, its figures
    replaced by one over these runs (the demo's would ask for epochs this schedule does not log).
    Returns the runs' resolved settings."""
    import yaml
    from snakemake.utils import update_config

    from robust_transfer import recipes

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config.demo.yaml").read_text()))
    config["datasets"][DATASET] = {"loader": "digits", "split": {"seed": 0, "test_fraction": 0.5}}
    config["sources"]["natural"] = {"url": str(work / "source.pt")}
    config["grid"].update(datasets=[DATASET], sources=["natural"], k=[3], sizes=[100])
    config["grid"]["seeds"]["count"] = 2 * a.runs
    finetune = yaml.safe_load((REPO / "config.yaml").read_text())["finetune"]  # the paper's, at --input-size
    finetune.update(input_size=a.input_size, threads=a.threads, device=dev)
    config["finetune"] = {**finetune, **({"schedule": schedule} if schedule else {})}
    config["pack"] = pack
    config["figures"] = {"runs": {"kind": "curves", "title": "n = 100", "metric": "final"}}
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return recipes.run_settings(config, DATASET, "natural", "100")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--input-size", type=int, help="default: 224 on a GPU, 32 on the CPU")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--snakemake", action="store_true", help="Snakemake's per-job cost and a sequence of runs")
    p.add_argument("--runs", type=int, default=4, help="--snakemake: runs in the sequence")
    p.add_argument("--epochs", type=int, help="--snakemake: epochs per run (default: config.yaml's schedule)")
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-sequence", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child_phases(json.loads(Path(a.child).read_text()))))
        return
    if a.child_sequence:
        child_sequence(json.loads(Path(a.child_sequence).read_text()))
        return
    import torch

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    a.input_size = a.input_size or (224 if dev == "cuda" else 32)
    now = datetime.datetime.now().astimezone().isoformat(timespec="minutes")
    name = torch.cuda.get_device_name() if dev == "cuda" else f"{os.cpu_count()}-core CPU"
    print(f"# {now} on {name}, torch {torch.__version__}, {a.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}")
    (sequence if a.snakemake else phases)(a, dev)


if __name__ == "__main__":
    main()
