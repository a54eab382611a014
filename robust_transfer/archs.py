"""Every source architecture by name, its transfer head, and which parameters fine-tuning trains.

What the names stand for (read in the authors' code, MadryLab/robustness @a954124 and
microsoft/robust-models-transfer @cea2c37):

- resnet18, resnet50, wide_resnet50_2, wide_resnet50_4: robustness `imagenet_models/resnet.py`,
  torchvision's ResNet with torchvision's key names; the wide ones are Bottleneck [3, 4, 6, 3]
  with width_per_group 128 and 256 (WRN-50-4 has no torchvision constructor).
- densenet, mnasnet, mobilenet, resnext50_32x4d, shufflenet, vgg16_bn: transfer `src/main.py`
  `pytorch_models`, torchvision's densenet161, mnasnet1_0, mobilenet_v2, resnext50_32x4d
  (groups 32, width_per_group 4), shufflenet_v2_x1_0, vgg16_bn. They are built with
  `add_custom_forward=True`: wrapped in robustness's `DummyModel`, so their checkpoints hold
  `module.model.model.*` keys (checkpoints.to_torchvision strips both `model.`).
- The head (`fine_tunify.ft`): a fresh `nn.Linear(in_features, classes)`, PyTorch's default
  init, in place of `fc` (resnets, wide resnets, resnext, shufflenet), `classifier` (densenet, a
  Linear), `classifier[1]` (mnasnet, mobilenet, after a Dropout) or `classifier[6]` (vgg: its two
  hidden Linear layers stay the source's).
- Freezing (`freeze_model`): `--freeze-level -1` trains everything; 4 freezes every parameter
  up to and including `layer4`, so only the head trains. It needs ResNet `layer{k}` names: the
  authors' fixed-feature runs are ResNets only; here k = 0 works for every family (the head).
"""

from __future__ import annotations

import torchvision.models as tv
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

LAYERS = ("layer1", "layer2", "layer3", "layer4")

# ResNet family: (block, blocks per layer, groups, width_per_group)
RESNETS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], 1, 64),
    "resnet50": (Bottleneck, [3, 4, 6, 3], 1, 64),
    "wide_resnet50_2": (Bottleneck, [3, 4, 6, 3], 1, 128),
    "wide_resnet50_4": (Bottleneck, [3, 4, 6, 3], 1, 256),
    "resnext50_32x4d": (Bottleneck, [3, 4, 6, 3], 32, 4),
}
OTHERS = {
    "densenet": tv.densenet161,
    "mnasnet": tv.mnasnet1_0,
    "mobilenet": tv.mobilenet_v2,
    "shufflenet": tv.shufflenet_v2_x1_0,
    "vgg16_bn": tv.vgg16_bn,
}
ARCHS = (*RESNETS, *OTHERS)

# the head's module name per family (the model's class)
HEADS = {
    ResNet: "fc",
    tv.ShuffleNetV2: "fc",
    tv.DenseNet: "classifier",
    tv.MNASNet: "classifier.1",
    tv.MobileNetV2: "classifier.1",
    tv.VGG: "classifier.6",
}


def build(arch: str, num_classes: int = 1000, width_per_group: int | None = None) -> nn.Module:
    """The torchvision network `arch` (one of ARCHS), randomly initialised (weights=None).
    width_per_group (ResNet family only; None: the arch's own) narrows or widens the bottleneck
    convolutions, keeping every parameter name: the demo's narrow ResNet-50, test stand-ins."""
    if arch in RESNETS:
        block, layers, groups, width = RESNETS[arch]
        width = width if width_per_group is None else width_per_group
        return ResNet(block, layers, num_classes=num_classes, groups=groups, width_per_group=width)
    if arch not in OTHERS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    if width_per_group is not None:
        raise ValueError(f"{arch}: width_per_group applies to the ResNet family only ({', '.join(RESNETS)})")
    return OTHERS[arch](weights=None, num_classes=num_classes)


def width_of(model: nn.Module) -> int | None:
    """A ResNet's width_per_group, read from its first bottleneck (None for other families)."""
    if not isinstance(model, ResNet):
        return None
    block = model.layer1[0]
    return block.conv1.out_channels // block.conv2.groups


def head_name(model: nn.Module) -> str:
    """The name of the model's classification layer (HEADS)."""
    for family, name in HEADS.items():
        if isinstance(model, family):
            return name
    raise ValueError(f"no known head for {type(model).__name__} (families: {', '.join(f.__name__ for f in HEADS)})")


def replace_head(model: nn.Module, num_classes: int, std: float | None = None) -> nn.Module:
    """A fresh nn.Linear(features, num_classes) in place of the head: PyTorch's default init
    (std None, the authors' fine_tunify), or weight ~ N(0, std^2) and bias 0 (Utrera et al.)."""
    name = head_name(model)
    head = nn.Linear(model.get_submodule(name).in_features, num_classes)
    if std is not None:
        nn.init.normal_(head.weight, std=std)
        nn.init.zeros_(head.bias)
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, head)
    return model


def blocks(model: ResNet) -> list[str]:
    """Names of the residual blocks in forward order: layer1.0 ... layer4.2 (16 for ResNet-50)."""
    return [f"{layer}.{i}" for layer in LAYERS for i in range(len(getattr(model, layer)))]


def trainable_prefixes(model: ResNet, k: int) -> list[str]:
    """The last k blocks, counted from the end, plus fc: k=0 fc; 1 layer4.2; 3 layer4; 9 layer3+4.
    k = every block (16) trains the whole network, stem included (training from scratch)."""
    names = blocks(model)
    if not 0 <= k <= len(names):
        raise ValueError(f"k={k}: the model has {len(names)} blocks")
    stem = ["conv1", "bn1"] if k == len(names) else []
    return stem + names[len(names) - k :] + ["fc"]


def trainable(model: nn.Module, k: int) -> tuple[str, ...] | None:
    """What fine-tuning with k trains, as parameter-name prefixes (None: everything).

    k = -1: the whole network (Salman et al.'s full-network, their --freeze-level -1); k = 0: the
    head only (their fixed-feature, Utrera et al.'s linear probe); 1 <= k <= blocks: the last k
    residual blocks and the head (Utrera et al.), ResNet family only."""
    if k < -1:
        raise ValueError(f"k={k}: k is -1 (everything), 0 (the head) or a number of residual blocks")
    if k == -1:
        return None
    if k == 0:
        return (head_name(model) + ".",)
    if not isinstance(model, ResNet):
        raise ValueError(
            f"k={k}: the last k residual blocks exist in the ResNet family only ({', '.join(RESNETS)}); "
            f"a {type(model).__name__} takes k = -1 (full network) or 0 (head only)"
        )
    return tuple(p + "." for p in trainable_prefixes(model, k))


def prepare(model: nn.Module, num_classes: int, k: int, head_std: float | None = None) -> nn.Module:
    """The transfer network: a fresh head (replace_head) and requires_grad set by k (trainable).

    Only requires_grad changes: the whole model stays in train mode while fine-tuning, so the
    BatchNorm layers of frozen parts still update their running statistics (as the authors'
    code; their affine weights stay fixed)."""
    trainable(model, k)  # a k the model cannot take raises before anything is drawn
    replace_head(model, num_classes, head_std)
    keep = trainable(model, k)
    for name, param in model.named_parameters():
        param.requires_grad = keep is None or name.startswith(keep)
    return model
