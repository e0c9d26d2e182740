"""backbone=timm: any timm model (ViTs included) trains through train.py; its stages, sizes, weights and
mistakes are handled like the torchvision families'; the MedMNIST+ models resolve to timm's weights."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from conftest import CONF, QUIET, TINY_DATA, compose_config, run_script, yaml_options
from omegaconf import OmegaConf

from gsa_exp.attention.local_stages import _StageHook
from gsa_exp.backbones import BackboneError, create_backbone
from gsa_exp.config.validation import ConfigError, ConfigPaths, validate_train_config
from gsa_exp.data.splits import MULTICLASS, DataInfo
from gsa_exp.training.builders import build_model
from gsa_exp.training.train import train

VIT = ["backbone=timm", "backbone.variant=test_vit", "backbone.patch_size=8"]  # timm's 6-block test ViT, 16 tokens
MEDMNIST_PLUS = sorted(path.stem for path in (CONF / "backbone" / "medmnist_plus").glob("*.yaml"))


def build(size: int = 32, channels: int = 1, **changes) -> torch.nn.Module:
    options = yaml_options("backbone", "timm", **changes)
    return create_backbone("timm", in_channels=channels, num_classes=3, image_size=size, **options)


@pytest.mark.parametrize("attention", ["none", "global"])
def test_a_vit_trains_with_and_without_global_attention(tiny_config, tmp_path, attention):
    metrics = train(tiny_config(*VIT, f"attention={attention}", "debug=fast_dev_run"))
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for stage in ("val", "test"):
        assert all(0.0 <= written[f"{stage}/{name}"] <= 1.0 for name in ("acc", "bal_acc", "auroc", "f1"))
        assert written[f"{stage}/loss"] == pytest.approx(metrics[f"{stage}/loss"]) and metrics[f"{stage}/loss"] >= 0
    assert ("test/map_auroc" in written) == (attention == "global")  # the global map acts on the ViT's input


@pytest.mark.slow  # two jobs in a fresh interpreter: about 30 s on two busy cores
def test_a_vit_trains_through_train_py_with_and_without_global_attention(tmp_path):
    result = run_script(
        "train.py", "-m", *VIT, "attention=none,global", *TINY_DATA, *QUIET, "debug=fast_dev_run",
        f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = {path.parent.name.split(",")[0]: path for path in tmp_path.glob("*/metrics.json")}
    assert sorted(jobs) == ["0_attention=none", "1_attention=global"]  # job directories start with the sweep
    written = {job: json.loads(path.read_text()) for job, path in jobs.items()}
    for metrics in written.values():
        for stage in ("val", "test"):
            assert all(0.0 <= metrics[f"{stage}/{name}"] <= 1.0 for name in ("acc", "bal_acc", "auroc", "f1"))
            assert metrics[f"{stage}/loss"] >= 0.0
    assert 0.0 <= written["1_attention=global"]["test/map_auroc"] <= 1.0  # the map acts on the ViT's input
    assert "test/map_auroc" not in written["0_attention=none"]


def test_local_attention_sits_after_every_stage_timm_declares():
    cfg = compose_config([*TINY_DATA, "backbone=timm", "attention=local", "attention.placement=stages"])
    info = DataInfo(task=MULTICLASS, num_classes=3, channels=1, image_size=32, num_train=48, mean=[0.5], std=[0.5])
    model = build_model(cfg, info).eval()
    backbone, attention = model.backbone, model.attention
    declared = [(entry.module, entry.channels) for entry in backbone.feature_info]
    assert declared == [("act1", 64), ("layer1", 64), ("layer2", 128), ("layer3", 256), ("layer4", 512)]
    for index, (module, channels) in enumerate(declared):
        hooks = list(backbone.get_submodule(module)._forward_hooks.values())
        assert len(hooks) == 1 and isinstance(hooks[0], _StageHook) and hooks[0].index == index
        assert attention.channel_gates[index].mlp[0].in_channels == channels
    shapes = []
    for entry in backbone.feature_info:
        backbone.get_submodule(entry.module).register_forward_hook(lambda m, a, output: shapes.append(output.shape))
    with torch.no_grad():
        assert model(torch.rand(2, 1, 32, 32)).shape == (2, 3)
    sides = [32, 32, 16, 8, 4]  # the small stem: no stride in the first convolution, no max-pool before layer1
    assert shapes == [(2, channels, side, side) for (_, channels), side in zip(declared, sides, strict=True)]
    assert len(attention._recorded) == len(declared)


def test_local_attention_after_stages_is_refused_for_a_vit_and_on_its_input_accepted():
    with pytest.raises(ConfigError) as error:
        validate_train_config(compose_config([*TINY_DATA, *VIT, "attention=local", "attention.placement=stages"]))
    assert str(error.value) == (
        "Invalid config: attention.placement=stages needs a backbone whose stages output feature maps; "
        "VisionTransformer declares none (a vision transformer's blocks hold patch tokens at one resolution, "
        "not a map per stage); use attention.placement=input"
    )
    validate_train_config(compose_config([*TINY_DATA, *VIT, "attention=local", "attention.placement=input"]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["backbone.variant=vit_tiny_patch16_22"],
            r"^Invalid config: backbone.variant='vit_tiny_patch16_22': not a timm variant; "
            r"close matches: vit_tiny_patch16_224, .* variants in all\)$",
        ),
        (
            ["backbone.variant=vgg16", "backbone.stem=imagenet", "dataset.image_size=16"],
            r"dataset.image_size=16 is too small for backbone vgg16 \(stem=imagenet\): it needs at least 32 px; "
            r"raise dataset.image_size or use backbone.stem=small$",
        ),
        (
            ["backbone.variant=test_vit", "dataset.image_size=40"],
            r"dataset.image_size=40 does not fit backbone test_vit: its 16 px patches need a multiple of 16 px "
            r"\(the nearest: 32 or 48\); change dataset.image_size or backbone.patch_size$",
        ),
        (
            ["backbone.variant=test_vit", "backbone.stem=small"],
            r"backbone.stem=small: VisionTransformer has no convolutional stem to shrink",
        ),
        (["backbone.patch_size=4"], r"backbone.patch_size=4: resnet10t does not take a patch_size; set .*=null$"),
        (["backbone.drop_path_rate=1.5"], r"backbone.drop_path_rate=1.5: must be a number in \[0, 1\) or null"),
    ],
)
def test_bad_timm_settings_are_refused_before_the_run_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_train_config(compose_config([*TINY_DATA, "backbone=timm", *overrides]))


def test_the_smallest_fitting_size_follows_the_stem():
    with pytest.raises(BackboneError, match=r"it needs at least 8 px"):  # the small stem drops VGG's first two pools
        build(size=4, variant="vgg16", stem="small")
    assert build(size=8, variant="vgg16", stem="small")(torch.rand(1, 1, 8, 8)).shape == (1, 3)


def test_pretrained_offline_without_cached_weights_names_the_file_and_the_cache(tmp_path, monkeypatch):
    home = tmp_path / "hf$home"  # a "$" in a path is shown as it is
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(BackboneError) as error:
        build(variant="test_vit", pretrained=True)
    text = error.value.located(ConfigPaths("backbone"))
    assert text.startswith("backbone.pretrained=true needs the timm weights of test_vit, which are not cached")
    assert "GSA_EXP_OFFLINE forbids downloading them" in text
    assert f"model.safetensors of https://huggingface.co/timm/test_vit.r160_in1k into the Hugging Face cache " \
        f"{home / 'hub'}" in text  # fmt: skip
    assert text.endswith("or set backbone.pretrained=false")
    with pytest.raises(BackboneError, match=r"pretrained=true: timm has no weights for 'test_vit4'"):
        build(variant="test_vit4", pretrained=True)


def test_pretrained_weights_load_from_the_hugging_face_cache_offline(tmp_path, monkeypatch):
    """A weights file in the Hugging Face cache is used as is (here one written by the test, with known values)."""
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    repository = tmp_path / "hub" / "models--timm--test_vit.r160_in1k"
    snapshot = repository / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text("0" * 40)
    reference = timm.create_model("test_vit", pretrained=False)
    with torch.no_grad():
        reference.blocks[0].mlp.fc1.weight.fill_(0.125)
    save_file(
        {key: value.contiguous() for key, value in reference.state_dict().items()}, snapshot / "model.safetensors"
    )
    model = build(size=160, channels=1, variant="test_vit", pretrained=True, stem="imagenet")
    assert torch.all(model.blocks[0].mlp.fc1.weight == 0.125)
    expected = reference.patch_embed.proj.weight.sum(dim=1, keepdim=True)  # timm sums RGB filters for grey input
    assert torch.allclose(model.patch_embed.proj.weight, expected)
    assert model.head.out_features == 3


@pytest.mark.parametrize("choice", MEDMNIST_PLUS)
def test_each_medmnist_plus_model_names_timm_weights_and_builds(choice):
    cfg = compose_config([f"backbone=medmnist_plus/{choice}"])
    node = OmegaConf.to_container(cfg.backbone)
    assert node["name"] == "timm" and node["pretrained"] is True and node["stem"] == "imagenet"
    assert node["variant"] in timm.list_models(pretrained=True)
    options = {key: value for key, value in node.items() if key not in ("_target_", "name")}
    with torch.device("meta"):  # the architecture at MedMNIST+'s largest size, no weights allocated or fetched
        model = create_backbone(
            "timm", in_channels=3, num_classes=7, image_size=224, **{**options, "pretrained": False}
        )
        assert model(torch.empty(2, 3, 224, 224)).shape == (2, 7)


def test_the_medmnist_plus_models_are_the_papers():
    assert MEDMNIST_PLUS == [
        "clip_vit_b16", "densenet121", "dino_vit_b16", "efficientnet_b4", "eva02_b16", "resnet18", "sam_vit_b16",
        "vgg16", "vit_b16",
    ]  # fmt: skip
