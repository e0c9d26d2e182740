"""Real data sets read from disk: FER2013 CSV, image folders, option names in file errors, their configs.

Every file is written here, tiny, in the exact format of the real one; nothing is downloaded.
"""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest
import torch
from conftest import CONF, QUIET, compose_config, dataset_choices
from data_files import (
    fer_rows,
    grey_level,
    image_folder,
    image_ids,
    medmnist_arrays,
    write_class_images,
    write_fer,
    write_npz,
)
from omegaconf import OmegaConf
from PIL import Image

from gsa_exp.config.validation import option_errors_located
from gsa_exp.data import (
    ArrayDataModule,
    DataFormatError,
    DataNotFoundError,
    FER2013Source,
    get_source,
    list_sources,
)
from gsa_exp.data.fer2013 import EMOTIONS
from gsa_exp.data.files import DataError
from gsa_exp.data.npz_members import NpzCacheError
from gsa_exp.errors import OptionMessage
from gsa_exp.training.builders import build_datamodule


# -- FER2013 ----------------------------------------------------------------------------
def test_fer2013_csv_loads_into_three_splits(tmp_path):
    rows = fer_rows()
    data = FER2013Source(path=str(write_fer(tmp_path / "fer2013.csv", rows))).load()
    assert data.task == "multiclass" and data.label_names == list(EMOTIONS)
    assert data.label_names == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert [len(data.split(split)) for split in ("train", "val", "test")] == [12, 5, 4]
    assert data.train.images.shape == (12, 1, 48, 48) and data.train.images.dtype == torch.uint8
    assert data.val.labels.dtype == torch.int64 and data.val.labels.tolist() == [5, 6, 0, 1, 2]
    emotion, pixels, _ = rows[13]  # second PublicTest row; pixels are row-major 48 x 48
    assert data.val.labels[1] == emotion
    assert torch.equal(data.val.images[1, 0], torch.from_numpy(pixels.reshape(48, 48).astype(np.uint8)))


def test_fer2013_columns_may_come_in_the_icml_order(tmp_path):
    path = write_fer(tmp_path / "icml_face_data.csv", fer_rows(), header="emotion, Usage, pixels")
    data = FER2013Source(path=str(path)).load()
    assert len(data.train) == 12 and data.test.labels.tolist() == [3, 4, 5, 6]


def test_malformed_fer2013_rows_are_listed_with_line_numbers(tmp_path):
    rows = fer_rows()
    rows[1] = (0, rows[1][1][:-1], "Training")  # line 3
    rows[3] = (1, "12 x " + " ".join(["0"] * 2302), "Training")  # line 5
    rows[4] = (2, rows[4][1], "Validation")  # line 6
    rows[5] = (7, rows[5][1], "Training")  # line 7
    rows[6] = ("sad", np.full(2304, 256), "Training")  # line 8: two problems
    path = write_fer(tmp_path / "fer2013.csv", rows)
    with pytest.raises(DataFormatError) as caught:
        FER2013Source(path=str(path)).load()
    message = str(caught.value)
    assert message.startswith(f"{path}: 5 malformed rows (line numbers count the header as line 1):")
    assert "line 3: 2303 pixel values, expected 2304 (48 x 48)" in message
    assert "line 5: pixel value 'x' is not an integer" in message
    assert "line 6: Usage 'Validation' is not one of Training, PublicTest, PrivateTest" in message
    assert "line 7: emotion 7 is outside 0..6" in message
    assert "line 8: emotion 'sad' is not an integer; pixel value 256 is outside 0..255" in message


def test_many_malformed_rows_are_counted_not_all_listed(tmp_path):
    rows = [(9, pixels, usage) for _, pixels, usage in fer_rows()]
    with pytest.raises(DataFormatError) as caught:
        FER2013Source(path=str(write_fer(tmp_path / "fer.csv", rows))).load()
    message = str(caught.value)
    assert "21 malformed rows" in message and "line 11: emotion 9" in message
    assert "line 12:" not in message and "... and 11 more" in message


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (
            "label,pixels,Usage",
            fer_rows(),
            r"the header is 'label,pixels,Usage'; expected the columns 'emotion,pixels,Usage'",
        ),
        (
            "emotion,pixels,Usage",
            [row for row in fer_rows() if row[2] != "PrivateTest"],
            r"no rows with Usage 'PrivateTest', so the test split would be empty",
        ),
    ],
)
def test_fer2013_header_and_missing_splits_are_checked(tmp_path, header, rows, message):
    path = write_fer(tmp_path / "fer2013.csv", rows, header=header)
    with pytest.raises(DataFormatError, match=message):
        FER2013Source(path=str(path)).load()


