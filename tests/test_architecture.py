"""The architecture the layout promises: one-way imports, small modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "src" / "gsa_exp"
MAX_MODULE_LINES = 400

# What each layer may import of the project; entry points -> training -> model -> components -> the base
# (errors.py, the option error every layer raises; option_schema.py, the one check of declared option types;
# durable.py, whole-or-absent file writes; run_files.py, the names of the files a run leaves; run_state.py, a run's
# life in status.json and the one definition of completed; registry.py, the one registry type; options/, every
# component's option schemas, the data module's among them; tracking.py, what a run records besides scalars, for
# every logger: the model's confusion matrix, the callbacks' maps, train()'s hparams and files).
BASE = {"errors", "option_schema", "options", "durable", "registry", "run_files", "run_state", "tracking"}
ALLOWED = {
    "attention": {"attention", *BASE},
    "backbones": {"backbones", *BASE},
    "data": {"data", *BASE},
    "model": {"model", "attention", "backbones", "data", *BASE},
    "export": {"export", "model", "attention", "backbones", "data", *BASE},  # the model as a file; training runs it
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
    files = sorted((PACKAGE / module).rglob("*.py")) if (PACKAGE / module).is_dir() else [PACKAGE / f"{module}.py"]
    for path in files:
        assert project_imports(path) <= BASE, path


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("def f():\n    from gsa_exp.config.validation import ConfigError\n")
    assert project_imports(source) == {"config"}


# Components name their options relative to themselves ($root, $bank.components); only the config
# layer knows where the config keeps them (dataset.root, attention.bank.components).
LEAF_LAYERS = ("data", "attention", "backbones", "model")
CONFIG_PATH = re.compile(r"(?<![\w.])(?:dataset|performance|attention|backbone)\.\w")  # not gsa_exp.attention.x


def string_constants(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant but docstrings, f-string parts included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, documented) and node.body and isinstance(node.body[0], ast.Expr)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


@pytest.mark.parametrize("layer", LEAF_LAYERS)
def test_components_and_model_spell_no_config_paths(layer):
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for line, text in string_constants(path)
        if CONFIG_PATH.search(text)
    ]
    assert found == []


def test_the_config_path_check_sees_f_strings_and_skips_docstrings(tmp_path):
    source = tmp_path / "module.py"
    source.write_text(
        '"""Reads dataset.root."""\n'
        "def f(x):\n"
        '    """Uses performance.compile."""\n'
        '    return f"backbone.stem={x}", "$root", "gsa_exp.attention.registry"\n'
    )
    assert [text for _, text in string_constants(source) if CONFIG_PATH.search(text)] == ["backbone.stem="]


def test_no_module_is_over_the_line_limit():
    modules = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "scripts").glob("*.py")]
    lengths = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in modules}
    assert {path: lines for path, lines in lengths.items() if lines > MAX_MODULE_LINES} == {}
