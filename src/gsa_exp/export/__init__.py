"""A trained classifier as one file that runs without Hydra or gsa-exp: ONNX or TorchScript.

``graph.py`` is the module that is exported (attention, normalisation, backbone, softmax),
``formats.py`` writes it with its description (class names, image size, channels,
normalisation) inside the file, and ``runtime.py`` runs such a file again (for predict.py).
"""

from gsa_exp.export.formats import EXPORT_SUFFIXES, write_exported
from gsa_exp.export.graph import InferenceGraph, description
from gsa_exp.export.runtime import ExportedModel, is_exported

__all__ = ["EXPORT_SUFFIXES", "ExportedModel", "InferenceGraph", "description", "is_exported", "write_exported"]
