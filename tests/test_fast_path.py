"""The fast training path, checked on the CPU: data on the device, padded evaluation batches,
the compiled step, no host reads per step, fused optimizers, out-of-memory messages.

The GPU figures themselves come from ``scripts/bench.py --device cuda --parts grid``.
"""

from __future__ import annotations

import collections
import json
import logging
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import torch._inductor.config
import torch.nn.functional as F
from conftest import QUIET, TINY_DATA, compose_config, run_script
from omegaconf import OmegaConf, open_dict
from torch.utils.data import DataLoader

from gsa_exp.benchmark.models import configured_optimizer
from gsa_exp.data.device_batches import DeviceBatches, fits_in_free_memory
from gsa_exp.model.nonfinite import NonFiniteLossError
from gsa_exp.training.builders import build_datamodule, build_model, configure_batches
from gsa_exp.training.memory import GPUOutOfMemoryError
from gsa_exp.training.train import train


def cpu_trainer(devices: int = 1, **options) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=devices,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )


def attached_datamodule(cfg, *, on_device: bool, pad: bool = False):
    datamodule = build_datamodule(cfg.dataset)
    datamodule.setup("fit")
    datamodule.configure_batches(on_device=on_device, memory_share=0.5, pad_eval_batches=pad)
    datamodule.trainer = cpu_trainer()
    return datamodule


def epoch_batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if loader.sampler is not None and hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    return [(images.clone(), labels.clone()) for images, labels in loader]


# -- data on the device ------------------------------------------------------------------------
def test_device_batches_are_the_host_loaders_batches_in_the_same_order(tiny_config):
    cfg = tiny_config(
        "dataset.batch_size=12", "dataset.eval_batch_size=12"
    )  # 80 training images: 6 batches + 8 dropped
    host = attached_datamodule(cfg, on_device=False)
    device = attached_datamodule(cfg, on_device=True)
    for loader_name, expected_batches in (("train_dataloader", 6), ("val_dataloader", 3), ("test_dataloader", 3)):
        host_loader, device_loader = getattr(host, loader_name)(), getattr(device, loader_name)()
        assert isinstance(host_loader, DataLoader) and isinstance(device_loader, DeviceBatches)
        assert len(host_loader) == len(device_loader) == expected_batches
        for epoch in (0, 1):
            host_batches, device_batches = epoch_batches(host_loader, epoch), epoch_batches(device_loader, epoch)
            assert len(host_batches) == len(device_batches) == expected_batches
            for (host_images, host_labels), (images, labels) in zip(host_batches, device_batches):
                assert torch.equal(host_images, images) and torch.equal(host_labels, labels)
    train_loader = device.train_dataloader()
    first, second = epoch_batches(train_loader, 0), epoch_batches(train_loader, 1)
    assert not torch.equal(first[0][0], second[0][0])  # a new order every epoch


def test_a_resumed_epoch_continues_with_the_same_device_batch(tiny_config):
    cfg = tiny_config("dataset.batch_size=12")
    device = attached_datamodule(cfg, on_device=True)
    whole_epoch = epoch_batches(device.train_dataloader(), 0)
    device.load_state_dict({"train_batches_done": 2})  # as from a checkpoint taken mid-epoch
    rest = epoch_batches(device.train_dataloader(), 0)
    assert len(rest) == len(whole_epoch) - 2
    for (expected, _), (images, _) in zip(whole_epoch[2:], rest):
        assert torch.equal(expected, images)


def test_splits_that_do_not_fit_the_free_share_stay_on_the_host_with_one_line(caplog):
    with caplog.at_level(logging.WARNING):
        assert fits_in_free_memory(100 * 2**20, 400 * 2**20, 0.5, "cuda:0")
        assert not fits_in_free_memory(300 * 2**20, 400 * 2**20, 0.5, "cuda:0")
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1
    assert "need 300 MB" in lines[0] and "more than device_memory_share=0.5" in lines[0] and "400 MB free" in lines[0]


