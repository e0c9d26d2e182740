"""Global spatial attention: the map, its cache, its gradient and the pixel-feature bank."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import array_datamodule, yaml_options

from gsa_exp.attention import GlobalSpatialAttention
from gsa_exp.attention.bank import BankOptions, build_bank, stratified_subset
from gsa_exp.data.splits import MULTICLASS, LoadedData, Split
from gsa_exp.option_schema import checked

SIZE = 12


def bank_options(**changes) -> dict:
    """The YAML's bank, raw (no PCA) and from every training image: the bank these tests reason about."""
    return {**yaml_options("attention", "global")["bank"], "num_images": None, "components": None, **changes}


CONSTANT_START = dict(hidden=8, init="constant", init_smoothing=1)  # A starts uniform at init_bias


def make_attention(
    num_train: int = 20, channels: int = 1, image_size: int = SIZE, **bank_changes
) -> GlobalSpatialAttention:
    options = yaml_options("attention", "global", classifier=CONSTANT_START, lr_multiplier=1.0)
    options["bank"] = bank_options(**bank_changes)
    return GlobalSpatialAttention(in_channels=channels, image_size=image_size, num_train=num_train, **options)


def random_images(count: int, channels: int = 1, size: int = SIZE, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, channels, size, size), generator=generator, dtype=torch.uint8)
    labels = torch.arange(count) % 2
    return images, labels


def prepared(num_train: int = 20, channels: int = 1, **bank_changes) -> GlobalSpatialAttention:
    attention = make_attention(num_train=num_train, channels=channels, **bank_changes)
    attention.prepare(*random_images(num_train, channels))
    return attention


