"""Schedules, seeds, augmentation, a tiny fine-tuning run and the PGD attack."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from robust_transfer import grid, train
from robust_transfer.augment import augment
from robust_transfer.models import prepare_for_transfer, resnet50

CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


# --- learning-rate schedule -------------------------------------------------------------


@pytest.mark.parametrize(
    "epochs, boundaries",
    [(100, [(0, 32, 0.1), (33, 65, 0.01), (66, 98, 0.001)]), (150, [(0, 49, 0.1), (50, 99, 0.01), (100, 149, 0.001)])],
)
def test_lr_at_step_schedule(epochs, boundaries):
    """lr x 0.1 every epochs // 3 epochs (the authors' step_lr = num_epochs // 3)."""
    for first, last, lr in boundaries:
        for epoch in range(first, last + 1):
            assert train.lr_at(epoch, 0.1, epochs, 3, 0.1) == pytest.approx(lr, rel=1e-12), epoch


@pytest.mark.parametrize("epochs", [100, 150, 30])
def test_lr_at_equals_torch_steplr(epochs):
    """Same as the robustness library's StepLR(step_size=epochs // 3, gamma=0.1), every epoch
    (including epoch 99 of 100, the one StepLR puts at 1e-4)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=epochs // 3, gamma=0.1)
    for epoch in range(epochs):
        assert train.lr_at(epoch, 0.1, epochs) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), epoch
        opt.step()
        sched.step()


def test_lr_at_few_epochs():
    """Fewer than 3 epochs: no division by zero (step of at least one epoch)."""
    assert train.lr_at(0, 0.1, 2) == pytest.approx(0.1)
    assert train.lr_at(1, 0.1, 2) == pytest.approx(0.01)


# --- grid: schedules and seeds ----------------------------------------------------------


@pytest.mark.parametrize("size", [100, 200, 400, 800, 1600, "100", "1600"])
def test_schedule_small_sizes(config, size):
    """n <= 1600: 100 epochs, evaluated at 1, 21, 41, 61, 81, 100."""
    assert grid.schedule(config, size) == {"epochs": 100, "eval_epochs": [1, 21, 41, 61, 81, 100]}


@pytest.mark.parametrize("size", [3200, "3200", 6400, 25600, "full"])
def test_schedule_large_sizes(config, size):
    """n >= 3200 and the full set: 150 epochs, evaluated at 1, 11, ..., 141, 150."""
    expected = list(range(1, 142, 10)) + [150]
    assert expected[:3] == [1, 11, 21] and expected[-2:] == [141, 150]
    assert grid.schedule(config, size) == {"epochs": 150, "eval_epochs": expected}


def test_schedule_fig3_epochs_are_logged(config):
    """Fig 3 reads epochs 11, 21, 41, 81, 150 of n=3200 runs: all must be logged."""
    evals = grid.schedule(config, 3200)["eval_epochs"]
    assert {11, 21, 41, 81, 150} <= set(evals)


@pytest.mark.parametrize("size", [100, 1600, 3200, 6400, "6400"])
def test_seeds_ten(config, size):
    """10 seeds 20000000 + 100000 i for n <= 6400."""
    assert grid.seeds(config, size) == [20000000 + 100000 * i for i in range(10)]


@pytest.mark.parametrize("size", [12800, "12800", 25600, "25600"])
def test_seeds_five(config, size):
    assert grid.seeds(config, size) == [20000000 + 100000 * i for i in range(5)]


def test_seeds_full(config):
    assert grid.seeds(config, "full") == [20000000]


# --- augmentation -----------------------------------------------------------------------


def _batch(n=6, h=12, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g)


def test_augment_same_seed_same_output():
    """Every draw comes from the run's generator and Python's `random` (the jitter order), both
    seeded per run (train.seed_everything): same seeds, same augmented batch."""
    import random

    x = _batch()
    random.seed(5)
    a = augment(x, torch.Generator().manual_seed(5))
    random.seed(5)
    b = augment(x, torch.Generator().manual_seed(5))
    c = augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augment_shape_and_range():
    """All four augmentations on: shape kept, values in [0, 1], input not modified."""
    x = _batch(n=16)
    x0 = x.clone()
    for s in range(5):
        out = augment(x, torch.Generator().manual_seed(s), pad=4, flip=True, jitter=0.25, degrees=2)
        assert out.shape == x.shape
        assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(x, x0)


def _shift(img, dy, dx):
    """out[y, x] = img[y + dy, x + dx], zero outside."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    for y in range(h):
        for x in range(w):
            sy, sx = y + dy, x + dx
            if 0 <= sy < h and 0 <= sx < w:
                out[:, y, x] = img[:, sy, sx]
    return out