def test_the_host_memory_line_of_a_training_run_names_the_config_path(tiny_config, monkeypatch, caplog):
    cfg = tiny_config("performance.data_on_device=true")
    datamodule = build_datamodule(cfg.dataset)
    datamodule.setup("fit")  # 144 grey images of 32 x 32: 0.14 MB
    model = SimpleNamespace(compiled=False, neighbours=None, attention=SimpleNamespace(fixed_batch_size=None))
    configure_batches(datamodule, cfg.performance, model)  # as train.py does
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2**18, 2**30))  # 0.25 MB free on "cuda:0"
    datamodule.trainer = SimpleNamespace(world_size=1, strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))
    with caplog.at_level(logging.WARNING):
        assert isinstance(datamodule.train_dataloader(), DataLoader)
    lines = [record.getMessage() for record in caplog.records if "host memory" in record.getMessage()]
    assert len(lines) == 1 and "more than performance.device_memory_share=0.5 of the 0 MB free on cuda:0" in lines[0]


def test_several_processes_keep_the_host_loader(tiny_config):
    cfg = tiny_config()
    datamodule = build_datamodule(cfg.dataset)
    datamodule.setup("fit")
    datamodule.configure_batches(on_device=True, memory_share=0.5, pad_eval_batches=False)
    datamodule.trainer = cpu_trainer(strategy="ddp_spawn", devices=2)  # each rank needs its own shard
    assert isinstance(datamodule.train_dataloader(), DataLoader)


# -- padded evaluation batches -------------------------------------------------------------------
def test_padding_the_last_evaluation_batch_leaves_every_metric_unchanged(tiny_config):
    cfg = tiny_config("dataset.eval_batch_size=24", "attention=global")  # 32 images: 24 + 8 (padded to 24)
    results = {}
    for pad in (False, True):
        datamodule = build_datamodule(cfg.dataset)
        datamodule.setup("fit")
        datamodule.configure_batches(on_device=False, memory_share=0.5, pad_eval_batches=pad)
        torch.manual_seed(0)
        model = build_model(cfg, datamodule.info)
        model.attention.prepare(*datamodule.bank_images())
        results[pad] = cpu_trainer().validate(model, datamodule=datamodule, verbose=False)[0]
    assert set(results[True]) == set(results[False]) >= {"val/acc", "val/auroc", "val/loss", "val/f1"}
    for key, value in results[False].items():
        assert results[True][key] == pytest.approx(value, abs=1e-6), key

    images, labels = torch.zeros(8, 1, 32, 32, dtype=torch.uint8), torch.arange(8)
    padded_images, padded_labels, count = datamodule.on_after_batch_transfer((images, labels), 0)
    assert padded_images.shape[0] == padded_labels.shape[0] == 24 and count == 8


# -- the compiled step ------------------------------------------------------------------------------
def twin_models(cfg_eager, cfg_compiled):
    datamodule = build_datamodule(cfg_eager.dataset)
    datamodule.setup("fit")
    models = []
    for cfg in (cfg_eager, cfg_compiled):
        torch.manual_seed(0)
        model = build_model(cfg, datamodule.info)
        model.attention.prepare(*datamodule.bank_images())
        models.append(model.train())
    return models