def test_fer2013_wrong_field_count_and_missing_file(tmp_path):
    path = write_fer(tmp_path / "fer2013.csv", fer_rows())
    path.write_text(path.read_text() + "3,1 2 3\n")
    with pytest.raises(DataFormatError, match=r"line 23: 2 fields, expected 3 \(emotion,pixels,Usage\)"):
        FER2013Source(path=str(path)).load()
    with pytest.raises(
        DataNotFoundError,
        match=r"FER2013 CSV not found: .*nope.csv\. Download fer2013.csv from https://www.kaggle.com/",
    ):
        FER2013Source(path=str(tmp_path / "nope.csv")).load()


# -- image folders ----------------------------------------------------------------------
def test_one_folder_of_classes_is_split_stratified_and_seeded(tmp_path):
    for label, name in enumerate(["benign", "malignant"]):
        write_class_images(tmp_path / name, label, 10, size=(24, 40))
    (tmp_path / "benign" / "notes.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()
    data = image_folder(tmp_path).load()
    assert data.task == "multiclass" and data.label_names == ["benign", "malignant"]
    assert [len(data.split(split)) for split in ("train", "val", "test")] == [12, 4, 4]
    for split in ("train", "val", "test"):
        labels = data.split(split).labels
        assert labels.dtype == torch.int64 and torch.bincount(labels).tolist() == [len(labels) // 2] * 2
        assert data.split(split).images.shape[1:] == (3, 32, 32)  # 24 x 40 images resized
        assert torch.equal(data.split(split).images[:, 0, 0, 0] >= 120, labels.bool())  # label follows the folder
    all_ids = image_ids(data.train) | image_ids(data.val) | image_ids(data.test)
    assert len(all_ids) == 20  # every image once
    again, other = image_folder(tmp_path).load(), image_folder(tmp_path, seed=1).load()
    assert torch.equal(again.val.images, data.val.images)
    assert image_ids(other.val) != image_ids(data.val)


def test_train_val_test_folders_are_used_as_given(tmp_path):
    for split, count in (("train", 6), ("val", 3), ("test", 2)):
        write_class_images(tmp_path / split / "cat_a", 0, count, mode="L", size=(32, 32))
        write_class_images(tmp_path / split / "cat_b", 1, count, mode="RGB", size=(32, 32), suffix=".PNG")
    data = image_folder(tmp_path, channels=1, extensions=[".png"]).load()
    assert data.label_names == ["cat_a", "cat_b"]
    assert [len(data.split(split)) for split in ("train", "val", "test")] == [12, 6, 4]
    assert data.test.images.shape == (4, 1, 32, 32)
    assert data.test.labels.tolist() == [0, 0, 1, 1]
    assert data.test.images[:, 0, 0, 0].tolist() == [
        grey_level(0, 0),
        grey_level(0, 1),
        grey_level(1, 0),
        grey_level(1, 1),
    ]


def test_sixteen_bit_images_are_scaled_by_their_own_range(tmp_path):
    for label in (0, 1):
        folder = tmp_path / f"class{label}"
        folder.mkdir()
        for index in range(5):
            ramp = np.tile(np.linspace(1000, 3000, 32), (32, 1)).astype(np.uint16)
            Image.fromarray(ramp).save(folder / f"{index}.tif")
    data = image_folder(tmp_path, channels=1, extensions=[".tif"]).load()
    row = data.train.images[0, 0, 0]
    assert row[0] == 0 and row[-1] == 255 and torch.all(row[1:] >= row[:-1])


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (
            {},
            r"found no images with extensions \['.jpg', '.png'\] in its class sub-folders; expected root/<class>/<image>",
        ),
        ({"only": 5}, r"found a single class folder \(only, 5 images\); a classifier needs at least 2 classes"),
        (
            {"train/a": 3, "train/b": 3, "val/a": 2, "val/b": 2},
            r"has train/, val/ but no test/; a pre-split folder needs",
        ),
        (
            {"train/a": 3, "train/b": 3, "val/a": 1, "val/c": 1, "test/a": 1},
            r"val/ has class folders that train/ lacks: \['c'\]",
        ),
        ({"train/a": 3, "train/b": 3, "val/a": 1, "test": 0}, r"test/ holds no images"),
        (
            {"a": 1, "b": 1},
            r"split_ratios=\[0.6, 0.2, 0.2\] leave the val split empty; 2 images in 2 classes are too few",
        ),
    ],
)
def test_image_folders_without_usable_classes_are_refused(tmp_path, layout, message):
    for label, (folder, count) in enumerate(layout.items()):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        write_class_images(tmp_path / folder, label % 2, count)
    with pytest.raises(DataFormatError, match=message) as caught:
        image_folder(tmp_path).load()
    assert str(caught.value).startswith(f"{tmp_path}: ")


