"""Per-batch global attention (attention=global_batch): its own variant, and the older spelling
(attention=global attention.bank.source=batch) builds it with the same results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import QUIET, TINY_DATA, compose_config, perturb, yaml_options

from gsa_exp.attention import GlobalSpatialAttention, attention_class
from gsa_exp.attention.global_batch import GlobalBatchAttention
from gsa_exp.config.validation import ConfigError, validate_train_config
from gsa_exp.data.splits import MULTICLASS, DataInfo
from gsa_exp.training.builders import build_model
from gsa_exp.training.explain import ExplainError, gradcam_maps
from gsa_exp.training.train import train

INFO = DataInfo(task=MULTICLASS, num_classes=2, channels=1, image_size=32, num_train=80, mean=[0.5], std=[0.5])
OLD = ["attention=global", "attention.bank.source=batch"]
NEW = ["attention=global_batch"]


def model_of(*overrides: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)  # the same draws for the pixel classifier and the backbone, whatever the spelling
    return build_model(compose_config([*TINY_DATA, *overrides]), INFO)


def test_the_registered_name_and_the_older_spelling_build_the_same_class():
    assert attention_class("global_batch") is GlobalBatchAttention
    old, new = model_of(*OLD), model_of(*NEW)
    assert type(old.attention) is type(new.attention) is GlobalBatchAttention
    assert old.hparams.attention["name"] == "global" and new.hparams.attention["name"] == "global_batch"
    assert old.attention.fixed_batch_size == new.attention.fixed_batch_size == 16  # dataset.batch_size
    assert not old.attention.needs_training_data and not isinstance(old.attention, GlobalSpatialAttention)


@pytest.mark.parametrize(
    ("old_changes", "new_changes"),
    [
        ([], []),
        (["attention.classifier.kind=mlp", "attention.classifier.init=constant"], ["attention.classifier.kind=mlp"]),
    ],
    ids=["linear", "mlp"],
)
def test_both_spellings_give_the_same_weights_logits_maps_and_gradients(old_changes, new_changes):
    old, new = model_of(*OLD, *old_changes), model_of(*NEW, *new_changes)
    assert old.state_dict().keys() == new.state_dict().keys()  # checkpoints of either load into the other
    for key, value in old.state_dict().items():
        assert torch.equal(value, new.state_dict()[key]), key
    perturb(old, scale=1.0), perturb(new, scale=1.0)
    images = torch.rand(40, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    for model in (old, new):
        model.eval()
        model.reset_eval_context()
    with torch.no_grad():
        old_logits, new_logits = old.infer(images), new.infer(images)
    assert old_logits.shape == (40, 2) and torch.equal(old_logits, new_logits)
    assert old.attention_maps.shape == (40, 32, 32) and torch.equal(old.attention_maps, new.attention_maps)
    for model in (old, new):
        model.train()
        loss, _ = model.training_loss(images[:16], torch.arange(16) % 2)
        loss.backward()
    assert torch.equal(old.attention.classifier[0].weight.grad, new.attention.classifier[0].weight.grad)


def test_a_run_gives_the_same_metrics_and_map_with_either_spelling(tmp_path):
    results = {}
    for label, spelling in (("old", OLD), ("new", NEW)):
        run_dir = tmp_path / label
        cfg = compose_config([*TINY_DATA, *QUIET, *spelling, "debug=fast_dev_run"], output_dir=run_dir)
        results[label] = (train(cfg), np.load(run_dir / "attention_map.npy"))
    (old_metrics, old_map), (new_metrics, new_map) = results["old"], results["new"]
    assert old_metrics == new_metrics and "test/map_auroc" in new_metrics
    assert np.array_equal(old_map, new_map) and old_map.shape == (32, 32)


def test_config_validation_checks_the_batch_sizes_naming_the_variant(tiny_config):
    with pytest.raises(
        ConfigError,
        match=r"attention.bank.batch_size=8: must equal dataset.batch_size=16 with attention=global_batch",
    ):
        validate_train_config(tiny_config(*NEW, "attention.bank.batch_size=8"))
    with pytest.raises(
        ConfigError,
        match=r"dataset.eval_batch_size=40: must be a multiple of attention.bank.batch_size=16 with attention=global_batch",
    ):
        validate_train_config(tiny_config(*NEW, "dataset.eval_batch_size=40"))
    validate_train_config(tiny_config(*NEW))  # batch_size follows dataset.batch_size


def make(**changes) -> GlobalBatchAttention:
    options = yaml_options(
        "attention", "global_batch", **{"bank": dict(batch_size=4), "classifier": dict(hidden=8), **changes}
    )
    return GlobalBatchAttention(in_channels=1, image_size=12, num_train=20, **options)


def test_options_it_cannot_use_are_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"^bank.batch_size=0: must be >= 1$"):
        make(bank=dict(batch_size=0))
    with pytest.raises(
        ValueError,
        match=r"^classifier.init: per-batch global attention reads no training split to start from "
        r"\(its map starts uniform at init_bias\); remove classifier.init, init_scale",
    ):
        make(classifier=dict(init="class_contrast", init_scale=2.0))


@pytest.mark.parametrize("spelling", [OLD, NEW], ids=["bank.source=batch", "global_batch"])
def test_a_batch_size_that_is_not_an_integer_is_named_in_one_line(tiny_config, spelling):
    with pytest.raises(ConfigError, match=r"^Invalid config: attention.bank.batch_size='x': must be an integer >= 1"):
        validate_train_config(tiny_config(*spelling, "attention.bank.batch_size=x"))


def test_the_older_spelling_keeps_the_checks_of_global():
    with pytest.raises(
        Exception, match=r"attention.classifier.init='class_contrast': needs attention.classifier.kind='linear'"
    ):
        model_of(*OLD, "attention.classifier.kind=mlp")
    with pytest.raises(Exception, match=r"attention.bank.num_images=0"):
        model_of(*OLD, "attention.bank.num_images=0")


def test_infer_of_global_batch_evaluates_every_image_once_in_full_batches():
    model = model_of(*NEW).eval()
    perturb(model.attention, scale=1.0)
    images = torch.rand(40, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model.reset_eval_context()
        logits = model.infer(images)
        assert torch.allclose(logits[16:32], model(images[16:32]), atol=1e-5)
        assert torch.allclose(logits[32:], model(images[24:40])[-8:], atol=1e-5)  # completed by the 8 before
        model.reset_eval_context()
        assert torch.allclose(model.infer(images[:5]), model(torch.cat([images[:5]] * 4)[-16:])[-5:], atol=1e-5)


def test_gradcam_refuses_global_batch_naming_the_variant():
    model = model_of(*NEW)
    with pytest.raises(ExplainError, match=r"takes batches of exactly 16 images \(attention=global_batch"):
        gradcam_maps(model, torch.rand(2, 1, 32, 32), torch.zeros(2, dtype=torch.long))
