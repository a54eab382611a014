"""Source checkpoint conversion: every layout the sources ship in becomes one canonical,
tensors-only file whose weights are exactly the source ResNet-50's; nothing in a downloaded
file runs code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robust_transfer import checkpoints
from robust_transfer.checkpoints import BadCheckpoint
from robust_transfer.models import resnet50

WIDTH = 8  # narrow ResNet-50: every key of the real one, a few MB


@pytest.fixture(scope="module")
def source_sd() -> dict[str, torch.Tensor]:
    """A torchvision ResNet-50 state dict with random weights and non-trivial BN buffers."""
    torch.manual_seed(123)
    model = resnet50(num_classes=1000, width_per_group=WIDTH)
    sd = model.state_dict()
    out = {}
    for k, v in sd.items():
        if v.is_floating_point():
            out[k] = torch.randn_like(v) if not k.endswith("running_var") else torch.rand_like(v) + 0.5
        else:
            out[k] = torch.full_like(v, 7)  # num_batches_tracked
    return out


def _robustness_sd(sd: dict) -> dict:
    """The MadryLab robustness AttackerModel state dict (DataParallel-wrapped)."""
    out = {
        "module.normalizer.new_mean": torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
        "module.normalizer.new_std": torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1),
    }
    out.update({f"module.model.{k}": v.clone() for k, v in sd.items()})
    out["module.attacker.normalize.new_mean"] = out["module.normalizer.new_mean"].clone()
    out["module.attacker.normalize.new_std"] = out["module.normalizer.new_std"].clone()
    # the attacker's copy differs here, so taking it by mistake would be caught
    out.update({f"module.attacker.model.{k}": (v + 1 if v.is_floating_point() else v).clone() for k, v in sd.items()})
    return out


def _assert_same(model, sd):
    got = model.state_dict()
    assert set(got) == set(sd)
    for k, v in sd.items():
        assert got[k].dtype == v.dtype, k
        assert torch.equal(got[k], v), k


def _convert_and_check(tmp_path: Path, payload, sd):
    src, dest = tmp_path / "src.pt", tmp_path / "out" / "canon.pt"
    torch.save(payload, src)
    result = checkpoints.convert(src, dest, {"source": "test", "eps": 3})
    canon = torch.load(dest, map_location="cpu", weights_only=True)  # tensors only: safe load
    assert canon["arch"] == "resnet50"
    assert canon["width_per_group"] == WIDTH
    assert canon["num_classes"] == 1000
    assert canon["meta"] == {"source": "test", "eps": "3"}
    assert set(canon["state_dict"]) == set(sd)
    assert set(result["state_dict"]) == set(sd)
    model, meta = checkpoints.load(dest)
    assert meta == {"source": "test", "eps": "3"}
    _assert_same(model, sd)
    return model


def test_convert_robustness_model_key(tmp_path, source_sd):
    """{'model': AttackerModel state dict, 'epoch': 90} (the l2_3 / linf_4 / linf_8 files):
    the module.model.* weights, not the attacker copy nor the normalizer."""
    _convert_and_check(tmp_path, {"model": _robustness_sd(source_sd), "epoch": 90}, source_sd)


def test_convert_robustness_state_dict_key(tmp_path, source_sd):
    """The same, under 'state_dict' (Salman et al.'s .ckpt files)."""
    _convert_and_check(tmp_path, {"state_dict": _robustness_sd(source_sd), "epoch": 90}, source_sd)


def test_convert_robustness_with_non_tensor_entries(tmp_path, source_sd):
    """Extra pickled Python objects (args, optimizer) next to the weights are ignored."""
    payload = {
        "model": _robustness_sd(source_sd),
        "epoch": 90,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
        "args": {"arch": "resnet50"},
    }
    _convert_and_check(tmp_path, payload, source_sd)


def test_convert_a_checkpoint_written_the_way_the_robustness_library_writes_it(tmp_path, source_sd):
    """As robustness.train saves it: torch.save({model, optimizer, schedule, epoch, amp, best
    accuracy as a NumPy scalar}, pickle_module=dill), a DataParallel AttackerModel state dict
    inside. It loads with weights_only=True (NumPy scalars admitted by name) and converts."""
    import argparse

    import dill
    import numpy as np

    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    net(torch.ones(1, 2)).sum().backward()
    opt.step()
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=30)
    payload = {
        "model": _robustness_sd(source_sd),
        "optimizer": opt.state_dict(),
        "schedule": schedule.state_dict(),
        "epoch": 90,
        "amp": None,
        "best_prec1": np.float64(57.9),
        "args": argparse.Namespace(arch="resnet50", eps=3.0, constraint="2"),
    }
    src, dest = tmp_path / "imagenet_l2_3_0.pt", tmp_path / "canon.pt"
    torch.save(payload, src, pickle_module=dill)
    checkpoints.convert(src, dest, {})
    _assert_same(checkpoints.load(dest)[0], source_sd)