def test_augment_pad_is_integer_shift_with_zero_fill():
    """RandomCrop(padding=4) == an integer shift in [-4, 4] with zero fill: each image equals
    the input shifted by exactly one such (dy, dx), and the shifts vary across images."""
    x = _batch(n=8, h=10, w=10) * 0.9 + 0.05  # no zeros in the input: fill is recognisable
    out = augment(x, torch.Generator().manual_seed(3), pad=4, flip=False, jitter=0, degrees=0)
    shifts = []
    for i in range(len(x)):
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if torch.equal(out[i], _shift(x[i], dy, dx))]
        assert len(found) == 1, f"image {i}: not an exact integer shift"
        shifts.append(found[0])
    assert len(set(shifts)) > 1


def test_augment_flip_only_mirrors():
    """flip alone: each image is the input or its exact horizontal mirror."""
    x = _batch(n=16)
    out = augment(x, torch.Generator().manual_seed(0), pad=0, flip=True, jitter=0, degrees=0)
    kinds = []
    for i in range(len(x)):
        same, mirrored = torch.equal(out[i], x[i]), torch.equal(out[i], x[i].flip(-1))
        assert same or mirrored
        kinds.append(mirrored)
    assert any(kinds) and not all(kinds)


def test_augment_all_disabled_is_identity():
    x = _batch()
    out = augment(x, torch.Generator().manual_seed(0), pad=0, flip=False, jitter=0, degrees=0)
    assert torch.equal(out, x)


