"""Backbones: every family x {1, 3} channels x {28, 64} px trains; bad settings fail clearly."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import CONF
from omegaconf import OmegaConf

from gsa_exp.backbones import BackboneError, backbone_family, create_backbone, list_backbones, split_outputs
from gsa_exp.backbones.adapter import first_conv_path, has_submodule, paths
from gsa_exp.config.validation import ConfigPaths

FAMILIES = list_backbones()  # every registered family is tested, with the options of its YAML


def backbone_yaml(family: str) -> dict:
    """The YAML node as written (its ``name`` included), without its ``_target_``."""
    options = OmegaConf.to_container(OmegaConf.load(CONF / "backbone" / f"{family}.yaml"))
    del options["_target_"]
    return options


def build(family: str, channels: int = 1, size: int = 32, classes: int = 3, **changes):
    options = {**backbone_yaml(family), "pretrained": False, "stem": "auto", **changes}
    return create_backbone(in_channels=channels, num_classes=classes, image_size=size, **options)


def auxiliary_heads(family: str, model: torch.nn.Module) -> int:
    return sum(has_submodule(model, path) for path in paths(backbone_family(family).heads, model)) - 1


def test_every_registered_backbone_has_a_yaml_and_every_yaml_a_registered_backbone():
    assert sorted(path.stem for path in (CONF / "backbone").glob("*.yaml")) == sorted(FAMILIES)
    assert all(backbone_yaml(family)["name"] == family for family in FAMILIES)
    assert FAMILIES[:4] == ("googlenet", "vgg", "resnet", "densenet")  # the paper's order leads the tables


def test_an_unknown_or_twice_registered_backbone_is_refused():
    from gsa_exp.backbones import register_backbone

    with pytest.raises(BackboneError, match=r"name='alexnet': not a registered backbone; registered: googlenet, vgg,"):
        build("resnet", name="alexnet")
    resnet = backbone_family("resnet")
    assert register_backbone(resnet) is resnet  # the same family again (a module imported twice) is harmless
    with pytest.raises(BackboneError, match="backbone 'resnet' is already registered .* needs another name"):
        register_backbone(dataclasses.replace(resnet, variants=("resnet18",)))  # another family under its name


@pytest.mark.parametrize("size", [28, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_forward_backward_and_output_shape(family, channels, size):
    torch.manual_seed(0)
    model = build(family, channels=channels, size=size, classes=5).train()
    images = torch.randn(2, channels, size, size)
    logits, auxiliary = split_outputs(model(images))
    assert logits.shape == (2, 5)
    assert len(auxiliary) == auxiliary_heads(family, model)
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


def stage_outputs(model: torch.nn.Module, images: torch.Tensor) -> list[tuple[str, torch.Size]]:
    """(declared stage, output shape) in the order the forward pass reaches them."""
    reached = []
    handles = [
        model.get_submodule(stage.module).register_forward_hook(
            lambda module, args, output, name=stage.module: reached.append((name, output.shape))
        )
        for stage in model.feature_info
    ]
    with torch.no_grad():
        model.eval()(images)
    for handle in handles:
        handle.remove()
    return reached


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("family", FAMILIES)
def test_declared_stages_are_reached_in_order_with_their_declared_widths(family, channels):
    model = build(family, channels=channels, size=32)
    reached = stage_outputs(model, torch.randn(1, channels, 32, 32))
    assert [name for name, _ in reached] == [stage.module for stage in model.feature_info]
    assert [shape[1] for _, shape in reached] == [stage.channels for stage in model.feature_info]
    assert len(model.feature_info) >= 3


@pytest.mark.parametrize("family", FAMILIES)
def test_the_small_stem_keeps_more_resolution_than_the_imagenet_stem(family):
    images = torch.randn(1, 3, 64, 64)
    small = build(family, channels=3, size=64, stem="small")
    imagenet = build(family, channels=3, size=64, stem="imagenet")
    first_small, first_imagenet = stage_outputs(small, images)[0][1], stage_outputs(imagenet, images)[0][1]
    assert first_small[-1] > first_imagenet[-1]
    conv = small.get_submodule(first_conv_path(backbone_family(family), small))
    assert conv.in_channels == 3 and conv.stride == (1, 1) and conv.kernel_size == (3, 3)


def test_googlenet_without_auxiliary_heads_returns_plain_logits():
    model = build("googlenet", aux_logits=False).train()
    assert isinstance(model(torch.randn(2, 1, 32, 32)), torch.Tensor)
    assert auxiliary_heads("googlenet", build("googlenet")) == 2
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
            r"image_size=28 is too small for backbone vgg11_bn \(stem=imagenet\): it needs at least 32 px",
        ),
        ("densenet", dict(stem="imagenet"), 28, r"it needs at least 29 px"),
        ("googlenet", dict(stem="imagenet"), 14, r"it needs at least 15 px"),
        (
            "resnet",
            dict(variant="resnet19"),
            32,
            r"variant='resnet19': not a resnet variant; allowed: resnet18, resnet34",
        ),
        ("resnet", dict(stem="tiny"), 32, r"stem='tiny': allowed: auto, small, imagenet$"),
        ("vgg", dict(head="wide"), 32, r"head='wide': allowed: auto, compact, classic$"),
    ],
)
def test_bad_settings_are_refused_with_the_key_and_what_is_allowed(family, changes, size, message):
    with pytest.raises(BackboneError, match=message):
        build(family, size=size, **changes)


def test_a_dollar_in_a_refused_value_is_shown_as_given():
    with pytest.raises(BackboneError) as error:
        build("resnet", stem="$stem")
    assert str(error.value).startswith("stem='$stem': allowed:")
    assert error.value.located(ConfigPaths("backbone")).startswith("backbone.stem='$stem': allowed:")


def test_pretrained_offline_without_cached_weights_fails_clearly(tmp_path, monkeypatch):
    home = tmp_path / "torch$HOME"  # a "$" in a path is shown as it is
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("GSA_EXP_OFFLINE", "1")
    with pytest.raises(BackboneError) as error:
        build("resnet", pretrained=True)
    text = error.value.located(ConfigPaths("backbone"))
    assert text.startswith("backbone.pretrained=true needs the resnet18 ImageNet weights")
    assert str(home / "hub" / "checkpoints") in text
    assert text.endswith("or set backbone.pretrained=false")
    assert str(error.value).startswith("pretrained=true needs") and str(home) in str(error.value)


def test_the_backbone_names_its_options_and_the_config_layer_says_where_they_live():
    with pytest.raises(BackboneError) as error:
        build("vgg", size=28, stem="imagenet")
    assert str(error.value) == (
        "image_size=28 is too small for backbone vgg11_bn (stem=imagenet): it needs at least 32 px; "
        "raise image_size or use stem=small"
    )
    assert error.value.located(ConfigPaths("backbone")) == (
        "dataset.image_size=28 is too small for backbone vgg11_bn (stem=imagenet): it needs at least 32 px; "
        "raise dataset.image_size or use backbone.stem=small"
    )


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


def test_checkpoints_written_before_the_registry_still_name_a_builder_that_works():
    import gsa_exp.backbones
    from gsa_exp.model.instantiate import instantiate_component

    old_node = {**backbone_yaml("resnet"), "_target_": "gsa_exp.backbones.build_resnet"}  # name: stripped
    model = instantiate_component(old_node, in_channels=1, num_classes=3, image_size=32)
    assert model.fc.out_features == 3 and model.conv1.in_channels == 1
    with pytest.raises(AttributeError, match="has no attribute 'build_alexnet'"):
        getattr(gsa_exp.backbones, "build_alexnet")  # noqa: B009
