"""The two local (CBAM) placements are two classes; ``attention=local`` picks one by ``placement``."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import yaml_options
from torch import nn

from gsa_exp.attention import LocalSpatialAttention, create_attention
from gsa_exp.attention.base import AttentionError
from gsa_exp.attention.local_stages import LocalStageAttention
from gsa_exp.backbones import create_backbone

RUNTIME = dict(in_channels=1, image_size=32, num_train=20)


def local(placement: str) -> LocalSpatialAttention:
    return create_attention("local", **RUNTIME, **yaml_options("attention", "local", placement=placement, reduction=4))


def resnet() -> nn.Module:
    return create_backbone(
        "resnet", variant="resnet18", in_channels=1, num_classes=2, image_size=32, pretrained=False, stem="small"
    )


def test_placement_input_builds_the_input_gate_and_stages_the_stage_blocks():
    on_input = local("input")
    after_stages = local("stages")
    assert type(on_input) is LocalSpatialAttention
    assert type(after_stages) is LocalStageAttention
    assert [name for name, _ in on_input.named_children()] == ["spatial"]
    assert sorted(name for name, _ in after_stages.named_children()) == ["channel_gates", "spatial_gates"]
    assert (on_input.placement, after_stages.placement) == ("input", "stages")


def test_the_class_name_spelling_builds_the_same_variant_as_before():
    """Checkpoints name the class (``_target_: gsa_exp.attention.LocalSpatialAttention``) with placement."""
    assert (
        type(LocalSpatialAttention(**RUNTIME, **yaml_options("attention", "local", placement="stages")))
        is LocalStageAttention
    )


def test_input_placement_changes_the_image_and_stage_placement_passes_it_through():
    images = torch.rand(2, 1, 32, 32)
    on_input = local("input").eval()
    after_stages = local("stages").eval()
    after_stages.attach(resnet())
    assert torch.allclose(on_input(images), images * torch.sigmoid(torch.tensor(2.0)))
    assert after_stages(images) is images


def test_stage_blocks_hook_into_every_declared_stage_and_survive_a_deep_copy():
    backbone = resnet()
    attention = local("stages")
    attention.attach(backbone)
    model = nn.Sequential(attention, backbone).eval()
    widths = [stage.channels for stage in backbone.feature_info]
    assert [gate.mlp[0].in_channels for gate in attention.channel_gates] == widths
    with torch.no_grad():
        model(torch.rand(2, 1, 32, 32))
    assert len(attention._recorded) == len(widths)  # one spatial map per stage
    maps = attention.last_image_maps()
    assert maps.shape == (2, 32, 32) and torch.all((maps > 0) & (maps < 1))
    copied = copy.deepcopy(model)
    with torch.no_grad():
        copied(torch.rand(2, 1, 32, 32))
    assert len(copied[0]._recorded) == len(widths)  # the copy's hooks use the copy's blocks


def test_a_stage_class_built_with_the_other_placement_is_refused():
    with pytest.raises(AttentionError, match=r"placement='input': LocalStageAttention is placement=stages"):
        LocalStageAttention(**RUNTIME, **yaml_options("attention", "local", placement="input"))


def test_stages_need_a_backbone_that_declares_them():
    attention = local("stages")
    with pytest.raises(AttentionError, match=r"placement=stages needs a backbone that declares its stages"):
        attention.attach(nn.Conv2d(1, 2, 3))
