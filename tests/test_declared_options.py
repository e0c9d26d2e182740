"""Every option of every component is declared once (``gsa_exp.options``), and a bad value of each is
refused by the config check, before any data is read or model built, in one message form."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import pytest
from conftest import CONF, ROOT, compose_config
from omegaconf import OmegaConf

from gsa_exp.attention import list_attention
from gsa_exp.backbones import list_backbones
from gsa_exp.config.validation import COMPONENT_NODES, ConfigError, validate_train_config
from gsa_exp.data import list_sources
from gsa_exp.option_schema import AtLeast, InRange, Odd, OneOf, Rule, rules
from gsa_exp.options import declared, schema_for
from gsa_exp.options.data import AugmentOptions
from gsa_exp.options.scheme import SCHEMES

CHOICES = {
    "attention": list_attention(),
    "backbone": list(list_backbones()),
    "dataset": list_sources(),
    "scheme": list(SCHEMES),
}
SELECTION_KEYS = {"_target_", "name"}  # how a YAML picks the component, not its options


def declared_paths(schema: type, prefix: str = "") -> dict[str, Rule]:
    """Every option of ``schema`` by its dotted path, nested groups flattened."""
    paths = {}
    for name, rule in rules(schema).items():
        if dataclasses.is_dataclass(rule.kind):
            paths |= declared_paths(rule.kind, f"{prefix}{name}.")
        else:
            paths[f"{prefix}{name}"] = rule
    return paths


def yaml_paths(node: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in node.items():
        if key in SELECTION_KEYS and not prefix:
            continue
        paths |= yaml_paths(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return paths


def component_node(group: str, choice: str) -> dict:
    cfg = compose_config([f"{group}={choice}"])
    return OmegaConf.to_container(OmegaConf.select(cfg, COMPONENT_NODES[group]), resolve=False)


@pytest.mark.parametrize(("group", "choice"), [(g, c) for g, choices in CHOICES.items() for c in choices])
def test_every_component_declares_exactly_the_options_its_yaml_sets(group, choice):
    schema = schema_for(group, choice)
    assert schema is not None, f"{group}={choice} declares no options in gsa_exp/options/{group}.py"
    assert set(declared_paths(schema)) == yaml_paths(component_node(group, choice))


def test_every_declared_callback_option_is_in_the_callbacks_yaml():
    callbacks = OmegaConf.load(CONF / "callbacks" / "default.yaml")
    for key, schema in declared().items():
        if key.startswith("callbacks/"):
            assert set(declared_paths(schema)) <= set(callbacks[key.split("/", 1)[1]]), key


def bad_value(rule: Rule) -> Any | None:
    """A value the rule refuses (None: the rule accepts anything, e.g. a list checked by its component)."""
    if rule.kind is bool:
        return "maybe"
    if (one_of := rule.mark(OneOf)) is not None:  # a number of the right type, when the choices are numbers
        numbers = [choice for choice in one_of.choices if isinstance(choice, int) and not isinstance(choice, bool)]
        return max(numbers) + 1 if numbers else "not-a-choice"
    if rule.kind in (int, float):
        if (in_range := rule.mark(InRange)) is not None:
            return in_range.high + 1
        if (at_least := rule.mark(AtLeast)) is not None:
            return at_least.minimum if at_least.strict else at_least.minimum - 1
        if rule.mark(Odd) is not None:
            return 2
        return "not-a-number"
    if rule.kind is str:
        return 123
    return None


def every_declared_option() -> list[tuple[str, str, str, Any]]:
    """(choice override, config path of the option, bad value) for every option that has a rule."""
    cases = []
    for key, schema in sorted(declared().items()):
        group, choice = key.split("/", 1)
        if group == "callbacks":
            select, base = "callbacks=default", f"callbacks.{choice}"
        else:
            select, base = f"{group}={choice}", COMPONENT_NODES[group]
        cases += [(select, f"{base}.{path}", bad_value(rule)) for path, rule in declared_paths(schema).items()]
    cases += [("dataset=synthetic", f"dataset.augment.{path}", bad_value(rule)) for path, rule in
              declared_paths(AugmentOptions).items()]  # fmt: skip
    return [case for case in cases if case[2] is not None]


@pytest.mark.parametrize(("select", "path", "value"), every_declared_option(), ids=lambda item: str(item))
def test_a_bad_value_of_every_declared_option_is_refused_before_work(select, path, value):
    with pytest.raises(ConfigError) as refused:
        validate_train_config(compose_config([select, f"{path}={value}"]))
    message = str(refused.value).removeprefix("Invalid config: ")
    assert message.startswith(f"{path}={value!r}: "), message  # key=value: what is allowed
    assert "\n" not in message


def test_the_options_are_enumerated_for_every_group():
    groups = {case[1].split(".")[0] for case in every_declared_option()}
    assert groups == {"attention", "backbone", "dataset", "callbacks", "scheme"}
    assert len(every_declared_option()) > 60


def test_a_bad_component_option_is_answered_without_loading_torch():
    probe = (
        "import sys, runpy; sys.argv = ['train.py', 'attention.temperature=0']\n"
        "try:\n    runpy.run_path('train.py', run_name='__main__')\n"
        "except SystemExit as end:\n    print('exit', end.code, 'torch' in sys.modules, 'pytorch_lightning' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "attention.temperature=0: must be > 0" in done.stderr
    assert done.stdout.strip() == "exit 2 False False"


def test_a_misspelt_option_given_to_a_component_directly_is_refused():
    from gsa_exp.attention.base import AttentionError
    from gsa_exp.option_schema import checked
    from gsa_exp.options.attention import BankOptions

    bank = OmegaConf.to_container(compose_config([]).attention.bank, resolve=True)
    assert checked(BankOptions, bank, AttentionError, "bank.").components == bank["components"]
    with pytest.raises(AttentionError, match=r"^bank.componets=8: not an option here; the options are source, "):
        checked(BankOptions, {**bank, "componets": 8}, AttentionError, "bank.")
