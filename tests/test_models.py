"""Which parameters fine-tuning trains, the transfer head, and BatchNorm of frozen blocks.

All on a real torchvision ResNet-50 (the paper's architecture), at 32x32 px on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robust_transfer import models
from robust_transfer.models import blocks, prepare_for_transfer, resnet50, trainable_prefixes


@pytest.fixture(scope="module")
def all_names() -> list[str]:
    return [n for n, _ in resnet50().named_parameters()]


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _with_prefixes(names, prefixes) -> set[str]:
    return {n for n in names if any(n.startswith(p + ".") for p in prefixes)}


FC = {"fc.weight", "fc.bias"}
LAYER4_2 = ["layer4.2"]
LAYER4 = [f"layer4.{i}" for i in range(3)]
LAYER3 = [f"layer3.{i}" for i in range(6)]


@pytest.mark.parametrize(
    "k, prefixes",
    [
        (0, []),
        (1, LAYER4_2),
        (3, LAYER4),
        (9, LAYER3 + LAYER4),
    ],
)
def test_trainable_parameter_names_exact(all_names, k, prefixes):
    """k counts residual blocks from the end (authors' unfrozen_blocks_to_layer_name_list):
    exactly those blocks' parameters plus the new fc are trainable, nothing else."""
    model = prepare_for_transfer(resnet50(), 10, k)
    expected = _with_prefixes(all_names, prefixes) | FC
    assert _trainable(model) == expected
    # every parameter that is not trainable is really frozen
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == set(all_names) - expected


def test_trainable_sets_sanity(all_names):
    """The prefix sets are not empty by accident: k=1 trains layer4.2's 3 convs and 3 BNs (9
    tensors) + fc; k=9 includes every layer3 block, and no layer1/layer2 or stem parameter."""
    k1 = _trainable(prepare_for_transfer(resnet50(), 10, 1))
    assert len(k1) == 3 + 3 * 2 + 2
    k9 = _trainable(prepare_for_transfer(resnet50(), 10, 9))
    assert {n.split(".")[0] + "." + n.split(".")[1] for n in k9 if n.startswith("layer3.")} == set(LAYER3)
    assert not any(n.startswith(("layer1.", "layer2.", "conv1.", "bn1.")) for n in k9)
    # layer4.0 has a downsample branch: it must be trainable with k=3
    k3 = _trainable(prepare_for_transfer(resnet50(), 10, 3))
    assert {"layer4.0.downsample.0.weight", "layer4.0.downsample.1.weight", "layer4.0.downsample.1.bias"} <= k3
    assert "layer3.5.conv3.weight" not in k3


@pytest.mark.parametrize("classes", [10, 100])
def test_trainable_count_k0(classes):
    """k=0 is a linear probe: 2048 x classes weights + classes biases, nothing more."""
    model = prepare_for_transfer(resnet50(), classes, 0)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2048 * classes + classes


def test_trainable_count_k3():
    """k=3 trains layer4 in full (about 15M parameters) plus the head."""
    model = prepare_for_transfer(resnet50(), 10, 3)
    layer4 = sum(p.numel() for p in model.layer4.parameters())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == layer4 + 2048 * 10 + 10
    assert layer4 == 14964736


def test_blocks_and_prefixes():
    """ResNet-50 has 16 blocks (3, 4, 6, 3); k outside [0, 16] is rejected; k=16 (every block,
    training from scratch) trains the stem too, so every parameter is trainable."""
    m = resnet50()
    assert len(blocks(m)) == 16
    assert blocks(m)[0] == "layer1.0" and blocks(m)[-1] == "layer4.2"
    assert trainable_prefixes(m, 16) == ["conv1", "bn1"] + blocks(m) + ["fc"]
    prepare_for_transfer(m, 10, 16)
    assert all(p.requires_grad for p in m.parameters())
    with pytest.raises(ValueError):
        trainable_prefixes(m, 17)
    with pytest.raises(ValueError):
        trainable_prefixes(m, -1)


def test_fc_init_normal_std1_bias0():
    """The new head is N(0, 1) (authors' nn.init.normal_), bias 0, 2048 inputs."""
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(), 100, 3)
    w, b = model.fc.weight.detach(), model.fc.bias.detach()
    assert tuple(w.shape) == (100, 2048)
    assert abs(w.std().item() - 1.0) < 0.03
    assert abs(w.mean().item()) < 0.03
    assert torch.equal(b, torch.zeros(100))


def test_fc_init_head_std():
    """head_std scales the head's init (config finetune.head_std)."""
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 100, 0, head_std=0.01)
    assert abs(model.fc.weight.std().item() - 0.01) < 0.0005


