"""Test-time flips (``tta`` of eval.py and predict.py): the mean of the views' probabilities, in one place."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import QUIET, TINY_DATA, compose_config, perturb
from PIL import Image
from sklearn.metrics import roc_auc_score

from gsa_exp.config.validation import ConfigPaths
from gsa_exp.data.splits import MULTICLASS, MULTILABEL, DataInfo
from gsa_exp.model.classifier import ImageClassifier
from gsa_exp.model.tta import FlipError, chosen_flips
from gsa_exp.training.builders import build_datamodule, build_model
from gsa_exp.training.evaluate import evaluate
from gsa_exp.training.predict import predict
from gsa_exp.training.train import train

EVERY_FLIP = ["tta.hflip=true", "tta.vflip=true", "tta.hvflip=true"]


def flips(hflip: bool = False, vflip: bool = False, hvflip: bool = False) -> dict[str, bool]:
    return dict(hflip=hflip, vflip=vflip, hvflip=hvflip)


def mean_of_views(model: ImageClassifier, images: torch.Tensor, mirrors: list) -> torch.Tensor:
    """Computed here: the model's probabilities on the images and on each mirrored copy, averaged."""
    kept, model.tta_flips = model.tta_flips, ()
    with torch.no_grad():
        views = [images, *(mirror(images) for mirror in mirrors)]
        scores = torch.stack([model.probabilities(model.infer(view)) for view in views]).mean(dim=0)
    model.tta_flips = kept
    return scores


HFLIP, VFLIP = (lambda x: x.flip(-1)), (lambda x: x.flip(-2))
BOTH = lambda x: x.flip(-1).flip(-2)  # noqa: E731


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
def test_the_scores_are_the_mean_of_the_scores_of_the_flipped_images(task, tmp_path):
    info = DataInfo(task=task, num_classes=3, channels=1, image_size=32, num_train=64, label_names=["a", "b", "c"])
    model = build_model(compose_config(["attention=local"], tmp_path), info).eval()
    perturb(model, scale=0.02)
    images = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model.probabilities(model.infer(images))
        plain_maps = model.attention_maps.clone()
        for options, mirrors in ((flips(hflip=True), [HFLIP]), (flips(True, True, True), [HFLIP, VFLIP, BOTH])):
            model.tta_flips = chosen_flips(options, model.attention.fixed_batch_size)
            averaged = model.probabilities(model.infer(images))
            assert torch.equal(model.attention_maps, plain_maps)  # the maps of the images as given
            torch.testing.assert_close(averaged, mean_of_views(model, images, mirrors), rtol=1e-5, atol=1e-6)
            assert not torch.allclose(averaged, plain, atol=1e-3)


def test_a_model_with_one_map_per_batch_is_refused():
    assert chosen_flips(flips(), 16) == ()
    with pytest.raises(FlipError) as refused:
        chosen_flips(flips(vflip=True, hvflip=True), 16)
    message = "vflip=true: not with this checkpoint, whose attention makes one map per batch of 16 images"
    assert str(refused.value).startswith(message)
    assert refused.value.located(ConfigPaths(refused.value.component)).startswith(f"tta.{message}")  # as eval.py says


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained")
    train(compose_config([*TINY_DATA, *QUIET, "debug=limit", "trainer.max_epochs=1"], output_dir=run))
    return run / "checkpoints" / "best.ckpt"


def test_predict_writes_the_mean_of_the_flipped_images_scores(checkpoint, tmp_path):
    images = build_datamodule(compose_config([*TINY_DATA]).dataset).split("test").images[:5]  # uint8, 32 px
    folder = tmp_path / "images"
    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image[0].numpy()).save(folder / f"image_{index}.png")
    overrides = [f"ckpt_path={checkpoint}", f"input={folder}", "extras.print_config=false", "tta.hflip=true"]
    path = predict(compose_config(overrides, tmp_path / "out", "predict"))
    with path.open() as handle:
        rows = list(csv.reader(handle))[1:]
    scores = torch.tensor([[float(value) for value in row[2:]] for row in rows])
    model = ImageClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    expected = mean_of_views(model, images.float() / 255, [HFLIP])
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scores, mean_of_views(model, images.float() / 255, []), atol=1e-4)


def read_scores(run: Path) -> tuple[np.ndarray, np.ndarray]:
    scores = np.loadtxt(run / "predictions_test.csv", delimiter=",")[:, 1:]
    labels = np.loadtxt(run / "targets_test.csv", delimiter=",", dtype=int)[:, 1]
    return scores, labels


def test_eval_with_flips_writes_metrics_that_the_predictions_csv_reproduces(checkpoint, tmp_path):
    runs = {}
    for name, overrides in (("plain", []), ("flipped", EVERY_FLIP)):
        cfg = compose_config([f"ckpt_path={checkpoint}", *QUIET, *overrides], tmp_path / name, "eval")
        evaluate(cfg)
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    scores, labels = read_scores(tmp_path / "flipped")
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-6)  # averaged softmax rows stay distributions
    metrics = runs["flipped"]
    assert metrics["test/acc"] == pytest.approx(np.mean(scores.argmax(axis=1) == labels), abs=1e-6)
    assert metrics["test/loss"] == pytest.approx(-np.mean(np.log(scores[np.arange(len(labels)), labels])), abs=1e-5)
    assert metrics["test/auroc"] == pytest.approx(roc_auc_score(labels, scores[:, 1]), abs=1e-6)
    assert metrics["test/loss"] != pytest.approx(runs["plain"]["test/loss"], abs=1e-4)
    plain_scores, _ = read_scores(tmp_path / "plain")
    assert not np.allclose(scores, plain_scores, atol=1e-4)


@pytest.mark.parametrize("entry", ["eval", "predict"])
def test_the_flips_are_declared_off_in_the_yaml_and_a_bad_value_is_refused(entry, tmp_path):
    from gsa_exp.config.options import FlipOptions
    from gsa_exp.config.validation import ConfigError, validate_eval_config, validate_predict_config

    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"")
    base = [f"ckpt_path={checkpoint}", f"input={tmp_path}"][: 2 if entry == "predict" else 1]
    validate = validate_predict_config if entry == "predict" else validate_eval_config
    cfg = compose_config(base, config_name=entry)
    assert dict(cfg.tta) == {field: False for field in FlipOptions.__dataclass_fields__}
    validate(cfg)
    with pytest.raises(ConfigError, match=r"^Invalid config: tta.hvflip='yes': must be true or false$"):
        validate(compose_config([*base, "tta.hvflip=yes"], config_name=entry))