def perturb(attention: GlobalSpatialAttention, seed: int = 1) -> None:
    """Give the pixel classifier non-trivial weights (it starts at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in attention.classifier.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


# -- the map ------------------------------------------------------------------------------
def test_map_has_image_shape_values_in_unit_interval_and_starts_near_one():
    attention = prepared()
    attention_map = attention.compute_map()
    assert attention_map.shape == (1, 1, SIZE, SIZE)
    assert torch.allclose(attention_map, torch.full_like(attention_map, 1 / (1 + math.exp(-2.0))))
    perturb(attention)
    values = attention.compute_map()
    assert values.min() > 0 and values.max() < 1
    assert values.std() > 0  # no longer uniform


def test_one_map_is_shared_by_every_image_of_a_batch():
    attention = prepared()
    perturb(attention)
    images = torch.rand(5, 1, SIZE, SIZE) + 0.5
    ratios = attention(images) / images
    for ratio in ratios[1:]:
        assert torch.allclose(ratio, ratios[0], atol=1e-6)
    assert torch.allclose(ratios[0, 0], attention.shared_map(), atol=1e-6)


def test_residual_mode_scales_by_one_plus_map():
    attention = prepared()
    attention.mode = "residual"
    images = torch.rand(2, 1, SIZE, SIZE)
    assert torch.allclose(attention(images), images * (1 + attention.compute_map()))


def test_gradient_reaches_the_pixel_classifier():
    attention = prepared()
    images = torch.rand(4, 1, SIZE, SIZE)
    target = torch.rand(4, 1, SIZE, SIZE)
    loss = ((attention(images) - target) ** 2).mean()
    loss.backward()
    weight = attention.classifier[0].weight
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    assert attention.classifier[0].bias.grad.abs() > 0


def test_map_is_computed_once_per_training_forward(monkeypatch):
    attention = prepared()
    calls = []
    original = attention.compute_map
    monkeypatch.setattr(attention, "compute_map", lambda: calls.append(1) or original())
    attention.train()
    for _ in range(3):
        attention(torch.rand(4, 1, SIZE, SIZE))
    assert len(calls) == 3


def test_eval_map_is_cached_until_a_parameter_changes(monkeypatch):
    attention = prepared()
    perturb(attention)
    calls = []
    original = attention.compute_map
    monkeypatch.setattr(attention, "compute_map", lambda: calls.append(1) or original())
    attention.eval()
    with torch.no_grad():
        outputs = [attention(torch.ones(3, 1, SIZE, SIZE)) for _ in range(4)]
    assert len(calls) == 1
    for output in outputs[1:]:
        assert torch.equal(output, outputs[0])
    fresh = original()
    assert torch.equal(outputs[0][:1], fresh)

    optimizer = torch.optim.SGD(attention.parameters(), lr=1.0)
    attention.train()
    attention(torch.rand(2, 1, SIZE, SIZE)).sum().backward()
    optimizer.step()
    attention.eval()
    with torch.no_grad():
        updated = attention(torch.ones(1, 1, SIZE, SIZE))
    assert not torch.allclose(updated, outputs[0][:1])
    assert torch.allclose(updated, original())


def test_state_dict_carries_bank_and_classifier():
    attention = prepared()
    perturb(attention)
    restored = make_attention()
    restored.load_state_dict(attention.state_dict())
    assert torch.equal(restored.bank, attention.bank)
    restored.eval()
    with torch.no_grad():
        assert torch.allclose(restored(torch.ones(1, 1, SIZE, SIZE)), attention.compute_map())


def test_unprepared_module_and_wrong_image_size_are_refused():
    attention = make_attention()
    with pytest.raises(RuntimeError, match="no pixel-feature bank"):
        attention(torch.rand(1, 1, SIZE, SIZE))
    attention.prepare(*random_images(20))
    with pytest.raises(ValueError, match=r"do not fit the global attention map of 12x12; set image_size=12"):
        attention(torch.rand(1, 1, SIZE + 4, SIZE + 4))
    with pytest.raises(ValueError, match="share image_size$"):
        make_attention().prepare(*random_images(20, size=SIZE + 2))


def test_regularization_uses_the_step_map():
    attention = prepared()
    attention.regularization = type(attention.regularization)(sparsity=2.0, binarization=1.0)
    attention.train()
    attention(torch.rand(2, 1, SIZE, SIZE))
    value = attention.regularization_loss()
    expected_map = attention.compute_map()
    expected = 2.0 * expected_map.mean() + (expected_map * (1 - expected_map)).mean()
    assert torch.allclose(value, expected)


def test_freeze_after_epochs_stops_classifier_gradients():
    attention = prepared()
    attention.freeze_after_epochs = 2
    attention.on_train_epoch_start(1)
    assert all(p.requires_grad for p in attention.classifier.parameters())
    attention.on_train_epoch_start(2)
    assert not any(p.requires_grad for p in attention.classifier.parameters())


# -- the bank -----------------------------------------------------------------------------
class MarkedSplits:
    """Training images are random; every validation and test image carries a checkerboard marker."""

    def __init__(self, train: int = 24) -> None:
        self.train_images, self.train_labels = random_images(train)
        board = ((torch.arange(SIZE).view(-1, 1) + torch.arange(SIZE)) % 2 * 255).to(torch.uint8)
        self.marker = board.expand(8, 1, SIZE, SIZE).clone()

    def load(self) -> LoadedData:
        marked = Split(images=self.marker.clone(), labels=torch.arange(8) % 2)
        return LoadedData(
            train=Split(images=self.train_images.clone(), labels=self.train_labels.clone()),
            val=marked,
            test=Split(images=self.marker.clone(), labels=torch.arange(8) % 2),
            task=MULTICLASS,
            label_names=["a", "b"],
        )


def test_bank_holds_training_images_only():
    source = MarkedSplits()
    datamodule = array_datamodule(source, image_size=SIZE, batch_size=4, eval_batch_size=4)
    datamodule.setup("fit")
    attention = make_attention(num_train=24, standardize=False)
    attention.prepare(*datamodule.bank_images())
    rows = attention.bank.reshape(attention.bank.shape[0], -1)
    train_rows = source.train_images.reshape(24, -1).float() / 255
    marker_row = source.marker[0].reshape(-1).float() / 255
    assert torch.allclose(rows, train_rows)
    assert not any(torch.allclose(row, marker_row) for row in rows)


def test_stratified_subset_keeps_class_shares_and_is_seeded():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    chosen = stratified_subset(labels, 20, seed=3)
    assert chosen.numel() == 20 and torch.unique(chosen).numel() == 20
    assert torch.bincount(labels[chosen]).tolist() == [12, 6, 2]
    assert torch.equal(chosen, stratified_subset(labels, 20, seed=3))
    assert not torch.equal(chosen, stratified_subset(labels, 20, seed=4))


def test_bank_uses_the_configured_subset_size():
    images, labels = random_images(40, channels=3)
    bank = build_bank(images, labels, BankOptions(**bank_options(num_images=10)))
    assert bank.shape == (30, SIZE, SIZE)
    attention = make_attention(num_train=40, channels=3, num_images=10)
    assert attention.bank.shape == (30, SIZE, SIZE)


def test_standardized_rows_have_zero_mean_unit_std():
    images, labels = random_images(10)
    rows = build_bank(images, labels, BankOptions(**bank_options())).reshape(10, -1)
    assert torch.allclose(rows.mean(dim=1), torch.zeros(10), atol=1e-5)
    assert torch.allclose(rows.std(dim=1), torch.ones(10), atol=1e-4)


@pytest.mark.parametrize("components", [None, 5])
def test_chunked_bank_equals_one_shot_bank(components):
    images, labels = random_images(37, channels=2)
    one_shot = build_bank(images, labels, BankOptions(**bank_options(components=components, chunk_size=10_000)))
    chunked = build_bank(images, labels, BankOptions(**bank_options(components=components, chunk_size=4)))
    if components is None:
        assert torch.equal(one_shot, chunked)
    else:  # principal components are defined up to sign
        signs = torch.sign((one_shot * chunked).flatten(1).sum(dim=1)).view(-1, 1, 1)
        assert torch.allclose(one_shot, chunked * signs, atol=1e-4)


@pytest.mark.parametrize(
    ("count", "size"),
    [(200, 8), (20, 12)],  # more rows than pixels (pixel Gram) and fewer (row Gram)
)
def test_compressed_bank_with_every_component_reproduces_the_raw_map(count, size):
    images, labels = random_images(count, size=size)
    raw = build_bank(images, labels, BankOptions(**bank_options()))
    components = min(count, size * size)
    compressed = build_bank(images, labels, BankOptions(**bank_options(components=components)))
    assert compressed.shape == (components + 1, size, size)
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(raw.shape[0], generator=generator)
    raw_logits = torch.einsum("k,khw->hw", weights, raw).flatten() + 0.3
    design = torch.cat([compressed.flatten(1), torch.ones(1, size * size)]).T.double()
    solution = torch.linalg.lstsq(design, raw_logits.double().unsqueeze(1)).solution
    fitted = (design @ solution).squeeze(1)
    assert torch.allclose(fitted, raw_logits.double(), atol=1e-6 * raw_logits.abs().max().item() + 1e-6)
    assert torch.allclose(torch.sigmoid(fitted).float(), torch.sigmoid(raw_logits), atol=1e-5)


def test_compressed_bank_size_does_not_grow_with_images():
    sizes = []
    for count in (32, 256, 1024):
        images, labels = random_images(count)
        bank = build_bank(images, labels, BankOptions(**bank_options(components=8)))
        sizes.append(bank.numel() * bank.element_size())
    assert sizes[0] == sizes[1] == sizes[2] == 9 * SIZE * SIZE * 4


def test_bank_option_errors_name_the_key():
    with pytest.raises(
        ValueError, match=r"^bank.components=500: at most min\(images x channels, H x W\) = 4 with these images"
    ):
        build_bank(*random_images(4), BankOptions(**bank_options(components=500)))
    with pytest.raises(ValueError, match=r"^bank.num_images=0: must be >= 1 or null \(all\)$"):
        checked(BankOptions, bank_options(num_images=0), prefix="bank.")
    with pytest.raises(ValueError, match=r"^source='test': allowed: train, batch$"):
        BankOptions(**bank_options(source="test"))  # built directly, it names its own options
    with pytest.raises(ValueError, match=r"^bank.batch_size=None: must be an integer >= 1 with bank.source=batch"):
        checked(BankOptions, bank_options(source="batch", batch_size=None), prefix="bank.")


# -- a data-derived start -----------------------------------------------------------------
def test_class_contrast_start_ranks_the_region_where_the_classes_differ():
    from gsa_exp.data.synthetic import SyntheticLesions
    from gsa_exp.model.metrics import map_auroc

    source = SyntheticLesions(
        image_size=24,
        channels=1,
        num_train=200,
        num_val=4,
        num_test=4,
        lesion_amplitude=0.2,
        distractor_amplitude=0.3,
        lesion_sigma=0.045,
        region_radius=0.12,
        max_blobs=3,
        noise_std=0.05,
        jitter=1.0,
        seed=0,
    )
    data = source.load()
    constant = make_attention(num_train=200, image_size=24, components=32)
    constant.prepare(data.train.images, data.train.labels)
    assert float(map_auroc(constant.shared_map(), data.region_mask)) == pytest.approx(0.5)
    contrast = make_attention(num_train=200, image_size=24, components=32)
    contrast.classifier_options = type(contrast.classifier_options)(
        kind="linear",
        hidden=8,
        kernel_size=1,
        normalize_fan_in=True,
        init="class_contrast",
        init_scale=2.0,
        init_smoothing=1,
    )
    contrast.prepare(data.train.images, data.train.labels)
    assert float(map_auroc(contrast.shared_map(), data.region_mask)) > 0.9


def test_linear_readout_reproduces_a_target_in_the_bank_span():
    from gsa_exp.attention.contrast import fit_linear_readout

    generator = torch.Generator().manual_seed(0)
    bank = torch.randn(6, 5, 5, generator=generator)
    weights = torch.randn(6, generator=generator)
    target = torch.einsum("k,khw->hw", weights, bank)
    fitted = fit_linear_readout(bank, target, ridge=1e-9)
    assert torch.allclose(torch.einsum("k,khw->hw", fitted, bank), target, atol=1e-4)


def class_contrast_attention(**classifier_changes) -> GlobalSpatialAttention:
    classifier = {"hidden": 8, "init": "class_contrast", "init_smoothing": 1, **classifier_changes}
    options = yaml_options("attention", "global", classifier=classifier)
    options["bank"] = bank_options()
    return GlobalSpatialAttention(in_channels=1, image_size=SIZE, num_train=20, **options)


def test_class_contrast_start_needs_the_linear_classifier():
    with pytest.raises(
        ValueError, match="^classifier.init='class_contrast': needs classifier.kind='linear', got 'mlp'"
    ):
        class_contrast_attention(kind="mlp")


@pytest.mark.parametrize("smoothing", [0, 4])
def test_class_contrast_smoothing_must_be_an_odd_width(smoothing):
    with pytest.raises(ValueError, match=f"^classifier.init_smoothing={smoothing}: must be an odd integer >= 1$"):
        class_contrast_attention(init_smoothing=smoothing)


def test_smoothed_class_contrast_start_ranks_the_region_better_on_few_noisy_images():
    from gsa_exp.data.synthetic import SyntheticLesions
    from gsa_exp.model.metrics import map_auroc

    source = SyntheticLesions(
        image_size=24,
        channels=1,
        num_train=96,
        num_val=8,
        num_test=8,
        lesion_amplitude=0.12,
        distractor_amplitude=0.4,
        lesion_sigma=0.045,
        region_radius=0.12,
        max_blobs=8,
        noise_std=0.05,
        jitter=1.0,
        seed=0,
    )
    data = source.load()
    scores = {}
    for smoothing in (1, 5):
        attention = make_attention(num_train=96, image_size=24, components=None)
        attention.classifier_options = type(attention.classifier_options)(
            kind="linear",
            hidden=8,
            kernel_size=1,
            normalize_fan_in=True,
            init="class_contrast",
            init_scale=2.0,
            init_smoothing=smoothing,
        )
        attention.prepare(data.train.images, data.train.labels)
        scores[smoothing] = float(map_auroc(attention.shared_map(), data.region_mask))
    assert scores[5] > scores[1] + 0.02 and scores[5] > 0.85, scores
