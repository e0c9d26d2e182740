"""Training schemes (MedMNIST+): end to end, linear probing on a frozen backbone, k-NN on frozen features."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import TINY_DATA, compose_config
from data_files import COUNTS, medmnist_arrays, write_npz
from omegaconf import OmegaConf, open_dict

from gsa_exp.attention import create_attention
from gsa_exp.backbones import classifier_path, create_backbone, list_backbones
from gsa_exp.config.validation import ConfigError, validate_scheme, validate_train_config
from gsa_exp.model import knn
from gsa_exp.model.knn import NeighbourVote
from gsa_exp.model.schemes import freeze_backbone
from gsa_exp.training.builders import build_datamodule, build_model, configure_batches
from gsa_exp.training.evaluate import evaluate
from gsa_exp.training.train import train

QUICK = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "extras.print_config=false"]


def backbone_options(name: str) -> dict:
    node = OmegaConf.to_container(compose_config([f"backbone={name}"]).backbone, resolve=True)
    return {key: value for key, value in node.items() if key not in ("_target_", "name")}


# -- which weights a scheme trains ------------------------------------------------------------------
@pytest.mark.parametrize("family", list_backbones())
def test_linear_probe_leaves_only_the_main_head_trainable_in_every_family(family):
    with torch.device("meta"):
        backbone = create_backbone(family, in_channels=1, num_classes=3, image_size=32, **backbone_options(family))
    head = freeze_backbone(backbone, "linear_probe")
    trainable = {name for name, parameter in backbone.named_parameters() if parameter.requires_grad}
    path = classifier_path(backbone)
    assert head is backbone.get_submodule(path)
    assert trainable == {f"{path}.{name}" for name, _ in head.named_parameters()}
    assert head.out_features == 3  # the head the adapter made for the data's classes


class ModesDuringTraining(pl.Callback):
    """Records, at every training step, which parts of the model are in train mode."""

    def __init__(self) -> None:
        self.seen: set[tuple[bool, bool, bool]] = set()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        norms = [m.training for m in module.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        head = module.backbone.get_submodule(classifier_path(module.backbone))
        self.seen.add((any(norms), head.training, module.attention.training))


def fit_tiny(tmp_path, *overrides: str) -> tuple[dict, dict, object, ModesDuringTraining]:
    """(state before, state after, model, modes) of a 1-epoch fit of 3 steps in Lightning's loop."""
    cfg = compose_config([*TINY_DATA, *QUICK, *overrides], output_dir=tmp_path)
    pl.seed_everything(0)
    datamodule = build_datamodule(cfg.dataset, "fit")
    model = build_model(cfg, datamodule.info)
    configure_batches(datamodule, cfg.performance, model)
    if model.attention.needs_training_data:
        model.attention.prepare(*datamodule.bank_images())
    before = {key: value.clone() for key, value in model.state_dict().items()}
    modes = ModesDuringTraining()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[modes],
    )
    trainer.fit(model, datamodule=datamodule)
    return before, model.state_dict(), model, modes


def changed(before: dict, after: dict) -> set[str]:
    return {key for key in before if not torch.equal(before[key], after[key])}


def test_linear_probe_trains_the_head_and_the_global_map_and_nothing_else(tmp_path):
    before, after, model, modes = fit_tiny(tmp_path, "scheme=linear_probe", "attention=global")
    moved = changed(before, after)
    # The head and the pixel classifier in front of the backbone learn ...
    assert {"backbone.fc.weight", "backbone.fc.bias", "attention.classifier.0.weight"} <= moved
    # ... and every other backbone tensor is bit-identical: weights, BatchNorm running statistics and counts.
    assert {key for key in moved if key.startswith("backbone.")} == {"backbone.fc.weight", "backbone.fc.bias"}
    assert after["backbone.bn1.num_batches_tracked"].item() == 0
    assert modes.seen == {(False, True, True)}  # every step: norms in eval, head and attention in train mode
    assert not model.backbone.training and model.attention.training  # Lightning's own train() call too
    assert all(p.grad is None for n, p in model.backbone.named_parameters() if not n.startswith("fc."))


def test_end_to_end_moves_the_batchnorm_statistics_that_linear_probe_keeps(tmp_path):
    before, after, _model, modes = fit_tiny(tmp_path, "attention=none")
    assert after["backbone.bn1.num_batches_tracked"].item() == 3
    assert {"backbone.bn1.running_mean", "backbone.layer1.0.conv1.weight"} <= changed(before, after)
    assert modes.seen == {(True, True, True)}


def test_knn_changes_no_weight_and_banks_every_training_image_once(tmp_path):
    before, after, model, modes = fit_tiny(tmp_path, "scheme=knn", "attention=none", "scheme.k=5")
    assert changed(before, after) == {"neighbours.features", "neighbours.labels"}
    assert modes.seen == {(False, False, False)}  # the pass is a forward in eval mode
    # limit_train_batches=3 of evaluation batches (32): 80 images, in data order
    assert after["neighbours.features"].shape == (80, 512)  # resnet18: the head's 512 inputs
    labels = build_datamodule(compose_config(TINY_DATA).dataset, "fit").split("train").labels
    assert torch.equal(after["neighbours.labels"], labels)


