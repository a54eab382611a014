"""The training engine of Salman et al.'s study: every source architecture converted from the
robustness library's checkpoints, full-network (k = -1) and fixed-feature (k = 0) fine-tuning
of every family, RandomResizedCrop on the device, and per-class accuracy.

Real torchvision networks on the CPU; where a family's real network is large, a narrow stand-in
of the same class and key layout (WRN, ResNeXt: width_per_group; VGG: fewer, thinner layers)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.models as tv
from torch import nn
from torchvision.transforms.v2 import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from robust_transfer import archs, augment, checkpoints, grid, runs, store, train
from robust_transfer.checkpoints import BadCheckpoint
from robust_transfer.models import resnet50

CPU = torch.device("cpu")
HEADS = {
    "resnet18": "fc",
    "resnet50": "fc",
    "wide_resnet50_2": "fc",
    "wide_resnet50_4": "fc",
    "resnext50_32x4d": "fc",
    "shufflenet": "fc",
    "densenet": "classifier",
    "mnasnet": "classifier.1",
    "mobilenet": "classifier.1",
    "vgg16_bn": "classifier.6",
}


def _meta(arch: str, **kw) -> nn.Module:
    with torch.device("meta"):  # shapes and names only: instant, even for VGG-16 and WRN-50-4
        return archs.build(arch, **kw)


def _vgg_stand_in(weights=None, num_classes: int = 1000) -> tv.VGG:
    """torchvision's VGG class with VGG-16-bn's layout (conv, BN, ReLU, pool; classifier Linear
    0, 3, 6) at a few MB instead of 553."""
    with torch.device("meta"):  # the 25088 x 4096 classifier is never allocated
        model = tv.VGG(nn.Sequential(), num_classes, init_weights=False)
    model.features = tv.vgg.make_layers([8, "M", 16, "M"], batch_norm=True)
    model.avgpool = nn.AdaptiveAvgPool2d((2, 2))
    model.classifier[0], model.classifier[3] = nn.Linear(64, 32), nn.Linear(32, 32)
    model.classifier[6] = nn.Linear(32, num_classes)
    return model


# --- architectures: what each name builds ----------------------------------------------------


@pytest.mark.parametrize(
    "arch, reference",
    [
        ("resnet18", tv.resnet18),
        ("resnet50", tv.resnet50),
        ("wide_resnet50_2", tv.wide_resnet50_2),
        ("resnext50_32x4d", tv.resnext50_32x4d),
        ("densenet", tv.densenet161),
        ("mnasnet", tv.mnasnet1_0),
        ("mobilenet", tv.mobilenet_v2),
        ("shufflenet", tv.shufflenet_v2_x1_0),
        ("vgg16_bn", tv.vgg16_bn),
    ],
)
def test_each_name_builds_the_torchvision_network_the_authors_used(arch, reference):
    """Same class, parameter names and shapes as the torchvision constructor the authors' code
    maps the name to; the head is where fine_tunify replaces it."""
    with torch.device("meta"):
        want = reference(weights=None)
    got = _meta(arch)
    assert type(got) is type(want)
    assert {k: v.shape for k, v in got.state_dict().items()} == {k: v.shape for k, v in want.state_dict().items()}
    assert archs.head_name(got) == HEADS[arch]
    assert got.get_submodule(HEADS[arch]).out_features == 1000


def test_wide_resnet50_4_is_resnet50_with_width_256():
    """WRN-50-4 (robustness imagenet_models/resnet.py: width_per_group 64 * 4; no torchvision
    constructor): ResNet-50's blocks at four times the bottleneck width, 2048-d features."""
    model = _meta("wide_resnet50_4")
    assert archs.width_of(model) == 256 and model.layer1[0].conv1.out_channels == 256
    assert model.layer4[2].conv2.weight.shape == (2048, 2048, 3, 3) and model.fc.in_features == 2048
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in _meta("resnet50").named_parameters()]
    assert archs.width_of(_meta("resnext50_32x4d")) == 4 and archs.width_of(_meta("mobilenet")) is None
    with pytest.raises(ValueError, match="ResNet family"):
        archs.build("mobilenet", width_per_group=8)
    with pytest.raises(ValueError, match="unknown architecture"):
        archs.build("resnet51")


# --- checkpoints: the robustness library's files of every family ----------------------------


