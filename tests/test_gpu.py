"""The GPU settings (trainer=gpu: mixed precision, channels_last, torch.compile) on a real GPU.

Skipped, with the reason shown, on a machine without CUDA; run them where a GPU is:
``python -m pytest tests/test_gpu.py``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import QUIET, TINY_DATA, compose_config, run_script

from gsa_exp.training.builders import build_datamodule, build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (trainer=gpu)")

TWO_EPOCHS = [*TINY_DATA, *QUIET, "trainer.max_epochs=2", "attention=global", "backbone=resnet"]


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "32-true"])
def test_gpu_trainer_trains_and_writes_every_output(tmp_path, precision):
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py", *TWO_EPOCHS, "trainer=gpu", f"trainer.precision={precision}", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/acc", "test/auroc", "val/acc"):
        assert math.isfinite(metrics[key]) and 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
    attention_map = np.load(run_dir / "attention_map.npy")
    assert attention_map.shape == (32, 32) and attention_map.dtype == np.float32
    assert np.isfinite(attention_map).all() and attention_map.min() >= 0.0 and attention_map.max() <= 1.0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def gpu_model(*overrides: str):
    cfg = compose_config([*TINY_DATA, *QUIET, "attention=global", "backbone=resnet", *overrides])
    datamodule = build_datamodule(cfg.dataset)
    datamodule.setup("fit")
    torch.manual_seed(0)
    model = build_model(cfg, datamodule.info)
    model.attention.prepare(*datamodule.bank_images())
    images, _ = next(iter(datamodule.train_dataloader()))
    return model.cuda().eval(), images.cuda()


def test_channels_last_and_compile_give_the_plain_models_logits():
    plain, images = gpu_model()
    with torch.no_grad():
        expected = plain(images)
    for override in ("performance.channels_last=true", "performance.compile=true"):
        model, _ = gpu_model(override)
        with torch.no_grad():
            logits = model(images)
        # TF32 convolutions (cuDNN's default) round differently per memory layout: about 1e-3 relative
        assert torch.allclose(logits, expected, rtol=1e-2, atol=1e-2), override
        assert set(model.state_dict()) == set(plain.state_dict()), override  # checkpoints keep their keys


def test_attention_map_stays_float32_under_autocast():
    model, _ = gpu_model()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        attention_map = model.attention.compute_map()
    assert attention_map.dtype == torch.float32
    assert torch.allclose(attention_map, model.attention.compute_map())


# -- the fast path: data on the GPU, compiled CUDA-graph step, fused optimizer --------------------------
def test_trainer_gpu_keeps_the_splits_on_the_gpu():
    import pytorch_lightning as pl

    from gsa_exp.data.device_batches import DeviceBatches

    cfg = compose_config([*TINY_DATA, "trainer=gpu"])
    datamodule = build_datamodule(cfg.dataset)
    datamodule.setup("fit")
    datamodule.configure_batches(on_device=True, memory_share=0.5, pad_eval_batches=False)
    datamodule.trainer = pl.Trainer(accelerator="gpu", devices=1, logger=False, enable_progress_bar=False)
    loader = datamodule.train_dataloader()
    assert isinstance(loader, DeviceBatches)
    images, labels = next(iter(loader))
    assert images.is_cuda and labels.is_cuda and images.dtype == torch.uint8


def test_compiled_cuda_graph_step_gives_the_eager_loss():
    eager, images = gpu_model()
    compiled, _ = gpu_model("performance.compile=true", "performance.compile_mode=reduce-overhead")
    labels = torch.arange(images.shape[0], device="cuda") % 2
    eager.train()
    compiled.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        expected, _ = eager.training_loss(images.float() / 255, labels)
        for _ in range(3):  # warm-up and recording, then replays
            torch.compiler.cudagraph_mark_step_begin()
            loss, _ = compiled._compiled("training_loss")(images.float() / 255, labels)
            loss = loss.clone()
    assert loss.item() == pytest.approx(expected.item(), rel=2e-2)  # bf16 rounding


@pytest.mark.parametrize(
    "backbone", ["googlenet", "resnet"]
)  # auxiliary heads; the default (scripts/gpu_check.sh runs all four)
def test_compiled_fast_path_trains_end_to_end(tmp_path, backbone):
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py",
        *TINY_DATA,
        *QUIET,
        "trainer.max_epochs=2",
        f"backbone={backbone}",
        "trainer=gpu",
        "performance.compile=true",
        "dataset.eval_batch_size=24",  # the last evaluation batch is padded
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/acc", "test/auroc", "val/acc"):
        assert math.isfinite(metrics[key]) and 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
