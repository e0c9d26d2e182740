"""The project uses only the public API of Lightning, TensorBoard, Hydra, MLflow and W&B, so their upgrades cannot break it silently."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    [
        *(ROOT / "src").rglob("*.py"),
        *(ROOT / "scripts").rglob("*.py"),
        *(ROOT / n for n in ("train.py", "eval.py", "predict.py")),
    ]
)
LIBRARIES = (
    "lightning", "pytorch_lightning", "lightning_fabric", "tensorboard", "torch.utils.tensorboard", "hydra", "mlflow", "wandb"
)  # fmt: skip
# Private members these libraries' objects were once reached through (a logger's file writer, a failed
# Hydra job's exception), and any other ``._get_...`` on an object that is not the project's own.
PRIVATE_ATTRIBUTE = re.compile(r"(?<!\bself)(?<!\bcls)\.(_get_\w+|_return_value|_experiment|_internal)\b")


def _library(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in LIBRARIES)


def _private(name: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))


def test_no_private_modules_or_names_of_the_libraries_are_imported():
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and _library(node.module or ""):
                names = [node.module or ""] + [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if _library(alias.name)]
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}" for name in names if _private(name)]
    assert not found, "private modules or names imported:\n" + "\n".join(found)


def test_no_private_attributes_of_the_libraries_are_used():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in SOURCES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_ATTRIBUTE.search(line)
    ]
    assert not found, "private attributes used:\n" + "\n".join(found)


def test_the_scan_finds_what_it_looks_for():
    assert PRIVATE_ATTRIBUTE.search("writer = logger.experiment._get_file_writer()")
    assert PRIVATE_ATTRIBUTE.search("error = job_return._return_value")
    assert not PRIVATE_ATTRIBUTE.search("self._get_state()") and not PRIVATE_ATTRIBUTE.search("job_return.return_value")
    assert _library("hydra._internal.utils") and _private("hydra._internal.utils") and not _private("__future__")
    assert not _library("hydraulics")
