"""Training loops: transfer fine-tuning (the paper's runs) and source pretraining (natural or
PGD adversarial). Airbench-style: the whole split lives on the device as uint8, every batch is
resized, augmented and normalised there, and nothing waits on the host inside an epoch."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from .augment import augment
from .models import Normalize

_LOCK = None  # keeps the GPU lock file open for the life of the process


def pick_device(want: str = "auto") -> torch.device:
    """CUDA when available, else the CPU. With several visible GPUs, take the first one no other
    process on this machine holds (Snakemake caps concurrent GPU jobs but assigns no device)."""
    global _LOCK
    if want == "cpu" or (want == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if count == 0:
        raise RuntimeError("device: cuda requested but no GPU is visible")
    for i in range(count):
        f = open(os.path.join(tempfile.gettempdir(), f"robust_transfer-gpu{i}-uid{os.getuid()}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _LOCK = f
        return torch.device("cuda", i)
    return torch.device("cuda", 0)  # more jobs than GPUs (no --resources gpu=N cap): share


def set_deterministic(on: bool = True) -> None:
    """Deterministic kernels where PyTorch has them. CPU runs are then bit-identical; on GPUs a
    few backward kernels (e.g. adaptive average pooling) have no deterministic version and only
    warn."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def seed_everything(seed: int, device) -> torch.Generator:
    """Seed Python, NumPy and torch; return the generator every on-device draw of a run uses."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


def to_device(images: np.ndarray, labels: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) uint8 on the device, labels int64."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(labels).to(device)


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
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def evaluate(model, norm, x, y, cfg: dict, device) -> tuple[float, float]:
    """Test accuracy (%) and mean cross-entropy of a device-resident split, in eval mode."""
    model.eval()
    loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for i in range(0, len(y), cfg["eval_batch_size"]):
        xb = norm(inputs(x[i : i + cfg["eval_batch_size"]], cfg["input_size"]))
        yb = y[i : i + cfg["eval_batch_size"]]
        with _amp(device, cfg["amp"]):
            out = model(_layout(xb, device)).float()
        loss += F.cross_entropy(out, yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    return 100.0 * correct.item() / len(y), loss.item() / len(y)


def _layout(x, device):
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def _train_epoch(model, norm, opt, x, y, cfg: dict, gen, device, attack=None):
    """One epoch of SGD over a device-resident split; returns (train acc %, mean loss)."""
    model.train()
    n, bs = len(y), cfg["batch_size"]
    perm = torch.randperm(n, generator=gen, device=device)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for i in range(0, n, bs):  # no drop_last: n=100 is one step per epoch
        idx = perm[i : i + bs]
        xb, yb = augment(inputs(x[idx], cfg["input_size"]), gen, **cfg["augment"]), y[idx]
        if attack is not None:
            xb = attack(lambda z: model(_layout(norm(z), device)), xb, yb)
        with _amp(device, cfg["amp"]):
            out = model(_layout(norm(xb), device))
            loss = F.cross_entropy(out.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(yb)
        correct += (out.argmax(1) == yb).sum()
    return 100.0 * correct.item() / n, loss_sum.item() / n


def _sgd(model, cfg):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])


def _setup(model, train, test, seed: int, device):
    """What every training loop starts with: seeded generator, model on the device (channels-
    last on CUDA, matching _layout's inputs), the normaliser, both splits on the device."""
    gen = seed_everything(seed, device)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return gen, model, Normalize().to(device), to_device(*train, device), to_device(*test, device)


def _set_lr(opt, epoch: int, epochs: int, cfg: dict) -> None:
    for group in opt.param_groups:
        group["lr"] = lr_at(epoch, cfg["lr"], epochs, cfg["lr_drops"], cfg["lr_gamma"])


def finetune(model, train, test, cfg: dict, epochs: int, eval_epochs: list[int], seed: int, device, progress=print) -> list[dict]:
    """Fine-tune `model` (fc replaced and blocks frozen already) and log every evaluation epoch.

    train/test: (images uint8 NHWC, labels) numpy pairs. cfg: the config's `finetune` section.
    Returns one row per evaluation epoch: epoch, test_acc, test_loss, train_acc, train_loss,
    time (cumulative seconds), lr.
    """
    gen, model, norm, (xtr, ytr), (xte, yte) = _setup(model, train, test, seed, device)
    opt = _sgd(model, cfg)
    rows, start = [], time.perf_counter()
    for epoch in range(epochs):  # a resume would restore (model, opt, gen) and start later
        _set_lr(opt, epoch, epochs, cfg)
        train_acc, train_loss = _train_epoch(model, norm, opt, xtr, ytr, cfg, gen, device)
        if epoch + 1 in eval_epochs:
            test_acc, test_loss = evaluate(model, norm, xte, yte, cfg, device)
            row = dict(epoch=epoch + 1, test_acc=test_acc, test_loss=test_loss, train_acc=train_acc, train_loss=train_loss, time=time.perf_counter() - start, lr=opt.param_groups[0]["lr"])
            rows.append(row)
            progress(" ".join(f"{k}={v:.4g}" for k, v in row.items()))
    return rows


def pgd(model_fn, x, y, norm: str, eps: float, steps: int, step_size: float, gen):
    """Projected gradient descent inside the L2 or Linf ball of radius eps around x (pixel space,
    [0, 1]), from a random start, maximising cross-entropy (Madry et al.)."""
    noise = torch.rand(x.shape, generator=gen, device=x.device) * 2 - 1
    if norm == "linf":
        delta = noise * eps
    else:
        delta = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps * torch.rand(len(x), 1, 1, 1, generator=gen, device=x.device)
    delta = ((x + delta).clamp(0, 1) - x).detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model_fn(x + delta).float(), y)
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            if norm == "linf":
                delta = (delta + step_size * g.sign()).clamp(-eps, eps)
            else:
                delta = delta + step_size * g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
                delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1).view(-1, 1, 1, 1)
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def make_attack(spec: dict | None, gen_device):
    """A closure (model_fn, x, y) -> adversarial x, or None for natural training."""
    if not spec or not spec.get("eps"):
        return None
    step = spec.get("step_size") or 2.5 * spec["eps"] / spec["steps"]
    return lambda model_fn, x, y: pgd(model_fn, x, y, spec["norm"], spec["eps"], spec["steps"], step, gen_device)