class _WritesAFile:
    """A pickle that, once loaded, has written a file: what a malicious checkpoint does."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "pwned"))


def test_a_checkpoint_that_runs_code_is_refused_and_runs_nothing(tmp_path, source_sd):
    victim = tmp_path / "written_by_the_pickle"
    src = tmp_path / "evil.pt"
    torch.save({"model": _robustness_sd(source_sd), "epoch": 1, "hook": _WritesAFile(victim)}, src)
    with pytest.raises(BadCheckpoint) as err:
        checkpoints.convert(src, tmp_path / "canon.pt", {})
    message = str(err.value)
    assert str(src) in message and "pathlib" in message and "re-save" in message
    assert not victim.exists() and not (tmp_path / "canon.pt").exists()


def test_a_truncated_checkpoint_names_the_file(tmp_path, source_sd):
    src = tmp_path / "cut.pt"
    torch.save({"model": _robustness_sd(source_sd)}, src)
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(BadCheckpoint, match=f"{src}: not a readable torch checkpoint"):
        checkpoints.convert(src, tmp_path / "canon.pt", {})


def test_convert_plain_torchvision(tmp_path, source_sd):
    """A torchvision state dict (the natural source, resnet50-0676ba61.pth)."""
    _convert_and_check(tmp_path, dict(source_sd), source_sd)


def test_convert_dataparallel(tmp_path, source_sd):
    """A DataParallel-saved torchvision model: 'module.' stripped."""
    _convert_and_check(tmp_path, {f"module.{k}": v for k, v in source_sd.items()}, source_sd)


def test_convert_real_width_detected(tmp_path):
    """width_per_group is read from the weights (64 for the real sources: layer1.0.conv1 has
    64 output channels); a width-16 model converts as width 16."""
    torch.manual_seed(0)
    sd = resnet50(num_classes=10, width_per_group=16).state_dict()
    src, dest = tmp_path / "w16.pt", tmp_path / "w16c.pt"
    torch.save(sd, src)
    payload = checkpoints.convert(src, dest)
    assert payload["width_per_group"] == 16 and payload["num_classes"] == 10
    model, meta = checkpoints.load(dest)
    assert meta == {}
    _assert_same(model, sd)


def test_load_builds_no_random_init_and_trains(tmp_path):
    """load() builds the ResNet on the meta device and takes the file's tensors as its weights:
    every tensor real, on the CPU, trainable, and a step of SGD runs."""
    torch.manual_seed(0)
    checkpoints.save(resnet50(num_classes=10, width_per_group=8), tmp_path / "c.pt", {})
    model, _ = checkpoints.load(tmp_path / "c.pt")
    tensors = [*model.parameters(), *model.buffers()]
    assert all(t.device.type == "cpu" for t in tensors)
    assert all(p.requires_grad for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.fc.weight.clone()
    model(torch.rand(2, 3, 16, 16)).sum().backward()
    opt.step()
    assert not torch.equal(before, model.fc.weight)


@pytest.mark.parametrize("drop", ["module.model.layer2.0.bn1.running_mean", "module.model.layer4.2.conv3.weight"])
def test_convert_missing_key_raises(tmp_path, source_sd, drop):
    """A robustness file missing one backbone tensor is not a ResNet-50: BadCheckpoint, no file."""
    sd = _robustness_sd(source_sd)
    del sd[drop]
    src, dest = tmp_path / "bad.pt", tmp_path / "bad_canon.pt"
    torch.save({"model": sd, "epoch": 90}, src)
    with pytest.raises(BadCheckpoint):
        checkpoints.convert(src, dest)
    assert not dest.exists()


def test_convert_no_fc_raises(tmp_path, source_sd):
    """No fc.weight at all (e.g. a headless or foreign file): BadCheckpoint."""
    sd = {k: v for k, v in source_sd.items() if not k.startswith("fc.")}
    src, dest = tmp_path / "nofc.pt", tmp_path / "nofc_canon.pt"
    torch.save(sd, src)
    with pytest.raises(BadCheckpoint):
        checkpoints.convert(src, dest)
    assert not dest.exists()


def test_convert_extra_key_raises(tmp_path, source_sd):
    """Strict loading: an unexpected extra tensor is rejected too."""
    sd = dict(source_sd)
    sd["layer5.0.conv1.weight"] = torch.zeros(1)
    src, dest = tmp_path / "extra.pt", tmp_path / "extra_canon.pt"
    torch.save(sd, src)
    with pytest.raises(BadCheckpoint):
        checkpoints.convert(src, dest)


def test_bad_checkpoint_is_value_error():
    assert issubclass(BadCheckpoint, ValueError)