def _random_weights(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The model's state dict with random values everywhere (BN statistics included), so that a
    tensor landing under a wrong name is caught."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if not v.is_floating_point():
            out[k] = torch.full_like(v, 7)  # num_batches_tracked
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=gen) + 0.5
        else:
            out[k] = torch.randn(v.shape, generator=gen)
    return out


def _robustness_file(sd: dict, dummy: bool) -> dict:
    """As the robustness library saves an AttackerModel (DataParallel): the normalizer, the model
    and the attacker's copy of it (different values here: taking it by mistake is caught).
    dummy: the torchvision networks the authors wrapped in DummyModel (module.model.model.*)."""
    inner = "model.model." if dummy else "model."
    out = {
        "module.normalizer.new_mean": torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
        "module.normalizer.new_std": torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1),
    }
    out |= {f"module.{inner}{k}": v.clone() for k, v in sd.items()}
    out |= {f"module.attacker.{inner}{k}": (v + 1 if v.is_floating_point() else v) for k, v in sd.items()}
    return {"model": out, "epoch": 90}


# (arch, width_per_group of the stand-in or None, DummyModel-wrapped as in the authors' runs)
FAMILIES = [
    ("resnet18", None, False),
    ("wide_resnet50_2", 16, False),  # narrow stand-in: the real one is 275 MB
    ("wide_resnet50_4", 8, False),
    ("resnext50_32x4d", 1, True),
    ("densenet", None, True),
    ("mnasnet", None, True),
    ("mobilenet", None, True),
    ("shufflenet", None, True),
    ("vgg16_bn", None, True),  # a stand-in of VGG's class and layout (monkeypatched below)
]


@pytest.mark.parametrize("arch, width, dummy", FAMILIES)
def test_a_robustness_checkpoint_of_every_family_converts_and_loads(tmp_path, monkeypatch, arch, width, dummy):
    """convert strict-loads the module.model weights (not the attacker copy, not the
    normalizer) into archs.build(arch); the canonical file records the arch (and the ResNet
    width); load rebuilds that network with exactly those tensors; the head has the file's
    number of classes."""
    if arch == "vgg16_bn":
        monkeypatch.setitem(archs.OTHERS, "vgg16_bn", _vgg_stand_in)
    model = archs.build(arch, num_classes=37, width_per_group=width)
    sd = _random_weights(model, 1)
    src, dest = tmp_path / f"{arch}_l2_eps3.ckpt", tmp_path / "canon" / f"{arch}.pt"
    torch.save(_robustness_file(sd, dummy), src)
    meta = {"arch": arch, "norm": "l2", "eps": 3, "imagenet_top1": 62.83}
    payload = checkpoints.convert(src, dest, meta, arch=arch)
    canon = torch.load(dest, map_location="cpu", weights_only=True)
    assert canon["arch"] == payload["arch"] == arch and canon["num_classes"] == 37
    assert canon.get("width_per_group") == archs.width_of(model)
    assert canon["meta"] == {k: str(v) for k, v in meta.items()}
    loaded, got_meta = checkpoints.load(dest)
    assert type(loaded) is type(model) and got_meta == canon["meta"]
    assert checkpoints.architecture(dest) == (arch, archs.width_of(model))
    got = loaded.state_dict()
    assert set(got) == set(sd)
    for k, v in sd.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
    assert loaded.get_submodule(HEADS[arch]).out_features == 37


def test_robustness_keys_of_the_real_vgg16_bn_strip_to_torchvisions():
    """The stand-in above shares VGG's class; the real VGG-16-bn's DummyModel-wrapped keys strip
    to exactly the keys archs.build("vgg16_bn") loads (shapes only, on the meta device)."""
    sd = _meta("vgg16_bn").state_dict()
    assert set(checkpoints.to_torchvision(_robustness_file(sd, dummy=True))) == set(sd)


