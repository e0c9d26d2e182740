"""Metric definitions agree with MedMNIST's evaluator, checked against values computed by hand."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from conftest import array_datamodule, compose_config

from gsa_exp.data.splits import MULTICLASS, MULTILABEL, LoadedData, Split
from gsa_exp.model.confusion import confusion_metric, confusion_record, per_class_recall, recall_keys
from gsa_exp.model.metrics import classification_metrics, map_auroc
from gsa_exp.training.builders import build_model


def computed(task: str, classes: int, probabilities, targets) -> dict[str, float]:
    metrics = classification_metrics(task, classes, prefix="")
    metrics.update(torch.tensor(probabilities), torch.tensor(targets))
    return {key: float(value) for key, value in metrics.compute().items()}


def test_multiclass_metrics_by_hand():
    probabilities = [
        [0.7, 0.2, 0.1],  # true 0, predicted 0
        [0.1, 0.6, 0.3],  # true 1, predicted 1
        [0.5, 0.3, 0.2],  # true 1, predicted 0
        [0.2, 0.2, 0.6],  # true 2, predicted 2
    ]
    values = computed(MULTICLASS, 3, probabilities, [0, 1, 1, 2])
    assert values["acc"] == pytest.approx(3 / 4)
    assert values["bal_acc"] == pytest.approx((1 + 0.5 + 1) / 3)  # recall per class, averaged
    # F1 per class: class 0 p=1/2 r=1 -> 2/3; class 1 p=1 r=1/2 -> 2/3; class 2 -> 1
    assert values["f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    # One-vs-rest AUROC: class 0 scores (.7 | .1 .5 .2) -> 1; class 1 (.6 .3 | .2 .2) -> 1;
    # class 2 (.6 | .1 .3 .2) -> 1.
    assert values["auroc"] == pytest.approx(1.0)


def test_binary_auroc_is_the_positive_class_auroc():
    probabilities = [[0.9, 0.1], [0.4, 0.6], [0.65, 0.35], [0.2, 0.8]]
    values = computed(MULTICLASS, 2, probabilities, [0, 0, 1, 1])
    # positives score .35 and .8, negatives .1 and .6: 3 of 4 pairs ordered -> 0.75
    assert values["auroc"] == pytest.approx(0.75)
    assert values["acc"] == pytest.approx(2 / 4)


def test_multilabel_metrics_by_hand():
    probabilities = [[0.9, 0.2], [0.4, 0.7], [0.6, 0.1], [0.3, 0.8]]
    targets = [[1, 0], [0, 1], [0, 0], [1, 1]]
    values = computed(MULTILABEL, 2, probabilities, targets)
    # label 0: predictions 1 0 1 0 vs 1 0 0 1 -> acc 2/4; label 1: 0 1 0 1 vs 0 1 0 1 -> 1
    assert values["acc"] == pytest.approx((0.5 + 1.0) / 2)
    # label 0 AUROC: positives .9 .3, negatives .4 .6 -> pairs (.9>.4, .9>.6, .3<.4, .3<.6) = 2/4; label 1: 1
    assert values["auroc"] == pytest.approx((0.5 + 1.0) / 2)
    # balanced accuracy per label: label 0 recall 1/2, specificity 1/2; label 1: 1 and 1
    assert values["bal_acc"] == pytest.approx((0.5 + 1.0) / 2)


def test_confusion_counts_and_per_class_recall_by_hand():
    probabilities = [
        [0.7, 0.2, 0.1, 0.0],  # true 0, predicted 0
        [0.1, 0.6, 0.3, 0.0],  # true 1, predicted 1
        [0.5, 0.3, 0.2, 0.0],  # true 1, predicted 0
        [0.2, 0.2, 0.6, 0.0],  # true 2, predicted 2
    ]
    metric = confusion_metric(MULTICLASS, 4)
    metric.update(torch.tensor(probabilities[:2]), torch.tensor([0, 1]))  # two batches: counts add up
    metric.update(torch.tensor(probabilities[2:]), torch.tensor([1, 2]))
    counts = metric.compute()
    assert counts.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]  # rows true, columns predicted
    recall = per_class_recall(counts, MULTICLASS)
    assert recall[:3].tolist() == pytest.approx([1.0, 0.5, 1.0])
    assert torch.isnan(recall[3])  # class 3 has no image: undefined, not 0
    record = confusion_record(counts, ["a", "b", "c", "d"], MULTICLASS)
    assert record == {
        "labels": ["a", "b", "c", "d"],
        "counts": [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]],
        "rows": "true label",
        "columns": "predicted label",
    }


def test_multilabel_confusion_and_recall_per_label_by_hand():
    probabilities = [[0.9, 0.2], [0.4, 0.7], [0.6, 0.1], [0.3, 0.8]]
    targets = [[1, 0], [0, 1], [0, 0], [1, 1]]
    metric = confusion_metric(MULTILABEL, 2)
    metric.update(torch.tensor(probabilities), torch.tensor(targets))
    counts = metric.compute()
    # label 0: predicted 1 0 1 0 vs true 1 0 0 1 -> tn 1, fp 1, fn 1, tp 1; label 1: all right, 2 and 2
    assert counts.tolist() == [[[1, 1], [1, 1]], [[2, 0], [0, 2]]]
    assert per_class_recall(counts, MULTILABEL).tolist() == pytest.approx([0.5, 1.0])


def test_recall_keys_are_tensorboard_tags_one_per_class():
    assert recall_keys("val", ["no lesion in region", "a/b"]) == ["val/recall/no_lesion_in_region", "val/recall/a_b"]
    assert recall_keys("test", ["a b", "a_b"]) == ["test/recall/0_a_b", "test/recall/1_a_b"]


def test_map_auroc_is_one_for_the_mask_and_half_for_a_constant_map():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 3:6] = True
    assert float(map_auroc(mask.float(), mask)) == pytest.approx(1.0)
    assert float(map_auroc(torch.full((8, 8), 0.7), mask)) == pytest.approx(0.5)
    assert float(map_auroc(1 - mask.float(), mask)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="differ in shape"):
        map_auroc(torch.zeros(4, 4), mask)


class MultiLabelSource:
    def load(self) -> LoadedData:
        generator = torch.Generator().manual_seed(0)

        def split(count: int) -> Split:
            images = torch.randint(0, 256, (count, 1, 28, 28), generator=generator, dtype=torch.uint8)
            labels = (torch.rand(count, 3, generator=generator) > 0.5).float()
            return Split(images=images, labels=labels)

        return LoadedData(train=split(32), val=split(16), test=split(16), task=MULTILABEL, label_names=["a", "b", "c"])


def test_a_multilabel_model_trains_with_bce_and_per_label_metrics(tmp_path):
    datamodule = array_datamodule(MultiLabelSource(), image_size=28, batch_size=8)
    datamodule.setup("fit")
    info = datamodule.info
    assert info.task == MULTILABEL and info.num_classes == 3
    model = build_model(compose_config(["attention=global", "attention.bank.components=16", "backbone=resnet"]), info)
    model.attention.prepare(*datamodule.bank_images())
    assert isinstance(model.criterion, torch.nn.BCEWithLogitsLoss)
    trainer = pl.Trainer(
        fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    before = model.backbone.fc.weight.detach().clone()
    trainer.fit(model, datamodule=datamodule)
    assert not torch.equal(before, model.backbone.fc.weight)
    results = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    for name in ("acc", "bal_acc", "auroc", "f1"):
        assert 0.0 <= results[f"test/{name}"] <= 1.0
    assert results["test/loss"] > 0
    counts = torch.tensor(model.confusion_entry("test")["counts"])
    assert counts.shape == (3, 2, 2) and counts.sum(dim=(1, 2)).tolist() == [16, 16, 16]  # every test image, per label
    positives = datamodule.split("test").labels.sum(dim=0)
    for index, name in enumerate(["a", "b", "c"]):  # recall per label: true positives / positives
        assert results[f"test/recall/{name}"] == pytest.approx(float(counts[index, 1, 1] / positives[index]))
