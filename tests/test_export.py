"""export.py: a checkpoint as an ONNX or TorchScript file that runs without Hydra or gsa-exp."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import QUIET, TINY_DATA, compose_config, perturb, run_script

from gsa_exp.attention import list_attention
from gsa_exp.config.validation import ConfigError, validate_export_config
from gsa_exp.export import ExportedModel, InferenceGraph, description, write_exported
from gsa_exp.export.graph import ExportError
from gsa_exp.model.classifier import ImageClassifier
from gsa_exp.training.builders import build_datamodule, build_model
from gsa_exp.training.export import export
from gsa_exp.training.train import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained")
    train(compose_config([*TINY_DATA, *QUIET, "debug=limit", "trainer.max_epochs=1"], output_dir=run))
    return run / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> dict[str, Path]:
    """model.onnx and model.torchscript of the checkpoint, written by export() as export.py does."""
    paths = {}
    for format in ("onnx", "torchscript"):
        out = tmp_path_factory.mktemp(format)
        cfg = compose_config(
            [f"ckpt_path={checkpoint}", f"format={format}", "extras.print_config=false"], out, "export"
        )
        paths[format] = export(cfg)
    return paths


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    """7 images of the test split in [0, 1]: not the batch size the graph was traced with (2)."""
    split = build_datamodule(compose_config([*TINY_DATA]).dataset).split("test")
    return split.images[:7].float() / 255


def model_outputs(checkpoint: Path, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoint's probabilities and its shared map, through the model's own inference path."""
    model = ImageClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    with torch.no_grad():
        probabilities = model.probabilities(model.infer(images))
        shared = model.attention.shared_map()
    return probabilities.numpy(), shared.expand(len(images), -1, -1).numpy()


def test_onnx_runtime_gives_the_checkpoints_outputs_and_the_file_describes_its_input(checkpoint, exported, test_images):
    path = exported["onnx"]
    assert path.name == "model.onnx" and not list(path.parent.glob(".*gsa-tmp*"))  # written durably, no leftovers
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["probabilities", "attention"]
    probabilities, maps = session.run(None, {"images": test_images.numpy()})
    expected_probabilities, expected_maps = model_outputs(checkpoint, test_images)
    assert probabilities.shape == (7, 2) and maps.shape == (7, 32, 32)
    np.testing.assert_allclose(probabilities, expected_probabilities, atol=1e-4, rtol=0)
    np.testing.assert_allclose(maps, expected_maps, atol=1e-4, rtol=0)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)  # softmax, not logits

    described = json.loads(session.get_modelmeta().custom_metadata_map["gsa_exp"])
    model = ImageClassifier.load_from_checkpoint(checkpoint, map_location="cpu")
    assert described["class_names"] == model.data_info.label_names == ["no lesion in region", "lesion in region"]
    assert described["input"]["shape"] == ["N", 1, 32, 32] and described["input"]["range"] == [0.0, 1.0]
    assert (
        described["data_info"]["mean"] == model.data_info.mean and described["data_info"]["std"] == model.data_info.std
    )
    assert described["attention"] == "global" and described["checkpoint"] == str(checkpoint)


SCRIPT_WITHOUT_GSA_EXP = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import torch

    extra = {"gsa_exp.json": ""}
    module = torch.jit.load(sys.argv[1], _extra_files=extra)
    with torch.no_grad():
        probabilities, maps = module(torch.from_numpy(np.load(sys.argv[2])))
    np.save(sys.argv[3], probabilities.numpy())
    print(json.dumps({"class_names": json.loads(extra["gsa_exp.json"])["class_names"],
                      "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("gsa_exp", "hydra"))}))
    """
)


def test_torchscript_file_runs_in_a_process_that_never_imports_gsa_exp(checkpoint, exported, test_images, tmp_path):
    np.save(tmp_path / "images.npy", test_images.numpy())
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT_WITHOUT_GSA_EXP,
            str(exported["torchscript"]),
            *(str(tmp_path / n) for n in ("images.npy", "out.npy")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},  # no PYTHONPATH: the project's sources are not importable
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"class_names": ["no lesion in region", "lesion in region"], "imported": []}
    expected, _ = model_outputs(checkpoint, test_images)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5, rtol=0)


def test_the_project_reads_both_files_back_with_their_description(exported, test_images):
    onnx_model, script_model = (ExportedModel.load(exported[f]) for f in ("onnx", "torchscript"))
    assert onnx_model.data_info == script_model.data_info and onnx_model.data_info.image_size == 32
    (p1, m1), (p2, m2) = onnx_model(test_images), script_model(test_images)
    assert torch.allclose(p1, p2, atol=1e-5) and torch.allclose(m1, m2, atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["format=tflite"], "Error: Invalid config: format='tflite': allowed: onnx, torchscript"),
        (["ckpt_path=nowhere.ckpt"], "Error: Invalid config: ckpt_path='nowhere.ckpt': no such file (looked at "),
    ],
)
def test_a_bad_format_or_a_missing_checkpoint_is_one_line_and_exit_status_2(checkpoint, tmp_path, overrides, message):
    done = run_script(
        "export.py", f"ckpt_path={checkpoint}", *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith(message), done.stderr
    assert not (tmp_path / "run").exists()  # refused before the run directory exists


def test_a_file_that_is_not_a_checkpoint_is_one_line_and_exit_status_2(tmp_path):
    foreign = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {}}, foreign)
    done = run_script("export.py", f"ckpt_path={foreign}", "format=torchscript", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"Error: {foreign} was not written by gsa-exp's train.py (no run config inside)"


def test_the_export_config_asks_for_a_checkpoint():
    with pytest.raises(ConfigError, match="^Invalid config: ckpt_path=None: give the checkpoint to export"):
        validate_export_config(compose_config([], config_name="export"))


def untrained_model(*overrides: str) -> ImageClassifier:
    cfg = compose_config([*TINY_DATA, *overrides])
    datamodule = build_datamodule(cfg.dataset)
    datamodule.setup("fit")
    model = build_model(cfg, datamodule.info)
    if model.attention.needs_training_data:
        model.attention.prepare(*datamodule.bank_images())
    perturb(model.attention)  # maps that differ between pixels (and images), not the uniform start
    return model.eval()


def test_per_batch_global_attention_is_refused_with_the_reason():
    with pytest.raises(ExportError, match="attention=global_batch computes its map from each batch of exactly 16"):
        InferenceGraph(untrained_model("attention=global_batch"))


@pytest.mark.slow
@pytest.mark.parametrize("variant", [name for name in list_attention() if name != "global_batch"])
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_every_attention_variant_exports_with_its_maps(variant, format, tmp_path):
    model = untrained_model(f"attention={variant}")
    graph = InferenceGraph(model)
    path = write_exported(graph, description(model, graph, "-"), format, tmp_path / f"model.{format}")
    images = torch.rand(5, 1, 32, 32)
    with torch.no_grad():
        expected = model.probabilities(model.infer(images))
        maps = model.attention_maps if variant == "local" else None
    probabilities, found_maps = ExportedModel.load(path)(images)
    assert torch.allclose(probabilities, expected, atol=1e-4)
    assert (found_maps is None) == (variant == "none")
    if maps is not None:
        assert torch.allclose(found_maps, maps, atol=1e-4)
