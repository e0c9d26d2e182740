"""predict.py: a trained model on new image files, with the preprocessing its checkpoint carries."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import QUIET, TINY_DATA, compose_config, run_script
from PIL import Image

from gsa_exp.config.validation import ConfigError
from gsa_exp.data import DataFormatError, DataNotFoundError
from gsa_exp.model.classifier import ImageClassifier
from gsa_exp.training.builders import build_datamodule
from gsa_exp.training.export import export
from gsa_exp.training.predict import predict
from gsa_exp.training.train import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained")
    train(compose_config([*TINY_DATA, *QUIET, "debug=limit", "trainer.max_epochs=1"], output_dir=run))
    return run / "checkpoints" / "best.ckpt"


def predict_config(checkpoint: Path, input_path: Path, output_dir: Path, *overrides: str):
    return compose_config(
        [f"ckpt_path={checkpoint}", f"input={input_path}", "extras.print_config=false", *overrides],
        output_dir=output_dir,
        config_name="predict",
    )


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open() as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


def test_predictions_match_the_models_own_outputs_on_the_same_images(checkpoint, tmp_path):
    model = ImageClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    datamodule = build_datamodule(compose_config([*TINY_DATA]).dataset)
    images = datamodule.split("test").images[:6]  # uint8 1 x 32 x 32, the model's own size: no resizing
    folder = tmp_path / "images"
    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image[0].numpy()).save(folder / f"image_{index}.png")
    path = predict(predict_config(checkpoint, folder, tmp_path / "out"))
    header, rows = read_rows(path)
    assert header == ["path", "predicted", *model.data_info.label_names]
    assert [Path(row[0]).name for row in rows] == [f"image_{index}.png" for index in range(6)]
    with torch.no_grad():
        expected = model.probabilities(model.infer(images.float() / 255)).numpy()
    scores = np.array([[float(value) for value in row[2:]] for row in rows])
    assert np.allclose(scores, expected, atol=1e-5)
    assert [row[1] for row in rows] == [model.data_info.label_names[i] for i in expected.argmax(axis=1)]


def test_every_supported_format_is_converted_to_the_models_channels_and_size(checkpoint, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / "colour.jpg")  # RGB -> grey
    Image.fromarray(rng.integers(0, 65535, (64, 64), dtype=np.uint16)).save(folder / "deep.tif")  # 16 bit
    np.save(folder / "float.npy", rng.random((32, 32)).astype(np.float32))  # floats in [0, 1]
    np.save(folder / "channels_first.npy", rng.integers(0, 256, (3, 20, 20), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image: ignored")
    path = predict(predict_config(checkpoint, folder, tmp_path / "out", "overlays=true"))
    _, rows = read_rows(path)
    assert sorted(Path(row[0]).name for row in rows) == ["channels_first.npy", "colour.jpg", "deep.tif", "float.npy"]
    for row in rows:
        assert sum(float(value) for value in row[2:]) == pytest.approx(1.0, abs=1e-4)
    overlays = sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir())
    assert overlays == ["channels_first.png", "colour.png", "deep.png", "float.png"]


def test_bad_inputs_are_named(checkpoint, tmp_path, monkeypatch):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png at all")
    np.save(folder / "four_channels.npy", np.zeros((4, 8, 8), dtype=np.uint8))
    with pytest.raises(DataFormatError) as raised:
        predict(predict_config(checkpoint, folder, tmp_path / "out"))
    message = str(raised.value)
    assert "2 input files could not be read as 1-channel images" in message
    assert f"{folder / 'broken.png'}:" in message
    assert f"{folder / 'four_channels.npy'}: array of shape (4, 8, 8)" in message

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match="holds no image files"):
        predict(predict_config(checkpoint, empty, tmp_path / "out"))
    with pytest.raises(DataNotFoundError, match="input: no file or folder at"):
        predict(predict_config(checkpoint, tmp_path / "nowhere", tmp_path / "out"))
    monkeypatch.chdir(tmp_path)  # predict's own option keeps its name (no "dataset."), and a $ in it stays
    relative = f"input: no file or folder at {tmp_path / 'no$where'} (input='no$where' resolved against the launch"
    with pytest.raises(DataNotFoundError, match=re.escape(relative)):
        predict(predict_config(checkpoint, Path("no$where"), tmp_path / "out"))
    with pytest.raises(ConfigError, match="ckpt_path='missing.ckpt': no such file"):
        predict(predict_config(Path("missing.ckpt"), folder, tmp_path / "out"))


def test_predict_py_writes_predictions_into_its_run_directory(checkpoint, tmp_path):
    image = tmp_path / "one.png"
    Image.fromarray(np.full((32, 32), 128, dtype=np.uint8)).save(image)
    run_dir = tmp_path / "run"
    done = run_script(
        "predict.py",
        f"ckpt_path={checkpoint}",
        f"input={image}",
        "extras.print_config=false",
        f"hydra.run.dir={run_dir}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _, rows = read_rows(run_dir / "predictions.csv")
    assert len(rows) == 1 and rows[0][0] == str(image)
    assert (run_dir / "provenance.json").is_file()


def save_images(folder: Path, images: torch.Tensor) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{index:04d}.png" for index in range(len(images))]
    for path, image in zip(paths, images):
        Image.fromarray(image[0].numpy()).save(path)
    return paths


@pytest.fixture(scope="module")
def class_folders(checkpoint, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A test split laid out as <class name>/<image>.png (the image-folder layout), and its true classes."""
    names = ImageClassifier.load_from_checkpoint(checkpoint, map_location="cpu").data_info.label_names
    split = build_datamodule(compose_config([*TINY_DATA]).dataset).split("test")
    root = tmp_path_factory.mktemp("test_split")
    for index, name in enumerate(names):
        save_images(root / name, split.images[:12][split.labels[:12] == index])
    return root, split.labels[:12].numpy()


