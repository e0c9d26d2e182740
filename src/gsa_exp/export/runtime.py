"""Running an exported file again: ONNX through ONNX Runtime, TorchScript through ``torch.jit.load``.

predict.py reads an exported file as it reads a checkpoint; this is the other half of that.
The format is told by the suffix ``export.py`` gives its files (``.onnx``, ``.torchscript``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gsa_exp.data.splits import DataInfo
from gsa_exp.errors import UsageError
from gsa_exp.export.formats import EXPORT_SUFFIXES, EXTRA_FILE, JIT_DEPRECATED
from gsa_exp.export.graph import DESCRIPTION_KEY, INPUT_NAME


def is_exported(path: Path) -> bool:
    return path.suffix in EXPORT_SUFFIXES.values()


@dataclass
class ExportedModel:
    """An exported file, ready to run: its description and a function from images to outputs."""

    path: Path
    description: dict[str, Any]
    _run: Any

    @property
    def data_info(self) -> DataInfo:
        return DataInfo.from_dict(self.description["data_info"])

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """Probabilities (N x classes) and attention maps (N x H x W, None without attention) of images in [0, 1]."""
        outputs = self._run(images.float().contiguous())
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> ExportedModel:
        loader = _load_onnx if path.suffix == EXPORT_SUFFIXES["onnx"] else _load_torchscript
        description, run = loader(path, device)
        if not description:
            raise UsageError(f"{path} was not written by gsa-exp's export.py (no {DESCRIPTION_KEY} description inside)")
        return cls(path, description, run)


def _load_onnx(path: Path, device: str) -> tuple[dict[str, Any], Any]:
    try:
        import onnxruntime
    except ImportError as missing:
        raise UsageError(
            f"{path}: running an ONNX file needs onnxruntime, which is not installed: pip install -e '.[export]'"
        ) from missing
    wanted = ["CUDAExecutionProvider"] if device == "cuda" else []
    providers = [p for p in wanted if p in onnxruntime.get_available_providers()] + ["CPUExecutionProvider"]
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types for unreadable files
        raise UsageError(f"{path}: cannot read it as an ONNX model ({str(error).splitlines()[0]})") from error
    metadata = session.get_modelmeta().custom_metadata_map

    def run(images: Tensor) -> list[Tensor]:
        return [torch.from_numpy(np.array(output)) for output in session.run(None, {INPUT_NAME: images.numpy()})]

    return json.loads(metadata.get(DESCRIPTION_KEY, "{}")), run


def _load_torchscript(path: Path, device: str) -> tuple[dict[str, Any], Any]:
    extra = {EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=JIT_DEPRECATED)
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except RuntimeError as error:
        raise UsageError(f"{path}: cannot read it as a TorchScript model ({str(error).splitlines()[0]})") from error

    def run(images: Tensor) -> list[Tensor]:
        with torch.no_grad():
            return [output.cpu() for output in module(images.to(device))]

    return json.loads(extra[EXTRA_FILE] or "{}"), run