def test_a_payload_without_arch_is_a_resnet50(tmp_path):
    """Canonical files written before there were other architectures have no "arch": ResNet-50."""
    torch.manual_seed(0)
    model = resnet50(num_classes=10, width_per_group=8)
    payload = {"width_per_group": 8, "num_classes": 10, "state_dict": model.state_dict(), "meta": {}}
    torch.save(payload, tmp_path / "old.pt")
    loaded, _ = checkpoints.load(tmp_path / "old.pt")
    assert isinstance(loaded, tv.ResNet) and archs.width_of(loaded) == 8
    assert checkpoints.architecture(tmp_path / "old.pt") == ("resnet50", 8)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "weights_of, tried, says",
    [
        ("resnet18", "resnet50", ["missing keys", "layer1.0.conv3.weight", "wrong shapes"]),
        ("mobilenet", "mnasnet", ["missing keys", "layers.0.weight", "unexpected keys", "features.0.0.weight"]),
        ("shufflenet", "densenet", ["missing keys", "features.conv0.weight", "unexpected keys", "conv1.0.weight"]),
    ],
)
def test_a_wrong_architecture_is_one_clear_error(tmp_path, weights_of, tried, says):
    """Weights of one network converted as another: one BadCheckpoint naming the file, the arch
    tried and the first missing / unexpected keys (or wrong shapes); no file written."""
    torch.manual_seed(0)
    src, dest = tmp_path / f"{weights_of}.ckpt", tmp_path / "out.pt"
    torch.save(_robustness_file(archs.build(weights_of).state_dict(), dummy=True), src)
    with pytest.raises(BadCheckpoint) as err:
        checkpoints.convert(src, dest, {}, arch=tried)
    message = str(err.value)
    assert str(src) in message and f"not a {tried} checkpoint" in message
    for text in says:
        assert text in message
    assert not dest.exists()


def test_a_wide_resnet_of_the_wrong_width_is_named(tmp_path):
    """A ResNet-50 (width 64) converted as WRN-50-2 fits every key name: the width says which
    network it is."""
    torch.manual_seed(0)
    src = tmp_path / "r50.ckpt"
    torch.save(_robustness_file(resnet50().state_dict(), dummy=False), src)
    with pytest.raises(
        BadCheckpoint, match="not a wide_resnet50_2 checkpoint.*width_per_group is 64, that of resnet50"
    ):
        checkpoints.convert(src, tmp_path / "out.pt", {}, arch="wide_resnet50_2")
    assert checkpoints.convert(src, tmp_path / "ok.pt", {}, arch="resnet50")["width_per_group"] == 64


# --- which parameters train: k = -1 (full network), 0 (fixed feature), k blocks (Utrera) -----


@pytest.mark.parametrize("arch", list(HEADS))
def test_full_network_and_fixed_feature_train_what_they_should(arch):
    """k = -1: every parameter trains (--freeze-level -1); k = 0: only the new head (weight and
    bias), every other parameter frozen, the head sized to the target's classes."""
    names = {n for n, _ in _meta(arch).named_parameters()}
    head = {f"{HEADS[arch]}.weight", f"{HEADS[arch]}.bias"}
    assert head <= names
    full = archs.prepare(_meta(arch), 10, -1)
    assert {n for n, p in full.named_parameters() if p.requires_grad} == names
    fixed = archs.prepare(_meta(arch), 10, 0)
    assert {n for n, p in fixed.named_parameters() if p.requires_grad} == head
    assert fixed.get_submodule(HEADS[arch]).out_features == 10


@pytest.mark.parametrize("arch", ["densenet", "mnasnet", "mobilenet", "shufflenet", "vgg16_bn"])
def test_k_blocks_need_a_resnet(arch):
    """The last k residual blocks exist only in the ResNet family: a clear ValueError."""
    with pytest.raises(ValueError, match="ResNet family only"):
        archs.prepare(_meta(arch), 10, 3)