def test_a_folder_of_class_folders_is_read_recursively_and_scored_against_the_folder_names(
    checkpoint, class_folders, tmp_path
):
    root, labels = class_folders
    out = tmp_path / "out"
    _, rows = read_rows(predict(predict_config(checkpoint, root, out, "overlays=true")))
    names = ImageClassifier.load_from_checkpoint(checkpoint, map_location="cpu").data_info.label_names
    true = [names.index(Path(row[0]).parent.name) for row in rows]
    predicted = [names.index(row[1]) for row in rows]
    assert len(rows) == 12 and sorted(true) == sorted(labels.tolist())
    counts = np.zeros((2, 2), dtype=int)
    np.add.at(counts, (true, predicted), 1)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["acc"] == pytest.approx(float(np.mean(np.array(true) == np.array(predicted))))
    assert metrics["num_images"] == 12 and metrics["confusion_matrix"]["counts"] == counts.tolist()
    assert metrics["confusion_matrix"]["labels"] == names
    _, matrix = read_rows(out / "confusion_matrix.csv")
    assert matrix == [[name, *map(str, row)] for name, row in zip(names, counts.tolist())]
    # overlays mirror the sub-folders: two classes' 0000.png do not overwrite each other, and no .png.png
    overlays = sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.png"))
    assert overlays == sorted(Path(row[0]).relative_to(root).as_posix() for row in rows)


def test_a_folder_whose_sub_folders_are_not_the_classes_is_predicted_but_not_scored(checkpoint, tmp_path, caplog):
    images = build_datamodule(compose_config([*TINY_DATA]).dataset).split("test").images[:4]
    save_images(tmp_path / "in" / "batch_1", images[:2])
    save_images(tmp_path / "in" / "batch_2" / "deeper", images[2:])
    path = predict(predict_config(checkpoint, tmp_path / "in", tmp_path / "out"))
    _, rows = read_rows(path)
    assert [Path(row[0]).relative_to(tmp_path / "in").as_posix() for row in rows] == [
        "batch_1/0000.png",
        "batch_1/0001.png",
        "batch_2/deeper/0000.png",
        "batch_2/deeper/0001.png",
    ]
    assert not (tmp_path / "out" / "metrics.json").exists()
    assert "No accuracy reported: not every image lies in a sub-folder named after one of the model's classes" in (
        caplog.text
    )


