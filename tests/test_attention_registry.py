"""Every registered attention variant, from the registry: its YAML, its build, its forward and gradients.

A variant registered in a new module of ``gsa_exp.attention`` with a YAML in
``conf/attention/`` is tested here with no edit to this file.
"""

from __future__ import annotations

import pkgutil
import sys

import pytest
import torch
import yaml
from conftest import CONF, TINY_DATA, compose_config

import gsa_exp.attention
from gsa_exp.attention import (
    MapReporting,
    attention_class,
    attention_order,
    create_attention,
    list_attention,
    register_attention,
    shared_map_of,
)
from gsa_exp.attention import registry as attention_registry
from gsa_exp.attention.base import SpatialAttention
from gsa_exp.data.splits import MULTICLASS, DataInfo
from gsa_exp.model.instantiate import instantiate_component
from gsa_exp.reporting import tables
from gsa_exp.training.builders import build_model

INFO = DataInfo(task=MULTICLASS, num_classes=2, channels=1, image_size=32, num_train=80, mean=[0.5], std=[0.5])
RUNTIME = dict(in_channels=1, image_size=32, num_train=80)


@pytest.fixture
def scratch_registry(monkeypatch):
    """The registry as it is, for one test: what the test registers is gone after it."""
    registry = attention_registry.ATTENTION
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(registry, "_order", dict(registry._order))


# -- the registry ---------------------------------------------------------------------------
def test_every_registered_variant_has_a_yaml_and_every_yaml_a_variant():
    assert list_attention() == sorted(path.stem for path in (CONF / "attention").glob("*.yaml"))
    assert {"none", "global", "local", "static"} <= set(list_attention())


def test_table_order_puts_the_papers_pair_first_and_lists_every_variant():
    order = attention_order()
    assert sorted(order) == list_attention()
    assert order[:2] == ("none", "global")


def test_sweep_tables_take_their_column_order_from_the_registry(scratch_registry):
    @register_attention("a_new_variant", order=5)
    class NewVariant(gsa_exp.attention.NoAttention):
        pass

    @register_attention("zz_unordered")
    class Unordered(gsa_exp.attention.NoAttention):
        pass

    order = tables.attention_order()
    assert order[:2] == ("none", "a_new_variant")
    assert order[-1] == "zz_unordered"  # no declared order: after the ordered ones


def test_the_built_in_names_build_their_classes():
    expected = {
        "none": gsa_exp.attention.NoAttention,
        "global": gsa_exp.attention.GlobalSpatialAttention,
        "local": gsa_exp.attention.LocalSpatialAttention,
        "static": gsa_exp.attention.StaticSpatialAttention,
    }
    for name, variant in expected.items():
        assert attention_class(name) is variant


def test_importing_the_package_imports_every_module_so_each_variant_registers_itself():
    package = gsa_exp.attention
    names = [module.name for module in pkgutil.iter_modules(package.__path__)]
    assert "registry" in names and "none" in names
    for name in names:
        assert f"gsa_exp.attention.{name}" in sys.modules, name


def test_an_unknown_name_is_refused_with_the_registered_names():
    with pytest.raises(ValueError) as error:
        create_attention("no_such_attention", **RUNTIME)
    registered = ", ".join(attention_order())
    assert str(error.value) == f"name='no_such_attention': not a registered attention variant; registered: {registered}"


def test_a_name_is_registered_once(scratch_registry):
    already = r"attention variant 'none' is already registered \(by gsa_exp\.attention\.none\.NoAttention\); "
    with pytest.raises(ValueError, match=already + r"test_attention_registry\..*\.Twice needs another name$"):

        @register_attention("none")
        class Twice(SpatialAttention):
            pass

    assert attention_class("none") is gsa_exp.attention.NoAttention


