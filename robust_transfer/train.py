"""Training loops: transfer fine-tuning (the paper's runs) and source pretraining (natural or PGD
adversarial). Airbench-style: the whole split lives on the device as uint8, every batch is
resized, augmented and normalised there, and nothing waits on the host inside an epoch.

One `Loop` carries what a run keeps from epoch to epoch; `train_epoch` and `evaluate` (clean
or under attack) are the only two passes over data, used by fine-tuning and pretraining alike.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .augment import augment, crop, random_resized_crop
from .disk import writing
from .models import Net

# ---------------------------------------------------------------------------------------------
# Setup: seeds, device-resident data, the state of one run


def seed_everything(seed: int, device) -> torch.Generator:
    """Seed Python, NumPy and torch; return the generator every on-device draw of a run uses."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


def to_device(images: np.ndarray, labels: np.ndarray, *extents, device) -> tuple[torch.Tensor, ...]:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) uint8 on the device, labels int64 (and the (N, 2)
    extents of whole images of different sizes, when the split keeps them). A split already on
    the device as such (a runner's test split, runs.device_split) is returned as it is."""
    if isinstance(images, torch.Tensor):
        return (images, labels, *extents)
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).contiguous()
    return (x, torch.from_numpy(labels).to(device), *(torch.from_numpy(e).to(device) for e in extents))


@dataclass
class Loop:
    """Everything one training run carries from epoch to epoch.

    cfg: the run's resolved settings: epochs, batch_size, eval_batch_size, lr, momentum,
    weight_decay, lr_drops, lr_gamma, input_size, augment, amp (and attack for pretraining);
    optional: train_crop ("random_resized": Salman et al.'s RandomResizedCrop of each whole
    training image, then augment with pad 0), per_class (log test_acc_class too).
    """

    net: Net
    opt: torch.optim.Optimizer
    gen: torch.Generator  # every on-device draw: batch order, augmentation, PGD starts
    cfg: dict
    train: tuple[torch.Tensor, ...]  # device-resident uint8 images, labels (, extents of whole images)
    test: tuple[torch.Tensor, torch.Tensor]
    attack: Callable | None = None  # adversarial training (pretraining only)
    epoch: int = 0  # epochs done
    rows: list[dict] = field(default_factory=list)  # one per evaluation epoch
    crop: int = 0  # whole training images (train_crop: random): the size of the window taken
    inference: dict = field(default_factory=dict)  # the frozen copy evaluations run (train.evaluate)
    started: float = field(default_factory=time.perf_counter)  # clock at epoch 0, earlier attempts included

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def start(model, train, test, cfg: dict, seed: int, device) -> Loop:
    """A run's state before its first epoch: seeded generator, the model (with its normaliser)
    on the device, an SGD optimiser over its trainable parameters, both splits on the device."""
    gen = seed_everything(seed, device)
    stats = [s for s in (cfg.get("mean"), cfg.get("std")) if s is not None]  # default: ImageNet's
    net = Net(model, *stats).to_device(device, channels_last=channels_last(cfg, device))
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    attack = make_attack(cfg.get("attack"), gen)
    crop = int(train[2].min()) if len(train) > 2 else 0  # the shorter side of every whole image
    return Loop(
        net, opt, gen, cfg, to_device(*train, device=device), to_device(*test, device=device), attack, crop=crop
    )


def channels_last(cfg: dict, device) -> bool:
    """The memory layout training runs in: cfg channels_last (placement, recipes.placement: not
    a param), true or false as set; auto (or absent): channels-last on CUDA, and on CPUs in bf16
    (oneDNN's bf16 kernels prefer it). In fp32 on a CPU it depends on the shapes: 0.99x for the
    full ResNet-50 at 32 px, 1.07-1.23x for the demo's narrow ones at 24 px (docs/benchmarks.md)."""
    want = cfg.get("channels_last", "auto")
    return device.type == "cuda" or cfg["amp"] == "bf16" if want == "auto" else bool(want)


# ---------------------------------------------------------------------------------------------
# One pass over data: a training epoch, an evaluation


