"""The training loop: lr schedule, a tiny fine-tuning run, device-resident inputs and PGD."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from robust_transfer import train
from robust_transfer.models import prepare_for_transfer, resnet50

CPU = torch.device("cpu")


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
    cfg = {**CFG, "epochs": 3, "eval_epochs": [1, 3]}
    rows = train.finetune(model, _data(40, 1), _data(20, 2), cfg, seed, CPU, progress=lines.append)
    return rows, model, lines


@pytest.fixture(scope="module")
def two_runs():
    return _finetune(), _finetune()


def test_finetune_rows(two_runs):
    """One row per evaluation epoch with the documented keys and sane values; the logged lr is
    the one of the epoch just trained (3 epochs: step 1, so 0.01, 0.001, 0.0001)."""
    (rows, _, lines), _ = two_runs
    assert [r["epoch"] for r in rows] == [1, 3]
    assert [line.split()[0] for line in lines] == ["epoch=1", "epoch", "epoch", "epoch=3", "epoch"]  # rows, progress
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
    cfg = {**CFG, "batch_size": 20, "epochs": 1, "eval_epochs": [1]}
    train.finetune(model, _data(40, 1), _data(10, 2), cfg, 0, CPU, progress=lambda s: None)
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
    x, y = train.to_device(images, labels, device=CPU)
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


def test_pgd_l2_step_is_step_size_long_along_the_gradient(linear_model):
    """One L2 step moves the perturbation by exactly step_size along the loss gradient (a
    normalised gradient): compared with the random start alone (steps=0, same generator state),
    where neither the ball nor the [0, 1] box cuts the step."""
    x = torch.full((16, 3, 8, 8), 0.5)
    y = torch.arange(16) % 4
    start = train.pgd(linear_model, x, y, "l2", 1.0, steps=0, step_size=0.01, gen=torch.Generator().manual_seed(3))
    one = train.pgd(linear_model, x, y, "l2", 1.0, steps=1, step_size=0.01, gen=torch.Generator().manual_seed(3))
    free = (start - x).flatten(1).norm(dim=1) < 0.98  # the step stays inside the ball
    assert free.sum() >= 8
    step = (one - start).flatten(1)[free]
    assert torch.allclose(step.norm(dim=1), torch.full((int(free.sum()),), 0.01), rtol=1e-3)
    delta = (start - x).requires_grad_(True)
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(linear_model(x + delta), y), delta)
    cos = torch.nn.functional.cosine_similarity(step, g.flatten(1)[free], dim=1)
    assert (cos > 0.999).all()


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


# --- what the loop trains on, how it evaluates, its lr at every epoch ---------------------


def _tiny_cfg(**kw):
    return {**CFG, "epochs": 2, "eval_epochs": [1, 2], **kw}


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def test_run_job_trains_on_exactly_the_subset(tmp_path):
    """A real job (runs.run_job: files in, files out) on a training split with a 12-image subset
    gives exactly the numbers of the same job on a split holding only those 12 images: the run
    sees the subset (count and identity), nothing else of the split."""
    from types import SimpleNamespace

    from robust_transfer import checkpoints, grid, runs, store

    images, labels = _data(60, 3)
    idx = np.sort(np.random.default_rng(0).choice(60, 12, replace=False))
    torch.manual_seed(0)
    checkpoints.save(resnet50(num_classes=5, width_per_group=8), tmp_path / "source.pt", {})
    store.save_split(tmp_path / "test.npz", *_data(20, 4))
    settings = {**_tiny_cfg(), "head_std": 1.0, "device": "cpu", "deterministic": True, "init": None}
    results = []
    for name, (x, y), subset in [("all", (images, labels), idx), ("only", (images[idx], labels[idx]), np.arange(12))]:
        store.save_split(tmp_path / f"{name}.npz", x, y)
        np.save(tmp_path / f"{name}.npy", subset)
        inputs = SimpleNamespace(
            train=tmp_path / f"{name}.npz",
            test=tmp_path / "test.npz",
            subset=tmp_path / f"{name}.npy",
            source=tmp_path / "source.pt",
        )
        outputs = SimpleNamespace(metrics=tmp_path / f"{name}.csv", meta=tmp_path / f"{name}.json")
        runs.run_job(inputs, outputs, grid.Run("d", "s", 1, "12", 5), settings, placement={"channels_last": True})
        results.append(pd.read_csv(outputs.metrics).drop(columns="time"))
    pd.testing.assert_frame_equal(results[0], results[1])
    assert (results[0]["n"] == 12).all()
    meta = json.loads(outputs.meta.read_text())
    seconds = meta["seconds"]  # where the job's time went
    assert set(seconds) == {"load", "start", "train", "eval"} and all(v >= 0 for v in seconds.values())
    # the layout it trained in (placement: recorded, but no setting, so no part of its params)
    assert meta["channels_last"] is True and "channels_last" not in meta["settings"]
    # accuracies are over 12 images: multiples of 1/12
    assert np.allclose(results[0]["train_acc"] * 12 / 100, np.round(results[0]["train_acc"] * 12 / 100))


def _scratch_job(tmp_path, seed, source_seed=0, init="run"):
    """A from-scratch job on a tiny split, its source file drawn from `source_seed`; returns its
    metrics without time."""
    from types import SimpleNamespace

    from robust_transfer import checkpoints, grid, runs, store

    torch.manual_seed(source_seed)
    checkpoints.save(resnet50(width_per_group=8), tmp_path / "source.pt", {})
    store.save_split(tmp_path / "train.npz", *_data(16, 3))
    store.save_split(tmp_path / "test.npz", *_data(8, 4))
    np.save(tmp_path / "subset.npy", np.arange(16))
    settings = {**_tiny_cfg(epochs=1, eval_epochs=[1], input_size=8), "init": init, "head_std": None}
    settings |= {"mean": [0.3] * 3, "std": [0.3] * 3, "device": "cpu", "deterministic": True}
    files = {"train": "train.npz", "test": "test.npz", "subset": "subset.npy", "source": "source.pt"}
    inputs = SimpleNamespace(**{k: tmp_path / f for k, f in files.items()})
    outputs = SimpleNamespace(metrics=tmp_path / "m.csv", meta=tmp_path / "m.json")
    runs.run_job(inputs, outputs, grid.Run("d", "scratch", 16, "16", seed), settings)
    return pd.read_csv(outputs.metrics).drop(columns="time")


def test_from_scratch_init_is_drawn_per_run_seed(tmp_path):
    """init: run: every run draws its own random network from its seed (the authors): the
    source file's weights play no part (only its architecture), the seed does."""
    a = _scratch_job(tmp_path, 1, source_seed=0)
    pd.testing.assert_frame_equal(a, _scratch_job(tmp_path, 1, source_seed=5))
    assert not a["test_loss"].equals(_scratch_job(tmp_path, 2, source_seed=0)["test_loss"])
    fixed = _scratch_job(tmp_path, 1, source_seed=0, init=None)  # one shared init: the file's weights
    assert not fixed["test_loss"].equals(_scratch_job(tmp_path, 1, source_seed=5, init=None)["test_loss"])


