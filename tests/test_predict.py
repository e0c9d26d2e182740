"""predict.py: a trained model on new image files, with the preprocessing its checkpoint carries."""

from __future__ import annotations

import csv
import re
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
    assert overlays == ["channels_first.npy.png", "colour.jpg.png", "deep.tif.png", "float.npy.png"]


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