def layer_gradients(gradients: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each layer's gradients (``layer.weight``, ``layer.bias``) as one flat vector."""
    parts: dict[str, list[torch.Tensor]] = collections.defaultdict(list)
    for name, gradient in gradients.items():
        parts[name.rsplit(".", 1)[0]].append(gradient.flatten())
    return {layer: torch.cat(pieces) for layer, pieces in parts.items()}


@pytest.mark.slow  # compiling a ResNet-18 step takes about 40 s on 2 CPU cores
@pytest.mark.parametrize(
    "variant",
    [
        ("backbone=resnet",),
        ("backbone=googlenet",),  # auxiliary heads in the loss, dropout
        ("backbone=resnet", "attention.bank.source=batch"),  # the map from each batch's own pixels
    ],
    ids=["resnet", "googlenet", "resnet-batch-bank"],
)
def test_compiled_and_eager_training_steps_give_the_same_loss_and_gradients(tiny_config, variant):
    overrides = ("attention=global", *variant, "attention.regularization.sparsity=0.1")  # regulariser in the loss
    eager, compiled = twin_models(tiny_config(*overrides), tiny_config(*overrides, "performance.compile=true"))
    assert compiled.compiled and not eager.compiled
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(16, 1, 32, 32, generator=generator), torch.arange(16) % 2
    torch.manual_seed(1)
    eager_loss, eager_logits = eager.training_loss(images, labels)
    eager_loss.backward()
    torch.manual_seed(1)
    with torch._inductor.config.patch(fallback_random=True):  # GoogLeNet's dropout: eager's random numbers
        compiled_loss, compiled_logits = compiled._compiled("training_loss")(images, labels)
    compiled_loss.backward()
    assert compiled_loss.item() == pytest.approx(eager_loss.item(), rel=1e-4)
    assert torch.allclose(compiled_logits, eager_logits, atol=1e-4)
    eager_grads = {name: p.grad for name, p in eager.named_parameters() if p.grad is not None}
    compiled_grads = {name: p.grad for name, p in compiled.named_parameters() if p.grad is not None}
    assert eager_grads.keys() == compiled_grads.keys() and any(n.startswith("attention.") for n in eager_grads)
    # Each layer's gradient (weight and bias together) points the same way (cosine >= 0.999) with the
    # same size (within 1 %). Element-wise bounds do not suit: training-mode BatchNorm on 16 images
    # amplifies another summation order to a few % of single entries (eager with channels_last differs
    # from eager as much), and the map's bias sums cancelling terms over every pixel; a bug gives O(1).
    for layer, gradient in layer_gradients(compiled_grads).items():
        expected = layer_gradients(eager_grads)[layer]
        cosine = F.cosine_similarity(gradient, expected, dim=0).item()
        assert cosine >= 0.999 and gradient.norm().item() == pytest.approx(expected.norm().item(), rel=1e-2), layer
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # checkpoints interchangeable


COMPILED_RUN = [
    *TINY_DATA,
    *QUIET,
    "dataset.eval_batch_size=24",  # 32 evaluation images: the last batch is padded
    "scheduler=none",  # the same learning rates whether the run is one epoch or two
    "trainer.num_sanity_val_steps=0",
    "trainer.deterministic=true",
    "performance.compile=true",
    "performance.data_on_device=true",
]


@pytest.mark.slow  # three compiled runs
def test_a_compiled_run_resumes_exactly_and_its_checkpoints_evaluate_eagerly(tmp_path):
    reference = run_script("train.py", *COMPILED_RUN, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr[-3000:]
    first = run_script("train.py", *COMPILED_RUN, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    resumed = run_script(
        "train.py",
        *COMPILED_RUN,
        "trainer.max_epochs=2",
        f"ckpt_path={checkpoint}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert json.loads((tmp_path / "resumed" / "metrics.json").read_text()) == expected

    best = tmp_path / "reference" / "checkpoints" / "best.ckpt"
    evaluated = run_script("eval.py", f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}")  # eager
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    eager_metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for key in ("test/acc", "test/auroc", "test/loss"):
        assert eager_metrics[key] == pytest.approx(expected[key], abs=1e-3), key


# -- no host reads per step ---------------------------------------------------------------------------
HOST_READS = ("item", "__bool__", "__float__", "__int__", "tolist", "cpu")


def host_reads_of_a_run(monkeypatch, tmp_path, steps: int) -> collections.Counter:
    """Every read of a tensor's value by the host during a whole run (fit, validate, test)."""
    counts: collections.Counter = collections.Counter()
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, __name=name, __original=original, **kwargs):
            counts[__name] += 1
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    cfg = compose_config(
        [
            *TINY_DATA,
            "trainer.enable_model_summary=false",  # the progress bar stays on: it must not read every step
            "dataset.batch_size=4",
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={steps}",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            "trainer.num_sanity_val_steps=0",
            "trainer.log_every_n_steps=50",
            "optimizer.fused=true",  # the per-tensor Adam reads its step counter each step
            "performance.data_on_device=true",
        ],
        output_dir=tmp_path / f"steps-{steps}",
    )
    train(cfg)
    monkeypatch.undo()
    return counts


def test_training_steps_read_nothing_back_between_logging_intervals(monkeypatch, tmp_path):
    four, twelve = host_reads_of_a_run(monkeypatch, tmp_path, 4), host_reads_of_a_run(monkeypatch, tmp_path, 12)
    assert sum(four.values()) > 0  # the spy sees the reads at epoch end (metrics, checkpoints)
    assert twelve == four  # eight more steps, not one more read


def test_a_non_finite_loss_is_named_at_its_own_step_whatever_the_logging_interval(tiny_config):
    messages = []
    for interval in (1, 50):
        cfg = tiny_config("debug=limit", "optimizer=sgd", "optimizer.lr=1e30", f"trainer.log_every_n_steps={interval}")
        with pytest.raises(NonFiniteLossError) as raised:
            train(cfg)
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    # step 0 is finite; SGD at lr 1e30 breaks the weights, and step 1's loss is NaN (read back 3 or 49 steps later)
    assert messages[0].startswith("non-finite loss (nan) at epoch 0, step 1 (batch 1): training stopped")


# -- optimizers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("switch", ["fused", "foreach"])
def test_optimizer_implementation_switches_reach_torch(tiny_config, optimizer, switch):
    cfg = tiny_config(f"optimizer={optimizer}", f"optimizer.{switch}=true")
    datamodule = build_datamodule(cfg.dataset)
    datamodule.setup("fit")
    built, _ = configured_optimizer(build_model(cfg, datamodule.info))
    assert built.defaults[switch] is True
    other = "foreach" if switch == "fused" else "fused"
    assert not built.defaults[other]


def test_the_gpu_trainer_turns_on_the_fast_path():  # its keys' bad values: test_reliability.BAD_INPUTS
    gpu = compose_config(["trainer=gpu"])
    assert gpu.optimizer.fused is True and gpu.performance.data_on_device is True
    assert gpu.performance.compile_mode == "reduce-overhead"
    assert compose_config(["trainer=gpu", "optimizer=sgd"]).optimizer.fused is True
    assert gpu.dataset.pin_memory is True and gpu.performance.channels_last is True
    default = compose_config([])
    assert default.optimizer.fused is None and default.performance.data_on_device is False  # CPU: as before
    assert default.dataset.pin_memory is False


def test_the_speed_settings_are_their_own_group_chosen_with_the_trainer():
    default = OmegaConf.to_container(compose_config([]))
    trainer_alone = OmegaConf.to_container(compose_config(["trainer=gpu", "performance=default"]))
    assert {key for key in default if default[key] != trainer_alone[key]} == {"trainer"}  # no global package
    speed_alone = compose_config(["performance=gpu"])
    assert speed_alone.trainer.accelerator == "auto" and speed_alone.trainer.precision == "32-true"
    assert speed_alone.optimizer.fused is True and speed_alone.dataset.pin_memory is True
    assert speed_alone.performance == compose_config(["trainer=gpu"]).performance
    for trainer in ("default", "cpu", "ddp"):
        assert compose_config([f"trainer={trainer}"]).performance == compose_config([]).performance


# -- out of GPU memory ----------------------------------------------------------------------------------
class OutOfMemoryOnSecondEpoch(pl.Callback):
    """What CUDA raises when a batch does not fit, raised in the second epoch (after a checkpoint)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_gpu_memory_names_the_sizes_to_lower_and_keeps_the_checkpoints(tiny_config, tmp_path):
    cfg = tiny_config("debug=limit")
    with open_dict(cfg):
        cfg.callbacks.out_of_memory = {"_target_": "test_fast_path.OutOfMemoryOnSecondEpoch"}
    with pytest.raises(GPUOutOfMemoryError) as raised:
        train(cfg)
    message = str(raised.value)
    assert message.startswith("GPU out of memory with dataset.batch_size=16 (evaluation: dataset.eval_batch_size=32)")
    assert "dataset.image_size=32" in message and "Lower dataset.batch_size" in message
    assert "Tried to allocate 2.00 GiB" in message and str(tmp_path / "run") in message
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()  # the first epoch's checkpoint is kept
