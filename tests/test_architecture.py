"""The architecture the layout promises: one-way imports, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "src" / "gsa_exp"
MAX_MODULE_LINES = 400

# What each layer may import of the project; entry points -> training -> model -> components -> the base
# (errors.py, the option error every layer raises; option_schema.py, the one check of declared option types).
BASE = {"errors", "option_schema"}
ALLOWED = {
    "attention": {"attention", *BASE},
    "backbones": {"backbones", *BASE},
    "data": {"data", *BASE},
    "model": {"model", "attention", "backbones", "data", *BASE},
}


def project_imports(path: Path) -> set[str]:
    """The gsa_exp sub-packages/modules a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found |= {name.split(".")[1] for name in names if name.startswith("gsa_exp.") and name.count(".") >= 1}
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_components_and_model_import_only_downwards(layer):
    wrong = {
        str(path.relative_to(PACKAGE)): sorted(project_imports(path) - ALLOWED[layer])
        for path in sorted((PACKAGE / layer).rglob("*.py"))
    }
    assert {path: names for path, names in wrong.items() if names} == {}


@pytest.mark.parametrize("module", sorted(BASE))
def test_the_base_modules_import_nothing_above_them(module):
    assert project_imports(PACKAGE / f"{module}.py") <= BASE


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("def f():\n    from gsa_exp.config.validation import ConfigError\n")
    assert project_imports(source) == {"config"}


def test_no_module_is_over_the_line_limit():
    lengths = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert {path: lines for path, lines in lengths.items() if lines > MAX_MODULE_LINES} == {}