def pretrain(model, train, test, cfg: dict, seed: int, device, progress=print) -> dict:
    """Train a source model from scratch, naturally or adversarially (cfg["attack"]).

    cfg: epochs, batch_size, eval_batch_size, lr, momentum, weight_decay, lr_drops, lr_gamma,
    input_size, augment, amp, attack ({norm: l2|linf, eps, steps, step_size} or null).
    Returns clean and adversarial test accuracy (%)."""
    gen, model, norm, (xtr, ytr), (xte, yte) = _setup(model, train, test, seed, device)
    opt = _sgd(model, cfg)
    attack = make_attack(cfg.get("attack"), gen)
    for epoch in range(cfg["epochs"]):
        _set_lr(opt, epoch, cfg["epochs"], cfg)
        acc, loss = _train_epoch(model, norm, opt, xtr, ytr, cfg, gen, device, attack)
        progress(f"epoch={epoch + 1} train_acc={acc:.2f} train_loss={loss:.4f}")
    clean, _ = evaluate(model, norm, xte, yte, cfg, device)
    result = {"test_acc": clean}
    if attack is not None:
        model.eval()
        correct, bs = torch.zeros((), device=device, dtype=torch.long), cfg["eval_batch_size"]
        for i in range(0, len(yte), bs):  # counts stay on the device: one sync at the end
            xa = attack(lambda z: model(_layout(norm(z), device)), inputs(xte[i : i + bs], cfg["input_size"]), yte[i : i + bs])
            with torch.no_grad():
                correct += (model(_layout(norm(xa), device)).argmax(1) == yte[i : i + bs]).sum()
        result["adv_test_acc"] = 100.0 * correct.item() / len(yte)
    progress(" ".join(f"{k}={v:.2f}" for k, v in result.items()))
    return result