def test_k_blocks_of_other_resnets_and_bad_k():
    """ResNet-18 has 8 blocks: k = 3 trains layer3.1, layer4.0, layer4.1 and fc; k = 8 trains
    everything; k = 9 and k = -2 are refused."""
    model = archs.prepare(_meta("resnet18"), 10, 3)
    trained = {
        ".".join(n.split(".")[: 2 if n.startswith("layer") else 1])
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    assert trained == {"layer3.1", "layer4.0", "layer4.1", "fc"}
    assert all(p.requires_grad for p in archs.prepare(_meta("resnet18"), 10, 8).parameters())
    for k in (9, -2):
        with pytest.raises(ValueError):
            archs.prepare(_meta("resnet18"), 10, k)


def _prepare_as_before(model, num_classes: int, k: int, head_std: float | None):
    """models.prepare_for_transfer as it was before archs (the Utrera et al. runs' code)."""
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    if head_std is not None:
        nn.init.normal_(model.fc.weight, std=head_std)
        nn.init.zeros_(model.fc.bias)
    keep = tuple(p + "." for p in archs.trainable_prefixes(model, k))
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(keep)
    return model


@pytest.mark.parametrize("k, head_std", [(0, 1.0), (1, 1.0), (3, 0.01), (9, 1.0), (16, None)])
def test_resnet50_k_blocks_are_prepared_exactly_as_before(k, head_std):
    """For ResNet-50 and k >= 0 the same parameters train and the head draws the same numbers
    from the same RNG state as the code the Utrera runs used: their numbers cannot move."""
    out = []
    for prepare in (_prepare_as_before, archs.prepare):
        torch.manual_seed(5)
        model = resnet50(width_per_group=8)
        torch.manual_seed(11)
        prepare(model, 7, k, head_std)
        after = torch.rand(1)  # the RNG state after the head's draws
        out.append((model, after))
    (old, a), (new, b) = out
    assert torch.equal(a, b)
    assert [(n, p.requires_grad) for n, p in old.named_parameters()] == [
        (n, p.requires_grad) for n, p in new.named_parameters()
    ]
    assert all(torch.equal(v, new.state_dict()[k_]) for k_, v in old.state_dict().items())


@pytest.mark.parametrize("arch", ["mobilenet", "densenet"])
def test_head_init_default_or_normal(arch):
    """std None: nn.Linear's default (fine_tunify), uniform in +-1/sqrt(features), bias not zero;
    std 0.01: N(0, 0.01^2) weight, zero bias (Utrera et al.)."""
    torch.manual_seed(0)
    model = archs.replace_head(archs.build(arch), 100, None)
    head = model.get_submodule(HEADS[arch])
    bound = 1 / head.in_features**0.5
    assert head.weight.abs().max() <= bound and head.bias.abs().max() > 0
    assert head.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)
    head = archs.replace_head(model, 100, 0.01).get_submodule(HEADS[arch])
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.05) and not head.bias.any()


# --- fine-tuning loop: fixed-feature BN, RandomResizedCrop, per-class accuracy -------------

CFG = {
    "input_size": 32,
    "batch_size": 8,
    "eval_batch_size": 8,
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr_drops": 3,
    "lr_gamma": 0.1,
    "epochs": 1,
    "eval_epochs": [1],
    "augment": {"pad": 0, "flip": True, "jitter": 0.0, "degrees": 0.0},
    "amp": "none",
}
NO_AUGMENT = {"pad": 0, "flip": False, "jitter": 0.0, "degrees": 0.0}


def _data(n: int, seed: int, size: int = 32, classes: int = 5):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, classes, n).astype(np.int64)


@pytest.mark.parametrize("arch", ["mobilenet", "resnet18"])
def test_fixed_feature_training_moves_frozen_batchnorm_statistics(arch):
    """k = 0 in the real loop: only the head's weights change, but the whole network runs in
    train mode, so the frozen BatchNorm layers' running statistics move (as the authors')."""
    torch.manual_seed(0)
    model = archs.prepare(archs.build(arch), 5, 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train.finetune(model, _data(16, 1), _data(8, 2), CFG, 0, CPU, progress=lambda s: None)
    after = model.state_dict()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    assert not torch.equal(before[f"{HEADS[arch]}.weight"], after[f"{HEADS[arch]}.weight"])
    stats = [k for k in before if k.endswith("running_mean")]
    assert stats and all(not torch.equal(before[k], after[k]) for k in stats)


def test_resized_crop_boxes_stay_inside_each_image():
    """Every box lies inside its own image's extent, at least one pixel each way; shapes are per
    image; mixed extents (tall, wide, tiny, large) in one batch."""
    gen = torch.Generator().manual_seed(0)
    extents = torch.cat([torch.randint(1, 300, (500, 2), generator=gen), torch.tensor([[1, 1], [2, 500], [500, 2]])])
    boxes = augment.resized_crop_boxes(extents, gen)
    top, left, h, w = boxes.unbind(1)
    assert boxes.shape == (503, 4) and boxes.dtype == torch.int64
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= extents[:, 0]).all() and (left + w <= extents[:, 1]).all()


