"""Training throughput at the paper's settings (batch 128, 28 px): the framework against bare loops.

What is measured and the grid's hours estimate: docs/performance.md (the grid part).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import Tensor

from gsa_exp.benchmark.epoch import quiet_lightning
from gsa_exp.benchmark.models import autocast, compose_train_config, configured_optimizer, prepared_model
from gsa_exp.benchmark.timing import interleaved_times, synchronizer
from gsa_exp.training.builders import build_callbacks, build_datamodule, build_loggers, build_trainer, configure_batches

PAPER_GRID_YAML = Path(__file__).resolve().parents[1] / "conf" / "experiment" / "paper_grid.yaml"


def paper_grid_backbones() -> tuple[str, ...]:
    """The backbones experiment=paper_grid sweeps (its YAML is the one place that says so)."""
    return tuple(str(OmegaConf.load(PAPER_GRID_YAML).hydra.sweeper.params.backbone).split(","))


# experiment=paper_grid: (data set, training images, image size); 2 attentions x 3 seeds x 100 epochs each.
PAPER_GRID_DATA = (("pneumoniamnist", 4_708, 28), ("octmnist", 97_477, 28), ("fer2013", 28_709, 48))
PAPER_GRID_RUNS = 2 * 3
PAPER_GRID_EPOCHS = 100
MEASURED_SIZE = 28
GRID_ESTIMATE = (
    "sum over data sets and backbones of runs x epochs x training images / the framework's img/s at 28 px; "
    "FER2013's 48 px images cost (48/28)^2 as much per image; validation weighs as in the measured epochs "
    "(val = 11 % of train, as in PneumoniaMNIST, OCTMNIST and FER2013)"
)


@dataclass(frozen=True)
class GridSettings:
    device: str
    train_images: int  # PneumoniaMNIST's training split at the paper's settings
    val_images: int
    batch_size: int
    epochs: int  # timed epochs, after one untimed epoch (compilation, cuDNN autotuning)
    framework_compile: bool  # performance.compile for the framework (the trainer=gpu fast path)
    compile_backend: str  # the bare compiled loop's torch.compile backend (inductor; aot_eager for --quick)
    compile_mode: str | None  # reduce-overhead (CUDA graphs) on GPUs


class EpochTimer(pl.Callback):
    """Wall-clock seconds of every training epoch, its validation included."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sync()
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sync()
        self.seconds.append(time.perf_counter() - self._start)


def grid_overrides(backbone: str, settings: GridSettings, compile: bool | None = None) -> list[str]:
    cuda = settings.device.startswith("cuda")
    return [
        f"backbone={backbone}",
        "attention=global",
        "trainer=gpu" if cuda else "trainer=cpu",
        f"dataset.image_size={MEASURED_SIZE}",
        f"dataset.batch_size={settings.batch_size}",
        f"dataset.eval_batch_size={2 * settings.batch_size}",
        f"dataset.source.num_train={settings.train_images}",
        f"dataset.source.num_val={settings.val_images}",
        "dataset.source.num_test=2",
        f"trainer.max_epochs={settings.epochs + 1}",
        "trainer.num_sanity_val_steps=0",
        f"performance.compile={str(settings.framework_compile if compile is None else compile).lower()}",
        "performance.data_on_device=true",
    ]


def framework_images_per_second(backbone: str, settings: GridSettings, compile: bool | None = None) -> float:
    """The framework's training rate; ``compile`` overrides the settings' performance.compile (the eager figure)."""
    cfg = compose_train_config(grid_overrides(backbone, settings, compile))
    datamodule = build_datamodule(cfg.dataset, "fit")
    model = prepared_model(cfg, datamodule, torch.device("cpu"))  # the Trainer moves it
    configure_batches(datamodule, cfg.performance, model)
    timer = EpochTimer(synchronizer(torch.device(settings.device)))
    with quiet_lightning():
        trainer = build_trainer(cfg, [*build_callbacks(cfg), timer], build_loggers(cfg))
        trainer.fit(model, datamodule=datamodule)
    steps = settings.train_images // settings.batch_size
    return steps * settings.batch_size / fmean(timer.seconds[1:])


def bare_images_per_second(backbone: str, settings: GridSettings, compiled: bool) -> float:
    """A plain loop: uint8 splits on the device, sliced per step, normalised there, fused Adam, one eval pass."""
    device = torch.device(settings.device)
    cfg = compose_train_config(grid_overrides(backbone, settings))
    datamodule = build_datamodule(cfg.dataset, "fit")
    model = prepared_model(cfg, datamodule, device)
    model.optimize_for_speed(channels_last=cfg.performance.channels_last, compile=False)
    train, val = (datamodule.split(name) for name in ("train", "val"))
    images, labels = train.images.to(device), train.labels.to(device)
    val_images = val.images.to(device)
    precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    optimizer, _ = configured_optimizer(model)
    loss_of = model.training_loss
    forward = model.forward
    if compiled:
        options = {"backend": settings.compile_backend, "mode": settings.compile_mode, "dynamic": False}
        loss_of, forward = torch.compile(loss_of, **options), torch.compile(forward, **options)
    batch = settings.batch_size

    def to_input(uint8: Tensor) -> Tensor:
        return uint8.float().div_(255.0)

    def epoch() -> None:
        model.train()
        order = torch.randperm(images.shape[0], device=device)
        for start in range(0, images.shape[0] - batch + 1, batch):
            index = order[start : start + batch]
            if compiled:
                torch.compiler.cudagraph_mark_step_begin()
            with autocast(precision, device):
                loss, _ = loss_of(to_input(images[index]), labels[index])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad(), autocast(precision, device):
            for start in range(0, val_images.shape[0] - 2 * batch + 1, 2 * batch):  # full batches: one shape
                forward(to_input(val_images[start : start + 2 * batch]))

    # one untimed epoch first: compilation, autotuning
    seconds = interleaved_times({"bare": epoch}, rounds=settings.epochs, warmup=1, sync=synchronizer(device))["bare"]
    steps = images.shape[0] // batch
    return steps * batch / fmean(seconds)


