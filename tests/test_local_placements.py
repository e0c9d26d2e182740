"""Local (CBAM) attention: two placements, two classes (``attention=local`` picks one by ``placement``);
the stage blocks in every backbone family."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import TINY_DATA, compose_config, perturb, yaml_options
from torch import nn

from gsa_exp.attention import LocalSpatialAttention, create_attention
from gsa_exp.attention.base import AttentionError
from gsa_exp.attention.local_stages import LocalStageAttention
from gsa_exp.backbones import create_backbone, list_backbones
from gsa_exp.config.validation import ConfigError, validate_train_config
from gsa_exp.data.splits import MULTICLASS, DataInfo
from gsa_exp.training.builders import build_model

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


def test_a_dollar_in_a_refused_placement_is_shown_as_given():
    with pytest.raises(AttentionError) as error:
        local("$placement")
    assert str(error.value) == "placement='$placement': allowed: input, stages"


def test_stages_need_a_backbone_that_declares_them():
    attention = local("stages")
    with pytest.raises(AttentionError, match=r"placement=stages needs a backbone that declares its stages"):
        attention.attach(nn.Conv2d(1, 2, 3))


# -- placement=stages through the config: CBAM blocks in every backbone family -------------------------------------------
STAGE_BLOCKS = {  # the paper's four, by hand; every registered family is tested against its declared stages
    "resnet": [64, 128, 256, 512],
    "vgg": [64, 128, 256, 512, 512],
    "googlenet": [480, 832, 1024],
    "densenet": [256, 512, 1024, 1024],
}


@pytest.mark.parametrize("backbone", list_backbones())
def test_stage_blocks_follow_every_stage_of_each_backbone_and_learn(backbone):
    torch.manual_seed(0)  # the batch and the perturbation: one fixed case, whatever ran before
    # reduction 4: EfficientNet's first stage has 16 channels, so the default 16 leaves the channel MLP one
    # hidden unit, whose ReLU can be off for the whole tiny batch (no gradient to test).
    overrides = [*TINY_DATA, f"backbone={backbone}", "attention=local", "attention.placement=stages"]
    cfg = compose_config([*overrides, "attention.reduction=4"])
    info = DataInfo(task=MULTICLASS, num_classes=3, channels=1, image_size=32, num_train=48, mean=[0.5], std=[0.5])
    model = build_model(cfg, info)
    attention = model.attention
    widths = [stage.channels for stage in model.backbone.feature_info]
    assert widths == STAGE_BLOCKS.get(backbone, widths)
    assert [gate.mlp[0].in_channels for gate in attention.channel_gates] == widths
    assert len(attention.spatial_gates) == len(widths)
    assert all(
        not name.startswith("backbone.") for name in model.state_dict() if "gates" in name
    )  # blocks: attention's
    batch = torch.rand(2, 1, 32, 32)
    model.eval()
    with torch.no_grad():
        plain = model(batch)
        assert torch.equal(attention(batch), batch)  # the input itself passes unchanged
        model.infer(batch)
        maps = model.attention_maps
    assert maps.shape == (2, 32, 32) and len(attention._recorded) == len(widths)
    last_stage = model.backbone.get_submodule(model.backbone.feature_info[-1].module)
    stage_input = []
    last_stage.register_forward_pre_hook(lambda module, args: stage_input.append(args[0]))
    perturb(attention, scale=0.1)
    with torch.no_grad():
        assert model(batch).shape == plain.shape
        raw = last_stage.forward(stage_input[-1])  # forward() itself runs no hooks
        hooked = last_stage(stage_input[-1])
        assert not torch.allclose(hooked, raw, rtol=1e-3, atol=0)  # the hook replaces the stage's output...
        blocked = attention.stage_block(len(attention.spatial_gates) - 1, raw)
        assert torch.allclose(hooked, blocked, rtol=1e-5, atol=0)  # ...by the block's (relative: GoogLeNet's are tiny)
    model.train()
    outputs = model(batch)
    logits = outputs if isinstance(outputs, torch.Tensor) else outputs[0]
    logits.sum().backward()
    for name, parameter in attention.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_stage_blocks_reload_from_a_state_dict(tiny_config):
    cfg = tiny_config("backbone=resnet", "attention=local", "attention.placement=stages")
    info = DataInfo(task=MULTICLASS, num_classes=2, channels=1, image_size=32, num_train=48, mean=[0.5], std=[0.5])
    model = build_model(cfg, info)
    perturb(model.attention)
    restored = build_model(cfg, info)
    restored.load_state_dict(model.state_dict())
    batch = torch.rand(2, 1, 32, 32)
    model.eval(), restored.eval()
    with torch.no_grad():
        assert torch.allclose(model(batch), restored(batch))


def test_unknown_local_options_are_refused_in_one_line(tiny_config):
    with pytest.raises(ConfigError, match=r"attention.placement='everywhere': allowed: input, stages$"):
        validate_train_config(tiny_config("attention=local", "attention.placement=everywhere"))
    with pytest.raises(ConfigError, match=r"attention.kernel_size=4: must be an odd integer >= 1$"):
        validate_train_config(tiny_config("attention=local", "attention.kernel_size=4"))
