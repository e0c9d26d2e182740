"""Performance work, checked for correctness (never for timing): the benchmark script, the
fast paths behind its figures, and the GPU/speed settings.

Covered elsewhere, not repeated here (tests/test_global_attention.py):
* the cached eval map equals the freshly computed one and is recomputed after a parameter
  update: ``test_eval_map_is_cached_until_a_parameter_changes``;
* one map per training forward of the module: ``test_map_is_computed_once_per_training_forward``
  (here: once per step of a real Lightning fit);
* the chunked bank equals the one-shot bank, raw and compressed: ``test_chunked_bank_equals_one_shot_bank``
  (here: the one-pass compression against a plain float64 PCA).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import QUIET, TINY_DATA, compose_config, run_script
from omegaconf import open_dict
from pytorch_lightning.callbacks import ModelCheckpoint

from gsa_exp.attention import list_attention
from gsa_exp.attention.bank import BankOptions, _rows, build_bank
from gsa_exp.attention.global_attention import BankConv2d
from gsa_exp.benchmark.grid import combined_grid_results, paper_grid_hours
from gsa_exp.benchmark.suite import TARGETS, Settings
from gsa_exp.model.metrics import classification_metrics
from gsa_exp.training.builders import build_datamodule, build_model, build_trainer


def tiny_model(*overrides: str):
    cfg = compose_config([*TINY_DATA, *QUIET, *overrides])
    datamodule = build_datamodule(cfg.dataset)
    datamodule.setup("fit")
    torch.manual_seed(0)
    model = build_model(cfg, datamodule.info)
    if model.attention.needs_training_data:
        model.attention.prepare(*datamodule.bank_images())
    return cfg, datamodule, model


def quiet_trainer(cfg, tmp_path, callbacks=(), **changes):
    with open_dict(cfg):
        cfg.trainer.update({"default_root_dir": str(tmp_path), "enable_checkpointing": bool(callbacks), **changes})
    return build_trainer(cfg, list(callbacks), loggers=False)


# -- the map in a real fit -----------------------------------------------------------------
def test_map_is_computed_once_per_training_step_and_once_per_validation_in_a_fit(tmp_path):
    cfg, datamodule, model = tiny_model("attention=global", "attention.bank.components=null")
    stages = []
    original = model.attention.compute_map

    def counted():
        stages.append("train" if model.training else "eval")
        return original()

    model.attention.compute_map = counted
    trainer = quiet_trainer(
        cfg, tmp_path, max_epochs=2, limit_train_batches=3, limit_val_batches=2, num_sanity_val_steps=0
    )
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 6
    assert stages.count("train") == 6  # one map per optimizer step, none per sample
    assert stages.count("eval") == 2  # two validation epochs of two batches: the cached map, once each


# -- training metrics: updated and logged once per epoch -----------------------------------
def test_epoch_train_metrics_equal_the_metrics_of_every_step_output(tmp_path):
    cfg, datamodule, model = tiny_model("attention=none")
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = model.probabilities

    def recorded(logits):
        probabilities = original(logits)
        seen.append(probabilities.detach().clone())
        return probabilities

    model.probabilities = recorded
    labels = []
    model.on_train_batch_start = lambda batch, batch_idx: labels.append(batch[1].clone())
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="train/auroc", mode="max")
    trainer = quiet_trainer(
        cfg,
        tmp_path,
        callbacks=[checkpoint],
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=datamodule)
    expected = classification_metrics(model.data_info.task, model.data_info.num_classes, "train/")
    expected.update(torch.cat(seen), torch.cat(labels))
    for name, value in expected.compute().items():
        assert torch.allclose(trainer.callback_metrics[name], value, atol=1e-6), name
    assert checkpoint.best_model_score is not None  # a metric logged at epoch end can be monitored
    assert model._train_outputs == []


# -- the bank's fast paths -------------------------------------------------------------------
def random_uint8(count: int, size: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, channels, size, size), generator=generator, dtype=torch.uint8)


def options(**changes) -> BankOptions:
    values = dict(source="train", num_images=None, components=None, standardize=True, chunk_size=1024, seed=0)
    return BankOptions(**{**values, **changes})


def test_standardised_rows_match_the_textbook_formula():
    images = random_uint8(50, 9, channels=2)
    images[3, 1] = 17  # a constant row becomes zeros
    rows = images.reshape(100, -1).double() / 255
    expected = (rows - rows.mean(dim=1, keepdim=True)) / rows.std(dim=1, keepdim=True).clamp_min(1e-6)
    bank = build_bank(images, torch.arange(50) % 2, options())
    assert torch.allclose(bank.reshape(100, -1).double(), expected, atol=1e-5)
    assert torch.equal(bank[7], torch.zeros(9, 9))


def test_rows_of_a_slice_equal_rows_of_the_same_indices():
    images = random_uint8(20, 6, channels=3)
    for standardize in (False, True):
        by_slice = _rows(images, slice(4, 13), standardize)
        by_index = _rows(images, torch.arange(4, 13), standardize)
        assert torch.equal(by_slice, by_index)


@pytest.mark.parametrize("chunk_size", [64, 1000])
def test_one_pass_compression_matches_a_float64_pca(chunk_size):
    count, size, components = 600, 8, 6  # more rows than pixels: the pixel Gram path
    images = random_uint8(count, size)
    images[::3] //= 2  # a spread of brightness, so the leading components are well separated
    bank = build_bank(images, torch.arange(count) % 3, options(components=components, chunk_size=chunk_size))
    rows = images.reshape(count, -1).double()
    rows = (rows - rows.mean(dim=1, keepdim=True)) / rows.std(dim=1, keepdim=True)
    mean = rows.mean(dim=0)
    eigenvalues, eigenvectors = torch.linalg.eigh((rows - mean).T @ (rows - mean))
    top = torch.argsort(eigenvalues, descending=True)[:components]
    reference = torch.cat([mean.unsqueeze(0), (eigenvectors[:, top] * eigenvalues[top].sqrt()).T])
    reference = (reference - reference.mean(dim=1, keepdim=True)) / reference.std(dim=1, keepdim=True)
    flat = bank.reshape(components + 1, -1).double()
    signs = torch.sign((flat * reference).sum(dim=1, keepdim=True))  # components are defined up to sign
    assert torch.allclose(flat * signs, reference, atol=1e-4)


@pytest.mark.parametrize(("kind", "bias"), [("one", True), ("hidden", True), ("one", False)])
def test_bank_product_equals_the_1x1_convolution(kind, bias):
    out_channels = 1 if kind == "one" else 5
    layer = BankConv2d(7, out_channels, 1, normalize_fan_in=True)
    if not bias:
        layer.bias = None
    torch.nn.init.normal_(layer.weight)
    bank = torch.randn(1, 7, 6, 5, requires_grad=True)
    product = layer(bank)
    convolution = F.conv2d(bank, layer.weight * layer.weight_scale, layer.bias)
    assert torch.allclose(product, convolution, atol=1e-5)
    (product * convolution.detach()).sum().backward()
    product_grad = layer.weight.grad.clone()
    layer.weight.grad = None
    (convolution * convolution.detach()).sum().backward()
    assert torch.allclose(product_grad, layer.weight.grad, atol=1e-4)


# -- speed settings --------------------------------------------------------------------------
def test_gpu_trainer_config_sets_precision_layout_and_pinned_memory():
    default = compose_config([])
    assert default.performance.channels_last is False and default.performance.compile is False
    gpu = compose_config(["trainer=gpu"])
    assert gpu.trainer.precision == "bf16-mixed" and gpu.trainer.accelerator == "gpu"
    assert gpu.trainer.max_epochs == default.trainer.max_epochs  # the rest of trainer/default is kept
    assert gpu.performance.channels_last is True and gpu.dataset.pin_memory is True
    fp16 = compose_config(["trainer=gpu", "trainer.precision=16-mixed", "performance.channels_last=false"])
    assert fp16.trainer.precision == "16-mixed" and fp16.performance.channels_last is False


def outputs_and_gradients(model, images, labels):
    """Eval-mode logits and gradients (BatchNorm on running statistics: a well-conditioned comparison;
    training-mode statistics of tiny batches amplify rounding differences many times)."""
    model.eval()
    model.zero_grad(set_to_none=True)
    logits = model(images)
    F.cross_entropy(logits, labels).backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), gradients


def assert_same_model_behaviour(reference, changed, tolerance):
    """Same logits (to ``tolerance``) and gradients, up to float rounding.

    Gradients are compared relative to each tensor's largest entry, within 1 %: another
    convolution algorithm sums in another order, and the backward pass's cancellations
    leave ~0.5 % of the largest entry (seen on CPU); a layout or compilation bug gives O(1).
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(8, 1, 32, 32, generator=generator)
    labels = torch.arange(8) % 2
    expected_logits, expected_grads = outputs_and_gradients(reference, images, labels)
    logits, grads = outputs_and_gradients(changed, images, labels)
    assert torch.allclose(logits, expected_logits, atol=tolerance)
    assert expected_grads.keys() == grads.keys()
    for name, gradient in grads.items():
        scale = expected_grads[name].abs().max().item()
        assert torch.allclose(gradient, expected_grads[name], rtol=0, atol=1e-2 * scale + 1e-12), name


