"""ResNet-50 (torchvision), the transfer head, and which blocks fine-tuning trains (any
architecture: archs), the normaliser and the network as an experiment sees it (Net)."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from .archs import LAYERS, blocks, prepare, trainable_prefixes  # noqa: F401 (models.* callers)
from .datasets import IMAGENET_MEAN as MEAN  # every source model's normalisation (as the authors)
from .datasets import IMAGENET_STD as STD


def resnet50(num_classes: int = 1000, width_per_group: int = 64) -> ResNet:
    """torchvision's ResNet-50; width_per_group < 64 narrows only the bottleneck convolutions
    (the offline demo), keeping every block, parameter name and the 2048-d features."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, width_per_group=width_per_group)


def prepare_for_transfer(model: nn.Module, num_classes: int, k: int, head_std: float | None = 1.0) -> nn.Module:
    """Replace the head by a fresh Linear(features, classes), weight ~ N(0, head_std^2), bias 0
    (the authors' transfer head; head_std None keeps PyTorch's default Linear init, as their
    from-scratch runs), and freeze everything but the last k blocks and the head (k = -1:
    nothing frozen; any architecture of archs.ARCHS, k >= 1 for the ResNet family only).

    Only requires_grad changes: BatchNorm layers of frozen blocks still update their running
    statistics in train mode (as in the paper; their affine weights stay fixed).
    """
    return prepare(model, num_classes, k, head_std)


class Normalize(nn.Module):
    """Clamp to [0, 1], then standardise: the input pipeline of every source model."""

    def __init__(self, mean=MEAN, std=STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return (x.clamp(0, 1) - self.mean) / self.std


def fold_batchnorm(model: nn.Module) -> list[tuple[str, str]]:
    """Fold, in place, every BatchNorm2d into the convolution that feeds it, for inference;
    returns the (convolution, BatchNorm) names folded.

    In eval mode BatchNorm is affine, gamma (z - mean) / sqrt(var + eps) + beta, so conv then BN
    is one convolution with weight W s and bias (b - mean) s + beta, s = gamma / sqrt(var + eps):
    exact up to float rounding, one pass over the activations less per layer. Pairs as torchvision
    lays them out: `bn<i>` after its sibling `conv<i>`, and (Conv2d, BatchNorm2d) in a Sequential
    (ResNet's downsample). A BatchNorm without such a convolution is left as it is. The model
    must be in eval mode (BatchNorm in train mode normalises by batch statistics)."""
    if model.training:
        raise ValueError("fold_batchnorm: the model must be in eval mode")
    folded = []
    for prefix, parent in list(model.named_modules()):
        names = list(parent._modules)
        for i, name in enumerate(names):
            bn = parent._modules[name]
            if not isinstance(bn, nn.BatchNorm2d) or not bn.track_running_stats:
                continue
            if isinstance(parent, nn.Sequential):
                conv_name = names[i - 1] if i else None
            else:
                conv_name = "conv" + name.removeprefix("bn") if name.startswith("bn") else None
            conv = parent._modules.get(conv_name) if conv_name else None
            if not isinstance(conv, nn.Conv2d):
                continue
            weight, bias = folded_weights(conv, bn)
            conv.weight = nn.Parameter(weight, requires_grad=False)
            conv.bias = nn.Parameter(bias, requires_grad=False)
            parent._modules[name] = nn.Identity()
            folded.append((f"{prefix}.{conv_name}".lstrip("."), f"{prefix}.{name}".lstrip(".")))
    return folded


def folded_weights(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of `conv` followed by `bn` in eval mode, as one convolution."""
    with torch.no_grad():
        scale = bn.running_var.add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        bias = (bias - bn.running_mean) * scale + (bn.bias if bn.bias is not None else 0)
        return conv.weight * scale.view(-1, 1, 1, 1), bias


class Net(nn.Module):
    """A model as the experiment sees it: images in [0, 1] in, logits out (normalise, then the
    ResNet). channels_last: the memory layout convolutions are fastest in on CUDA (and on CPUs
    in bf16). dtype: the ResNet's own dtype when it is not the input's (inference copies in
    bf16); the input is normalised in fp32 first, as under autocast."""

    def __init__(self, model: nn.Module, mean=MEAN, std=STD):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.model = model
        self.channels_last = False
        self.dtype: torch.dtype | None = None

    def to_device(self, device: torch.device, channels_last: bool | None = None) -> Net:
        """Move to `device`; channels_last defaults to CUDA's choice (on)."""
        self.channels_last = device.type == "cuda" if channels_last is None else channels_last
        self.to(device)
        return self.to(memory_format=torch.channels_last) if self.channels_last else self

    def for_inference(
        self, fold: bool = True, dtype: torch.dtype | None = None, channels_last: bool = False, reuse: Net | None = None
    ) -> Net:
        """A frozen copy for evaluation: eval mode, no gradients, BatchNorm folded into the
        convolutions (fold), the ResNet's weights cast once to `dtype` (instead of on every
        batch, as autocast does), in the memory layout asked for. The copy costs one model's
        memory. `reuse`: a copy made earlier from this net with the same options, refreshed in
        place with the current weights (the same numbers as a new copy, without copying the
        module tree: a tenth of a second per evaluation on a ResNet-50)."""
        options = (fold, dtype, channels_last)
        if reuse is not None and getattr(reuse, "options", None) == options:
            reuse.refresh(self)
            return reuse
        net = copy.deepcopy(self).eval().requires_grad_(False)
        net.folded = [(f"model.{c}", f"model.{b}") for c, b in fold_batchnorm(net.model)] if fold else []
        if dtype is not None:
            net.model.to(dtype)
            net.dtype = dtype
        net.channels_last = channels_last
        net.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        net.options = options
        return net

    def refresh(self, live: Net) -> None:
        """This frozen copy's tensors from `live` (the net it was copied from), folded as when
        it was made."""
        with torch.no_grad():
            mine = dict(self.named_parameters()) | dict(self.named_buffers())
            theirs = dict(live.named_parameters()) | dict(live.named_buffers())
            done = set()
            for conv_name, bn_name in self.folded:
                weight, bias = folded_weights(live.get_submodule(conv_name), live.get_submodule(bn_name))
                mine[f"{conv_name}.weight"].copy_(weight)
                mine[f"{conv_name}.bias"].copy_(bias)
                done |= {f"{conv_name}.weight", f"{conv_name}.bias"}
            for name, tensor in mine.items():
                if name not in done:
                    tensor.copy_(theirs[name])

    def forward(self, x):
        x = self.normalize(x)
        if self.dtype is not None:
            x = x.to(self.dtype)
        return self.model(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)