def test_knn_test_time_flips_average_the_vote_fractions_of_the_views(tmp_path):
    from gsa_exp.model.tta import FLIPS

    _before, _after, model, _modes = fit_tiny(tmp_path, "scheme=knn", "attention=none", "scheme.k=5")
    model.eval()
    images = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        views = [model.probabilities(model.infer(images.flip(dims) if dims else images)) for dims in ((), (-1,), (-2,))]
        model.tta_flips = (FLIPS["hflip"], FLIPS["vflip"])
        averaged = model.probabilities(model.infer(images))
    # vote fractions are probabilities already: their plain mean, still fractions of k = 5 votes (sums of 1/15)
    torch.testing.assert_close(averaged, torch.stack(views).mean(dim=0))
    assert torch.allclose(averaged.sum(dim=1), torch.ones(6)) and torch.allclose(averaged * 15, (averaged * 15).round())


# -- the k-NN vote --------------------------------------------------------------------------------
def test_vote_fractions_follow_the_nearest_neighbours_by_cosine_or_distance():
    bank = torch.tensor([[1.0, 0.0], [10.0, 0.5], [0.0, 1.0], [0.0, 3.0], [0.1, 5.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    query = torch.tensor([[2.0, 0.1]])
    vote = NeighbourVote(k=3, metric="cosine", task="multiclass", num_classes=3)
    vote.add(bank, labels)
    # cosine: the two x-axis rows, then (0.1, 5) is the least orthogonal of the rest
    assert torch.allclose(vote.scores(query), torch.tensor([[2 / 3, 0.0, 1 / 3]]))
    vote.metric = "euclidean"  # distance: (1, 0), (0, 1), (0, 3)
    assert torch.allclose(vote.scores(query), torch.tensor([[1 / 3, 2 / 3, 0.0]]))


def test_knn_matches_a_majority_vote_over_sklearns_neighbours(monkeypatch):
    from scipy import stats
    from sklearn.neighbors import NearestNeighbors

    generator = np.random.default_rng(0)
    bank, queries = generator.normal(size=(200, 16)), generator.normal(size=(40, 16))
    labels = generator.integers(0, 4, 200)
    monkeypatch.setattr(knn, "BANK_CHUNK", 64)  # the chunked search finds the same neighbours
    vote = NeighbourVote(k=11, metric="euclidean", task="multiclass", num_classes=4)
    for part in np.array_split(np.arange(200), 3):  # added in batches
        vote.add(torch.from_numpy(bank[part]).float(), torch.from_numpy(labels[part]))
    scores = vote.scores(torch.from_numpy(queries).float())
    _, nearest = NearestNeighbors(n_neighbors=11).fit(bank).kneighbors(queries)
    majority = stats.mode(labels[nearest], axis=1, keepdims=False).mode  # MedMNIST+'s vote (ties: lowest class)
    assert np.array_equal(scores.argmax(dim=1).numpy(), majority)
    counts = np.stack([(labels[nearest] == c).sum(axis=1) for c in range(4)], axis=1)
    assert np.allclose(scores.numpy(), counts / 11)
    # cosine = euclidean on unit vectors
    unit = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    _, nearest = (
        NearestNeighbors(n_neighbors=11).fit(unit).kneighbors(queries / np.linalg.norm(queries, axis=1)[:, None])
    )
    vote.metric = "cosine"
    counts = np.stack([(labels[nearest] == c).sum(axis=1) for c in range(4)], axis=1)
    assert np.allclose(vote.scores(torch.from_numpy(queries).float()).numpy(), counts / 11)


def test_multilabel_votes_are_per_label_fractions_and_k_beyond_the_bank_is_refused():
    vote = NeighbourVote(k=3, metric="cosine", task="multilabel", num_classes=2)
    vote.add(torch.eye(3)[:, :3] + 0.01, torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    assert torch.allclose(vote.scores(torch.ones(1, 3)), torch.tensor([[2 / 3, 2 / 3]]))
    vote.k = 4
    with pytest.raises(ValueError, match=r"^k=4 neighbours, but the feature bank holds 3 training images"):
        vote.scores(torch.ones(1, 3))


# -- refused combinations -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["scheme=knn", "attention=static"], "attention='static': scheme=knn takes no gradient step"),
        (["scheme=knn", "attention=local"], "attention='local': scheme=knn takes no gradient step"),
        (["scheme=knn", "attention=global_batch"], "attention='global_batch': scheme=knn takes no gradient step"),
        (["scheme=knn", "attention.classifier.init=constant"], "attention.classifier.init='constant': scheme=knn"),
        (["scheme=knn", "attention.bank.source=batch"], "attention.bank.source='batch': scheme=knn takes no"),
        (["scheme=linear_probe", "attention=local", "attention.placement=stages"], "attention.placement='stages': "),
        (["scheme=knn", "attention=none", "monitor.metric=val/loss"], "monitor.metric='val/loss': this run logs val/"),
        (["scheme=knn", "attention=none", "trainer=ddp"], "trainer.devices=2: scheme=knn builds its feature bank"),
        (["scheme=knn", "scheme.k=0"], "scheme.k=0: must be >= 1"),
        (["scheme=knn", "scheme.metric=manhattan"], "scheme.metric='manhattan': allowed: cosine, euclidean"),
        (["scheme.name=probe"], "scheme.name='probe': allowed: end_to_end, linear_probe, knn"),
    ],
)
def test_combinations_a_scheme_cannot_use_are_refused_before_work(overrides, message):
    with pytest.raises(ConfigError) as refused:
        validate_train_config(compose_config(overrides))
    assert str(refused.value).startswith(f"Invalid config: {message}"), str(refused.value)


def test_pretrained_features_behind_a_new_small_stem_are_refused():
    """The check sees the built backbone; pretrained weights are not needed to know the stem is new."""
    cfg = compose_config(["scheme=linear_probe", "attention=none", "dataset.image_size=32"])
    with open_dict(cfg):
        cfg.backbone.pretrained = True
    options = backbone_options("resnet")
    attention = create_attention("none", in_channels=1, image_size=32, num_train=8)
    with torch.device("meta"):
        small = create_backbone("resnet", in_channels=1, num_classes=2, image_size=32, **options)
        large = create_backbone(
            "resnet", in_channels=1, num_classes=2, image_size=32, **{**options, "stem": "imagenet"}
        )
    assert small.fresh_modules == ("conv1",) and large.fresh_modules == ()
    with pytest.raises(ConfigError, match=r"backbone.stem='auto': with scheme=linear_probe and backbone.pretrained"):
        validate_scheme(cfg, small, attention)
    validate_scheme(cfg, large, attention)  # the ImageNet stem keeps the pretrained convolution


def test_global_attention_with_class_contrast_start_and_knn_runs(tmp_path):
    metrics = train(compose_config([*TINY_DATA, *QUICK, "scheme=knn"], output_dir=tmp_path / "run"))
    assert 0 <= metrics["test/acc"] <= 1 and "test/loss" not in metrics
    saved = np.load(tmp_path / "run" / "attention_map.npy")
    assert saved.std() > 0  # the class-contrast map, not a uniform one


# -- MedMNIST's evaluator reads the schemes' predictions as metrics.json says ---------------------
@pytest.mark.parametrize(
    ("scheme", "flag", "label_width"),
    [("linear_probe", "pneumoniamnist", 1), ("knn", "pneumoniamnist", 1), ("knn", "chestmnist", 14)],
)
def test_medmnists_evaluator_scores_the_schemes_predictions_as_metrics_json(tmp_path, scheme, flag, label_width):
    from medmnist import Evaluator

    root = tmp_path / "data"
    write_npz(root, f"{flag}.npz", medmnist_arrays(label_width=label_width))
    overrides = [
        f"dataset={flag}",
        f"dataset.root={root}",
        "dataset.image_size=32",
        "attention=none",
        f"scheme={scheme}",
        "dataset.batch_size=8",
        "dataset.eval_batch_size=5",  # 8 images per split: a short last batch
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        *QUICK,
    ]
    metrics = train(compose_config(overrides, output_dir=tmp_path / "run"))
    for split in ("val", "test"):
        scores = np.loadtxt(tmp_path / "run" / f"predictions_{split}.csv", delimiter=",", ndmin=2)[:, 1:]
        assert scores.shape == (COUNTS[split], 2 if label_width == 1 else label_width)
        if scheme == "knn":  # vote fractions of k = 11 neighbours
            assert np.allclose(scores * 11, np.round(scores * 11), atol=1e-5)
        auc, acc = Evaluator(flag, split, root=str(root)).evaluate(scores)
        assert metrics[f"{split}/auroc"] == pytest.approx(auc, abs=1e-6), split
        assert metrics[f"{split}/acc"] == pytest.approx(acc, abs=1e-6), split
    if scheme == "knn":  # the bank travels in the checkpoint: eval.py needs no training data
        checkpoint = tmp_path / "run" / "checkpoints" / "best.ckpt"
        evaluate(compose_config([f"ckpt_path={checkpoint}"], output_dir=tmp_path / "eval", config_name="eval"))
        assert (tmp_path / "eval" / "predictions_test.csv").read_text() == (
            tmp_path / "run" / "predictions_test.csv"
        ).read_text()


def test_tensorboards_hparams_name_the_scheme_and_its_options():
    from gsa_exp.training.outputs import flat_hparams

    flat = flat_hparams(compose_config(["scheme=knn", "scheme.k=7"]))
    assert (flat["scheme.name"], flat["scheme.k"], flat["scheme.metric"]) == ("knn", 7, "cosine")