def _evaluated_mid_training(attack=None):
    """A loop one epoch into training (its model in train mode), evaluated: the loop, the
    result, and whether the model's weights and BatchNorm statistics stayed as they were."""
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 5, 3)
    loop = train.start(model, _data(32, 1), _data(24, 2), _tiny_cfg(), 0, CPU)
    train.train_epoch(loop)
    assert loop.net.training
    before = {k: v.clone() for k, v in loop.net.state_dict().items()}
    result = train.evaluate(loop.net, *loop.test, loop.cfg, attack)
    after = loop.net.state_dict()
    return loop, result, all(torch.equal(before[k], after[k]) for k in before)


def test_evaluate_runs_in_eval_mode():
    """Evaluation uses BatchNorm's running statistics and leaves them (and the weights) alone,
    even when called mid-training on a model in train mode."""
    loop, (acc, loss), unchanged = _evaluated_mid_training()
    assert unchanged
    x, y = loop.test
    loop.net.eval()
    with torch.no_grad():
        out = loop.net(train.inputs(x, 16))
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(out, y).item(), rel=1e-5)
    assert acc == pytest.approx(100 * (out.argmax(1) == y).float().mean().item())


def test_adversarial_evaluation_runs_in_eval_mode():
    """Evaluation under attack (the PGD accuracy of pretrained sources) attacks and scores the
    model in eval mode: BatchNorm's running statistics and the weights stay as they were, even
    when it is called on a model in train mode."""
    attack = train.make_attack({"norm": "linf", "eps": 0.03, "steps": 1}, torch.Generator().manual_seed(0))
    assert _evaluated_mid_training(attack)[2]


