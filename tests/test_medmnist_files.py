"""MedMNIST .npz files read from disk: formats, errors, downloads and per-image predictions.

Every file is written here, tiny, in the exact format of the real one; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from data_files import COUNTS, image_folder, medmnist_arrays, medmnist_source, write_npz

from gsa_exp.config.validation import option_errors_located
from gsa_exp.data import (
    DataFormatError,
    DataNotFoundError,
    FER2013Source,
)


# -- MedMNIST ---------------------------------------------------------------------------
def test_medmnist_grey_binary_file_loads_as_multiclass(tmp_path):
    arrays = medmnist_arrays()
    write_npz(tmp_path, "pneumoniamnist.npz", arrays)
    data = medmnist_source(tmp_path).load()
    assert data.task == "multiclass" and data.label_names == ["normal", "pneumonia"]
    for split, count in COUNTS.items():
        images, labels = data.split(split).images, data.split(split).labels
        assert images.shape == (count, 1, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (count,) and labels.dtype == torch.int64
        assert torch.equal(images[:, 0], torch.from_numpy(arrays[f"{split}_images"]))
        assert labels.tolist() == arrays[f"{split}_labels"][:, 0].tolist()
    assert data.region_mask is None


def test_medmnist_colour_file_at_64_px_keeps_channel_order(tmp_path):
    arrays = medmnist_arrays(size=64, colour=True, num_classes=7)
    write_npz(tmp_path, "dermamnist_64.npz", arrays)
    data = medmnist_source(tmp_path, flag="dermamnist", size=64).load()
    assert data.train.images.shape == (20, 3, 64, 64)
    for channel in range(3):
        assert torch.equal(data.train.images[:, channel], torch.from_numpy(arrays["train_images"][..., channel]))
    assert len(data.label_names) == 7 and data.label_names[0] == "actinic keratoses and intraepithelial carcinoma"


def test_medmnist_as_rgb_repeats_grey_and_ordinal_is_multiclass(tmp_path):
    write_npz(tmp_path, "octmnist.npz", medmnist_arrays(num_classes=4))
    rgb = medmnist_source(tmp_path, flag="octmnist", as_rgb=True).load().test.images
    assert rgb.shape == (8, 3, 28, 28)
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 0], rgb[:, 2])
    write_npz(tmp_path, "retinamnist.npz", medmnist_arrays(colour=True, num_classes=5))
    retina = medmnist_source(tmp_path, flag="retinamnist").load()
    assert retina.task == "multiclass" and len(retina.label_names) == 5 and retina.val.labels.max() <= 4


def test_medmnist_multilabel_labels_are_float_n_by_l(tmp_path):
    arrays = medmnist_arrays(label_width=14)
    write_npz(tmp_path, "chestmnist.npz", arrays)
    data = medmnist_source(tmp_path, flag="chestmnist").load()
    assert data.task == "multilabel" and len(data.label_names) == 14 and data.label_names[0] == "atelectasis"
    assert data.train.labels.dtype == torch.float32 and data.train.labels.shape == (20, 14)
    assert torch.equal(data.train.labels, torch.from_numpy(arrays["train_labels"]).float())


@pytest.mark.parametrize(
    ("flag", "size", "message"),
    [
        (
            "nosuchmnist",
            28,
            r"^source.flag='nosuchmnist': not a MedMNIST 2D data set; allowed: pathmnist, ",
        ),
        ("organmnist3d", 28, r"'organmnist3d': not a MedMNIST 2D data set; .*breastmnist"),
        ("pneumoniamnist", 32, r"^source.size=32: allowed: 28, 64, 128, 224$"),
    ],
)
def test_medmnist_rejects_unknown_flags_and_sizes(tmp_path, flag, size, message):
    with pytest.raises(ValueError, match=message):
        medmnist_source(tmp_path, flag=flag, size=size)


def test_missing_medmnist_file_says_where_and_how_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError) as caught:
        medmnist_source(tmp_path, size=128).load()
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    assert f"MedMNIST file not found: {tmp_path / 'pneumoniamnist_128.npz'}" in message
    assert "https://zenodo.org/records/10519652/files/pneumoniamnist_128.npz" in message
    assert "or set source.download=true to fetch it" in message  # the source names its options bare
    assert "resolved against" not in message  # an absolute path needs no explanation
    with pytest.raises(DataNotFoundError) as located, option_errors_located():  # as train.py reports it
        medmnist_source(tmp_path, size=128).load()
    assert str(located.value) == message.replace("source.download", "dataset.source.download")
    assert isinstance(located.value, FileNotFoundError)


def broken(change):
    arrays = medmnist_arrays()
    change(arrays)
    return arrays


@pytest.mark.parametrize(
    ("flag", "arrays", "message"),
    [
        ("pneumoniamnist", broken(lambda a: a.pop("val_labels")), r"key 'val_labels' is missing \(keys found: \["),
        (
            "pneumoniamnist",
            broken(lambda a: a.update(train_images=np.zeros((20, 32, 32), np.uint8))),
            r"train_images has shape \(20, 32, 32\), expected \(N, 28, 28\) \(pneumoniamnist at size 28\)",
        ),
        (
            "dermamnist",
            medmnist_arrays(),
            r"train_images has shape \(20, 28, 28\), expected \(N, 28, 28, 3\) \(dermamnist at size 28\)",
        ),
        (
            "pneumoniamnist",
            broken(lambda a: a.update(train_labels=a["train_labels"][:, 0])),
            r"train_labels has shape \(20,\), expected \(20, 1\) \(one row per image of train_images\)",
        ),
        (
            "pneumoniamnist",
            broken(lambda a: a.update(val_labels=np.zeros((7, 1), np.uint8))),
            r"val_labels has shape \(7, 1\), expected \(8, 1\)",
        ),
        (
            "pneumoniamnist",
            broken(lambda a: a.update(val_images=a["val_images"].astype(np.float32))),
            r"val_images has dtype float32, expected uint8",
        ),
        (
            "pneumoniamnist",
            broken(lambda a: a.update(test_labels=a["test_labels"].astype(np.float64))),
            r"test_labels has dtype float64, expected an integer type",
        ),
        (
            "pneumoniamnist",
            broken(lambda a: a["test_labels"].__setitem__((3, 0), 2)),
            r"test labels contain 2 \(row 3\); allowed class indices for pneumoniamnist are 0..1 \(2 classes\)",
        ),
        (
            "pneumoniamnist",
            broken(
                lambda a: a.update(val_images=np.zeros((0, 28, 28), np.uint8), val_labels=np.zeros((0, 1), np.uint8))
            ),
            r"val_images holds no images",
        ),
    ],
)
def test_malformed_medmnist_files_are_refused_with_the_key_and_shapes(tmp_path, flag, arrays, message):
    path = write_npz(tmp_path, f"{flag}.npz", arrays)
    with pytest.raises(DataFormatError, match=message) as caught:
        medmnist_source(tmp_path, flag=flag).load()
    assert str(caught.value).startswith(f"{path}: ")
    assert isinstance(caught.value, ValueError)


def test_multilabel_values_must_be_zero_or_one(tmp_path):
    arrays = medmnist_arrays(label_width=14)
    arrays["train_labels"][5, 13] = 3
    write_npz(tmp_path, "chestmnist.npz", arrays)
    with pytest.raises(DataFormatError, match=r"train labels contain 3 \(row 5, label 13 'hernia'\); .*0 and 1"):
        medmnist_source(tmp_path, flag="chestmnist").load()


def test_a_file_that_is_not_an_npz_archive_is_refused(tmp_path):
    (tmp_path / "breastmnist.npz").write_text("not an archive")
    with pytest.raises(DataFormatError, match="breastmnist.npz: cannot read it as a MedMNIST .npz archive"):
        medmnist_source(tmp_path, flag="breastmnist").load()


class FakeDownload:
    """Stands in for medmnist.PneumoniaMNIST: records the call, writes the file it would fetch."""

    calls: list[dict] = []

    def __init__(self, **kwargs) -> None:
        FakeDownload.calls.append(kwargs)
        write_npz(Path(kwargs["root"]), "pneumoniamnist_64.npz", medmnist_arrays(size=64))


def test_download_fetches_only_a_missing_file_through_medmnist(tmp_path, monkeypatch):
    import medmnist

    FakeDownload.calls = []
    monkeypatch.setattr(medmnist, "PneumoniaMNIST", FakeDownload)
    root = tmp_path / "new" / "dir"
    data = medmnist_source(root, size=64, download=True).load()
    assert FakeDownload.calls == [{"split": "train", "download": True, "root": str(root), "size": 64}]
    assert data.train.images.shape == (20, 1, 64, 64)
    medmnist_source(root, size=64, download=True).load()
    assert len(FakeDownload.calls) == 1  # present now: not fetched again


def test_a_failed_download_is_reported_as_missing_data(tmp_path, monkeypatch):
    import medmnist

    def offline(**kwargs):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(medmnist, "PneumoniaMNIST", offline)
    with pytest.raises(
        DataNotFoundError, match=r"could not download https://zenodo.org/.*pneumoniamnist.npz.* network unreachable"
    ):
        medmnist_source(tmp_path, download=True).load()


def test_relative_paths_are_resolved_against_the_launch_directory(tmp_path, monkeypatch):
    write_npz(tmp_path / "data" / "mm", "pneumoniamnist.npz", medmnist_arrays())
    monkeypatch.chdir(tmp_path)
    assert len(medmnist_source("data/mm").load().train) == 20
    with pytest.raises(DataNotFoundError) as caught:
        medmnist_source("data/elsewhere").load()
    expected = (
        f"{tmp_path / 'data' / 'elsewhere' / 'pneumoniamnist.npz'} (root='data/elsewhere' "
        f"resolved against the launch directory {tmp_path})"
    )
    assert expected in str(caught.value)
    with pytest.raises(DataNotFoundError, match=r"fer.csv \(source.path='fer.csv' resolved against the launch"):
        FER2013Source(path="fer.csv").load()
    with pytest.raises(DataNotFoundError, match=r"imgs \(root='imgs' resolved against the launch"):
        image_folder("imgs").load()
    # as train.py reports them: where the config keeps the options
    with pytest.raises(DataNotFoundError, match=r"\(dataset.root='data/elsewhere' resolved against the launch"):
        with option_errors_located():
            medmnist_source("data/elsewhere").load()
    with pytest.raises(
        DataNotFoundError, match=r"fer.csv \(dataset.source.path='fer.csv' resolved .* or point dataset.source.path at"
    ):
        with option_errors_located():
            FER2013Source(path="fer.csv").load()


# -- per-image predictions ------------------------------------------------------------------
@pytest.mark.parametrize(("flag", "label_width", "num_classes"), [("pneumoniamnist", 1, 2), ("chestmnist", 14, 2)])
def test_run_predictions_score_like_medmnists_own_evaluator(tmp_path, flag, label_width, num_classes):
    from medmnist import Evaluator

    from gsa_exp.training.evaluate import evaluate
    from gsa_exp.training.train import train

    root = tmp_path / "data"
    write_npz(root, f"{flag}.npz", medmnist_arrays(label_width=label_width, num_classes=num_classes))
    overrides = [
        f"dataset={flag}",
        f"dataset.root={root}",
        "dataset.image_size=32",
        "attention.bank.components=8",  # 20 training images
        "dataset.batch_size=8",
        "dataset.eval_batch_size=5",  # 8 images per split: a short last batch
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]
    metrics = train(compose_config(overrides, output_dir=tmp_path / "run"))
    for split in ("val", "test"):
        rows = (tmp_path / "run" / f"predictions_{split}.csv").read_text().splitlines()
        scores = np.array([[float(value) for value in row.split(",")[1:]] for row in rows])
        assert [row.split(",")[0] for row in rows] == [str(index) for index in range(COUNTS[split])]
        assert scores.shape == (COUNTS[split], label_width if label_width > 1 else num_classes)
        auc, acc = Evaluator(flag, split, root=str(root)).evaluate(scores)
        assert metrics[f"{split}/auroc"] == pytest.approx(auc, abs=1e-5), split
        assert metrics[f"{split}/acc"] == pytest.approx(acc, abs=1e-5), split
        targets = np.loadtxt(tmp_path / "run" / f"targets_{split}.csv", delimiter=",", dtype=np.int64, ndmin=2)
        assert np.array_equal(
            targets[:, 1:], medmnist_arrays(label_width=label_width, num_classes=num_classes)[f"{split}_labels"]
        )

    checkpoint = tmp_path / "run" / "checkpoints" / "best.ckpt"
    eval_cfg = compose_config([f"ckpt_path={checkpoint}"], output_dir=tmp_path / "eval", config_name="eval")
    evaluate(eval_cfg)
    assert (tmp_path / "eval" / "predictions_test.csv").read_text() == (
        tmp_path / "run" / "predictions_test.csv"
    ).read_text()
