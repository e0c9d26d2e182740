"""The embedded synthetic data set and the array data module."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import array_datamodule

import gsa_exp.data
from gsa_exp.config.validation import option_errors_located
from gsa_exp.data import (
    ArrayDataModule,
    SyntheticLesions,
    create_source,
    get_source,
    list_sources,
    register_source,
    registry,
)
from gsa_exp.data.preprocess import Augmentation, Normalization, match_channels, resize_uint8


def synthetic(**changes) -> SyntheticLesions:
    options = dict(
        image_size=32,
        channels=1,
        num_train=64,
        num_val=16,
        num_test=16,
        lesion_amplitude=0.25,
        distractor_amplitude=0.25,
        lesion_sigma=0.045,
        region_radius=0.12,
        max_blobs=3,
        noise_std=0.05,
        jitter=1.0,
        seed=0,
    )
    options.update(changes)
    return SyntheticLesions(**options)


def datamodule(source=None, **changes) -> ArrayDataModule:
    return array_datamodule(source or synthetic(), **changes)


# -- the registry ---------------------------------------------------------------------------
@pytest.fixture
def own_registry(monkeypatch):
    """Registrations made by a test stay in it."""
    monkeypatch.setattr(registry.SOURCES, "_entries", dict(registry.SOURCES._entries))
    monkeypatch.setattr(registry.SOURCES, "_order", dict(registry.SOURCES._order))


def test_the_sources_register_themselves(own_registry):
    assert get_source("synthetic") is SyntheticLesions
    options = {"image_size": 32, "channels": 1, "num_train": 4, "num_val": 4, "num_test": 4, "seed": 0}
    options |= {"lesion_amplitude": 0.2, "distractor_amplitude": 0.2, "lesion_sigma": 0.05, "region_radius": 0.1}
    created = create_source("synthetic", **options, max_blobs=2, noise_std=0.0, jitter=0.0)
    assert isinstance(created, SyntheticLesions) and created.image_size == 32


def test_a_registered_source_is_listed_and_a_name_is_taken_once(own_registry):
    @register_source("tiny_test_source")
    class TinySource:
        def load(self):
            raise NotImplementedError

    assert "tiny_test_source" in list_sources() and get_source("tiny_test_source") is TinySource
    with pytest.raises(
        ValueError, match=r"data source 'synthetic' is already registered \(by gsa_exp.data.synthetic.Synth"
    ):
        register_source("synthetic")(TinySource)
    with pytest.raises(ValueError, match=r"name='nope': not a registered data source; registered: .*synthetic"):
        get_source("nope")


def test_a_source_module_is_found_by_being_in_the_package(own_registry, tmp_path, monkeypatch):
    """No list names the modules: a new one in gsa_exp/data/ registers itself when the sources are listed."""
    (tmp_path / "dropped_in_source.py").write_text(
        "from gsa_exp.data.registry import register_source\n\n\n"
        "@register_source('dropped_in')\nclass DroppedIn:\n    def load(self):\n        raise NotImplementedError\n"
    )
    monkeypatch.setattr(gsa_exp.data, "__path__", [*gsa_exp.data.__path__, str(tmp_path)])
    try:
        assert "dropped_in" in list_sources()
    finally:
        sys.modules.pop("gsa_exp.data.dropped_in_source", None)


def test_synthetic_is_deterministic_per_seed():
    first, again, other = synthetic().load(), synthetic().load(), synthetic(seed=1).load()
    for split in ("train", "val", "test"):
        assert torch.equal(first.split(split).images, again.split(split).images)
        assert torch.equal(first.split(split).labels, again.split(split).labels)
    assert not torch.equal(first.train.images, other.train.images)
    assert not torch.equal(first.train.images, first.val.images[:16].repeat(4, 1, 1, 1))


def test_synthetic_shapes_balance_and_mask():
    data = synthetic(channels=3, image_size=48).load()
    assert data.train.images.shape == (64, 3, 48, 48) and data.train.images.dtype == torch.uint8
    assert torch.bincount(data.train.labels).tolist() == [32, 32]
    assert data.region_mask.shape == (48, 48) and data.region_mask.dtype == torch.bool
    area = data.region_mask.float().mean()
    assert 0.02 < area < 0.1  # pi * 0.12^2 = 0.045 of the image


def test_the_class_signal_lives_in_the_region_and_distractors_outside():
    data = synthetic(num_train=400, noise_std=0.0, jitter=0.0).load()
    images = data.train.images.float()[:, 0]
    mask = data.region_mask
    positive, negative = images[data.train.labels == 1], images[data.train.labels == 0]
    inside_gap = (positive[:, mask].mean() - negative[:, mask].mean()).item()
    outside_gap = (positive[:, ~mask].mean() - negative[:, ~mask].mean()).item()
    assert inside_gap > 5  # lesions brighten the region in positive images only
    assert abs(outside_gap) < inside_gap / 5  # same number of blobs: the rest of the image does not tell


def test_synthetic_rejects_bad_settings():
    with pytest.raises(ValueError, match="^source.max_blobs=0"):
        synthetic(max_blobs=0)
    with pytest.raises(ValueError, match="^source.channels=2"):
        synthetic(channels=2)


def test_datamodule_batches_are_normalised_and_training_drops_the_last_partial_batch():
    module = datamodule(source=synthetic(num_train=40))
    module.setup("fit")
    assert module.info.num_train == 40 and module.info.num_classes == 2 and module.info.channels == 1
    train_batches = list(module.train_dataloader())
    assert len(train_batches) == 2  # 40 images, batches of 16, the last 8 dropped
    images, labels = train_batches[0]
    assert images.dtype == torch.uint8 and images.shape == (16, 1, 32, 32) and labels.shape == (16,)
    model_input = module.to_model_input(images, train=False)
    assert torch.allclose(model_input, images.float() / 255)  # the model normalises, after attention
    assert module.info.mean == [0.5] and module.info.std == [0.5]
    assert len(list(module.val_dataloader())) == 1  # evaluation keeps every image


def test_datamodule_resizes_and_matches_channels():
    module = datamodule(source=synthetic(image_size=28), image_size=40, channels=3)
    module.setup("fit")
    images, labels = module.bank_images()
    assert images.shape == (64, 3, 40, 40)
    assert module.region_mask.shape == (40, 40)
    assert torch.equal(images[:, 0], images[:, 1])


def test_batch_size_larger_than_training_set_is_refused():
    with pytest.raises(ValueError, match=r"^batch_size=100 exceeds the 64 training images"):
        datamodule(batch_size=100).setup("fit")
    with pytest.raises(ValueError, match=r"^dataset.batch_size=100 exceeds the 64 training images"):
        with option_errors_located():  # as train.py reports it
            datamodule(batch_size=100).setup("fit")


def test_resize_and_channel_helpers():
    images = torch.full((2, 1, 10, 10), 200, dtype=torch.uint8)
    assert torch.all(resize_uint8(images, 20) == 200)
    rgb = match_channels(images, 3)
    assert rgb.shape == (2, 3, 10, 10)
    assert torch.all(match_channels(rgb, 1) == 200)


def test_normalization_expands_per_channel():
    mean, std = Normalization(mean=[0.5], std=[0.25]).per_channel(3)
    assert mean == [0.5, 0.5, 0.5] and std == [0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match=r"^normalize.mean=\[0.1, 0.2\]: must have 1 or 3 values"):
        Normalization(mean=[0.1, 0.2], std=[1.0]).per_channel(3)
    with pytest.raises(ValueError, match=r"^normalize.std=\[0.0\]: must be positive numbers$"):
        Normalization(mean=[0.5], std=[0.0])


def test_augmentation_flips_and_shifts_within_bounds():
    torch.manual_seed(0)
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(64, 1, 8, 8)
    flipped = Augmentation(hflip=True, max_shift=0)(ramp)
    is_flipped = (flipped[:, 0, 0, 0] == 7).float().mean()
    assert 0.2 < is_flipped < 0.8
    assert torch.all((flipped == ramp) | (flipped == ramp.flip(-1)))
    shifted = Augmentation(hflip=False, max_shift=2)(ramp)
    offsets = shifted[:, 0, 0, 3] - 3  # interior column moves by the horizontal shift
    assert offsets.abs().max() <= 2 and offsets.unique().numel() > 1
