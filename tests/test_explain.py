"""Grad-CAM beside the global map, and every map of a sweep in one figure."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import QUIET, ROOT, TINY_DATA, compose_config
from omegaconf import OmegaConf
from PIL import Image

from gsa_exp.data.splits import MULTICLASS, DataInfo
from gsa_exp.training.builders import build_datamodule, build_model
from gsa_exp.training.explain import (
    GRADCAM_PNG,
    compare,
    comparison_figure,
    gradcam_layer,
    gradcam_maps,
    write_gradcam_comparison,
)
from gsa_exp.training.sweep_maps import GRID_PNG, collect_maps, map_grid_figure
from gsa_exp.training.train import train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
INFO = DataInfo(
    task=MULTICLASS,
    num_classes=2,
    channels=1,
    image_size=32,
    num_train=80,
    label_names=["a", "b"],
    mean=[0.5],
    std=[0.5],
)
# debug=limit, shortened: two epochs of two training batches
SHORT_RUN = [*TINY_DATA, *QUIET, "debug=limit", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]


def plain_model(backbone: str, seed: int):
    torch.manual_seed(seed)
    return build_model(compose_config([*TINY_DATA, f"backbone={backbone}", "attention=none"]), INFO).eval()


def sample_images(count: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(count, 1, 32, 32, generator=generator)


def load_plot_script():
    spec = importlib.util.spec_from_file_location("plot_attention", ROOT / "scripts" / "plot_attention.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- Grad-CAM ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("backbone", "expected"),
    [
        ("resnet", lambda net: net.layer4),
        ("densenet", lambda net: net.features.denseblock4),
        ("vgg", lambda net: [m for m in net.features if isinstance(m, torch.nn.Conv2d)][-1]),
        ("googlenet", lambda net: net.inception5b),
    ],
)
def test_gradcam_maps_have_the_image_shape_are_non_negative_and_depend_on_the_model(backbone, expected):
    first, second = plain_model(backbone, seed=0), plain_model(backbone, seed=1)
    assert gradcam_layer(first.backbone) is expected(first.backbone)
    images, targets = sample_images(), torch.tensor([0, 1, 1])
    maps = gradcam_maps(first, images, targets)
    assert maps.shape == (3, 32, 32)
    assert torch.isfinite(maps).all() and maps.min() >= 0
    other = gradcam_maps(second, images, targets)
    assert maps.max() > 0 and other.max() > 0  # not all zero, so "differ" below says something
    # relative to each model's scale (a fresh GoogLeNet's weights are tiny, and so are its maps)
    assert not torch.allclose(maps / maps.max(), other / other.max(), atol=1e-3)
    assert not first.training  # the model's mode is restored


def hand_gradcam(model, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Grad-CAM as Selvaraju et al. define it, on ResNet's layer4, without captum."""
    kept = {}
    handle = model.backbone.layer4.register_forward_hook(lambda module, inputs, output: kept.update(a=output))
    try:
        logits = model(images)
    finally:
        handle.remove()
    activations = kept["a"]
    (gradients,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), activations)
    cam = F.relu((gradients.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()


def test_gradcam_is_the_gradient_weighted_activation_of_the_target_class():
    model = plain_model("resnet", seed=0)
    images = sample_images()
    for targets in (torch.tensor([0, 0, 0]), torch.tensor([1, 1, 1])):
        assert torch.allclose(gradcam_maps(model, images, targets), hand_gradcam(model, images, targets), atol=1e-5)
    zeros, ones = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    assert not torch.allclose(gradcam_maps(model, images, zeros), gradcam_maps(model, images, ones))


@pytest.fixture(scope="module")
def tiny_data():
    datamodule = build_datamodule(compose_config(list(TINY_DATA)).dataset)
    datamodule.setup("fit")
    return datamodule


def test_the_comparison_figure_shows_each_sample_image_with_both_gradcams_and_the_map(tiny_data, tmp_path):
    torch.manual_seed(0)
    plain = build_model(compose_config([*TINY_DATA, "attention=none"]), tiny_data.info)
    attended = build_model(compose_config([*TINY_DATA, "attention=global"]), tiny_data.info)
    attended.attention.prepare(*tiny_data.bank_images())
    comparison = compare(plain, attended, tiny_data, per_class=2)
    assert comparison.layout == (4, 4)  # 2 classes x 2 images; image, Grad-CAM none, Grad-CAM global, map
    assert [name for name, _ in comparison.rows] == ["no lesion in region", "lesion in region"]
    assert [title for title, _ in comparison.cams] == ["Grad-CAM: none", "Grad-CAM: global"]
    assert torch.allclose(comparison.maps[0], attended.attention.shared_map())
    figure = comparison_figure(comparison)
    assert sum(1 for axis in figure.axes if axis.images) == 4 * 4 and len(figure.axes) == 4 * 4 + 1  # and a colour bar
    path, layout = write_gradcam_comparison(plain, attended, tiny_data, tmp_path, per_class=3)
    assert path == tmp_path / GRADCAM_PNG and layout == (6, 4)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert Image.open(path).size == (round((1.7 * 4 + 1.2) * 100), round((1.7 * 6 + 0.7) * 100))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Short real runs without and with global attention (checkpoints, config inside)."""
    root = tmp_path_factory.mktemp("runs")
    for attention in ("none", "global"):
        train(compose_config([*SHORT_RUN, f"attention={attention}"], output_dir=root / attention))
    return root / "none", root / "global"


def test_plot_attention_writes_the_gradcam_comparison_of_two_runs(two_runs, tmp_path, capsys):
    plain, attended = two_runs
    figures = tmp_path / "figures"
    code = load_plot_script().main(
        [str(attended), "--gradcam", str(plain), "--out", str(figures), "--samples-per-class", "1"]
    )
    assert code == 0, capsys.readouterr().err
    assert f"wrote {figures / GRADCAM_PNG}" in capsys.readouterr().out
    assert Image.open(figures / GRADCAM_PNG).size == (round((1.7 * 4 + 1.2) * 100), round((1.7 * 2 + 0.7) * 100))


def test_gradcam_without_captum_names_the_extra(two_runs, monkeypatch, capsys):
    plain, attended = two_runs
    for name in [module for module in sys.modules if module == "captum" or module.startswith("captum.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "captum", None)  # what Python does for a package that is not installed
    assert load_plot_script().main([str(attended), "--gradcam", str(plain)]) == 2
    assert "Grad-CAM needs captum, which is not installed: pip install -e '.[explain]'" in capsys.readouterr().err
    assert not (attended / GRADCAM_PNG).exists()


def test_gradcam_refuses_a_second_run_that_is_not_a_checkpoint(two_runs, tmp_path, capsys):
    _, attended = two_runs
    assert load_plot_script().main([str(attended), "--gradcam", str(tmp_path / "nowhere")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


# -- the sweep grid -----------------------------------------------------------------------------
def fabricate_job(sweep: Path, name: str, backbone: str, dataset: str, attention: str, seed: int, value: float | None):
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    config = {
        "backbone": {"name": backbone},
        "dataset": {"name": dataset},
        "attention": {"name": attention},
        "seed": seed,
    }
    OmegaConf.save(OmegaConf.create(config), job / ".hydra" / "config.yaml")
    if value is not None:
        np.save(job / "attention_map.npy", np.full((8, 8), value, dtype=np.float32))
    return job


@pytest.fixture
def sweep(tmp_path) -> Path:
    sweep = tmp_path / "sweep"
    fabricate_job(sweep, "0_resnet_synthetic_s0", "resnet", "synthetic", "global", 0, 0.2)
    fabricate_job(sweep, "1_resnet_synthetic_s1", "resnet", "synthetic", "global", 1, 0.6)
    fabricate_job(sweep, "2_vgg_synthetic_s0", "vgg", "synthetic", "global", 0, 0.9)
    fabricate_job(sweep, "3_resnet_octmnist_s0", "resnet", "octmnist", "global", 0, 0.1)
    fabricate_job(sweep, "4_vgg_octmnist_s0", "vgg", "octmnist", "global", 0, None)  # failed: no map
    fabricate_job(sweep, "5_vgg_octmnist_none", "vgg", "octmnist", "none", 0, None)  # no attention: skipped
    return sweep


def test_sweep_maps_are_gridded_by_backbone_and_data_set_with_the_mean_over_seeds(sweep):
    grid = collect_maps(sweep)
    assert grid.layout == (2, 2)
    assert grid.rows == ["vgg", "resnet"] and grid.columns == ["octmnist", "synthetic"]
    assert np.allclose(grid.cells[("resnet", "synthetic")].shown, 0.4)  # mean of seeds 0 and 1
    assert np.allclose(grid.cells[("vgg", "synthetic")].shown, 0.9)
    assert grid.cells[("vgg", "octmnist")].shown is None
    assert grid.missing == ["4_vgg_octmnist_s0: no attention_map.npy (the job did not finish)"]
    assert grid.skipped == ["5_vgg_octmnist_none"]
    figure = map_grid_figure(grid, "sweep")
    titles = [axis.get_title() for axis in figure.axes]
    assert "octmnist\nmap missing: 4_vgg_octmnist_s0" in titles
    assert "synthetic\nmean of 2 maps" not in titles and "mean of 2 maps" in titles  # resnet is the second row
    assert sum(1 for axis in figure.axes if axis.images) == 3 and len(figure.axes) == 2 * 2 + 1  # a colour bar


def test_sweep_with_several_attention_variants_gets_one_column_per_data_set_and_variant(sweep):
    fabricate_job(sweep, "6_resnet_synthetic_static", "resnet", "synthetic", "static", 0, 0.5)
    grid = collect_maps(sweep)
    assert grid.columns == ["octmnist: global", "synthetic: global", "synthetic: static"]
    assert grid.layout == (2, 3)


def test_plot_attention_on_a_sweep_writes_the_grid_and_reports_the_job_without_a_map(sweep, tmp_path, capsys):
    assert load_plot_script().main([str(sweep)]) == 0
    output = capsys.readouterr()
    assert f"wrote {sweep / GRID_PNG}" in output.out
    assert "no map for job 4_vgg_octmnist_s0" in output.err
    assert (sweep / GRID_PNG).read_bytes()[:8] == PNG_MAGIC
    assert Image.open(sweep / GRID_PNG).size == (round((2.2 * 2 + 1.4) * 100), round((2.2 * 2 + 0.8) * 100))
    assert load_plot_script().main([str(sweep), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / GRID_PNG).is_file()


def test_a_sweep_of_plain_runs_only_has_no_map_to_plot(tmp_path, capsys):
    fabricate_job(tmp_path / "sweep", "0_none", "resnet", "synthetic", "none", 0, None)
    assert load_plot_script().main([str(tmp_path / "sweep")]) == 2
    assert "no job with attention" in capsys.readouterr().err
