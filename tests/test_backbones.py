"""Backbones: every family x {1, 3} channels x {28, 64} px trains; bad settings fail clearly."""

from __future__ import annotations

import pytest
import torch

from gsa_exp.backbones import BackboneError, build_densenet, build_googlenet, build_resnet, build_vgg, split_outputs

FAMILIES = {
    "resnet": (build_resnet, dict(variant="resnet18")),
    "vgg": (build_vgg, dict(variant="vgg11_bn", head="auto", dropout=0.5)),
    "densenet": (build_densenet, dict(variant="densenet121")),
    "googlenet": (build_googlenet, dict(variant="googlenet", aux_logits=True, dropout=0.2)),
}


def build(family: str, channels: int = 1, size: int = 32, classes: int = 3, **changes):
    builder, options = FAMILIES[family]
    options = {**options, "pretrained": False, "stem": "auto", **changes}
    return builder(in_channels=channels, num_classes=classes, image_size=size, **options)


@pytest.mark.parametrize("size", [28, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_forward_backward_and_output_shape(family, channels, size):
    torch.manual_seed(0)
    model = build(family, channels=channels, size=size, classes=5).train()
    images = torch.randn(2, channels, size, size)
    logits, auxiliary = split_outputs(model(images))
    assert logits.shape == (2, 5)
    assert len(auxiliary) == (2 if family == "googlenet" else 0)
    assert all(aux.shape == (2, 5) for aux in auxiliary)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 4]))
    loss = loss + sum(torch.nn.functional.cross_entropy(a, torch.tensor([0, 4])) for a in auxiliary)
    loss.backward()
    first = next(p for p in model.parameters() if p.dim() == 4)
    assert first.shape[1] == channels
    assert first.grad is not None and first.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(images).shape == (2, 5)  # plain logits in eval, GoogLeNet included


def test_googlenet_without_auxiliary_heads_returns_plain_logits():
    model = build("googlenet", aux_logits=False).train()
    assert isinstance(model(torch.randn(2, 1, 32, 32)), torch.Tensor)
    assert model.aux1 is None and model.aux2 is None


def test_small_stem_keeps_resolution_and_imagenet_stem_downsamples():
    small = build("resnet", size=64, stem="small")
    imagenet = build("resnet", size=64, stem="imagenet")
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, torch.nn.Identity)
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert build("resnet", size=65).conv1.kernel_size == (7, 7)  # auto: ImageNet stem above 64 px


def test_vgg_head_is_compact_for_small_images_and_classic_for_large():
    compact = build("vgg", size=32)
    assert sum(p.numel() for p in compact.classifier.parameters()) == 512 * 3 + 3
    classic = build("vgg", size=32, head="classic")
    assert classic.classifier[0].in_features == 512 * 7 * 7


@pytest.mark.parametrize(
    ("family", "changes", "size", "message"),
    [
        (
            "vgg",
            dict(stem="imagenet"),
            28,
            r"dataset.image_size=28 is too small for backbone vgg11_bn \(stem=imagenet\): it needs at least 32 px",
        ),
        ("densenet", dict(stem="imagenet"), 28, r"it needs at least 29 px"),
        ("googlenet", dict(stem="imagenet"), 14, r"it needs at least 15 px"),
        (
            "resnet",
            dict(variant="resnet19"),
            32,
            r"backbone.variant='resnet19' is not a resnet variant; allowed: \['resnet18'",
        ),
        ("resnet", dict(stem="tiny"), 32, r"backbone.stem='tiny' is not one of \['auto', 'small', 'imagenet'\]"),
        ("vgg", dict(head="wide"), 32, r"backbone.head='wide' is not one of"),
    ],
)
def test_bad_settings_are_refused_with_the_key_and_what_is_allowed(family, changes, size, message):
    with pytest.raises(BackboneError, match=message):
        build(family, size=size, **changes)


def test_pretrained_offline_without_cached_weights_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("GSA_EXP_OFFLINE", "1")
    with pytest.raises(BackboneError) as error:
        build("resnet", pretrained=True)
    text = str(error.value)
    assert "backbone.pretrained=true needs the resnet18 ImageNet weights" in text
    assert str(tmp_path / "hub" / "checkpoints") in text
    assert "backbone.pretrained=false" in text


def test_pretrained_weights_load_from_the_cache(tmp_path, monkeypatch):
    """A weights file in torch's cache is used as is (here one we wrote ourselves, with known values)."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("GSA_EXP_OFFLINE", "1")
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    reference = torchvision.models.resnet18()
    with torch.no_grad():
        reference.layer1[0].conv1.weight.fill_(0.125)
        reference.conv1.weight.copy_(torch.randn_like(reference.conv1.weight))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / weights.url.rsplit("/", 1)[-1])
    model = build("resnet", channels=1, size=128, pretrained=True)  # ImageNet stem: conv1 kept, summed to grey
    assert torch.all(model.layer1[0].conv1.weight == 0.125)
    expected = reference.conv1.weight.sum(dim=1, keepdim=True)
    assert torch.allclose(model.conv1.weight, expected)
    assert model.fc.out_features == 3