def test_augment_jitter_only_keeps_geometry():
    """Colour jitter moves no pixel: on grey images (saturation is then a no-op, brightness
    and contrast are increasing maps) each output image is a non-decreasing function of its
    input, pixel by pixel, and stays grey; yet values do change."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 8, 8, generator=g).expand(4, 3, 8, 8).contiguous()
    out = augment(x, torch.Generator().manual_seed(1), pad=0, flip=False, jitter=0.25, degrees=0)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6) and torch.allclose(out[:, 0], out[:, 2], atol=1e-6)
    for i in range(len(x)):
        order = x[i, 0].flatten().argsort()
        assert (out[i, 0].flatten()[order].diff() >= -1e-6).all()


# --- a tiny fine-tuning run -------------------------------------------------------------

CFG = {
    "input_size": 16,
    "batch_size": 16,
    "eval_batch_size": 32,
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr_drops": 3,
    "lr_gamma": 0.1,
    "augment": {"pad": 2, "flip": True, "jitter": 0.25, "degrees": 2},
    "amp": "none",
}
ROW_KEYS = ["epoch", "test_acc", "test_loss", "train_acc", "train_loss", "time", "lr"]


def _data(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), rng.integers(0, 5, n).astype(np.int64)


def _finetune(seed=7, k=3):
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 5, k)
    lines = []
    rows = train.finetune(model, _data(40, 1), _data(20, 2), CFG, 3, [1, 3], seed, CPU, progress=lines.append)
    return rows, model, lines


@pytest.fixture(scope="module")
def two_runs():
    return _finetune(), _finetune()


def test_finetune_rows(two_runs):
    """One row per evaluation epoch with the documented keys and sane values; the logged lr is
    the one of the epoch just trained (3 epochs: step 1, so 0.01, 0.001, 0.0001)."""
    (rows, _, lines), _ = two_runs
    assert [r["epoch"] for r in rows] == [1, 3]
    assert len(lines) == 2
    for r in rows:
        assert list(r) == ROW_KEYS
        assert 0 <= r["test_acc"] <= 100 and 0 <= r["train_acc"] <= 100
        assert math.isfinite(r["test_loss"]) and math.isfinite(r["train_loss"])
        assert r["time"] >= 0
        # accuracies are multiples of one image (20 test, 40 train)
        assert r["test_acc"] * 20 / 100 == pytest.approx(round(r["test_acc"] * 20 / 100))
        assert r["train_acc"] * 40 / 100 == pytest.approx(round(r["train_acc"] * 40 / 100))
    assert rows[0]["lr"] == pytest.approx(0.01)
    assert rows[1]["lr"] == pytest.approx(1e-4)
    assert rows[1]["time"] >= rows[0]["time"]


def test_finetune_deterministic(two_runs):
    """Same seed -> identical numbers (everything but wall time) and identical weights."""
    (r1, m1, _), (r2, m2, _) = two_runs
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(r1) == strip(r2)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_finetune_other_seed_differs(two_runs):
    """Another seed draws other batches and augmentations: other weights."""
    (_, m1, _), _ = two_runs
    _, m3, _ = _finetune(seed=8)
    assert not torch.equal(m1.fc.weight, m3.fc.weight)


def test_finetune_frozen_blocks_untouched_bn_stats_move():
    """In the real loop: frozen parameters never change (k=1), but frozen BN running stats do,
    and trainable ones do change."""
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 5, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = {**CFG, "batch_size": 20}
    train.finetune(model, _data(40, 1), _data(10, 2), cfg, 1, [1], 0, CPU, progress=lambda s: None)
    after = model.state_dict()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.startswith(("layer4.2.", "fc.")) for n in trainable)
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert all(not torch.equal(before[n], after[n]) for n in ["fc.weight", "layer4.2.conv1.weight"])
    assert not torch.equal(before["layer1.0.bn1.running_mean"], after["layer1.0.bn1.running_mean"])
    assert not torch.equal(before["layer2.0.bn2.running_var"], after["layer2.0.bn2.running_var"])


def test_inputs_resize_and_scale():
    """uint8 -> [0, 1] floats at input_size; no resize when the size already matches."""
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    same = train.inputs(x, 8)
    assert torch.allclose(same, x.float() / 255)
    big = train.inputs(x, 16)
    assert big.shape == (2, 3, 16, 16) and big.min() >= 0 and big.max() <= 1
    small = train.inputs(torch.full((1, 3, 8, 8), 255, dtype=torch.uint8), 4)
    assert torch.allclose(small, torch.ones(1, 3, 4, 4))


def test_to_device_layout():
    """NHWC uint8 numpy -> NCHW uint8 tensor, pixel for pixel."""
    images, labels = _data(3, 0)
    x, y = train.to_device(images, labels, CPU)
    assert x.dtype == torch.uint8 and x.shape == (3, 3, 8, 8)
    assert np.array_equal(x.permute(0, 2, 3, 1).numpy(), images)
    assert y.dtype == torch.int64 and np.array_equal(y.numpy(), labels)


# --- PGD --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linear_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))


@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_pgd_l2_within_ball(linear_model, eps):
    """L2 PGD: ||x_adv - x||_2 <= eps per sample, x_adv in [0, 1], and it raises the loss."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8, generator=g)
    x[:4] = 0.0  # at the box boundary: clamping must not push outside
    x[4:8] = 1.0
    y = torch.randint(0, 4, (16,), generator=g)
    adv = train.pgd(linear_model, x, y, "l2", eps, steps=7, step_size=2.5 * eps / 7, gen=g)
    norms = (adv - x).flatten(1).norm(dim=1)
    assert (norms <= eps + 1e-5).all(), norms.max()
    assert adv.min() >= 0 and adv.max() <= 1
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert ce(linear_model(adv), y) > ce(linear_model(x), y)


@pytest.mark.parametrize("eps", [4 / 255, 8 / 255])
def test_pgd_linf_within_ball(linear_model, eps):
    """Linf PGD: max |x_adv - x| <= eps, x_adv in [0, 1], and it raises the loss."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 8, 8, generator=g)
    x[:4] = 0.0
    y = torch.randint(0, 4, (16,), generator=g)
    adv = train.pgd(linear_model, x, y, "linf", eps, steps=5, step_size=2.5 * eps / 5, gen=g)
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert ce(linear_model(adv), y) > ce(linear_model(x), y)


def test_pgd_deterministic(linear_model):
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    a = train.pgd(linear_model, x, y, "l2", 1.0, 3, 0.5, torch.Generator().manual_seed(9))
    b = train.pgd(linear_model, x, y, "l2", 1.0, 3, 0.5, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_make_attack():
    """No eps -> natural training (None); the default step size is 2.5 eps / steps."""
    assert train.make_attack(None, None) is None
    assert train.make_attack({"norm": "l2", "eps": 0, "steps": 3}, None) is None
    attack = train.make_attack({"norm": "linf", "eps": 0.1, "steps": 2}, torch.Generator().manual_seed(0))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    x = torch.rand(3, 3, 2, 2)
    adv = attack(model, x, torch.tensor([0, 1, 0]))
    assert (adv - x).abs().max() <= 0.1 + 1e-6