def test_crop_scale_sets_the_smallest_box():
    """random_resized_crop's scale is the smallest area fraction drawn: at 0.5 no box of a
    100 x 100 image is under half of it (at torchvision's 0.08 most are)."""
    n = 2000
    extents = torch.tensor([[100, 100]]).expand(n, 2)
    small = augment.resized_crop_boxes(extents, torch.Generator().manual_seed(0), (0.5, 1.0))
    area = (small[:, 2] * small[:, 3]).double() / 1e4
    assert area.min() >= 0.48  # rounding of each side
    default = augment.resized_crop_boxes(extents, torch.Generator().manual_seed(0))
    assert ((default[:, 2] * default[:, 3]).double() / 1e4 < 0.5).float().mean() > 0.4


def test_resized_crop_boxes_are_deterministic_per_seed():
    extents = torch.randint(20, 300, (64, 2), generator=torch.Generator().manual_seed(1))
    a = augment.resized_crop_boxes(extents, torch.Generator().manual_seed(3))
    b = augment.resized_crop_boxes(extents, torch.Generator().manual_seed(3))
    c = augment.resized_crop_boxes(extents, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_resized_crop_boxes_follow_torchvisions_distribution():
    """Area fraction in [0.08, 1] and aspect ratio w/h in [3/4, 4/3] (up to rounding to whole
    pixels), spread over both ranges, with the same means as torchvision's get_params on the same
    image (4000 draws each: standard errors ~0.004)."""
    h_img, w_img, n = 300, 400, 4000
    boxes = augment.resized_crop_boxes(torch.tensor([[h_img, w_img]]).expand(n, 2), torch.Generator().manual_seed(0))
    area = (boxes[:, 2] * boxes[:, 3]).double() / (h_img * w_img)
    log_ratio = (boxes[:, 3].double() / boxes[:, 2]).log()
    assert area.min() >= 0.075 and area.max() <= 1 and area.min() < 0.09 and area.max() > 0.95
    assert log_ratio.abs().max() <= math.log(4 / 3) + 0.02 and log_ratio.min() < -0.27 and log_ratio.max() > 0.27
    torch.manual_seed(0)
    image = torch.zeros(3, h_img, w_img)
    ref = torch.tensor([RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)])
    ref_area = (ref[:, 2] * ref[:, 3]).double() / (h_img * w_img)
    ref_log_ratio = (ref[:, 3].double() / ref[:, 2]).log()
    assert area.mean().item() == pytest.approx(ref_area.mean().item(), abs=0.02)
    assert log_ratio.mean().item() == pytest.approx(ref_log_ratio.mean().item(), abs=0.02)
    assert log_ratio.std().item() == pytest.approx(ref_log_ratio.std().item(), abs=0.02)


@pytest.mark.parametrize("h, w, box", [(10, 1000, (0, 493, 10, 13)), (1000, 10, (493, 0, 13, 10))])
def test_resized_crop_falls_back_to_the_central_crop(h, w, box):
    """An image no drawn box fits (a 10 px strip: at most 1.3 % of it can be in range): the
    central crop, clipped to the nearest ratio in range, as torchvision."""
    boxes = augment.resized_crop_boxes(torch.tensor([[h, w]] * 8), torch.Generator().manual_seed(0))
    assert (boxes == torch.tensor(box)).all()
    torch.manual_seed(0)
    assert RandomResizedCrop.get_params(torch.zeros(3, h, w), [0.08, 1.0], [3 / 4, 4 / 3]) == box


def test_resized_crop_resizes_as_torchvision():
    """Each box resized to size x size equals torchvision's resized_crop with antialias (PIL's
    bilinear) of that image: boxes larger (downscaling) and smaller (upscaling) than size."""
    gen = torch.Generator().manual_seed(0)
    extents = torch.tensor([[60, 50], [17, 23], [64, 64], [9, 40]])
    x = torch.zeros(4, 3, 64, 64, dtype=torch.uint8)
    for img, (h, w) in zip(x, extents):
        img[:, :h, :w] = torch.randint(0, 256, (3, int(h), int(w)), generator=gen, dtype=torch.uint8)
    boxes = augment.resized_crop_boxes(extents, gen)
    got = augment.resized_crop(x, boxes, 24)
    assert got.shape == (4, 3, 24, 24) and got.dtype == torch.float32
    for img, (top, left, h, w), out in zip(x, boxes.tolist(), got):
        want = TF.resized_crop(img.float() / 255, top, left, h, w, [24, 24], antialias=True)
        torch.testing.assert_close(out, want, atol=2e-5, rtol=0)


