"""The pre-commit hooks run the ruff of `make lint`: same version, same two checks, the rules of pyproject.toml."""

from __future__ import annotations

import re
from importlib import metadata

import yaml
from conftest import ROOT


def test_pre_commit_runs_the_pinned_ruff_with_the_checks_of_make_lint():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (repo,) = config["repos"]
    assert repo["repo"] == "https://github.com/astral-sh/ruff-pre-commit"
    assert [hook["id"] for hook in repo["hooks"]] == ["ruff", "ruff-format"]
    assert all("args" not in hook for hook in repo["hooks"])  # no rules of their own: pyproject.toml's, as make lint
    pinned = re.search(r'"ruff==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned, "the dev extra pins ruff (ruff==X), so pre-commit and make lint run one version"
    assert repo["rev"] == f"v{pinned[1]}" == f"v{metadata.version('ruff')}"
    lint = re.search(r"^lint:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert lint and lint[1].split("\n")[:2] == ["\t$(BIN)/ruff check .", "\t$(BIN)/ruff format --check ."]
