"""ResNet-50 (torchvision), the transfer head, and which blocks fine-tuning trains."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from .data import IMAGENET_MEAN as MEAN  # every source model's normalisation (as the authors)
from .data import IMAGENET_STD as STD

LAYERS = ("layer1", "layer2", "layer3", "layer4")


def resnet50(num_classes: int = 1000, width_per_group: int = 64) -> ResNet:
    """torchvision's ResNet-50; width_per_group < 64 narrows only the bottleneck convolutions
    (the offline demo), keeping every block, parameter name and the 2048-d features."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, width_per_group=width_per_group)


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


def prepare_for_transfer(model: ResNet, num_classes: int, k: int, head_std: float | None = 1.0) -> ResNet:
    """Replace fc by a fresh Linear(features, classes), weight ~ N(0, head_std^2), bias 0 (the
    authors' transfer head; head_std None keeps PyTorch's default Linear init, as their
    from-scratch runs), and freeze everything but the last k blocks and fc.

    Only requires_grad changes: BatchNorm layers of frozen blocks still update their running
    statistics in train mode (as in the paper; their affine weights stay fixed).
    """
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    if head_std is not None:
        nn.init.normal_(model.fc.weight, std=head_std)
        nn.init.zeros_(model.fc.bias)
    keep = tuple(p + "." for p in trainable_prefixes(model, k))
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(keep)
    return model


class Normalize(nn.Module):
    """Clamp to [0, 1], then standardise: the input pipeline of every source model."""

    def __init__(self, mean=MEAN, std=STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return (x.clamp(0, 1) - self.mean) / self.std


class Net(nn.Module):
    """A model as the experiment sees it: images in [0, 1] in, logits out (normalise, then the
    ResNet). channels_last: the memory layout convolutions are fastest in on CUDA."""

    def __init__(self, model: ResNet, mean=MEAN, std=STD):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.model = model
        self.channels_last = False

    def to_device(self, device: torch.device) -> Net:
        self.channels_last = device.type == "cuda"
        self.to(device)
        return self.to(memory_format=torch.channels_last) if self.channels_last else self

    def forward(self, x):
        x = self.normalize(x)
        return self.model(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)