def _training_inputs(split, cfg) -> list[torch.Tensor]:
    """Every training batch as the network's first convolution receives it (normalised)."""
    seen = []
    torch.manual_seed(0)
    model = archs.prepare(archs.build("resnet18"), 5, 0)
    model.conv1.register_forward_pre_hook(lambda module, args: seen.append(args[0]) if module.training else None)
    train.finetune(model, split, _data(4, 2, 8), cfg, 0, CPU, progress=lambda s: None)
    return seen


def test_random_resized_training_inputs_come_from_each_image_only():
    """train_crop: random_resized in the real loop: every input is input_size square and a
    crop of its own image, never of the canvas around it (255 there, 100 in the images)."""
    rng = np.random.default_rng(0)
    extents = rng.integers(6, 40, (8, 2))
    board = np.full((8, 40, 40, 3), 255, dtype=np.uint8)
    for image, (h, w) in zip(board, extents):
        image[:h, :w] = 100
    cfg = {
        **CFG,
        "input_size": 16,
        "augment": NO_AUGMENT,
        "train_crop": "random_resized",
        "crop_scale": 0.08,
        "epochs": 2,
    }
    batches = torch.cat(_training_inputs((board, np.arange(8) % 5, extents), cfg))
    assert batches.shape == (16, 3, 16, 16)
    flat = batches.flatten(2)
    assert (flat.amax(2) - flat.amin(2)).max() < 1e-5  # one flat grey: no canvas, no padding


def test_random_resized_training_is_the_crop_then_the_flip(monkeypatch):
    """The loop's training inputs are random_resized_crop of the batch's images from the run's
    generator, then the flip (pad forced to 0); square stored images (no extents) are each
    their whole extent, at the settings' crop_scale. The same seed gives the same inputs."""
    images, labels = _data(8, 3, 12)
    cfg = {
        **CFG,
        "input_size": 16,
        "train_crop": "random_resized",
        "crop_scale": 0.3,
        "augment": {**NO_AUGMENT, "flip": True, "pad": 4},
    }
    calls = []
    real = augment.random_resized_crop
    monkeypatch.setattr(
        train,
        "random_resized_crop",
        lambda x, e, s, g, scale: calls.append((e.clone(), scale)) or real(x, e, s, g, scale),
    )
    first = _training_inputs((images, labels), cfg)
    assert len(calls) == 1 and (calls[0][0] == 12).all() and calls[0][1] == 0.3
    assert all(torch.equal(a, b) for a, b in zip(first, _training_inputs((images, labels), cfg)))
    # by hand: the generator's permutation, the boxes, then the flip
    gen = train.seed_everything(0, CPU)
    perm = torch.randperm(8, generator=gen)
    x = torch.from_numpy(images).permute(0, 3, 1, 2)[perm]
    crops = augment.resized_crop(x, augment.resized_crop_boxes(torch.full((8, 2), 12), gen, (0.3, 1.0)), 16)
    expected = augment.augment(crops, gen, **{**NO_AUGMENT, "flip": True})
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    torch.testing.assert_close(first[0], (expected - mean) / std)


def test_other_train_crops_never_resize_crops(monkeypatch):
    """Without train_crop: random_resized the loop takes the path it always took."""
    monkeypatch.setattr(train, "random_resized_crop", lambda *a: pytest.fail("random_resized_crop called"))
    for extra in ({}, {"train_crop": "random"}, {"train_crop": "center"}):
        _training_inputs(_data(8, 3, 12), {**CFG, "input_size": 8, **extra})


class _Predicts(nn.Module):
    """Predicts the class written in each image's first pixel."""

    def forward(self, x):
        return nn.functional.one_hot((x[:, 0, 0, 0] * 255).round().long(), 5).float()