def inputs(x_uint8: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 batch -> floats in [0, 1] at size x size (bilinear, as the paper's Resize)."""
    x = x_uint8.float().div_(255)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
    return x


def lr_at(epoch: int, lr: float, epochs: int, drops: int = 3, gamma: float = 0.1) -> float:
    """Step schedule of the robustness library: lr x gamma every epochs // drops epochs."""
    return lr * gamma ** (epoch // max(1, epochs // drops))


def _amp(device, amp: str):
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else nullcontext()


def train_epoch(loop: Loop) -> tuple[float, float]:
    """One epoch of SGD over the device-resident training split; returns (train acc %, mean
    loss) of the epoch."""
    cfg, net, opt, aug = loop.cfg, loop.net, loop.opt, loop.cfg["augment"]
    x, y, *extents = loop.train
    resized = cfg.get("train_crop") == "random_resized"  # Salman et al.: RandomResizedCrop, then the flip
    if extents or resized:  # RandomCrop(padding) or RandomResizedCrop takes the place of the shift
        aug = {**aug, "pad": 0}
    if resized and not extents:  # square stored images (CIFAR): each image is its whole extent
        extents = [torch.tensor(x.shape[2:], device=y.device).expand(len(y), 2)]
    device = y.device
    for group in opt.param_groups:
        group["lr"] = lr_at(loop.epoch, cfg["lr"], cfg["epochs"], cfg["lr_drops"], cfg["lr_gamma"])
    net.train()
    n, bs = len(y), cfg["batch_size"]
    perm = torch.randperm(n, generator=loop.gen, device=device)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for i in range(0, n, bs):  # no drop_last: n=100 is one step per epoch
        idx = perm[i : i + bs]
        if resized:
            xb = random_resized_crop(x[idx], extents[0][idx], cfg["input_size"], loop.gen, cfg["crop_scale"])
        else:
            xb = crop(x[idx], extents[0][idx], loop.crop, cfg["augment"]["pad"], loop.gen) if extents else x[idx]
            xb = inputs(xb, cfg["input_size"])
        xb, yb = augment(xb, loop.gen, **aug), y[idx]
        if loop.attack is not None:  # as the robustness library: attack in eval mode, so the
            net.eval()  # attack neither uses nor updates BatchNorm's batch statistics
            xb = loop.attack(net, xb, yb)
            net.train()
        with _amp(device, cfg["amp"]):
            out = net(xb)
            loss = F.cross_entropy(out.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(yb)
        correct += (out.argmax(1) == yb).sum()
    loop.epoch += 1
    return 100.0 * correct.item() / n, loss_sum.item() / n


# What a clean evaluation does beyond a plain eval-mode loop (each measured separately by
# benchmarks/side_by_side.py --eval-variants): inference mode (no autograd bookkeeping at all);
# BatchNorm folded into the convolutions; with amp bf16, the weights cast once per evaluation
# rather than by autocast on every batch; channels-last where it is faster (CUDA, and bf16 on
# the CPU). All but the cast give the same numbers up to float rounding.
SPEEDUPS = frozenset({"inference_mode", "fold_bn", "cast", "channels_last"})


def evaluate(
    net: Net, x, y, cfg: dict, attack: Callable | None = None, speedups=SPEEDUPS, cache: dict | None = None
) -> tuple[float, ...]:
    """Accuracy (%) and mean cross-entropy of a device-resident split in eval mode: clean, or
    on the adversarial examples `attack` makes of each batch. Batches of cfg eval_batch_size;
    sums stay on the device: one host sync at the end. `net` itself is left as it was (a clean
    evaluation runs a folded copy; other modules than a Net run as they are). `cache`: where a
    run keeps that copy between its evaluations (Loop.inference), refreshed rather than made
    anew each time. With cfg per_class (a clean evaluation), a third number: the mean over the
    classes present in the split of each class's accuracy (%) (class_accuracy)."""
    net.eval()
    if attack is not None:  # PGD needs input gradients, in fp32 as in training
        return _evaluate_attacked(net, x, y, cfg, attack)
    device, bs = y.device, cfg["eval_batch_size"]
    bf16 = cfg["amp"] == "bf16"
    model, amp = net, cfg["amp"]
    if isinstance(net, Net) and speedups & {"fold_bn", "cast", "channels_last"}:
        cast = bf16 and "cast" in speedups
        model = net.for_inference(
            fold="fold_bn" in speedups,
            dtype=torch.bfloat16 if cast else None,
            channels_last="channels_last" in speedups and (device.type == "cuda" or bf16),
            reuse=None if cache is None else cache.get("net"),
        )
        if cache is not None:
            cache["net"] = model
        amp = "none" if cast else amp
    with torch.inference_mode() if "inference_mode" in speedups else torch.no_grad(), _amp(device, amp):
        loss = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        hits = [] if cfg.get("per_class") else None  # per-image hits, for the per-class accuracy
        for i in range(0, len(y), bs):
            xb, yb = inputs(x[i : i + bs], cfg["input_size"]), y[i : i + bs]
            out = model(xb).float()
            loss += F.cross_entropy(out, yb, reduction="sum")
            hit = out.argmax(1) == yb
            correct += hit.sum()
            if hits is not None:
                hits.append(hit)
        result = 100.0 * correct.item() / len(y), loss.item() / len(y)
        return result if hits is None else (*result, class_accuracy(torch.cat(hits), y))


def class_accuracy(hits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over the classes present in y of each class's accuracy (%): hits (N,) bool, y (N,).
    The authors' --per-class-accuracy weighs each test image by N / (count of its class x
    classes present), which sums to the same number."""
    count = torch.bincount(y)
    right = torch.bincount(y[hits], minlength=len(count))  # no weights: deterministic on CUDA too
    present = count > 0
    return (100.0 * (right[present] / count[present]).mean()).item()


def _evaluate_attacked(net, x, y, cfg: dict, attack: Callable) -> tuple[float, float]:
    device, bs = y.device, cfg["eval_batch_size"]
    loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for i in range(0, len(y), bs):
        xb, yb = inputs(x[i : i + bs], cfg["input_size"]), y[i : i + bs]
        xb = attack(net, xb, yb)
        with torch.no_grad(), _amp(device, cfg["amp"]):
            out = net(xb).float()
        loss += F.cross_entropy(out, yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    return 100.0 * correct.item() / len(y), loss.item() / len(y)


# ---------------------------------------------------------------------------------------------
# Resume: a run's complete state, saved atomically, so a killed run continues where it stopped


@dataclass(frozen=True)
class Resume:
    """Where a run keeps its state between attempts, and what it must match to be resumed
    (a digest of the run's settings and inputs: a state from other inputs is never used)."""

    path: Path
    key: str


class Preempted(SystemExit):
    """SIGTERM (pre-emption, a cluster time limit): the state is saved; rerun to continue."""


def save_state(loop: Loop, resume: Resume) -> None:
    """Everything the next epoch depends on: weights and BatchNorm statistics, optimiser
    (momentum), epoch, every RNG, the rows logged so far. Written to a temporary file and
    renamed, so a kill mid-write leaves the previous state intact."""
    state = {
        "key": resume.key,
        "epoch": loop.epoch,
        "rows": loop.rows,
        "seconds": loop.elapsed(),
        "model": loop.net.model.state_dict(),
        "opt": loop.opt.state_dict(),
        "gen": loop.gen.get_state(),
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    tmp = resume.path.with_name(resume.path.name + ".tmp")
    with writing(tmp, "resume state"):  # a full or read-only folder: the path, not "file write failed"
        resume.path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp)
        os.replace(tmp, resume.path)


def restore_state(loop: Loop, resume: Resume) -> bool:
    """Continue from a saved state of this very run (same key); False if there is none."""
    if not resume.path.exists():
        return False
    try:
        state = torch.load(resume.path, map_location="cpu", weights_only=True)
    except Exception:  # a state torn by a crash of the file system: start over
        return False
    if state.get("key") != resume.key:
        return False
    loop.net.model.load_state_dict(state["model"])
    loop.opt.load_state_dict(state["opt"])
    loop.gen.set_state(state["gen"])
    loop.epoch, loop.rows = state["epoch"], state["rows"]
    loop.started = time.perf_counter() - state["seconds"]
    random.setstate(_tuples(state["python"]))
    np.random.set_state((state["numpy"][0], np.array(state["numpy"][1], dtype=np.uint32), *state["numpy"][2:]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    return True


def _numpy_state():
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return [name, keys.tolist(), pos, has_gauss, gauss]  # plain types: loads with weights_only


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x


@contextmanager
def _on_sigterm():
    """Note a SIGTERM instead of dying at once; the loop saves and stops at the epoch's end."""
    flag = {"stop": False}

    def handler(signum, frame):
        flag["stop"] = True

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: no handler, no graceful stop
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def _epochs(loop: Loop, resume: Resume | None, progress) -> Iterator[int]:
    """The epochs still to run (after a restore); a SIGTERM saves the state at the end of the
    current epoch and raises Preempted."""
    if resume is not None and restore_state(loop, resume):
        progress(f"resumed from {resume.path} after epoch {loop.epoch}")
    with _on_sigterm() as flag:
        while loop.epoch < loop.cfg["epochs"]:
            yield loop.epoch
            if flag["stop"]:
                if resume is not None:
                    save_state(loop, resume)
                raise Preempted(
                    f"SIGTERM after epoch {loop.epoch}: state saved to {resume.path if resume else 'nowhere'}"
                )


# ---------------------------------------------------------------------------------------------
# Progress: one log line per epoch, from numbers the loop has on the host anyway (no extra sync)


def clock_text(seconds: float) -> str:
    """h:mm:ss.s (tenths: a demo's epochs take a fraction of a second)."""
    tenths = int(round(seconds * 10))
    s, t = divmod(tenths, 10)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}.{t}"


def epoch_line(loop: Loop, acc: float, loss: float, seconds: float, left: float) -> str:
    """epoch/total, the epoch's train loss and accuracy, training images per second (this
    epoch), elapsed time of the run (earlier attempts included) and the estimated time left."""
    rate = len(loop.train[1]) / seconds if seconds > 0 else float("inf")
    return (
        f"epoch {loop.epoch}/{loop.cfg['epochs']}: train_loss={loss:.4f} train_acc={acc:.2f} "
        f"images/s={rate:.1f} elapsed={clock_text(loop.elapsed())} left={clock_text(left)}"
    )


def time_left(loop: Loop, clock: dict, trained: int, evaluated: int) -> float:
    """Seconds left in a run: the epochs still to train at this attempt's mean epoch time, and
    the evaluations still to come at its mean evaluation time (before the first one of an
    attempt: a test image at a third of a training image's cost, a forward pass of three).
    Pretraining has no evaluation epochs; its final test passes are not counted."""
    cfg = loop.cfg
    per_epoch = clock["train"] / trained
    evals_left = sum(1 for e in cfg.get("eval_epochs", ()) if e > loop.epoch)
    if evaluated:
        per_eval = clock["eval"] / evaluated
    else:
        per_eval = per_epoch * len(loop.test[1]) / len(loop.train[1]) / 3
    return (cfg["epochs"] - loop.epoch) * per_epoch + evals_left * per_eval


# ---------------------------------------------------------------------------------------------
# The two kinds of run


def finetune(
    model,
    train,
    test,
    cfg: dict,
    seed: int,
    device,
    progress=print,
    resume: Resume | None = None,
    clock: dict | None = None,
) -> list[dict]:
    """Fine-tune `model` (head replaced and parts frozen already) and log every evaluation epoch.

    train/test: (images uint8 NHWC, labels) numpy pairs; cfg: recipes.run_settings (the
    `finetune` section resolved for the run's size: epochs, eval_epochs). With `resume`, the
    state is saved at every evaluation epoch and a rerun continues from it (the same numbers as
    an uninterrupted run); it is removed at the end. Returns one row per evaluation epoch:
    epoch, test_acc, (with cfg per_class: test_acc_class,) test_loss, train_acc, train_loss,
    time (cumulative seconds), lr. `clock`, if given, receives the seconds spent putting the
    run on the device (start), training and evaluating (exact on GPUs too: both passes end in
    a host sync).
    """
    clock = {} if clock is None else clock
    t = time.perf_counter()
    loop = start(model, train, test, cfg, seed, device)
    clock.update(start=time.perf_counter() - t, train=0.0, eval=0.0)
    trained = evaluated = 0  # this attempt's epochs and evaluations (the clock counts their time)
    for _ in _epochs(loop, resume, progress):
        t = time.perf_counter()
        train_acc, train_loss = train_epoch(loop)
        seconds = time.perf_counter() - t
        clock["train"] += seconds
        trained += 1
        if loop.epoch in cfg["eval_epochs"]:
            t = time.perf_counter()
            test_acc, test_loss, *per_class = evaluate(loop.net, *loop.test, cfg, cache=loop.inference)
            clock["eval"] += time.perf_counter() - t
            evaluated += 1
            row = dict(
                epoch=loop.epoch,
                test_acc=test_acc,
                **({"test_acc_class": per_class[0]} if per_class else {}),  # cfg per_class (Salman et al.)
                test_loss=test_loss,
                train_acc=train_acc,
                train_loss=train_loss,
                time=loop.elapsed(),
                lr=loop.opt.param_groups[0]["lr"],
            )
            loop.rows.append(row)
            progress(" ".join(f"{k}={v:.4g}" for k, v in row.items()))
            if resume is not None and loop.epoch < cfg["epochs"]:
                save_state(loop, resume)
        progress(epoch_line(loop, train_acc, train_loss, seconds, time_left(loop, clock, trained, evaluated)))
    if resume is not None:
        resume.path.unlink(missing_ok=True)
    return loop.rows


def pretrain(model, train, test, cfg: dict, seed: int, device, progress=print, resume: Resume | None = None) -> dict:
    """Train a source model from scratch, naturally or adversarially (cfg["attack"]); with
    `resume`, the state is saved after every epoch and a rerun continues from it.

    cfg: recipes.pretrain_settings. Returns clean and (with an attack) adversarial test accuracy (%).
    """
    loop = start(model, train, test, cfg, seed, device)
    clock, trained = {"train": 0.0, "eval": 0.0}, 0
    for _ in _epochs(loop, resume, progress):
        t = time.perf_counter()
        acc, loss = train_epoch(loop)
        seconds = time.perf_counter() - t
        clock["train"] += seconds
        trained += 1
        if resume is not None and loop.epoch < cfg["epochs"]:
            save_state(loop, resume)
        progress(epoch_line(loop, acc, loss, seconds, time_left(loop, clock, trained, 0)))
    result = {"test_acc": evaluate(loop.net, *loop.test, cfg, cache=loop.inference)[0]}
    if loop.attack is not None:
        result["adv_test_acc"] = evaluate(loop.net, *loop.test, cfg, loop.attack)[0]
    progress(" ".join(f"{k}={v:.2f}" for k, v in result.items()))
    if resume is not None:
        resume.path.unlink(missing_ok=True)
    return result


# ---------------------------------------------------------------------------------------------
# Adversarial examples


def pgd(model_fn, x, y, norm: str, eps: float, steps: int, step_size: float, gen):
    """Projected gradient descent inside the L2 or Linf ball of radius eps around x (pixel space,
    [0, 1]), from a random start, maximising cross-entropy (Madry et al.)."""
    noise = torch.rand(x.shape, generator=gen, device=x.device) * 2 - 1
    if norm == "linf":
        delta = noise * eps
    else:
        unit = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        delta = unit * eps * torch.rand(len(x), 1, 1, 1, generator=gen, device=x.device)  # radius ~ U(0, eps)
    delta = ((x + delta).clamp(0, 1) - x).detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model_fn(x + delta).float(), y)
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            if norm == "linf":
                delta = (delta + step_size * g.sign()).clamp(-eps, eps)
            else:
                delta = delta + step_size * g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1).view(-1, 1, 1, 1)
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def make_attack(spec: dict | None, gen):
    """A closure (model_fn, x, y) -> adversarial x, or None for natural training."""
    if not spec or not spec.get("eps"):
        return None
    step = spec.get("step_size") or 2.5 * spec["eps"] / spec["steps"]
    return lambda model_fn, x, y: pgd(model_fn, x, y, spec["norm"], spec["eps"], spec["steps"], step, gen)
