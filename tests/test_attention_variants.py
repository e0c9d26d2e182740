"""The attention variants side by side: local (CBAM), static, global with a per-batch bank; maps and figures."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import CONF, QUIET, ROOT, TINY_DATA, compose_config, perturb, run_script, yaml_options
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gsa_exp.attention import GlobalSpatialAttention, LocalSpatialAttention, StaticSpatialAttention
from gsa_exp.config.validation import ConfigError, option_errors_located, validate_train_config
from gsa_exp.data.splits import MULTICLASS, DataInfo
from gsa_exp.training.builders import build_datamodule, build_model
from gsa_exp.training.interpret import OVERLAYS_PNG, SAMPLES_NPZ, sample_rows
from gsa_exp.training.train import train

SIZE = 12
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- builders: the YAML's options, with what each test chooses -----------------------------
def make_local(channels: int = 1, **changes) -> LocalSpatialAttention:
    return LocalSpatialAttention(
        in_channels=channels, image_size=SIZE, num_train=20, **yaml_options("attention", "local", **changes)
    )


def make_static(**changes) -> StaticSpatialAttention:
    options = yaml_options("attention", "static", **{"lr_multiplier": 1.0, **changes})
    return StaticSpatialAttention(in_channels=1, image_size=SIZE, num_train=20, **options)


def make_global(
    source: str = "train", batch_size: int | None = None, channels: int = 1, **changes
) -> GlobalSpatialAttention:
    bank = dict(source=source, num_images=None, components=None, chunk_size=64, batch_size=batch_size)
    classifier = dict(hidden=8, init="constant", init_smoothing=1)
    options = yaml_options(
        "attention", "global", **{"bank": bank, "classifier": classifier, "lr_multiplier": 1.0, **changes}
    )
    attention = GlobalSpatialAttention(in_channels=channels, image_size=SIZE, num_train=20, **options)
    if source == "train":
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (20, channels, SIZE, SIZE), generator=generator, dtype=torch.uint8)
        attention.prepare(images, torch.arange(20) % 2)
    return attention


VARIANTS = {
    "global": lambda **changes: make_global(**changes),
    "global-batch": lambda **changes: make_global("batch", batch_size=4, **changes),
    "static": make_static,
    "local": make_local,
}


def images(count: int = 4, channels: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, channels, SIZE, SIZE, generator=generator) * 0.8 + 0.1  # positive: ratios are defined


# -- shapes, gradients, what a map depends on -----------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_output_keeps_the_input_shape_and_maps_have_the_image_shape(variant):
    attention = VARIANTS[variant]()
    batch = images(4, channels=1)
    attention.train()
    assert attention(batch).shape == batch.shape
    attention.eval()
    with torch.no_grad():
        assert attention(batch).shape == batch.shape
    shared, per_image = attention.shared_map(), attention.last_image_maps()
    if variant in ("global", "static"):
        assert shared.shape == (SIZE, SIZE) and per_image is None
    else:  # one map per image (local) or per batch (global-batch): recorded in eval
        assert shared is None and per_image.shape == (4, SIZE, SIZE)
    maps = shared if shared is not None else per_image
    assert maps.min() > 0 and maps.max() < 1


def test_local_attention_on_three_channels_pools_over_channels():
    attention = make_local(channels=3)
    perturb(attention)
    batch = images(2, channels=3)
    attention.eval()
    with torch.no_grad():
        output = attention(batch)
    maps = attention.last_image_maps()
    assert output.shape == batch.shape and maps.shape == (2, SIZE, SIZE)
    assert torch.allclose(output, batch * maps[:, None])  # one spatial map, broadcast over the channels


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_every_parameter(variant):
    attention = VARIANTS[variant]()
    attention.train()
    batch, target = images(4), torch.rand(4, 1, SIZE, SIZE)
    ((attention(batch) - target) ** 2).mean().backward()
    parameters = dict(attention.named_parameters())
    assert parameters
    for name, parameter in parameters.items():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def effective_maps(attention: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """What the attention multiplied each image by (multiply mode), per image."""
    attention.eval()
    with torch.no_grad():
        return (attention(batch) / batch)[:, 0]


@pytest.mark.parametrize("variant", ["global", "static", "local"])
def test_only_the_local_map_depends_on_the_image(variant):
    attention = VARIANTS[variant]()
    perturb(attention)
    maps = effective_maps(attention, torch.cat([images(1, seed=1), images(1, seed=2)]))
    assert maps[0].std() > 1e-3  # not uniform, so "equal" below says something
    if variant == "local":
        assert (maps[0] - maps[1]).abs().max() > 1e-3
        assert torch.allclose(maps, attention.last_image_maps(), atol=1e-6)
    else:
        assert torch.allclose(maps[0], maps[1], atol=1e-6)
        assert torch.allclose(maps[0], attention.shared_map(), atol=1e-6)


def test_batch_bank_map_is_shared_within_a_batch_and_changes_with_the_batch():
    attention = make_global("batch", batch_size=4)
    perturb(attention)
    first = effective_maps(attention, images(4, seed=1))
    second = effective_maps(attention, images(4, seed=2))
    for image_map in first[1:]:
        assert torch.allclose(image_map, first[0], atol=1e-6)
    assert (first[0] - second[0]).abs().max() > 1e-3
    assert attention.classifier[0].weight.shape[1] == 4  # K = batch_size x channels


@pytest.mark.parametrize("variant", ["static", "local", "global-batch"])
def test_residual_mode_and_temperature(variant):
    attention = VARIANTS[variant](mode="residual", temperature=4.0)
    batch = images(4)
    attention.eval()
    with torch.no_grad():
        output = attention(batch)
    expected_gate = torch.sigmoid(torch.tensor(2.0 / 4.0))  # zero weights at init: logits = init_bias
    assert torch.allclose(output, batch * (1 + expected_gate), atol=1e-5)


# -- regularisers and freezing ---------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_regularizers_use_the_step_maps_and_push_the_map_down(variant):
    attention = VARIANTS[variant](regularization=dict(sparsity=1.0, binarization=0.5))
    attention.train()
    batch = images(4)
    attention(batch)
    penalty = attention.regularization_loss()
    maps = attention._step_maps
    expected = torch.stack([m.mean() + 0.5 * (m * (1 - m)).mean() for m in maps]).mean()
    assert torch.allclose(penalty, expected)
    before = effective_maps(attention, batch).mean()
    attention.train()
    optimizer = torch.optim.SGD(attention.parameters(), lr=5.0)
    penalty.backward()
    optimizer.step()
    assert effective_maps(attention, batch).mean() < before - 1e-4
    attention.regularization = type(attention.regularization)(sparsity=0.0, binarization=0.0)
    attention.train()
    attention(batch)
    assert attention.regularization_loss() is None


SMALL_STEPS = ["dataset.image_size=16", "dataset.batch_size=8"]  # training steps cheap enough for three epochs


class ParameterTrace(pl.Callback):
    """Copies of the attention's and the backbone's parameters at the start and after every epoch."""

    def __init__(self) -> None:
        self.attention: list[torch.Tensor] = []
        self.backbone: list[torch.Tensor] = []

    def _record(self, pl_module: pl.LightningModule) -> None:
        self.attention.append(torch.cat([p.detach().flatten().clone() for p in pl_module.attention.parameters()]))
        self.backbone.append(torch.cat([p.detach().flatten().clone() for p in pl_module.backbone.parameters()]))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(pl_module)


@pytest.mark.parametrize("attention", ["global", "static", "local"])
def test_freezing_stops_attention_updates_after_the_configured_epochs_in_a_real_fit(tiny_config, attention):
    cfg = tiny_config(f"attention={attention}", "attention.freeze_after_epochs=1", *SMALL_STEPS)
    datamodule = build_datamodule(cfg.dataset)
    datamodule.setup("fit")
    model = build_model(cfg, datamodule.info)
    if model.attention.needs_training_data:
        model.attention.prepare(*datamodule.bank_images())
    trace = ParameterTrace()
    trainer = pl.Trainer(
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=[trace],
    )
    trainer.fit(model, datamodule=datamodule)
    start, epoch0, epoch1, epoch2 = trace.attention
    assert not torch.equal(start, epoch0)  # epoch 0 trains the attention
    assert torch.equal(epoch0, epoch1) and torch.equal(epoch1, epoch2)  # frozen from epoch 1 on
    assert not torch.equal(trace.backbone[1], trace.backbone[2])  # while the backbone keeps learning
    assert not any(p.requires_grad for p in model.attention.parameters())


# -- bank.source=batch: fixed batch size --------------------------------------------------------
def test_batch_bank_refuses_a_batch_of_the_wrong_size_naming_both_sizes():
    attention = make_global("batch", batch_size=8)
    with pytest.raises(ValueError) as error:
        attention(images(5))
    message = str(error.value)
    assert "bank.batch_size=8" in message and "a batch of 5" in message
    assert "set batch_size=8" in message and "attention." not in message  # the module names its own options
    with pytest.raises(ValueError) as error:  # a run reports it with the config paths (train, eval, predict)
        with option_errors_located():
            attention(images(5))
    message = str(error.value)
    assert "attention.bank.batch_size=8" in message and "set dataset.batch_size=8" in message


def test_config_validation_checks_the_batch_bank_sizes(tiny_config):
    with pytest.raises(ConfigError, match=r"attention.bank.batch_size=8: must equal dataset.batch_size=16"):
        validate_train_config(tiny_config("attention.bank.source=batch", "attention.bank.batch_size=8"))
    with pytest.raises(
        ConfigError, match=r"dataset.eval_batch_size=40: must be a multiple of attention.bank.batch_size=16"
    ):
        validate_train_config(tiny_config("attention.bank.source=batch", "dataset.eval_batch_size=40"))
    validate_train_config(tiny_config("attention.bank.source=batch"))  # batch_size follows dataset.batch_size


def batch_bank_model(tiny_config) -> pl.LightningModule:
    cfg = tiny_config("attention=global", "attention.bank.source=batch", "attention.bank.batch_size=16")
    info = DataInfo(task=MULTICLASS, num_classes=2, channels=1, image_size=SIZE, num_train=48, mean=[0.5], std=[0.5])
    model = build_model(cfg, info)
    perturb(model.attention, scale=1.0)
    return model.eval()


def test_infer_evaluates_every_image_once_in_full_batches(tiny_config):
    model = batch_bank_model(tiny_config)
    batch = images(40, seed=3)
    with torch.no_grad():
        with pytest.raises(ValueError, match="a batch of 40"):
            model(batch)
        model.reset_eval_context()
        logits = model.infer(batch)
        assert logits.shape == (40, 2)
        assert torch.allclose(logits[:16], model(batch[:16]), atol=1e-5)
        assert torch.allclose(logits[16:32], model(batch[16:32]), atol=1e-5)
        # the short last chunk (8 images) is completed by the 8 images evaluated just before it
        assert torch.allclose(logits[32:], model(batch[24:40])[-8:], atol=1e-5)
        maps = model.attention_maps
        assert maps.shape == (40, SIZE, SIZE)
        assert torch.equal(maps[0], maps[15]) and not torch.equal(maps[0], maps[16])
        # the same images in evaluation batches of 32 + 8: the same outputs (any multiple of 16 gives these)
        model.reset_eval_context()
        pieces = torch.cat([model.infer(batch[:32]), model.infer(batch[32:])])
        assert torch.allclose(pieces, logits, atol=1e-5)
        # fewer images than a batch: completed by repeats of themselves
        model.reset_eval_context()
        few = model.infer(batch[:5])
        assert torch.allclose(few, model(torch.cat([batch[:5]] * 4)[-16:])[-5:], atol=1e-5)


# -- end to end -----------------------------------------------------------------------------
def assert_metrics_in_range(metrics: dict[str, float]) -> None:
    for stage in ("val", "test"):
        for name in ("acc", "bal_acc", "auroc", "f1", "map_auroc"):
            assert 0.0 <= metrics[f"{stage}/{name}"] <= 1.0, f"{stage}/{name}"
        assert metrics[f"{stage}/loss"] >= 0.0


@pytest.mark.parametrize(
    ("backbone", "attention"),
    [
        ("resnet", ["attention=local"]),
        ("vgg", ["attention=local"]),
        ("resnet", ["attention=static"]),
        ("vgg", ["attention=static"]),
        ("resnet", ["attention=local", "attention.placement=stages"]),
        ("vgg", ["attention=local", "attention.placement=stages"]),
        ("resnet", ["attention=global", "attention.bank.source=batch"]),
    ],
    ids=lambda value: value if isinstance(value, str) else ",".join(value),
)
def test_fast_dev_run_of_each_variant_scores_and_draws_its_map(tiny_config, tmp_path, backbone, attention):
    metrics = train(tiny_config(f"backbone={backbone}", *attention, "debug=fast_dev_run"))
    assert_metrics_in_range(metrics)  # map_auroc included: every variant is scored on the synthetic region
    run_dir = tmp_path / "run"
    attention_map = np.load(run_dir / "attention_map.npy")
    assert attention_map.shape == (32, 32) and 0 < attention_map.min() <= attention_map.max() < 1
    assert (run_dir / OVERLAYS_PNG).read_bytes()[:8] == PNG_MAGIC
    sample = np.load(run_dir / SAMPLES_NPZ)
    assert sample["maps"].shape == (8, 32, 32) and sample["images"].shape == (8, 1, 32, 32)  # 4 per class
    assert list(sample["row_names"]) == ["no lesion in region", "lesion in region"]


def test_sample_rows_take_the_first_images_of_each_class_or_label():
    labels = torch.tensor([1, 0, 1, 1, 0, 1])
    assert sample_rows(labels, MULTICLASS, ["a", "b", "c"], 2) == [("a", [1, 4]), ("b", [0, 2])]
    multilabel = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert sample_rows(multilabel, "multilabel", ["x", "y"], 5) == [("x", [0, 1]), ("y", [1, 2])]


# debug=limit, shortened: two epochs of two training batches (two validation epochs, checkpoints, logs).
SHORT_RUN = [*TINY_DATA, *QUIET, "debug=limit", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]


def load_plot_script():
    spec = importlib.util.spec_from_file_location("plot_attention", ROOT / "scripts" / "plot_attention.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plot_attention_regenerates_the_figures_of_a_fresh_local_run(tmp_path):
    run_dir, figures = tmp_path / "run", tmp_path / "figures"
    trained = run_script("train.py", *SHORT_RUN, "attention=local", f"hydra.run.dir={run_dir}")
    assert trained.returncode == 0, trained.stderr[-4000:]
    assert (run_dir / OVERLAYS_PNG).read_bytes()[:8] == PNG_MAGIC
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Images("attention/map")) >= 2  # the mean map, every validation epoch (and the final validation)
    assert len(events.Images("attention/overlays")) == 1

    result = run_script("scripts/plot_attention.py", str(run_dir), "--out", str(figures))
    assert result.returncode == 0, result.stderr[-4000:]
    for name in ("attention_map.png", OVERLAYS_PNG):
        assert (figures / name).read_bytes()[:8] == PNG_MAGIC, name
        assert f"wrote {figures / name}" in result.stdout
    assert "map AUROC" in result.stdout
    # the same checkpoint and test set: the same mean map as the run's own
    assert np.allclose(np.load(figures / "attention_map.npy"), np.load(run_dir / "attention_map.npy"), atol=1e-5)
    regenerated, original = np.load(figures / SAMPLES_NPZ), np.load(run_dir / SAMPLES_NPZ)
    assert np.allclose(regenerated["maps"], original["maps"], atol=1e-5)
    assert not np.allclose(regenerated["maps"][0], regenerated["maps"][1])  # local: every image its own map


def test_plot_attention_from_a_static_checkpoint_file_writes_into_its_run_directory(tmp_path, capsys):
    train(compose_config([*SHORT_RUN, "attention=static"], output_dir=tmp_path / "run"))
    run_dir = tmp_path / "run"
    written = {path.name for path in run_dir.glob("attention_*")}
    assert written == {"attention_map.npy", "attention_map.png", SAMPLES_NPZ, OVERLAYS_PNG}
    for name in written:
        (run_dir / name).unlink()
    assert load_plot_script().main([str(run_dir / "checkpoints" / "last.ckpt")]) == 0
    assert written == {path.name for path in run_dir.glob("attention_*")}
    model_map = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]["attention.logits"]
    assert np.allclose(np.load(run_dir / "attention_map.npy"), torch.sigmoid(model_map)[0, 0].numpy(), atol=1e-6)
    assert "map AUROC" in capsys.readouterr().out


def test_plot_attention_explains_a_missing_checkpoint(tmp_path, capsys):
    assert load_plot_script().main([str(tmp_path)]) == 2
    assert "holds no checkpoints/best.ckpt or checkpoints/last.ckpt" in capsys.readouterr().err


def test_plot_attention_refuses_a_checkpoint_not_written_by_train(tmp_path, capsys):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    assert load_plot_script().main([str(foreign)]) == 2
    assert f"{foreign} was not written by gsa-exp's train.py (no run config inside)" in capsys.readouterr().err


def test_attention_compare_sweeps_every_variant_and_three_seeds_on_any_data_set():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=attention_compare"], return_hydra_config=True)
        other = compose("train", overrides=["experiment=attention_compare", "dataset=pneumoniamnist"])
    assert dict(cfg.hydra.sweeper.params) == {"attention": "none,global,local,static", "seed": "0,1,2"}
    assert cfg.dataset.name == "synthetic"
    assert other.dataset.name == "pneumoniamnist"