def test_fc_init_deterministic():
    """Same torch seed -> same head; another seed -> another head."""
    base = resnet50(width_per_group=8)
    heads = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        heads.append(prepare_for_transfer(base, 10, 0).fc.weight.detach().clone())
    assert torch.equal(heads[0], heads[1])
    assert not torch.equal(heads[0], heads[2])


def test_prepare_keeps_backbone_weights():
    """Only fc is replaced: every other tensor is the source model's, untouched."""
    torch.manual_seed(0)
    model = resnet50()
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    prepare_for_transfer(model, 10, 3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert tuple(after["fc.weight"].shape) == (10, 2048)


def test_frozen_batchnorm_running_stats_update_but_affine_fixed():
    """As in the paper, frozen blocks stay in train mode: their BN running statistics move,
    while their affine weights (requires_grad False) are untouched by an SGD step with weight
    decay. Trainable layer4 weights do change."""
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(), 10, 3)
    bn = model.layer1[0].bn1
    assert not bn.weight.requires_grad and not bn.bias.requires_grad
    mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
    w0, b0 = bn.weight.detach().clone(), bn.bias.detach().clone()
    conv0 = model.layer1[0].conv1.weight.detach().clone()
    l4 = model.layer4[2].conv3.weight.detach().clone()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)

    model.train()
    x = models.Normalize()(torch.rand(4, 3, 32, 32))
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    opt.zero_grad()
    loss.backward()
    opt.step()

    assert not torch.equal(bn.running_mean, mean0)
    assert not torch.equal(bn.running_var, var0)
    assert bn.num_batches_tracked.item() == 1
    assert torch.equal(bn.weight, w0) and torch.equal(bn.bias, b0)
    assert bn.weight.grad is None
    assert torch.equal(model.layer1[0].conv1.weight, conv0)
    assert not torch.equal(model.layer4[2].conv3.weight, l4)


def test_narrow_model_same_names_and_features(all_names):
    """The offline demo's narrow model keeps every parameter name and 2048-d features, so the
    same k selection and checkpoint code apply."""
    narrow = resnet50(width_per_group=16)
    assert [n for n, _ in narrow.named_parameters()] == all_names
    assert narrow.fc.in_features == 2048
    assert narrow.layer1[0].conv1.out_channels == 16
    narrow = prepare_for_transfer(narrow, 7, 3)
    assert _trainable(narrow) == _with_prefixes(all_names, LAYER4) | FC
    narrow.eval()
    with torch.no_grad():
        assert tuple(narrow(torch.rand(2, 3, 32, 32)).shape) == (2, 7)


def test_normalize_clamps_then_standardises():
    """Inputs are clamped to [0, 1] before ImageNet standardisation."""
    norm = models.Normalize()
    x = torch.full((1, 3, 2, 2), 2.0)
    out = norm(x)
    expected = (1 - torch.tensor(models.MEAN)) / torch.tensor(models.STD)
    assert torch.allclose(out[0, :, 0, 0], expected)
    assert torch.allclose(
        norm(torch.full((1, 3, 1, 1), -1.0))[0, :, 0, 0], -torch.tensor(models.MEAN) / torch.tensor(models.STD)
    )


def test_default_head_is_pytorchs_linear_init():
    """head_std None (the authors' from-scratch runs): no N(0, 1) re-init; weight and bias are
    nn.Linear's default, uniform in +-1/sqrt(2048)."""
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 100, 16, head_std=None)
    w, b = model.fc.weight.detach(), model.fc.bias.detach()
    bound = 1 / 2048**0.5
    assert w.abs().max() <= bound and b.abs().max() <= bound
    assert w.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)  # uniform's std
    assert b.abs().max() > 0  # not zeroed
    assert all(p.requires_grad for p in model.parameters())  # k = 16: everything trains


def test_net_normalises_with_the_given_statistics():
    torch.manual_seed(0)
    base = resnet50(width_per_group=8)
    net = models.Net(base, mean=(0.1307,) * 3, std=(0.3081,) * 3).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        expected = base.eval()((x - 0.1307) / 0.3081)
        assert torch.allclose(net(x), expected, atol=1e-5)
        assert not torch.allclose(models.Net(base).eval()(x), expected, atol=1e-3)


def test_to_device_moves_the_model_and_its_normaliser():
    """Net.to_device puts every parameter and buffer (the normaliser's mean and std included)
    on the device; the meta device stands in for a GPU on a CPU-only machine. Channels-last
    follows CUDA unless asked."""
    net = models.Net(resnet50(width_per_group=8)).to_device(torch.device("meta"))
    tensors = list(net.parameters()) + list(net.buffers())
    assert tensors and all(t.device.type == "meta" for t in tensors)
    assert not net.channels_last
    assert models.Net(resnet50(width_per_group=8)).to_device(torch.device("cpu"), channels_last=True).channels_last
