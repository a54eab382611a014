"""One complete fine-tuning run, the same work through two pipelines, on this machine.

    python benchmarks/side_by_side.py --input-size 32 --n 100 --threads 1      # a CPU
    python benchmarks/side_by_side.py --input-size 224 --n 100 --threads 8     # a GPU
    python benchmarks/side_by_side.py --input-size 32 --eval-variants          # each evaluation change

The work: a run at n images of a CIFAR-10-format dataset (written here: python pickle batches,
read by torchvision with its md5 checks; class-coloured images, so both pipelines learn
something), every training epoch, the full test set at every logged epoch, start-up included:
a fresh process each, from interpreter start to exit. Both see the same images, subset (the
authors' make_mask), source weights, k, epochs, logged epochs, batch size and input size.

baseline: the authors' pipeline (utrerf/robust_transfer_learning at e90ed58, the robustness
  library's train_model): torchvision's CIFAR10 object read per item as a PIL image;
  Resize -> RandomCrop(padding 4) -> RandomHorizontalFlip -> ColorJitter(.25, .25, .25) ->
  RandomRotation(2) -> ToTensor in DataLoader workers (SubsetRandomSampler, batch 128, workers
  respawned each epoch); the test set Resize -> CenterCrop -> ToTensor, batch 128; clamp and
  ImageNet normalisation inside the model; fp32; SGD lr .1, momentum .9, wd 5e-4 over
  model.parameters(), StepLR(epochs // 3); a loss.item() per batch. Not done: their checkpoint
  writes at every logged epoch (neither pipeline writes checkpoints here).
ours: robust_transfer.runs.run_job, as the finetune rule calls it, with config.yaml's
  finetune settings (amp bf16 and deterministic kernels unless --amp says otherwise).

Prints wall time, start-up, training and evaluation seconds and images/s of each, and as its
last line `speedup <baseline wall / ours wall>x` (medians over --repeats).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import os
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()  # a child's clock starts before torch is imported
REPO = Path(__file__).resolve().parents[1]
CLASSES = 10


# ---------------------------------------------------------------------------------------------
# The inputs both pipelines read


def write_cifar(root: Path, train_size: int, test_size: int, seed: int = 0) -> dict[str, str]:
    """A CIFAR-10 in torchvision's on-disk format (5 train batches, one test batch, meta) of
    class-coloured 32 x 32 images; returns the md5 of every file, for torchvision's checks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    colours = rng.uniform(40, 215, (CLASSES, 1, 1, 3))
    patterns = rng.normal(0, 25, (CLASSES, 4, 4, 3)).repeat(8, 1).repeat(8, 2)  # coarse 8 x 8 tiles

    def images(n):
        labels = rng.integers(0, CLASSES, n)
        x = colours[labels] + patterns[labels] + rng.normal(0, 40, (n, 32, 32, 3))
        return np.clip(x, 0, 255).astype(np.uint8).transpose(0, 3, 1, 2).reshape(n, 3072), labels

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    sizes = [train_size // 5 + (i < train_size % 5) for i in range(5)] + [test_size]
    for name, n in zip(names, sizes):
        x, y = images(n)
        entry = {"batch_label": name, "data": x, "labels": y.tolist(), "filenames": [f"{i}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(CLASSES)]}, 2))
    for name in [*names, "batches.meta"]:
        sums[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    return sums


def trust(md5s: dict[str, str]) -> None:
    """torchvision checks each CIFAR file's md5 against constants of its class: set them to
    the files written here (the check itself still runs, on every dataset construction)."""
    from torchvision.datasets import CIFAR10

    CIFAR10.train_list = [[f, md5s[f]] for f, _ in CIFAR10.train_list]
    CIFAR10.test_list = [[f, md5s[f]] for f, _ in CIFAR10.test_list]
    CIFAR10.meta = {**CIFAR10.meta, "md5": md5s["batches.meta"]}


def make_inputs(work: Path, a) -> dict:
    """The raw dataset, our prepared splits and subset, and one source checkpoint."""
    import numpy as np
    import torch

    from robust_transfer import checkpoints, datasets, store, subsets
    from robust_transfer.models import resnet50

    md5s = write_cifar(work / "cifar10", a.train_size, a.test_size)
    trust(md5s)
    splits = datasets.prepare({"loader": "cifar10"}, work / "cifar10")  # what rule prepare does
    for name, (x, y) in splits.items():
        store.save_split(work / f"{name}.npz", x, y)
    idx = subsets.subset(splits["train"][1], a.n, a.seed)
    np.save(work / "subset.npy", idx)
    torch.manual_seed(0)  # a stand-in source: no ImageNet weights exist offline; speed does not care
    checkpoints.save(resnet50(), work / "source.pt", {"note": "random init, benchmark stand-in"})
    return {"md5s": md5s, "subset": idx.tolist()}


# ---------------------------------------------------------------------------------------------
# The two pipelines, each in its own process


def child_baseline(spec: dict) -> dict:
    """The authors' pipeline, in their order: seeds, model, fc, freeze, datasets, mask, loaders,
    then the robustness library's train_model loop."""
    import random

    import numpy as np
    import torch
    import torchvision
    from torch import nn
    from torchvision import datasets
    from torchvision import transforms as T

    imported = time.perf_counter()

    class Normalized(nn.Module):
        """The robustness library's AttackerModel without attacks: clamp to [0, 1], ImageNet
        mean/std, then the ResNet."""

        def __init__(self, model):
            super().__init__()
            self.model = model
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

        def forward(self, x):
            return self.model((x.clamp(0, 1) - self.mean) / self.std)

    torch.set_num_threads(spec["threads"])
    dev = torch.device(spec["device"])
    size, seed, work = spec["input_size"], spec["seed"], Path(spec["work"])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    # helpers.load_model + change_linear_layer_out_features + re_init_and_freeze_blocks
    resnet = torchvision.models.resnet50()
    resnet.load_state_dict(torch.load(work / "source.pt", map_location="cpu", weights_only=True)["state_dict"])
    resnet.fc = nn.Linear(2048, CLASSES)
    blocks = {0: [], 1: ["4.2"], 3: ["4.2", "4.1", "4.0"], 9: ["4.2", "4.1", "4.0"] + [f"3.{i}" for i in range(6)]}
    keep = ["fc."] + [f"layer{b}." for b in blocks.get(spec["k"], [])]  # their "4.2" is in layer4.2.*
    for name, p in resnet.named_parameters():
        if spec["k"] != 16 and not any(b in name for b in keep):  # 16: every block, as from scratch
            p.requires_grad = False
        elif name == "fc.weight":
            nn.init.normal_(p)
        elif name == "fc.bias":
            nn.init.constant_(p, 0.0)
    model = Normalized(resnet).to(dev)

    # helpers.make_train_and_test_set: custom_datasets' TRAIN/TEST_TRANSFORMS_DEFAULT(size)
    trust(spec["md5s"])
    train_tf = T.Compose(
        [
            T.Resize(size),
            T.RandomCrop(size, padding=4),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.25, 0.25, 0.25),
            T.RandomRotation(2),
            T.ToTensor(),
        ]
    )
    test_tf = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor()])
    train_set = datasets.CIFAR10(str(work / "cifar10"), train=True, transform=train_tf)
    test_set = datasets.CIFAR10(str(work / "cifar10"), train=False, transform=test_tf)

    # helpers.make_data_loaders: make_mask, reading each visited item through its transforms
    order = list(range(len(train_set)))
    random.shuffle(order)
    missing, left, mask = set(train_set.targets), spec["n"], []
    for ix in order:
        label = train_set[ix][1]
        if left > len(missing) or label in missing:
            mask.append(ix)
            left -= 1
            missing.discard(label)
        if left <= 0:
            break
    assert sorted(mask) == spec["subset"], "the authors' mask differs from subsets.subset"
    pin = dev.type == "cuda"
    sampler = torch.utils.data.SubsetRandomSampler(mask)
    workers = spec["workers"]
    bs = spec["batch_size"]
    train_loader = torch.utils.data.DataLoader(train_set, bs, sampler=sampler, num_workers=workers, pin_memory=pin)
    test_loader = torch.utils.data.DataLoader(test_set, spec["eval_batch_size"], num_workers=workers, pin_memory=pin)

    # robustness.train.train_model / _model_loop
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, spec["epochs"] // 3), gamma=0.1)
    if dev.type == "cuda":
        model = nn.DataParallel(model)
    criterion = nn.CrossEntropyLoss()

    def loop(loader, train: bool):
        model.train(train)
        loss_sum = correct = count = 0
        for inp, target in loader:
            inp, target = inp.to(dev, non_blocking=True), target.to(dev, non_blocking=True)
            out = model(inp)
            loss = criterion(out, target)
            loss_sum += loss.item() * len(target)
            correct += (out.argmax(1) == target).sum().item()
            count += len(target)
            if train:
                opt.zero_grad()
                loss.backward()
                opt.step()
        return 100.0 * correct / count, loss_sum / count

    started = time.perf_counter()
    train_s = eval_s = 0.0
    rows = []
    for epoch in range(spec["epochs"]):
        t = time.perf_counter()
        train_acc, _ = loop(train_loader, True)
        train_s += time.perf_counter() - t
        if epoch + 1 in spec["eval_epochs"]:
            t = time.perf_counter()
            with torch.no_grad():
                test_acc, test_loss = loop(test_loader, False)
            eval_s += time.perf_counter() - t
            rows.append({"epoch": epoch + 1, "test_acc": test_acc, "test_loss": test_loss, "train_acc": train_acc})
        schedule.step()
    end = time.perf_counter()
    return {
        "imports_s": imported - T0,
        "startup_s": started - T0,
        "train_s": train_s,
        "eval_s": eval_s,
        "rest_s": end - started - train_s - eval_s,
        "rows": rows,
    }


def child_ours(spec: dict) -> dict:
    """robust_transfer.runs.run_job, the finetune rule's call, with its two passes timed."""
    from robust_transfer import grid, runs, train

    imported = time.perf_counter()
    clock = {"first": None, "train_s": 0.0, "eval_s": 0.0, "last": None}

    def timed(fn, key):
        def inner(*args, **kwargs):
            t = time.perf_counter()
            clock["first"] = clock["first"] or t
            try:
                return fn(*args, **kwargs)  # both end with a host sync (.item()): the clock is exact
            finally:
                clock["last"] = time.perf_counter()
                clock[key] += clock["last"] - t

        return inner

    train.train_epoch = timed(train.train_epoch, "train_s")  # finetune looks both up in the module
    train.evaluate = timed(train.evaluate, "eval_s")
    work = Path(spec["work"])
    files = {"train": "train.npz", "test": "test.npz", "subset": "subset.npy", "source": "source.pt"}
    inputs = argparse.Namespace(**{k: work / f for k, f in files.items()})
    outputs = argparse.Namespace(metrics=work / "ours.csv", meta=work / "ours.json")
    run = grid.Run("cifar10", "natural", spec["k"], str(spec["n"]), spec["seed"])
    runs.run_job(inputs, outputs, run, spec["settings"], spec["threads"])
    end = time.perf_counter()
    with open(outputs.metrics) as f:
        rows = [{k: float(r[k]) for k in ("epoch", "test_acc", "test_loss", "train_acc")} for r in csv.DictReader(f)]
    return {
        "imports_s": imported - T0,
        "startup_s": clock["first"] - T0,
        "train_s": clock["train_s"],
        "eval_s": clock["eval_s"],
        "rest_s": end - clock["first"] - clock["train_s"] - clock["eval_s"],
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------------
# Evaluation, one change at a time

VARIANTS = [  # (row, eval batch, speed-ups): each row adds one change to the row above
    ("plain loop, batch 128 (the authors' batch)", 128, ()),
    ("plain loop, batch 512 (config.yaml)", 512, ()),
    ("+ inference mode", 512, ("inference_mode",)),
    ("+ BatchNorm folded into the convolutions", 512, ("inference_mode", "fold_bn")),
    ("+ bf16 weights, cast once (amp bf16)", 512, ("inference_mode", "fold_bn", "cast")),
    ("+ channels-last (CUDA; bf16 on CPUs)", 512, ("inference_mode", "fold_bn", "cast", "channels_last")),
]


def child_variants(spec: dict) -> dict:
    """train.evaluate over the prepared test set with each set of speed-ups, interleaved, for
    amp none and bf16; optionally torch.compile on the fastest copy (compile time, break-even)."""
    from robust_transfer import checkpoints, device, store, train
    from robust_transfer.models import Net, prepare_for_transfer

    device.setup(spec["threads"], True)
    dev = device.pick(spec["device"])
    model, _ = checkpoints.load(Path(spec["work"]) / "source.pt")
    net = Net(prepare_for_transfer(model, CLASSES, spec["k"]))
    x, y = train.to_device(*store.load_split(Path(spec["work"]) / "test.npz"), device=dev)
    out = {}
    for amp in ("none", "bf16"):
        net.to_device(dev, channels_last=dev.type == "cuda" or amp == "bf16")  # as train.start
        rows = [v for v in VARIANTS if amp == "bf16" or "cast" not in v[2]]
        rates = {name: [] for name, _, _ in rows}
        train.evaluate(net, x[:512], y[:512], {**spec["cfg"], "amp": amp})  # warm-up
        for _ in range(spec["repeats"]):
            for name, bs, speedups in rows:
                cfg = {**spec["cfg"], "amp": amp, "eval_batch_size": bs}
                t = time.perf_counter()
                train.evaluate(net, x, y, cfg, speedups=frozenset(speedups))
                rates[name].append(len(y) / (time.perf_counter() - t))
        out[amp] = {name: statistics.median(r) for name, r in rates.items()}
    if spec["compile"]:
        out["compile"] = _compiled(net, x, y, spec["cfg"])
    return out


def _compiled(net, x, y, cfg: dict) -> dict:
    """torch.compile of the bf16 evaluation copy: compile seconds (first pass less a steady
    one), images/s eager and compiled, and how many images one compiled copy must evaluate
    before compiling pays back (a copy is made per evaluation: weights change in between)."""
    import torch

    from robust_transfer import train

    copy = net.for_inference(dtype=torch.bfloat16, channels_last=True)
    compiled = torch.compile(copy)
    size, bs = cfg["input_size"], cfg["eval_batch_size"]

    def seconds(model):
        t = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(y), bs):
                model(train.inputs(x[i : i + bs], size)).float().sum().item()
        return time.perf_counter() - t

    first = seconds(compiled)  # compiles for the full and the last batch's shape
    eager = statistics.median(seconds(copy) for _ in range(2))
    fast = statistics.median(seconds(compiled) for _ in range(2))
    saved = (eager - fast) / len(y)  # seconds per image
    compile_s = first - fast
    return {
        "compile_s": compile_s,
        "eager": len(y) / eager,
        "compiled": len(y) / fast,
        "break_even": compile_s / saved if saved > 0 else None,
    }


# ---------------------------------------------------------------------------------------------
# The parent: inputs once, each pipeline in a fresh process, medians, the report


def machine(dev: str) -> str:
    if dev != "cpu":
        try:
            name = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
            ).stdout
            if name.strip():
                return name.strip().splitlines()[0]
        except OSError:
            pass
    cpu = platform.processor() or "cpu"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def spawn(kind: str, spec: dict, work: Path) -> dict:
    """One child process; its wall time from spawn to exit and CPU time (workers included)."""
    path = work / f"{kind}.spec.json"
    path.write_text(json.dumps(spec))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, __file__, "--child", kind, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{kind} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {**result, "wall_s": wall, "cpu_s": cpu, "load_before": load, "load_after": os.getloadavg()[0]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--n", type=int, default=100, help="training images of the run")
    p.add_argument("--epochs", type=int, help="default: config.yaml's schedule for n (100 for n <= 1600)")
    p.add_argument("--eval-every", type=int, help="default: config.yaml's schedule for n (20: 1, 21, ..., 81, 100)")
    p.add_argument("--k", type=int, default=3, choices=[0, 1, 3, 9, 16])
    p.add_argument("--threads", type=int, default=1, help="torch threads of each pipeline")
    p.add_argument("--workers", type=int, help="the baseline's DataLoader workers (default: --threads)")
    p.add_argument("--amp", choices=["bf16", "none"], help="ours (default: config.yaml's, bf16)")
    p.add_argument("--test-size", type=int, default=10000, help="CIFAR-10's test set: 10,000")
    p.add_argument("--train-size", type=int, default=50000)
    p.add_argument("--seed", type=int, default=20000000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--only", choices=["baseline", "ours"], help="run one pipeline")
    p.add_argument("--eval-variants", action="store_true", help="measure each evaluation change instead")
    p.add_argument("--compile", action="store_true", help="with --eval-variants: torch.compile too (slow)")
    p.add_argument("--json", type=Path, help="write every measurement here")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        kind, path = a.child
        fn = {"baseline": child_baseline, "ours": child_ours, "variants": child_variants}[kind]
        print(json.dumps(fn(json.loads(Path(path).read_text()))))
        return

    import torch
    import yaml

    from robust_transfer import recipes

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    settings = recipes.run_settings(config, "cifar10", "natural", a.n)
    epochs = a.epochs or settings["epochs"]
    if a.epochs or a.eval_every:
        every = a.eval_every or max(1, epochs // 5)
        settings["eval_epochs"] = sorted(set(range(1, epochs + 1, every)) | {epochs})
    settings.update(epochs=epochs, input_size=a.input_size, device=dev, amp=a.amp or settings["amp"])
    evals = settings["eval_epochs"]
    now = datetime.datetime.now().astimezone().isoformat(timespec="minutes")
    print(f"# {now} on {machine(dev)} ({dev}), torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"# work: n={a.n}, {epochs} epochs, evaluated at {evals} on {a.test_size} test images, "
        f"{a.input_size} px, k={a.k}, batch {settings['batch_size']}, {a.threads} thread(s)"
    )
    with tempfile.TemporaryDirectory(prefix="side_by_side-") as tmp:
        work = Path(tmp)
        made = make_inputs(work, a)
        base = {"work": str(work), "threads": a.threads, "device": dev, "k": a.k, "n": a.n, "seed": a.seed}
        if a.eval_variants:
            spec = {**base, "cfg": settings, "repeats": max(1, a.repeats), "compile": a.compile}
            report_variants(spawn("variants", spec, work), a)
            return
        specs = {
            "baseline": {
                **base,
                **made,
                "input_size": a.input_size,
                "epochs": epochs,
                "eval_epochs": evals,
                "batch_size": settings["batch_size"],
                "eval_batch_size": 128,
                "workers": a.threads if a.workers is None else a.workers,
            },
            "ours": {**base, "settings": settings},
        }
        kinds = [a.only] if a.only else ["baseline", "ours"]
        results = {k: [] for k in kinds}
        for r in range(a.repeats):
            for kind in kinds if r % 2 == 0 else kinds[::-1]:  # alternate the order: drifting load hits both
                results[kind].append(spawn(kind, specs[kind], work))
                print(f"# repeat {r + 1} {kind}: {results[kind][-1]['wall_s']:.1f} s", flush=True)
    report(results, a, epochs, len(evals))
    if a.json:
        a.json.write_text(json.dumps({"argv": sys.argv, "date": now, "results": results}, indent=1))


def report(results: dict, a, epochs: int, evals: int) -> None:
    trained, tested = a.n * epochs, a.test_size * evals
    print(f"\n{trained} training images, {tested} evaluation images; medians of {a.repeats} run(s)")
    head = ["pipeline", "wall s", "cpu s", "start-up s", "train s", "eval s", "train img/s", "eval img/s", "test acc"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    med, keys = {}, ("wall_s", "cpu_s", "startup_s", "train_s", "eval_s")
    for kind, runs in results.items():
        m = {key: statistics.median(r[key] for r in runs) for key in keys}
        acc = statistics.median(r["rows"][-1]["test_acc"] for r in runs)
        med[kind] = m
        cells = [kind] + [f"{m[k]:.1f}" for k in keys]
        cells += [f"{trained / m['train_s']:.0f}", f"{tested / m['eval_s']:.0f}", f"{acc:.1f}"]
        print("| " + " | ".join(cells) + " |")
    if len(med) == 2:
        print(f"speedup {med['baseline']['wall_s'] / med['ours']['wall_s']:.2f}x")


def report_variants(out: dict, a) -> None:
    for amp in ("none", "bf16"):
        print(f"\nevaluate, amp {amp}: images/s over {a.test_size} test images at {a.input_size} px (median)")
        print("| change | img/s | gain over the row above | over the first row |\n|---|---|---|---|")
        first = prev = None
        for name, rate in out[amp].items():
            first, prev = first or rate, prev or rate
            print(f"| {name} | {rate:.0f} | {rate / prev:.2f}x | {rate / first:.2f}x |")
            prev = rate
    if "compile" in out:
        c = out["compile"]
        even = f"{c['break_even']:.0f} images" if c["break_even"] else "never"
        print(
            f"\ntorch.compile (bf16 copy): {c['compile_s']:.1f} s to compile, {c['eager']:.0f} -> "
            f"{c['compiled']:.0f} img/s; pays back after {even} evaluated by one copy"
        )
    print("\nevaluate with every change (amp bf16) over the plain loop (fp32, batch 128):")
    print(f"speedup {out['bf16'][VARIANTS[-1][0]] / out['none'][VARIANTS[0][0]]:.2f}x")


if __name__ == "__main__":
    main()