@pytest.mark.parametrize("epochs, drops, gamma", [(6, 3, 0.1), (6, 2, 0.5), (7, 3, 0.2), (4, 1, 0.1)])
def test_the_loop_sets_the_scheduled_lr_every_epoch(epochs, drops, gamma):
    """The real loop's lr at every epoch is lr x gamma^(epoch // (epochs // drops)), with the
    config's drops and gamma (logged per evaluation epoch; every epoch is evaluated here)."""
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 5, 0)
    cfg = _tiny_cfg(
        epochs=epochs, eval_epochs=list(range(1, epochs + 1)), lr=0.1, lr_drops=drops, lr_gamma=gamma, input_size=8
    )
    rows = train.finetune(model, _data(16, 1), _data(8, 2), cfg, 0, CPU, progress=lambda s: None)
    step = max(1, epochs // drops)
    assert [r["lr"] for r in rows] == pytest.approx([0.1 * gamma ** ((e - 1) // step) for e in range(1, epochs + 1)])


def test_pgd_default_step_is_two_and_a_half_eps_over_steps(linear_model):
    """make_attack without step_size uses Madry et al.'s 2.5 eps / steps, exactly."""
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 4, (8,), generator=torch.Generator().manual_seed(1))
    spec = {"norm": "l2", "eps": 1.0, "steps": 4}
    attack = train.make_attack(spec, torch.Generator().manual_seed(3))
    got = attack(linear_model, x, y)
    expected = train.pgd(linear_model, x, y, "l2", 1.0, 4, 2.5 * 1.0 / 4, torch.Generator().manual_seed(3))
    other = train.pgd(linear_model, x, y, "l2", 1.0, 4, 0.2, torch.Generator().manual_seed(3))
    assert torch.equal(got, expected) and not torch.equal(got, other)
    explicit = train.make_attack({**spec, "step_size": 0.2}, torch.Generator().manual_seed(3))(linear_model, x, y)
    assert torch.equal(explicit, other)


def test_adversarial_evaluation_is_below_clean():
    """evaluate with an attack: accuracy on PGD examples of each batch is far below the clean one
    (a linear model that separates the data exactly; an Linf step of 0.1 per pixel flips most)."""
    torch.manual_seed(0)
    x = torch.rand(64, 3, 4, 4)
    y = (x.mean(dim=(1, 2, 3)) > 0.5).long()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    with torch.no_grad():  # logit(1) - logit(0) = 20 (sum of pixels - 24): class 1 iff mean > 0.5
        model[1].weight.copy_(torch.stack([-torch.ones(48), torch.ones(48)]) * 10)
        model[1].bias.copy_(torch.tensor([240.0, -240.0]))
    cfg = {"eval_batch_size": 16, "input_size": 4, "amp": "none"}
    xs = (x * 255).round().to(torch.uint8)
    clean, _ = train.evaluate(model, xs, y, cfg)
    attack = train.make_attack({"norm": "linf", "eps": 0.1, "steps": 3}, torch.Generator().manual_seed(0))
    adv, _ = train.evaluate(model, xs, y, cfg, attack)
    assert clean > 90 and adv < clean - 20


# --- resume: a killed run continues where it stopped, with the same numbers ----------------


class _Killed(Exception):
    pass


def test_a_killed_run_resumes_with_the_numbers_of_an_uninterrupted_one(tmp_path):
    """The state saved at every evaluation epoch (model, optimiser, epoch, every RNG, rows) lets
    a rerun continue after a crash and end with exactly the uninterrupted run's numbers; the
    state is removed when the run completes."""
    cfg = _tiny_cfg(epochs=6, eval_epochs=[2, 4, 6])

    def run(resume=None, progress=lambda s: None):
        torch.manual_seed(0)
        model = prepare_for_transfer(resnet50(width_per_group=8), 5, 3)
        return train.finetune(model, _data(40, 1), _data(20, 2), cfg, 7, CPU, progress=progress, resume=resume)

    whole = run()
    resume = train.Resume(tmp_path / "resume" / "run" / "state", "key")  # folders made as needed
    logged = []

    def killed_at_epoch_6(line):  # the state was last saved after epoch 4
        logged.append(line)
        if line.startswith("epoch=6"):
            raise _Killed

    with pytest.raises(_Killed):
        run(resume, killed_at_epoch_6)
    assert resume.path.exists() and torch.load(resume.path, weights_only=True)["epoch"] == 4
    lines = []
    resumed = run(resume, lines.append)
    assert lines[0] == f"resumed from {resume.path} after epoch 4"
    starts = ["epoch 5/6:", "epoch=6 ", "epoch 6/6:"]  # epochs 5 and 6 only: progress, row, progress
    assert len(lines) == 4 and all(line.startswith(x) for line, x in zip(lines[1:], starts, strict=True))
    assert _strip(resumed) == _strip(whole)
    assert not resume.path.exists()


def test_a_state_of_other_inputs_is_never_used(tmp_path):
    cfg = _tiny_cfg(epochs=2, eval_epochs=[1, 2])
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 5, 3)
    loop = train.start(model, _data(16, 1), _data(8, 2), cfg, 7, CPU)
    train.train_epoch(loop)
    train.save_state(loop, train.Resume(tmp_path / "state", "old inputs"))
    lines = []
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 5, 3)
    train.finetune(model, _data(16, 1), _data(8, 2), cfg, 7, CPU, lines.append, train.Resume(tmp_path / "state", "new"))
    assert not any(line.startswith("resumed") for line in lines)


def test_sigterm_saves_the_state_and_stops(tmp_path, monkeypatch):
    """A SIGTERM (pre-emption, a SLURM time limit) ends the run at the end of its epoch with the
    state saved; the rerun completes it with the uninterrupted numbers."""
    import os
    import signal

    cfg = _tiny_cfg(epochs=4, eval_epochs=[4])

    def run(resume=None, progress=lambda s: None):
        torch.manual_seed(0)
        model = prepare_for_transfer(resnet50(width_per_group=8), 5, 3)
        return train.finetune(model, _data(40, 1), _data(20, 2), cfg, 7, CPU, progress=progress, resume=resume)

    whole = run()
    resume = train.Resume(tmp_path / "state", "key")
    original, sent = train.train_epoch, []

    def epoch_then_sigterm(loop):  # the signal arrives during epoch 2
        out = original(loop)
        if loop.epoch == 2 and not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))
        return out

    monkeypatch.setattr(train, "train_epoch", epoch_then_sigterm)
    with pytest.raises(train.Preempted, match="SIGTERM after epoch 2"):
        run(resume)
    monkeypatch.setattr(train, "train_epoch", original)
    assert torch.load(resume.path, weights_only=True)["epoch"] == 2
    assert _strip(run(resume)) == _strip(whole)


