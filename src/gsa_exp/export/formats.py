"""Writing the inference graph as ONNX or TorchScript, each with its description inside, durably.

ONNX goes through ``torch.onnx.export(dynamo=True)``, the exporter torch has defaulted to since
2.9 (the TorchScript-based one warns that it will be removed); it needs ``onnx`` and
``onnxscript`` (``pip install 'gsa-exp[export]'``). The description is the model's
``metadata_props`` entry ``gsa_exp``, a JSON string. TorchScript is ``torch.jit.trace``
(the graph's Python branches depend on the model, not on the images), saved with the
description as the extra file ``gsa_exp.json``. Both files are written to memory first and
then durably (``gsa_exp.durable``), so a killed export leaves no half-written model.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from gsa_exp.durable import write_bytes
from gsa_exp.export.graph import DESCRIPTION_KEY, INPUT_NAME, InferenceGraph

log = logging.getLogger(__name__)
EXPORT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript"}  # predict.py tells the formats apart by these
EXTRA_FILE = f"{DESCRIPTION_KEY}.json"
# torch 2.10+ marks torch.jit deprecated (in favour of torch.export); trace, save and load still work in 2.14
JIT_DEPRECATED = r"`torch\.jit\.\w+` is deprecated"


def example_images(graph: InferenceGraph, count: int = 2) -> torch.Tensor:
    info = graph.data_info
    return torch.rand(
        count, info.channels, info.image_size, info.image_size, generator=torch.Generator().manual_seed(0)
    )


@contextlib.contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """The exporter's optimiser logs every rewrite at INFO, which Hydra's logging would show: warnings only."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def onnx_bytes(graph: InferenceGraph, description: dict[str, Any]) -> bytes:
    """The serialised ONNX model, batch axis dynamic, ``description`` in ``metadata_props``."""
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), quiet_loggers("onnxscript", "onnx_ir"):
        program = _export_onnx(graph)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = DESCRIPTION_KEY, json.dumps(description, sort_keys=True)
    return proto.SerializeToString()


def _export_onnx(graph: InferenceGraph) -> Any:
    """torch.onnx.export's program (its steps go to stdout, which the caller silences)."""
    with warnings.catch_warnings():  # of the maps local attention keeps for reporting, not graph outputs
        warnings.filterwarnings("ignore", message="The tensor attribute .* was assigned during export")
        return torch.onnx.export(
            graph,
            (example_images(graph),),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=graph.output_names,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            verbose=False,
        )


def torchscript_bytes(graph: InferenceGraph, description: dict[str, Any]) -> bytes:
    """The traced module, ``description`` as the extra file ``gsa_exp.json``."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # shape checks of the backbones
        warnings.filterwarnings("ignore", category=FutureWarning, message=JIT_DEPRECATED)
        traced = torch.jit.trace(graph, (example_images(graph),), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={EXTRA_FILE: json.dumps(description, sort_keys=True)})
    return buffer.getvalue()


WRITERS: dict[str, Callable[[InferenceGraph, dict[str, Any]], bytes]] = {
    "onnx": onnx_bytes,
    "torchscript": torchscript_bytes,
}


def write_exported(graph: InferenceGraph, description: dict[str, Any], format: str, path: Path) -> Path:
    """``graph`` in ``format`` at ``path`` (written whole or not at all)."""
    write_bytes(path, WRITERS[format](graph.eval(), description))
    log.info("Exported %s: %s (%.1f MB)", format, path, path.stat().st_size / 1e6)
    return path