def paper_grid_hours(rates: dict[str, float]) -> float:
    """Hours of experiment=paper_grid from per-backbone framework rates (img/s at 28 px)."""
    seconds = 0.0
    for _, train_images, size in PAPER_GRID_DATA:
        pixels = (size / MEASURED_SIZE) ** 2
        for rate in rates.values():
            seconds += PAPER_GRID_RUNS * PAPER_GRID_EPOCHS * train_images * pixels / rate
    return seconds / 3600


def grid_figures(
    backbones: tuple[str, ...], settings: GridSettings, progress: Callable[[str], None]
) -> dict[str, float]:
    figures: dict[str, float] = {}
    for backbone in backbones:
        progress(f"grid throughput: {backbone} (framework compiled and eager, bare eager, bare compiled)")
        framework = framework_images_per_second(backbone, settings)
        # is the compiled step worth its compilation? (trainer=gpu's default follows this figure)
        framework_eager = (
            framework_images_per_second(backbone, settings, compile=False) if settings.framework_compile else framework
        )
        eager = bare_images_per_second(backbone, settings, compiled=False)
        compiled = bare_images_per_second(backbone, settings, compiled=True)
        figures[f"gpu_img_per_s_{backbone}"] = framework
        figures[f"framework_eager_img_per_s_{backbone}"] = framework_eager
        figures[f"ratio_framework_compiled_vs_eager_{backbone}"] = framework / framework_eager
        figures[f"bare_eager_img_per_s_{backbone}"] = eager
        figures[f"bare_compiled_img_per_s_{backbone}"] = compiled
        figures[f"ratio_framework_vs_compiled_bare_{backbone}"] = framework / compiled
        figures[f"ratio_framework_vs_eager_bare_{backbone}"] = framework / eager
    figures["paper_grid_hours_estimate"] = paper_grid_hours({b: figures[f"gpu_img_per_s_{b}"] for b in backbones})
    return figures


# -- several jobs on one device -------------------------------------------------------------------
def framework_rates_in_processes(backbone: str, settings: GridSettings, count: int) -> list[float]:
    """``count`` framework measurements started together, each in its own process (as a parallel launcher runs jobs).

    Each process reports its steady-state rate; they start together and do the same work, so
    their timed epochs overlap and the rates add up to what the device delivers to all of them.
    """
    command = [sys.executable, "-m", "gsa_exp.benchmark.grid", backbone, json.dumps(asdict(settings))]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(count)
    ]
    rates = []
    for process in processes:
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"framework measurement of {backbone} failed:\n{stderr[-2000:]}")
        rates.append(float(stdout.strip().splitlines()[-1]))
    return rates


def concurrency_figures(
    backbones: tuple[str, ...], settings: GridSettings, jobs: int, progress: Callable[[str], None]
) -> dict[str, float]:
    """Per backbone: the summed img/s of ``jobs`` runs sharing the device, and that ÷ one run alone."""
    figures: dict[str, float] = {}
    for backbone in backbones:
        progress(f"concurrency: {backbone}, 1 job alone, then {jobs} at once (fresh processes)")
        alone = framework_rates_in_processes(backbone, settings, 1)[0]
        together = sum(framework_rates_in_processes(backbone, settings, jobs))
        figures[f"concurrent_{jobs}_jobs_img_per_s_{backbone}"] = together
        figures[f"concurrent_jobs_speedup_{backbone}"] = together / alone
    return figures


def combined_grid_results(parts: list[dict]) -> dict:
    """One result from grid runs of one backbone each (gpu_check.sh runs each alone, so a failure loses one).

    The paper grid's hours are summed again over every backbone measured; ``grid_backbones`` names them.
    """
    combined = {key: value for part in parts for key, value in part.items() if key != "paper_grid_hours_estimate"}
    rates = {
        key.removeprefix("gpu_img_per_s_"): value for key, value in combined.items() if key.startswith("gpu_img_per_s_")
    }
    combined["paper_grid_hours_estimate"] = paper_grid_hours(rates)
    combined["settings"] = {**parts[0]["settings"], "backbones": list(rates)}
    return combined


if __name__ == "__main__":
    if sys.argv[1] == "--combine":  # --combine GRID_JSONL: one JSON object from per-backbone lines
        lines = Path(sys.argv[2]).read_text().splitlines()
        print(json.dumps(combined_grid_results([json.loads(line) for line in lines if line.strip()]), indent=2))
    else:  # one framework measurement in a fresh process: BACKBONE SETTINGS_JSON
        print(framework_images_per_second(sys.argv[1], GridSettings(**json.loads(sys.argv[2]))))