def test_unreadable_images_are_listed_and_counted(tmp_path):
    write_class_images(tmp_path / "a", 0, 5)
    write_class_images(tmp_path / "b", 1, 5)
    for index in range(12):
        (tmp_path / "b" / f"broken{index:02d}.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataFormatError) as caught:
        image_folder(tmp_path).load()
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}: 12 image files could not be read:")
    assert str(tmp_path / "b" / "broken00.png") in message and "... and 2 more" in message
    assert message.count("broken") == 10


def test_image_folder_settings_and_missing_root_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"^source.split_ratios=\[0.5, 0.5\]: must be three positive fractions"):
        image_folder(tmp_path, ratios=(0.5, 0.5))
    with pytest.raises(ValueError, match=r"^source.split_ratios=\[0.8, 0.2, 0.0\]: must be three positive fractions"):
        image_folder(tmp_path, ratios=(0.8, 0.2, 0.0))
    with pytest.raises(ValueError, match=r"^source.channels=2: allowed: 1, 3$"):
        image_folder(tmp_path, channels=2)
    with pytest.raises(
        DataNotFoundError, match=r"image folder not found: .*missing\. Expected a directory laid out as"
    ):
        image_folder(tmp_path / "missing").load()


# -- option names in file errors -------------------------------------------------------
def test_a_missing_root_with_a_dollar_is_named_bare_by_the_source_and_located_by_train(tmp_path, monkeypatch):
    from gsa_exp.training.train import train

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataNotFoundError) as direct:
        image_folder("data$root").load()
    expected = (
        f"image folder not found: {tmp_path / 'data$root'} (root='data$root' resolved against the launch "
        f"directory {tmp_path}). Expected a directory laid out as root/<class>/<image> or "
    )
    assert str(direct.value).startswith(expected)
    cfg = compose_config(["dataset=image_folder", "dataset.root=data$root", *QUIET], output_dir=tmp_path / "run")
    with pytest.raises(DataNotFoundError) as through_train:
        train(cfg)
    assert str(through_train.value).startswith(expected.replace("(root=", "(dataset.root="))
    assert isinstance(through_train.value, FileNotFoundError) and through_train.value.__cause__ is not None
    with pytest.raises(DataNotFoundError) as set_up:  # tools that set a data set up (plots, benchmark) say the same
        build_datamodule(cfg.dataset, "test")
    assert str(set_up.value) == str(through_train.value)


def test_a_format_error_keeps_dollars_in_paths_and_file_names_through_build_datamodule(tmp_path, monkeypatch):
    write_class_images(tmp_path / "data$root" / "only$source", 0, 3)
    monkeypatch.chdir(tmp_path)
    expected = (
        f"{tmp_path / 'data$root'} (root='data$root' resolved against the launch directory {tmp_path}): "
        "found a single class folder (only$source, 3 images); a classifier needs at least 2 classes"
    )
    with pytest.raises(DataFormatError) as direct:
        image_folder("data$root").load()
    assert str(direct.value).startswith(expected)
    dataset = compose_config(["dataset=image_folder", "dataset.root=data$root"]).dataset
    with pytest.raises(DataFormatError) as located:
        with option_errors_located():  # train.py: build_datamodule, then setup, inside it
            build_datamodule(dataset).setup("fit")
    assert str(located.value).startswith(expected.replace("(root=", "(dataset.root="))


@pytest.mark.parametrize(
    ("error_type", "base"),
    [
        (DataNotFoundError, FileNotFoundError),
        (DataFormatError, ValueError),
        (NpzCacheError, OSError),
        (DataError, ValueError),
    ],
)
def test_data_errors_are_rebuilt_from_their_located_template(error_type, base):
    literal = OptionMessage.literal
    raised = error_type(f"{literal('/d/a$root')} ($root={literal(repr('a$root'))}): set $source.cache_dir")
    assert str(raised) == "/d/a$root (root='a$root'): set source.cache_dir"
    with pytest.raises(error_type) as located:
        with option_errors_located():
            raise raised
    assert type(located.value) is error_type and isinstance(located.value, base)
    assert str(located.value) == "/d/a$root (dataset.root='a$root'): set dataset.source.cache_dir"
    assert located.value.__cause__ is raised
    assert str(pickle.loads(pickle.dumps(located.value))) == str(located.value)  # as a worker process passes it on


