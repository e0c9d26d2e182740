"""The benchmark suite: every figure of ``scripts/bench.py``, measured on one machine in one run."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

import torch

from gsa_exp.attention import attention_order
from gsa_exp.attention.bank import build_bank
from gsa_exp.backbones import list_backbones
from gsa_exp.benchmark.bank_probe import bank_options, synthetic_images
from gsa_exp.benchmark.epoch import FRAMEWORK_SETTINGS, epoch_variants
from gsa_exp.benchmark.grid import GRID_ESTIMATE, GridSettings, concurrency_figures, grid_figures, paper_grid_backbones
from gsa_exp.benchmark.models import compose_train_config, fixed_batch, prepared_model, step_functions
from gsa_exp.benchmark.timing import interleaved_times, paired_ratio, synchronizer
from gsa_exp.data.datamodule import ArrayDataModule
from gsa_exp.training.builders import build_datamodule

BACKBONES = list_backbones()  # every registered family can be measured (--backbones)
HEADLINE_BACKBONE = "resnet"  # ResNet-18, the resnet config's default variant
BASELINE = "none"  # the attention overhead is each variant's step time over the plain backbone's
TARGET_ATTENTION = "global"  # the variant the overhead and loader targets are stated for: always measured
ATTENTIONS = tuple(name for name in attention_order() if name != BASELINE)  # --attentions: any registered variant
PARTS = ("attention", "epoch", "bank", "grid", "concurrency")  # attention includes the loader figures
# grid: the paper-settings throughput (--parts grid); concurrency: several such jobs sharing the device. For GPUs.
DEFAULT_PARTS = ("attention", "epoch", "bank")

# key -> (comparison, bound); the figures the targets are stated for.
TARGETS: dict[str, tuple[str, float]] = {
    "train_step_ratio_global_vs_none": ("<=", 1.03),
    "infer_ratio_global_vs_none": ("<=", 1.01),
    "epoch_ratio_framework_vs_bare": ("<=", 1.10),
    "bank_build_seconds_raw_60k_28px": ("<=", 10.0),
    "bank_build_seconds_pca64_60k_28px": ("<=", 10.0),
    "bank_peak_bytes_ratio_raw_60k_28px": ("<=", 2.0),
    "bank_peak_bytes_ratio_pca64_60k_28px": ("<=", 1.0),
    "bank_compressed_bytes_growth_1k_to_60k": ("<=", 1.0),
    "loader_ratio": (">=", 5.0),
    # grid (on one GPU): the framework within 0.8x of the compiled bare loop, the paper grid in 6 hours
    **{f"ratio_framework_vs_compiled_bare_{backbone}": (">=", 0.8) for backbone in BACKBONES},
    "paper_grid_hours_estimate": ("<=", 6.0),
}


@dataclass(frozen=True)
class Settings:
    """Sizes and repetitions. The defaults are the issue's settings; ``quick_settings()`` shrinks them for tests."""

    device: str = "cpu"
    precision: str = "32-true"  # 32-true | bf16-mixed (the GPU trainer's default)
    image_size: int = 64
    batch_size: int = 32
    backbones: tuple[str, ...] = paper_grid_backbones()  # by default the paper grid's, which the estimate is for
    attentions: tuple[str, ...] = ()  # variants compared with none besides global (--attentions)
    # timm models measured like the backbones, as backbone=timm backbone.variant=<name> (--timm): a ViT shows
    # global attention's cost beside a transformer, whose step costs more per pixel than a small CNN's
    timm_variants: tuple[str, ...] = ("vit_tiny_patch16_224",)
    step_rounds: int = 9  # interleaved rounds for the headline (ResNet-18) step and eval figures
    backbone_rounds: int = 3  # rounds for the other backbones' figures
    infer_round_factor: int = 3  # eval forwards are ~3x cheaper than steps: as many rounds x this, same time
    warmup: int = 1
    calls: int = 1  # calls timed together per sample (raise on fast devices)
    epoch_rounds: int = 3
    epoch_warmup: int = 1
    # The default experiment (synthetic 32 px, ResNet-18, global attention, batch 32) on 256 of its
    # training images: 8 steps, so the Trainer's per-fit set-up weighs more than in a real run.
    epoch_overrides: tuple[str, ...] = ("dataset.source.num_train=256",)
    loader_rounds: int = 5
    bank_images: int = 60_000
    bank_size: int = 28
    bank_components: int = 64
    bank_repeats: int = 3
    flat_counts: tuple[int, ...] = (1_000, 10_000, 60_000)
    # grid: the paper's settings (batch 128, 28 px) on PneumoniaMNIST-sized data (4,708 training images)
    grid_train_images: int = 4_708
    grid_val_images: int = 524
    grid_batch_size: int = 128
    grid_epochs: int = 2
    concurrent_jobs: int = 2  # concurrency: jobs sharing the device at once
    quick: bool = False
    parts: tuple[str, ...] = DEFAULT_PARTS
    extra_overrides: tuple[str, ...] = ()  # config overrides for every model, e.g. performance.channels_last=true

    @classmethod
    def quick_settings(cls, **changes: Any) -> Settings:
        tiny = dict(
            image_size=32,
            batch_size=2,
            step_rounds=1,
            backbone_rounds=1,
            warmup=0,
            epoch_rounds=1,
            epoch_warmup=0,
            epoch_overrides=(
                "dataset.source.num_train=64",
                "dataset.source.num_val=2",
                "dataset.source.num_test=2",
                "dataset.batch_size=32",
            ),
            loader_rounds=1,
            bank_images=2_000,
            bank_repeats=1,
            flat_counts=(100, 500, 2_000),
            grid_train_images=64,
            grid_val_images=16,
            grid_batch_size=16,
            grid_epochs=1,
            quick=True,
        )
        return cls(**{**tiny, **changes})