def test_overlays_of_files_that_share_a_name_keep_their_suffix(checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((32, 32), 90, dtype=np.uint8)).save(folder / "scan.png")
    np.save(folder / "scan.npy", np.full((32, 32), 0.5, dtype=np.float32))
    Image.fromarray(np.full((32, 32), 10, dtype=np.uint8)).save(folder / "other.tif")
    predict(predict_config(checkpoint, folder, tmp_path / "out", "overlays=true"))
    overlays = sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir())
    assert overlays == ["other.png", "scan_npy.png", "scan_png.png"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("input=nowhere", "Error: input: no file or folder at {tmp}/nowhere (input='nowhere' resolved against"),
        (
            "input=empty",
            "Error: input: {tmp}/empty (input='empty' resolved against the launch directory {tmp}) holds no",
        ),
        ("batch_size=0", "Error: Invalid config: batch_size=0: must be >= 1"),
        ("ckpt_path=notes.txt", "Error: {tmp}/notes.txt: cannot read it as a checkpoint (invalid load key"),
    ],
)
def test_a_user_error_is_one_line_on_stderr_and_exit_status_2(checkpoint, tmp_path, given, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(tmp_path / "one.png")
    done = run_script(
        "predict.py",
        f"ckpt_path={checkpoint}",
        "input=one.png",
        given,
        "hydra.run.dir=run",
        "extras.print_config=false",
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(message.format(tmp=tmp_path)), done.stderr


def test_eval_of_a_file_that_is_not_a_checkpoint_is_one_line_and_exit_status_2(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    done = run_script("eval.py", f"ckpt_path={foreign}", "hydra.run.dir=run", "extras.print_config=false", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"Error: {foreign} was not written by gsa-exp's train.py (no run config inside)"


READ_WITH_WARNINGS_AS_ERRORS = """
import sys
from pathlib import Path
from gsa_exp.data.image_files import read_image_file
for name, channels in (("grey.png", 1), ("colour.jpg", 3), ("colour.jpg", 1), ("grey.png", 3)):
    pixels = read_image_file(Path(sys.argv[1]) / name, channels)
    pixels += 1  # a tensor torch owns: writable
print("read")
"""


def test_reading_images_raises_no_warning_about_read_only_arrays(tmp_path):
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "colour.jpg")
    done = subprocess.run(  # a fresh interpreter: torch says it only once per process
        [sys.executable, "-W", "error", "-c", READ_WITH_WARNINGS_AS_ERRORS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip() == "read", done.stderr[-2000:]


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_an_exported_file_gives_the_same_predictions_as_its_checkpoint(checkpoint, class_folders, tmp_path, format):
    root, _ = class_folders
    cfg = compose_config(
        [f"ckpt_path={checkpoint}", f"format={format}", "extras.print_config=false"], tmp_path / "export", "export"
    )
    exported = export(cfg)
    from_checkpoint = read_rows(predict(predict_config(checkpoint, root, tmp_path / "ckpt")))
    from_file = read_rows(predict(predict_config(exported, root, tmp_path / "file", "overlays=true")))
    assert from_file[0] == from_checkpoint[0]  # the header: path, predicted, the class names
    assert [row[:2] for row in from_file[1]] == [row[:2] for row in from_checkpoint[1]]
    scores = [np.array([[float(v) for v in row[2:]] for row in rows[1]]) for rows in (from_file, from_checkpoint)]
    np.testing.assert_allclose(*scores, atol=1e-5, rtol=0)
    assert (tmp_path / "file" / "metrics.json").read_text() == (tmp_path / "ckpt" / "metrics.json").read_text()
    assert len(list((tmp_path / "file" / "overlays").rglob("*.png"))) == 12


def test_test_time_flips_give_an_exported_file_its_checkpoints_predictions(checkpoint, class_folders, tmp_path):
    root, _ = class_folders
    cfg = compose_config(
        [f"ckpt_path={checkpoint}", "format=onnx", "extras.print_config=false"], tmp_path / "x", "export"
    )
    exported = export(cfg)
    flips = ("tta.hflip=true", "tta.vflip=true")
    scores = {}
    for name, model in (("ckpt", checkpoint), ("file", exported), ("plain", exported)):
        rows = read_rows(predict(predict_config(model, root, tmp_path / name, *(() if name == "plain" else flips))))
        scores[name] = np.array([[float(v) for v in row[2:]] for row in rows[1]])
    np.testing.assert_allclose(
        scores["file"], scores["ckpt"], atol=1e-5, rtol=0
    )  # the mean of the views' probabilities
    assert not np.allclose(scores["file"], scores["plain"], atol=1e-4)
