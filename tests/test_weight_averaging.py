"""callbacks.ema: the average of the weights is what validation, test and the checkpoints use, and a resume continues it."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import QUIET, TINY_DATA, compose_config

from gsa_exp.config.validation import ConfigError, validate_train_config
from gsa_exp.training.builders import build_callbacks, build_datamodule, build_model, build_trainer
from gsa_exp.training.evaluate import evaluate
from gsa_exp.training.train import train

DECAY = 0.7  # with warm-up, the first updates use (1 + n)^(-2/3) > 0.3, the later ones 1 - 0.7: both branches
EMA = ["callbacks.ema.enabled=true", f"callbacks.ema.decay={DECAY}", "callbacks.ema.warmup=true"]
LIMITED = [*TINY_DATA, *QUIET, "debug=limit"]  # 2 epochs of 4 steps


class WeightTrail(pl.Callback):
    """The training weights after every optimizer step."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.states.append({key: value.detach().clone() for key, value in pl_module.state_dict().items()})


def expected_averages(states: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """The average after each step, computed here: a copy at the first update, then
    average + share x (weights - average), share = max(1 - decay, (1 + n)^(-2/3)); integers take the latest."""
    averages = [{key: value.clone() for key, value in states[0].items()}]
    for n, state in enumerate(states[1:], start=1):
        share = max(1.0 - DECAY, (1.0 + n) ** (-2.0 / 3.0))
        averages.append(
            {
                key: averaged + share * (state[key] - averaged) if averaged.is_floating_point() else state[key].clone()
                for key, averaged in averages[-1].items()
            }
        )
    return averages


def assert_states_equal(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(found[key], value, rtol=1e-5, atol=1e-6, msg=key)


def fitted(cfg, trail: WeightTrail, ckpt_path: Path | None = None) -> tuple[pl.Trainer, pl.LightningModule, object]:
    """train()'s fit, with ``trail`` among the run's callbacks."""
    datamodule = build_datamodule(cfg.dataset, "fit")
    model = build_model(cfg, datamodule.info)
    model.attention.prepare(*datamodule.bank_images())
    without_monitor = [c for c in build_callbacks(cfg) if not isinstance(c, pl.callbacks.LearningRateMonitor)]
    trainer = build_trainer(cfg, [*without_monitor, trail], loggers=False)  # no logger: no learning-rate monitor
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, model, datamodule


def test_checkpoints_hold_the_average_and_validation_during_fit_uses_it(tmp_path):
    validate_train_config(cfg := compose_config([*LIMITED, *EMA], tmp_path / "run"))
    trainer, model, datamodule = fitted(cfg, trail := WeightTrail())
    assert len(trail.states) == 8
    averages = expected_averages(trail.states)
    checkpoints = tmp_path / "run" / "checkpoints"

    last = torch.load(checkpoints / "last.ckpt", weights_only=False)
    assert_states_equal(last["state_dict"], averages[-1])
    assert_states_equal(last["current_model_state"], trail.states[-1])  # the training weights, for a resume
    assert int(last["averaging_state"]["n_averaged"]) == 8
    best = torch.load(checkpoints / "best.ckpt", weights_only=False)
    assert_states_equal(best["state_dict"], averages[best["global_step"] - 1])
    assert not torch.equal(averages[-1]["backbone.fc.weight"], trail.states[-1]["backbone.fc.weight"])

    logged_in_fit = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}
    assert "val/map_auroc" in logged_in_fit  # scored on the averaged map, within the swapped loop
    for weights, same in ((last["state_dict"], True), (last["current_model_state"], False)):
        model.load_state_dict(weights)
        validated = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
        assert (validated["val/loss"] == pytest.approx(logged_in_fit["val/loss"], abs=1e-6)) is same
        if same:
            assert validated == pytest.approx(logged_in_fit, abs=1e-6)


@pytest.mark.slow
def test_a_resume_from_last_ckpt_continues_the_average(tmp_path):
    first = WeightTrail()
    fitted(compose_config([*LIMITED, *EMA, "trainer.max_epochs=1"], tmp_path / "run"), first)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert int(torch.load(checkpoint, weights_only=False)["averaging_state"]["n_averaged"]) == 4
    fitted(compose_config([*LIMITED, *EMA], tmp_path / "run"), second := WeightTrail(), ckpt_path=checkpoint)
    assert len(second.states) == 4  # the second epoch only
    last = torch.load(checkpoint, weights_only=False)
    assert int(last["averaging_state"]["n_averaged"]) == 8
    assert_states_equal(last["state_dict"], expected_averages(first.states + second.states)[-1])


@pytest.mark.slow
def test_the_run_tests_the_average_it_saved_as_eval_does(tmp_path):
    trained = train(compose_config([*LIMITED, *EMA], tmp_path / "run"))
    checkpoint = tmp_path / "run" / "checkpoints" / "best.ckpt"
    evaluated = evaluate(compose_config([f"ckpt_path={checkpoint}", *QUIET], tmp_path / "eval", "eval"))
    assert evaluated == pytest.approx(
        {key: value for key, value in trained.items() if key.startswith("test/")}, abs=1e-6
    )


def test_the_average_is_refused_with_weights_only_checkpoints():
    cfg = compose_config([*EMA, "callbacks.model_checkpoint.save_weights_only=true"])
    with pytest.raises(ConfigError, match=r"^Invalid config: callbacks.ema.enabled=True: not together with callbacks"):
        validate_train_config(cfg)


def test_the_average_is_refused_with_knn_which_takes_no_step():
    with pytest.raises(ConfigError, match=r"^Invalid config: callbacks.ema.enabled=True: not with scheme=knn"):
        validate_train_config(compose_config([*EMA, "scheme=knn"]))


def test_off_by_default_and_null_turns_it_off_too(tmp_path):
    from gsa_exp.training.averaging import ExponentialMovingAverage

    def averages(*overrides: str) -> list[ExponentialMovingAverage]:
        built = build_callbacks(compose_config(list(overrides), tmp_path))
        return [callback for callback in built if isinstance(callback, ExponentialMovingAverage)]

    assert averages() == [] and averages("callbacks.ema=null") == []
    (built,) = averages(*EMA)
    assert (built.decay, built.warmup, built.every_n_steps) == (DECAY, True, 1)