def data_overrides(settings: Settings) -> list[str]:
    return [
        f"dataset.image_size={settings.image_size}",
        f"dataset.batch_size={settings.batch_size}",
        "dataset.source.num_val=2",  # only the training split is read
        "dataset.source.num_test=2",
        *settings.extra_overrides,
    ]


# -- attention overhead ---------------------------------------------------------------------
def compared_attentions(settings: Settings) -> tuple[str, ...]:
    """global (the targets' variant), then the other variants asked for."""
    return (TARGET_ATTENTION, *(name for name in settings.attentions if name != TARGET_ATTENTION))


def measured_backbones(settings: Settings) -> dict[str, list[str]]:
    """Each measured row's name (the key suffix) and its backbone overrides: the families, then the timm models."""
    rows = {backbone: [f"backbone={backbone}"] for backbone in settings.backbones}
    return rows | {f"timm_{name}": ["backbone=timm", f"backbone.variant={name}"] for name in settings.timm_variants}


def attention_overhead(
    backbone: list[str], datamodule: ArrayDataModule, settings: Settings, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Interleaved training-step and eval-forward times of attention=none and each compared variant
    (``backbone``: the overrides that choose the backbone)."""
    device = torch.device(settings.device)
    functions = {}
    backbone_weights = None
    for attention in (BASELINE, *compared_attentions(settings)):
        torch.manual_seed(0)
        cfg = compose_train_config([*data_overrides(settings), *backbone, f"attention={attention}"])
        model = prepared_model(cfg, datamodule, device)
        if backbone_weights is None:
            backbone_weights = model.backbone.state_dict()
        else:  # the very same backbone weights: only the attention differs between the variants
            model.backbone.load_state_dict(backbone_weights)
        functions[attention] = step_functions(
            model, *fixed_batch(datamodule, settings.batch_size, device), settings.precision
        )
    common = dict(warmup=settings.warmup, calls=settings.calls, sync=synchronizer(device))
    train = interleaved_times({name: f.train for name, f in functions.items()}, rounds=rounds, **common)
    infer = interleaved_times(
        {name: f.infer for name, f in functions.items()}, rounds=rounds * settings.infer_round_factor, **common
    )
    return {"train": train, "infer": infer}


def loader_samples_per_second(datamodule: ArrayDataModule, settings: Settings) -> float:
    """The default training loader's throughput up to model-ready tensors on the device."""
    device = torch.device(settings.device)
    loader = datamodule.train_dataloader()

    def epoch() -> None:
        for images, labels in loader:
            datamodule.to_model_input(images.to(device, non_blocking=True), train=True)
            labels.to(device, non_blocking=True)

    times = interleaved_times(
        {"loader": epoch}, rounds=settings.loader_rounds, warmup=settings.warmup, sync=synchronizer(device)
    )
    return len(loader) * settings.batch_size / median(times["loader"])


# -- bank construction ----------------------------------------------------------------------
def bank_probe(count: int, size: int, components: int) -> dict[str, float]:
    """One build in a fresh interpreter (see ``bank_probe``)."""
    command = [sys.executable, "-m", "gsa_exp.benchmark.bank_probe", str(count), str(size), str(components)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=os.environ.copy())
    if done.returncode != 0:
        raise RuntimeError(f"bank probe {command[3:]} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bank_figures(settings: Settings) -> dict[str, float]:
    count, size, components = settings.bank_images, settings.bank_size, settings.bank_components
    runs: dict[str, list[dict[str, float]]] = {"raw": [], "pca": []}
    for index in range(settings.bank_repeats):  # raw, pca, pca, raw, ...: interleaved like the rest
        for kind in ("raw", "pca") if index % 2 == 0 else ("pca", "raw"):
            runs[kind].append(bank_probe(count, size, components if kind == "pca" else 0))
    figures: dict[str, float] = {}
    for kind, name in (("raw", "raw"), ("pca", "pca64")):  # key names fixed; --quick shrinks the sizes
        seconds = median([run["seconds"] for run in runs[kind]])
        ratio = max(run["peak_extra_bytes"] / run["raw_float_bytes"] for run in runs[kind])  # the worst one
        figures[f"bank_build_seconds_{name}_60k_28px"] = seconds
        figures[f"bank_peak_bytes_ratio_{name}_60k_28px"] = ratio
    figures["bank_build_seconds_60k_28px"] = max(figures[k] for k in figures if k.startswith("bank_build_seconds_"))
    figures["bank_peak_bytes_ratio_60k_28px"] = max(
        figures[k] for k in figures if k.startswith("bank_peak_bytes_ratio_")
    )
    sizes = [compressed_bank_bytes(n, size, components) for n in settings.flat_counts]  # sizes, not timings
    for label, value in zip(("1k", "10k", "60k"), sizes):
        figures[f"bank_compressed_bytes_{label}"] = value
    figures["bank_compressed_bytes_growth_1k_to_60k"] = sizes[-1] / sizes[0]
    return figures


def compressed_bank_bytes(count: int, size: int, components: int) -> float:
    bank = build_bank(*synthetic_images(count, size), bank_options(components))
    return float(bank.numel() * bank.element_size())


# -- the whole suite --------------------------------------------------------------------------
def run_suite(settings: Settings, progress: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Every figure, as one flat dict of numbers plus ``settings`` and ``machine`` descriptions."""
    device = torch.device(settings.device)
    results: dict[str, Any] = {"load_average_start": os.getloadavg()[0]}
    if "attention" in settings.parts:
        results.update(attention_and_loader(settings, progress))
    if "epoch" in settings.parts:
        results.update(epoch_figures(settings, progress))
    if "bank" in settings.parts:
        progress(f"bank construction ({settings.bank_images} images of {settings.bank_size} px, fresh processes)")
        results.update(bank_figures(settings))
    if "grid" in settings.parts or "concurrency" in settings.parts:
        grid = grid_settings(settings)
        results["grid_settings"] = {**asdict(grid), "paper_grid_hours_estimate": GRID_ESTIMATE}
    if "grid" in settings.parts:
        results.update(grid_figures(settings.backbones, grid, progress))
    if "concurrency" in settings.parts:
        results.update(concurrency_figures(settings.backbones, grid, settings.concurrent_jobs, progress))
    results["load_average_end"] = os.getloadavg()[0]
    results["settings"] = {**asdict(settings), "ratios": "median over interleaved rounds of the per-round ratio"}
    if "grid_settings" in results:
        results["settings"]["grid"] = results.pop("grid_settings")
    if "epoch" in settings.parts:
        results["settings"]["framework_epoch"] = FRAMEWORK_SETTINGS
        results["settings"]["epoch_data"] = results.pop("epoch_data")
    results["machine"] = machine_description(device)
    return results


def attention_and_loader(settings: Settings, progress: Callable[[str], None]) -> dict[str, float]:
    results: dict[str, float] = {}
    progress("building the data set")
    cfg = compose_train_config(data_overrides(settings))
    datamodule = build_datamodule(cfg.dataset, "fit")
    rows = measured_backbones(settings)
    for backbone in sorted(rows, key=lambda name: name != HEADLINE_BACKBONE):
        headline = backbone == HEADLINE_BACKBONE
        rounds = settings.step_rounds if headline else settings.backbone_rounds
        progress(f"attention overhead: {backbone} ({rounds} interleaved rounds)")
        samples = attention_overhead(rows[backbone], datamodule, settings, rounds)
        for kind, label in (("train", "train_step"), ("infer", "infer")):
            for attention in compared_attentions(settings):
                key = f"{label}_ratio_{attention}_vs_{BASELINE}"
                results[f"{key}_{backbone}"] = paired_ratio(samples[kind], attention, BASELINE)
                if headline:
                    results[key] = results[f"{key}_{backbone}"]
            if headline:
                for attention in (BASELINE, *compared_attentions(settings)):
                    results[f"{label}_seconds_{attention}"] = median(samples[kind][attention])

    progress("data loader throughput")
    results["loader_samples_per_second"] = loader_samples_per_second(datamodule, settings)
    step_seconds = results[f"train_step_seconds_{TARGET_ATTENTION}"]
    results["train_samples_per_second"] = settings.batch_size / step_seconds
    results["loader_ratio"] = results["loader_samples_per_second"] / results["train_samples_per_second"]
    return results


def epoch_figures(settings: Settings, progress: Callable[[str], None]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    progress(f"framework epoch vs bare loop ({settings.epoch_rounds} interleaved rounds)")
    epoch_cfg = compose_train_config([*settings.epoch_overrides, *settings.extra_overrides])
    variants, train_images = epoch_variants(epoch_cfg, torch.device(settings.device))
    device = torch.device(settings.device)
    epochs = interleaved_times(
        variants, rounds=settings.epoch_rounds, warmup=settings.epoch_warmup, sync=synchronizer(device)
    )
    results["epoch_ratio_framework_vs_bare"] = paired_ratio(epochs, "framework", "bare")
    results["epoch_seconds_framework"] = median(epochs["framework"])
    results["epoch_seconds_bare"] = median(epochs["bare"])
    results["epoch_data"] = (
        f"{train_images} training images, batch {epoch_cfg.dataset.batch_size}, {epoch_cfg.dataset.image_size} px, "
        f"backbone={epoch_cfg.backbone.name}, attention={epoch_cfg.attention.name}"
    )
    return results


def grid_settings(settings: Settings) -> GridSettings:
    cuda = settings.device.startswith("cuda")
    return GridSettings(
        device=settings.device,
        train_images=settings.grid_train_images,
        val_images=settings.grid_val_images,
        batch_size=settings.grid_batch_size,
        epochs=settings.grid_epochs,
        framework_compile=cuda and not settings.quick,
        # --quick on a CPU: traced and differentiated like the real thing, without minutes of code generation
        compile_backend="aot_eager" if settings.quick else "inductor",
        compile_mode="reduce-overhead" if cuda and not settings.quick else None,
    )


def machine_description(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def target_status(key: str, value: float, quick: bool = False) -> str:
    if key not in TARGETS:
        return ""
    if quick:
        return "(--quick: sizes too small to judge)"
    comparison, bound = TARGETS[key]
    met = value <= bound if comparison == "<=" else value >= bound
    return f"{comparison} {bound:g}: {'ok' if met and math.isfinite(value) else 'MISSED'}"


def format_table(results: dict[str, Any]) -> str:
    keys = [key for key, value in results.items() if isinstance(value, (int, float)) and not isinstance(value, bool)]
    width = max(len(key) for key in keys)
    lines = [f"{'figure':<{width}}  {'value':>14}  target", "-" * (width + 40)]
    for key in keys:
        value = results[key]
        shown = f"{value:,.0f}" if "bytes" in key and "ratio" not in key else f"{value:.4g}"
        lines.append(f"{key:<{width}}  {shown:>14}  {target_status(key, value, results['settings']['quick'])}")
    lines.append("")
    lines.append(f"machine: {results['machine']}")
    for key, value in results["settings"].items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines)