def test_per_class_accuracy_by_hand():
    """Classes 0 (4 images, 3 right), 1 (2 images, 1 right), 3 (1 image, right); classes 2 and 4
    absent from the split: mean of 75, 50 and 100 = 75 %, while top-1 is 5 / 7. Evaluated in
    batches of 3, so the per-class tallies span batches."""
    y = torch.tensor([0, 0, 1, 0, 3, 1, 0])
    predicted = torch.tensor([0, 0, 1, 2, 3, 4, 0])
    x = predicted.view(-1, 1, 1, 1).expand(7, 3, 4, 4).to(torch.uint8)
    cfg = {"eval_batch_size": 3, "input_size": 4, "amp": "none"}
    acc, loss = train.evaluate(_Predicts(), x, y, cfg)
    acc2, loss2, per_class = train.evaluate(_Predicts(), x, y, {**cfg, "per_class": True})
    assert acc == acc2 == pytest.approx(100 * 5 / 7) and loss == loss2
    assert per_class == pytest.approx((75 + 50 + 100) / 3)
    assert train.class_accuracy(predicted == y, y) == pytest.approx(75.0)


def test_per_class_accuracy_equals_the_authors_weighted_top1():
    """The authors' custom_acc: each test image weighted by N / (count of its class x classes
    present), averaged over the split: the same number as the mean of per-class accuracies."""
    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.choice([0, 1, 2, 5], 200, p=[0.6, 0.2, 0.15, 0.05]))
    hits = torch.from_numpy(rng.random(200) < 0.7)
    _, counts = np.unique(y.numpy(), return_counts=True)
    weights = dict(zip(np.unique(y.numpy()), counts.sum() / (counts * len(counts))))
    authors = 100 * np.mean([h * weights[c] for h, c in zip(hits.numpy(), y.numpy())])
    assert train.class_accuracy(hits, y) == pytest.approx(authors)


@pytest.mark.parametrize("per_class", [False, True])
def test_rows_log_test_acc_class_only_with_per_class(per_class):
    """With per_class every row has test_acc_class right after test_acc; without it the rows
    are what they always were."""
    torch.manual_seed(0)
    model = archs.prepare(archs.build("shufflenet"), 5, -1)
    cfg = {**CFG, "per_class": per_class} if per_class else CFG
    rows = train.finetune(model, _data(16, 1), _data(10, 2), cfg, 0, CPU, progress=lambda s: None)
    keys = ["epoch", "test_acc", "test_loss", "train_acc", "train_loss", "time", "lr"]
    assert list(rows[0]) == (keys[:2] + ["test_acc_class"] + keys[2:] if per_class else keys)
    if per_class:
        assert 0 <= rows[0]["test_acc_class"] <= 100


# --- a whole job: a non-ResNet source, full network, RandomResizedCrop, per-class ------------


def test_run_job_builds_the_sources_arch(tmp_path, monkeypatch):
    """runs.run_job on a MobileNet-v2 source file with k = -1, train_crop random_resized and
    per_class: the metrics carry test_acc_class, and the run is reproducible. From scratch
    (init: run) the job draws a fresh network of the file's arch."""
    torch.manual_seed(0)
    checkpoints.save(archs.build("mobilenet", 5), tmp_path / "source.pt", {}, arch="mobilenet")
    images, labels = _data(12, 3, 20)
    store.save_split(tmp_path / "train.npz", images, labels, np.tile([[20, 20]], (12, 1)))
    store.save_split(tmp_path / "test.npz", *_data(6, 4, 16))
    np.save(tmp_path / "subset.npy", np.arange(12))
    settings = {**CFG, "input_size": 16, "head_std": None, "device": "cpu", "deterministic": True, "init": None}
    settings |= {"train_crop": "random_resized", "crop_scale": 0.08, "per_class": True}
    files = {"train": "train.npz", "test": "test.npz", "subset": "subset.npy", "source": "source.pt"}
    inputs = SimpleNamespace(**{k: tmp_path / f for k, f in files.items()})
    built, prepare = [], archs.prepare
    monkeypatch.setattr(archs, "prepare", lambda model, *a: built.append(type(model)) or prepare(model, *a))
    tables = []
    for init in (None, None, "run"):
        outputs = SimpleNamespace(metrics=tmp_path / "m.csv", meta=tmp_path / "m.json")
        runs.run_job(inputs, outputs, grid.Run("d", "s", -1, "12", 5), {**settings, "init": init})
        tables.append(pd.read_csv(outputs.metrics).drop(columns="time"))
    assert "test_acc_class" in tables[0] and (tables[0]["k"] == -1).all()
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert not tables[0]["test_loss"].equals(tables[2]["test_loss"])
    assert json.loads(outputs.meta.read_text())["run"]["k"] == -1
    assert built == [tv.MobileNetV2] * 3