# -- configs ----------------------------------------------------------------------------
@pytest.mark.parametrize("choice", list_sources())
def test_every_source_option_is_in_the_yaml(choice):
    """Each registered source has conf/dataset/<its name>.yaml, which sets every constructor argument."""
    source = compose_config([f"dataset={choice}"]).dataset.source
    assert (source._target_, source.name) == ("gsa_exp.data.create_source", choice)  # as every component is picked
    parameters = inspect.signature(get_source(choice).__init__).parameters
    options = {name for name, parameter in parameters.items() if name != "self"}
    assert set(source) - {"_target_", "name"} == options
    assert all(parameter.default is inspect.Parameter.empty for name, parameter in parameters.items())


def presets_of(source: str) -> list[str]:
    """The conf/dataset/ options that pick the source's YAML with their own settings (stand-ins in folders aside)."""
    return [
        choice
        for choice in dataset_choices()
        if "/" not in choice
        and choice != source
        and OmegaConf.load(CONF / "dataset" / f"{choice}.yaml").defaults[0] == source
    ]


def test_the_medmnist_presets_are_found_in_the_directory():
    expected = {"pneumoniamnist", "octmnist", "breastmnist", "retinamnist", "dermamnist", "chestmnist"}
    assert expected <= set(presets_of("medmnist"))  # a new preset file is picked up with no edit here


@pytest.mark.parametrize("flag", presets_of("medmnist"))
def test_medmnist_presets_pick_their_flag_and_the_protocol_settings(flag):
    dataset = compose_config([f"dataset={flag}"]).dataset
    assert dataset.name == flag and dataset.source.flag == flag
    assert dataset.batch_size == 128 and dataset.image_size == 28 and list(dataset.normalize.mean) == [0.5]
    assert dataset.source.root == str(CONF.parent / "data" / "medmnist")
    assert compose_config([f"dataset={flag}", "dataset.source.size=64"]).dataset.image_size == 64


def test_pneumoniamnist_config_builds_a_datamodule_that_serves_batches(tmp_path):
    arrays = medmnist_arrays()
    arrays["train_images"] = np.concatenate([arrays["train_images"]] * 2)
    arrays["train_labels"] = np.concatenate([arrays["train_labels"]] * 2)
    write_npz(tmp_path, "pneumoniamnist.npz", arrays)
    cfg = compose_config(["dataset=pneumoniamnist", f"dataset.root={tmp_path}", "dataset.batch_size=16"])
    datamodule = build_datamodule(cfg.dataset)
    assert isinstance(datamodule, ArrayDataModule)
    assert (datamodule.name, datamodule.root) == ("pneumoniamnist", str(tmp_path))
    datamodule.setup("fit")
    info = datamodule.info
    assert (info.task, info.num_classes, info.channels, info.image_size, info.num_train) == ("multiclass", 2, 1, 28, 40)
    assert info.label_names == ["normal", "pneumonia"]
    batches = list(datamodule.train_dataloader())
    assert len(batches) == 2 and batches[0][0].shape == (16, 1, 28, 28) and batches[0][1].dtype == torch.int64
    images, labels = next(iter(datamodule.test_dataloader()))
    assert images.shape == (8, 1, 28, 28)
    assert labels.tolist() == arrays["test_labels"][:, 0].tolist()
    assert torch.equal(images[:, 0], torch.from_numpy(arrays["test_images"]))


def test_fer2013_and_image_folder_configs_build_datamodules(tmp_path):
    write_fer(tmp_path / "fer2013.csv", fer_rows())
    cfg = compose_config(
        ["dataset=fer2013", f"dataset.root={tmp_path}", "dataset.batch_size=4", "dataset.image_size=32"]
    )
    fer = build_datamodule(cfg.dataset)
    fer.setup("fit")
    assert (fer.info.num_classes, fer.info.channels, fer.info.image_size) == (7, 1, 32)
    assert next(iter(fer.val_dataloader()))[0].shape == (5, 1, 32, 32)
    for label, name in enumerate(["x", "y"]):
        write_class_images(tmp_path / "images" / name, label, 10, mode="L")
    cfg = compose_config(["dataset=image_folder", f"dataset.root={tmp_path / 'images'}", "dataset.batch_size=4"])
    folder = build_datamodule(cfg.dataset)
    folder.setup("fit")
    assert (folder.info.num_classes, folder.info.channels, folder.info.image_size) == (2, 3, 64)
    assert folder.info.label_names == ["x", "y"]
    assert next(iter(folder.train_dataloader()))[0].shape == (4, 3, 64, 64)