# --- evaluation: folded BatchNorm, inference copies, each speed-up against the plain loop ------


def _trained_net(k=3, seed=0):
    """A narrow ResNet-50 in a Net whose BatchNorm layers hold non-trivial statistics and affine
    weights (as after fine-tuning), in eval mode."""
    from robust_transfer.models import Net

    torch.manual_seed(seed)
    net = Net(prepare_for_transfer(resnet50(width_per_group=8), 5, k))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        net.train()
        for _ in range(3):  # running statistics of real activations, not the (0, 1) defaults
            net(torch.rand(16, 3, 16, 16))
    return net.eval()


def test_fold_batchnorm_equals_unfolded():
    """Folding every BatchNorm into its convolution changes the logits by float rounding only
    (< 1e-4) and the predictions not at all; no BatchNorm is left in the folded ResNet."""
    from robust_transfer.models import fold_batchnorm

    net = _trained_net()
    x = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(x)
        folded = net.for_inference(fold=True)
        out = folded(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 53  # the original is untouched
    assert (out - ref).abs().max() < 1e-4
    assert torch.equal(out.argmax(1), ref.argmax(1))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(_trained_net().train())


def test_inference_copy_is_frozen_and_separate():
    """The evaluation copy needs no gradients, has the asked layout and dtype, and shares no
    storage with the training net (training after an evaluation is unaffected)."""
    net = _trained_net()
    copy = net.for_inference(fold=True, dtype=torch.bfloat16, channels_last=True)
    assert not any(p.requires_grad for p in copy.parameters())
    assert copy.model.conv1.weight.dtype == torch.bfloat16 and copy.normalize.mean.dtype == torch.float32
    assert copy.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    ours = {p.data_ptr() for p in net.parameters()}
    assert not ours & {p.data_ptr() for p in copy.parameters()}
    assert net.model.conv1.weight.dtype == torch.float32 and isinstance(net.model.bn1, torch.nn.BatchNorm2d)


def _eval_data(n=40, seed=3):
    images, labels = _data(n, seed)
    return train.to_device(images, labels, device=CPU)


@pytest.mark.parametrize(
    "speedups",
    [
        {"inference_mode"},
        {"inference_mode", "fold_bn"},
        {"fold_bn", "channels_last"},
        set(train.SPEEDUPS),
    ],
    ids=["inference", "fold", "fold+layout", "all"],
)
def test_evaluate_speedups_give_the_plain_numbers_in_fp32(speedups):
    """On the CPU in fp32, every combination of evaluation speed-ups gives the plain loop's
    accuracy exactly and its loss up to float rounding (batches of 16 over 40 images: a partial
    last batch too), and leaves the net's weights and statistics alone."""
    net = _trained_net()
    x, y = _eval_data()
    cfg = {**CFG, "eval_batch_size": 16}
    before = {k: v.clone() for k, v in net.state_dict().items()}
    plain = train.evaluate(net, x, y, cfg, speedups=frozenset())
    fast = train.evaluate(net, x, y, cfg, speedups=frozenset(speedups))
    assert fast[0] == plain[0]
    assert fast[1] == pytest.approx(plain[1], rel=1e-5)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_evaluate_bf16_cast_matches_autocast():
    """amp bf16: the folded copy cast once to bf16 in channels-last (the CUDA path, run here on
    the CPU) gives the loss autocast gives within bf16 rounding, and fp32's within a few %."""
    net = _trained_net()
    x, y = _eval_data(64)
    cfg = {**CFG, "eval_batch_size": 32, "amp": "bf16"}
    cast = train.evaluate(net, x, y, cfg)  # all speed-ups: folded, bf16 weights, channels-last
    autocast = train.evaluate(net, x, y, cfg, speedups=frozenset({"inference_mode"}))
    fp32 = train.evaluate(net, x, y, {**cfg, "amp": "none"}, speedups=frozenset())
    assert cast[1] == pytest.approx(autocast[1], rel=0.03) and cast[1] == pytest.approx(fp32[1], rel=0.03)
    assert abs(cast[0] - fp32[0]) <= 100 * 3 / 64  # a few borderline images may flip


@pytest.mark.parametrize("amp, layout", [("bf16", "auto"), ("none", True)], ids=["bf16", "fp32-channels-last"])
def test_training_in_channels_last_on_the_cpu_is_deterministic(amp, layout):
    """Channels-last training on the CPU (amp bf16 by default, as oneDNN's bf16 kernels want;
    fp32 when channels_last is true, as the demo sets it): the same seed gives the same numbers."""

    def run():
        torch.manual_seed(0)
        model = prepare_for_transfer(resnet50(width_per_group=8), 5, 1)
        cfg = {**CFG, "amp": amp, "channels_last": layout, "epochs": 2, "eval_epochs": [2]}
        loop = train.start(model, _data(32, 1), _data(16, 2), cfg, 0, CPU)
        assert loop.net.channels_last
        train.train_epoch(loop)
        train.train_epoch(loop)
        return train.evaluate(loop.net, *loop.test, cfg), loop.net.model.fc.weight.clone()

    (r1, w1), (r2, w2) = run(), run()
    assert r1 == r2 and torch.equal(w1, w2)


def test_inputs_resize_as_torchvision():
    """uint8 -> [0, 1] floats at the input size, resized as torchvision's Resize on tensors
    (bilinear, half-pixel centres, antialiased when shrinking); an image at the size is kept."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for size in (24, 5):
        want = TF.resize(x.float() / 255, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
        torch.testing.assert_close(train.inputs(x, size), want)
    assert torch.equal(train.inputs(x, 8), x.float() / 255)
    narrow = x[..., :5]  # a non-square batch at the size in one side only
    want = TF.resize(narrow.float() / 255, [8, 8], interpolation=InterpolationMode.BILINEAR, antialias=True)
    torch.testing.assert_close(train.inputs(narrow, 8), want)


def test_finetune_clock_and_sigterm_handler():
    """The seconds a run reports (its meta's `seconds`) are positive and add up to at most its
    wall time; the SIGTERM handler it installs for a graceful stop is the previous one again
    after it."""
    import signal
    import time

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        torch.manual_seed(0)
        model = prepare_for_transfer(resnet50(width_per_group=8), 5, 1)
        clock = {"load": 0.0}
        start = time.perf_counter()
        train.finetune(model, _data(20, 1), _data(10, 2), _tiny_cfg(), 0, CPU, progress=lambda s: None, clock=clock)
        wall = time.perf_counter() - start
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert clock["start"] > 0 and clock["train"] > 0 and clock["eval"] > 0
    assert clock["start"] + clock["train"] + clock["eval"] <= wall


NO_AUGMENT = {"pad": 0, "flip": False, "jitter": 0.0, "degrees": 0.0}


def _training_inputs(split, cfg) -> list[torch.Tensor]:
    """Fine-tune a small model on `split` and return every training batch as the network's first
    convolution received it (normalised, after cropping and augmentation)."""
    seen = []
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 5, 1)
    model.conv1.register_forward_pre_hook(lambda module, args: seen.append(args[0]) if module.training else None)
    train.finetune(model, split, _data(6, 2), cfg, 0, CPU, progress=lambda s: None)
    return seen


def test_every_training_image_is_seen_once_per_epoch():
    """Batches cover the shuffled subset exactly: n = 10 at batch 4 is 4 + 4 + 2 images an
    epoch, every image once (each image carries its index in its pixels; augmentation off)."""
    n = 10
    images = np.broadcast_to((np.arange(n, dtype=np.uint8) * 20)[:, None, None, None], (n, 8, 8, 3)).copy()
    cfg = _tiny_cfg(input_size=8, batch_size=4, augment=NO_AUGMENT)
    seen = _training_inputs((images, np.arange(n) % 5), cfg)
    assert [len(batch) for batch in seen] == [4, 4, 2] * cfg["epochs"]
    for epoch in range(cfg["epochs"]):
        pixels = torch.cat(seen[3 * epoch : 3 * epoch + 3])[:, 0, 0, 0].tolist()  # each image's first pixel
        assert len(set(pixels)) == n  # ten different images: each once


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_random_start_fills_the_ball_around_x(linear_model, norm):
    """steps=0 is the random start alone: inside the ball, centred on x (as many negative as
    positive perturbations) and reaching its edge (Linf: uniform in [-eps, eps] per pixel; L2: a
    uniform direction at a radius up to eps)."""
    x, y, eps = torch.full((64, 3, 8, 8), 0.5), torch.arange(64) % 4, 0.25
    delta = train.pgd(linear_model, x, y, norm, eps, steps=0, step_size=0.1, gen=torch.Generator().manual_seed(0)) - x
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6 and delta.min() < -0.95 * eps and delta.max() > 0.95 * eps
    else:
        norms = delta.flatten(1).norm(dim=1)
        assert (norms <= eps + 1e-5).all() and norms.max() > 0.8 * eps
    assert abs(float(delta.mean())) < 0.02 * eps


def test_pgd_l2_ends_on_the_sphere_when_the_box_allows(linear_model):
    """On a linear model with long steps, L2 PGD ends on the ball's surface for every sample:
    the projection scales a perturbation back to eps exactly, never below."""
    x, y = torch.full((16, 3, 8, 8), 0.5), torch.arange(16) % 4
    adv = train.pgd(linear_model, x, y, "l2", 0.5, steps=3, step_size=0.5, gen=torch.Generator().manual_seed(0))
    norms = (adv - x).flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((16,), 0.5), atol=1e-4, rtol=0)


def _pretrain(resume=None, progress=lambda s: None, epochs=3):
    torch.manual_seed(0)
    model = resnet50(num_classes=5, width_per_group=8)
    cfg = {**CFG, "epochs": epochs, "attack": {"norm": "linf", "eps": 0.03, "steps": 1}}
    return train.pretrain(model, _data(32, 1), _data(16, 2), cfg, 7, CPU, progress=progress, resume=resume)


def test_a_killed_pretraining_resumes_with_the_numbers_of_an_uninterrupted_one(tmp_path, monkeypatch):
    """Pretraining a source (PGD) saves its state after every epoch but the last: killed in
    epoch 3, the rerun continues from epoch 2 and ends with the uninterrupted clean and PGD
    accuracies; the state is removed at the end (also when no epoch saved one)."""
    whole = _pretrain()
    assert set(whole) == {"test_acc", "adv_test_acc"}
    saved, save = [], train.save_state
    monkeypatch.setattr(train, "save_state", lambda loop, resume: (saved.append(loop.epoch), save(loop, resume)))
    _pretrain(train.Resume(tmp_path / "spied" / "state", "key"))
    assert saved == [1, 2]  # not after epoch 3, the last
    resume = train.Resume(tmp_path / "source" / "state", "key")

    def killed_in_epoch_3(line):
        if line.startswith("epoch 3/3:"):
            raise _Killed

    with pytest.raises(_Killed):
        _pretrain(resume, killed_in_epoch_3)
    assert torch.load(resume.path, weights_only=True)["epoch"] == 2
    lines = []
    assert _pretrain(resume, lines.append) == whole
    assert lines[0] == f"resumed from {resume.path} after epoch 2" and not resume.path.exists()
    _pretrain(train.Resume(tmp_path / "one" / "state", "key"), epochs=1)  # nothing saved, nothing to remove


def test_whole_images_of_different_sizes_train_on_crops_inside_each_image():
    """train_crop: random (a canvas of whole images with their extents): every training input
    is a window of its own image, never of the canvas around it (filled with 255 here, the
    images with 100), so each input is one flat grey."""
    rng = np.random.default_rng(0)
    extents = rng.integers(6, 11, (8, 2))
    board = np.full((8, 10, 10, 3), 255, dtype=np.uint8)
    for image, (h, w) in zip(board, extents):
        image[:h, :w] = 100
    cfg = _tiny_cfg(input_size=6, batch_size=4, augment=NO_AUGMENT)
    batches = torch.cat(_training_inputs((board, np.arange(8) % 5, extents), cfg))
    assert len(batches) == 8 * cfg["epochs"] and batches.shape[2:] == (6, 6)
    flat = batches.flatten(2)
    assert (flat.amax(2) - flat.amin(2)).max() < 1e-5  # no 255 of the canvas, no zero padding


def test_seed_everything_wraps_numpys_seed_into_its_range():
    """NumPy takes seeds below 2^32 only: a larger run seed is taken modulo 2^32 there (and
    used whole by torch and Python)."""
    train.seed_everything(2**32 + 5, CPU)
    wrapped = np.random.rand()
    np.random.seed(5)
    assert wrapped == np.random.rand()


@pytest.mark.parametrize(
    "amp, setting, channels_last",
    [("none", "auto", False), ("bf16", "auto", True), ("none", True, True), ("bf16", False, False)],
)
def test_the_layout_a_run_trains_in_on_a_cpu(amp, setting, channels_last):
    """The memory layout a run trains in on a CPU: with channels_last auto, channels-last for
    bf16 (oneDNN's bf16 kernels want it) and the default layout in fp32 (no faster for the full
    ResNet-50 at 32 px, docs/benchmarks.md); true or false as set (the demo's narrow nets at 24 px
    train 1.07-1.23x faster in channels-last)."""
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 5, 1)
    loop = train.start(model, _data(8, 1), _data(4, 2), _tiny_cfg(amp=amp, channels_last=setting), 0, CPU)
    assert loop.net.channels_last is channels_last
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last) is channels_last


@pytest.mark.parametrize(
    "amp, dtype, channels_last", [("none", None, False), ("bf16", torch.bfloat16, True)], ids=["fp32", "bf16"]
)
def test_the_evaluation_copy_is_folded_cast_and_laid_out_as_its_precision_asks(amp, dtype, channels_last, monkeypatch):
    """With every speed-up on a CPU, a clean evaluation runs a BatchNorm-folded copy: in bf16 its
    weights are cast once to bf16 in channels-last; in fp32 it keeps fp32 and the default layout
    (whose numbers test_evaluate_speedups_give_the_plain_numbers_in_fp32 pins)."""
    asked, copy = [], train.Net.for_inference
    monkeypatch.setattr(train.Net, "for_inference", lambda self, **kw: (asked.append(kw), copy(self, **kw))[1])
    train.evaluate(_trained_net(), *_eval_data(8), {**CFG, "amp": amp})
    assert asked == [{"fold": True, "dtype": dtype, "channels_last": channels_last, "reuse": None}]


@pytest.mark.parametrize("dtype, channels_last", [(None, False), (torch.bfloat16, True)], ids=["fp32", "bf16"])
def test_a_refreshed_evaluation_copy_equals_a_new_one(dtype, channels_last):
    """A run's later evaluations refresh the copy made at its first (no module tree copied):
    after the weights and BatchNorm statistics move, every tensor of the refreshed copy equals a
    new copy's, bit for bit, and so do the logits."""
    net = _trained_net()
    first = net.for_inference(fold=True, dtype=dtype, channels_last=channels_last)
    with torch.no_grad():  # training moves weights and running statistics
        for t in [*net.parameters(), *net.buffers()]:
            if t.is_floating_point():
                t.mul_(1.01).add_(0.001)
    again = net.for_inference(fold=True, dtype=dtype, channels_last=channels_last, reuse=first)
    fresh = net.for_inference(fold=True, dtype=dtype, channels_last=channels_last)
    assert again is first
    ours, theirs = again.state_dict(), fresh.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(again(x), fresh(x))
    other = net.for_inference(fold=False, reuse=first)  # other options: a new copy
    assert other is not first


# --- progress: one log line per epoch ------------------------------------------------------------

PROGRESS = re.compile(
    r"epoch (\d+)/(\d+): train_loss=([\d.]+) train_acc=([\d.]+) images/s=([\d.]+) "
    r"elapsed=(\d+):(\d\d):(\d\d\.\d) left=(\d+):(\d\d):(\d\d\.\d)$"
)


def progress_lines(lines) -> list[dict]:
    """The per-epoch progress lines of a log: epoch, total, loss, acc, rate, elapsed and left (s)."""
    out = []
    for line in lines:
        if m := PROGRESS.match(line.strip()):
            g = m.groups()
            out.append(
                dict(
                    epoch=int(g[0]),
                    total=int(g[1]),
                    loss=float(g[2]),
                    acc=float(g[3]),
                    rate=float(g[4]),
                    elapsed=int(g[5]) * 3600 + int(g[6]) * 60 + float(g[7]),
                    left=int(g[8]) * 3600 + int(g[9]) * 60 + float(g[10]),
                )
            )
    return out


def test_every_epoch_logs_its_progress_and_the_time_left():
    """Fine-tuning logs one line per epoch (not only at evaluation epochs): epoch/total, the
    epoch's train loss and accuracy (the logged rows' numbers at evaluation epochs), images per
    second, elapsed time and a time left that shrinks to zero; pretraining logs the same."""
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 5, 3)
    lines = []
    cfg = {**CFG, "epochs": 5, "eval_epochs": [1, 5]}
    rows = train.finetune(model, _data(40, 1), _data(20, 2), cfg, 7, CPU, progress=lines.append)
    epochs = progress_lines(lines)
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5] and {e["total"] for e in epochs} == {5}
    for row in rows:
        e = epochs[row["epoch"] - 1]
        assert (e["loss"], e["acc"]) == (float(f"{row['train_loss']:.4f}"), float(f"{row['train_acc']:.2f}"))
    assert all(e["rate"] > 0 for e in epochs)
    elapsed, left = [e["elapsed"] for e in epochs], [e["left"] for e in epochs]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= rows[-1]["time"] - 0.1
    # zero at the end (tiny epochs round to tenths: that it shrinks is checked on a longer run,
    # test_faults.py, and the formula in the next test)
    assert left[-1] == 0, left
    pretrain_lines = []
    _pretrain(progress=pretrain_lines.append, epochs=2)
    assert [(e["epoch"], e["total"]) for e in progress_lines(pretrain_lines)] == [(1, 2), (2, 2)]
    assert progress_lines(pretrain_lines)[-1]["left"] == 0


def test_time_left_counts_the_epochs_and_evaluations_still_to_come():
    """The estimate: epochs left x this attempt's mean epoch, evaluations left x its mean
    evaluation (before the first evaluation: a test image at a third of a training image)."""
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 5, 3)
    loop = train.start(model, _data(40, 1), _data(20, 2), {**CFG, "epochs": 10, "eval_epochs": [1, 5, 10]}, 0, CPU)
    loop.epoch = 4
    # 6 epochs at 2 s, and epochs 5 and 10 still to evaluate at 3 s
    assert train.time_left(loop, {"train": 8.0, "eval": 3.0}, 4, 1) == pytest.approx(6 * 2.0 + 2 * 3.0)
    assert train.time_left(loop, {"train": 8.0, "eval": 0.0}, 4, 0) == pytest.approx(6 * 2.0 + 2 * 2.0 * 20 / 40 / 3)
    assert train.clock_text(3723.46) == "1:02:03.5"