def test_channels_last_gives_the_eager_results():
    _, _, reference = tiny_model("attention=global")
    _, _, changed = tiny_model("attention=global", "performance.channels_last=true")
    weight = changed.backbone.layer1[0].conv1.weight  # 64 input channels: the two layouts differ
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert changed.state_dict().keys() == reference.state_dict().keys()
    assert_same_model_behaviour(reference, changed, tolerance=1e-4)


@pytest.mark.slow  # compiling a ResNet-18 forward and backward takes minutes on a small CPU
def test_compiled_backbone_gives_the_eager_results():
    _, _, reference = tiny_model("attention=global")
    _, _, changed = tiny_model("attention=global", "performance.compile=true")
    assert changed.state_dict().keys() == reference.state_dict().keys()  # compiled in place
    assert_same_model_behaviour(reference, changed, tolerance=1e-4)


# -- the benchmark script ----------------------------------------------------------------------
def test_quick_benchmark_emits_every_figure_as_a_finite_positive_number():
    done = run_script("scripts/bench.py", "--quick", "--json", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    required = [
        *(key for key in TARGETS if "bare" not in key and "grid" not in key),  # --parts grid: its own test
        "train_step_ratio_global_vs_none",
        "infer_ratio_global_vs_none",
        "bank_build_seconds_60k_28px",
        "bank_peak_bytes_ratio_60k_28px",
        *(f"bank_compressed_bytes_{n}" for n in ("1k", "10k", "60k")),
        *(
            f"{key}_{backbone}"
            for key in ("train_step_ratio_global_vs_none", "infer_ratio_global_vs_none")
            for backbone in (*Settings().backbones, "timm_vit_tiny_patch16_224")  # a ViT through backbone=timm
        ),
    ]
    for key in required:
        value = results[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
    assert results["settings"]["quick"] is True and results["machine"]


def test_the_attention_part_compares_any_registered_variants_with_none():
    args = ("--quick", "--json", "--parts", "attention", "--backbones", "resnet", "--attentions", "local", "static")
    args += ("--timm",)  # no timm model: the families' rows alone
    done = run_script("scripts/bench.py", *args, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    for variant in ("global", "local", "static"):  # global, which the targets are stated for, always
        for key in (f"train_step_ratio_{variant}_vs_none", f"infer_ratio_{variant}_vs_none_resnet"):
            assert math.isfinite(results[key]) and results[key] > 0, key
    assert not any("global_batch" in key or "timm" in key for key in results)
    assert results["train_samples_per_second"] == pytest.approx(2 / results["train_step_seconds_global"])


def test_the_benchmark_offers_every_registered_variant_but_none():
    done = run_script("scripts/bench.py", "--attentions", "nothing")
    assert done.returncode == 2
    assert all(name in done.stderr for name in list_attention() if name != "none")


def test_quick_grid_benchmark_emits_every_throughput_key_finite():
    done = run_script("scripts/bench.py", "--quick", "--parts", "grid", "--json", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    for backbone in Settings().backbones:
        rates = [results[f"{kind}_img_per_s_{backbone}"] for kind in ("gpu", "bare_eager", "bare_compiled")]
        assert all(math.isfinite(rate) and rate > 0 for rate in rates), (backbone, rates)
        ratio = results[f"ratio_framework_vs_compiled_bare_{backbone}"]
        assert ratio == rates[0] / rates[2]
        # --quick: the framework runs eager (no compilation on a CPU), so its eager figure is the same run
        assert results[f"framework_eager_img_per_s_{backbone}"] == rates[0]
        assert results[f"ratio_framework_compiled_vs_eager_{backbone}"] == 1.0
    hours = results["paper_grid_hours_estimate"]
    assert math.isfinite(hours) and hours > 0
    assert paper_grid_hours({b: results[f"gpu_img_per_s_{b}"] for b in Settings().backbones}) == hours
    assert results["settings"]["grid"]["compile_backend"] == "aot_eager"  # --quick on a CPU


def test_grid_results_of_one_backbone_each_combine_into_one_with_the_grids_hours():
    def part(backbone: str, rate: float) -> dict:
        return {
            "machine": "m",
            "settings": {"backbones": [backbone], "quick": False},
            f"gpu_img_per_s_{backbone}": rate,
            "paper_grid_hours_estimate": paper_grid_hours({backbone: rate}),
        }

    combined = combined_grid_results([part("resnet", 2_000.0), part("densenet", 500.0)])
    assert combined["gpu_img_per_s_resnet"] == 2_000.0 and combined["gpu_img_per_s_densenet"] == 500.0
    assert combined["paper_grid_hours_estimate"] == paper_grid_hours({"resnet": 2_000.0, "densenet": 500.0})
    assert combined["settings"]["backbones"] == ["resnet", "densenet"]


def test_paper_grid_hours_follow_the_grids_image_counts():
    # 1,000 img/s for each of 4 backbones: 6 runs x 100 epochs x (4,708 + 97,477 + 28,709 x (48/28)^2) images each
    images = 6 * 100 * (4_708 + 97_477 + 28_709 * (48 / 28) ** 2)
    expected = 4 * images / 1_000 / 3600
    assert paper_grid_hours({name: 1_000.0 for name in ("a", "b", "c", "d")}) == pytest.approx(expected)


@pytest.mark.slow  # three framework runs in fresh processes
def test_quick_concurrency_benchmark_compares_two_jobs_at_once_with_one():
    done = run_script(
        "scripts/bench.py", "--quick", "--parts", "concurrency", "--backbones", "resnet", "--json", timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    together, speedup = results["concurrent_2_jobs_img_per_s_resnet"], results["concurrent_jobs_speedup_resnet"]
    assert math.isfinite(together) and together > 0 and math.isfinite(speedup) and speedup > 0
    assert results["settings"]["concurrent_jobs"] == 2