def test_a_registered_class_is_listed_and_built_by_name(scratch_registry):
    @register_attention("halved")
    class Halved(SpatialAttention):
        def __init__(self, *, in_channels: int, image_size: int, num_train: int, factor: float) -> None:
            super().__init__()
            self.factor = factor

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images * self.factor

    assert "halved" in list_attention() and list_attention() == sorted(list_attention())
    node = {"_target_": "gsa_exp.attention.create_attention", "name": "halved", "factor": 0.5}
    built = instantiate_component(node, **RUNTIME)  # name is create_attention's argument, not stripped
    assert type(built) is Halved and built.factor == 0.5
    assert torch.equal(built(torch.ones(1, 1, 2, 2)), torch.full((1, 1, 2, 2), 0.5))


def test_a_node_naming_the_class_still_builds_it():
    """Checkpoints written before the registry hold ``_target_: <the class>`` and a ``name`` it does not take."""
    node = {"_target_": "gsa_exp.attention.NoAttention", "name": "none"}
    assert type(instantiate_component(node, **RUNTIME)) is gsa_exp.attention.NoAttention


# -- every variant, from its YAML ------------------------------------------------------------
@pytest.mark.parametrize("name", list_attention())
def test_the_yaml_holds_only_constructor_arguments_and_builds_the_variant(name):
    node = yaml.safe_load((CONF / "attention" / f"{name}.yaml").read_text())
    assert node["_target_"] == "gsa_exp.attention.create_attention" and node["name"] == name
    cfg = compose_config([*TINY_DATA, f"attention={name}"])
    assert type(instantiate_component(cfg.attention, **RUNTIME)) is attention_class(name)


def built_model(name: str) -> torch.nn.Module:
    model = build_model(compose_config([*TINY_DATA, f"attention={name}"]), INFO)
    if model.attention.needs_training_data:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (INFO.num_train, 1, 32, 32), generator=generator, dtype=torch.uint8)
        model.attention.prepare(images, torch.arange(INFO.num_train) % 2)
    return model


def batch_size(model: torch.nn.Module) -> int:
    return model.attention.fixed_batch_size or 4


@pytest.mark.parametrize("name", list_attention())
def test_the_attended_input_keeps_its_shape_and_every_attention_parameter_learns(name):
    torch.manual_seed(0)
    model = built_model(name).train()
    count = batch_size(model)
    images, labels = torch.rand(count, 1, 32, 32), torch.arange(count) % 2
    assert model.attention(images).shape == images.shape
    loss, logits = model.training_loss(images, labels)
    assert logits.shape == (count, 2) and torch.isfinite(loss)
    loss.backward()
    for parameter_name, parameter in model.attention.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", list_attention())
def test_inference_takes_any_number_of_images(name):
    torch.manual_seed(0)
    model = built_model(name).eval()
    images = torch.rand(batch_size(model) + 3, 1, 32, 32)
    with torch.no_grad():
        model.reset_eval_context()
        logits = model.infer(images)
    assert logits.shape == (images.shape[0], 2) and torch.isfinite(logits).all()
    if shared_map_of(model.attention) is None and isinstance(model.attention, MapReporting):
        assert model.attention_maps.shape == (images.shape[0], 32, 32)  # every image's own (or its batch's) map
    else:  # one map for every image, or no map at all
        assert model.attention_maps is None


# -- map reporting: the optional protocol ------------------------------------------------------
def test_no_attention_reports_no_map():
    attention = create_attention("none", **RUNTIME)
    assert not isinstance(attention, MapReporting) and not hasattr(attention, "shared_map")
    assert shared_map_of(attention) is None


@pytest.mark.parametrize("name", [name for name in list_attention() if name != "none"])
def test_a_variant_with_a_map_reports_either_one_shared_map_or_a_map_per_image(name):
    torch.manual_seed(0)
    model = built_model(name).eval()
    attention = model.attention
    assert isinstance(attention, MapReporting)
    count = batch_size(model)
    with torch.no_grad():
        attention(torch.rand(count, 1, 32, 32))
    shared, per_image = attention.shared_map(), attention.last_image_maps()
    assert (shared is None) != (per_image is None)
    assert torch.equal(shared_map_of(attention), shared) if shared is not None else shared_map_of(attention) is None
    maps = per_image if shared is None else shared[None]
    assert maps.shape == ((count if shared is None else 1), 32, 32) and 0 < maps.min() <= maps.max() < 1
    assert per_image is not None or not attention.image_specific  # an image-specific map is a map per image
