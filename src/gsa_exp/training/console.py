"""The resolved config, printed as a tree when a run starts (``extras.print_config``)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree

FIRST = ("dataset", "backbone", "attention", "optimizer", "scheduler", "trainer", "performance")


def config_tree(cfg: DictConfig) -> Tree:
    """One branch per top-level key, the groups a run is made of first; values resolved."""
    tree = Tree("config", guide_style="dim")
    keys = [key for key in FIRST if key in cfg] + [key for key in cfg if key not in FIRST]
    for key in keys:
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        tree.add(str(key), style="bold").add(
            Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default")
        )
    return tree


def print_config(cfg: DictConfig, console: Console | None = None) -> None:
    (console or Console()).print(config_tree(cfg))
