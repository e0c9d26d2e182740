"""GPU out-of-memory errors, re-raised with what to lower."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from omegaconf import DictConfig


class GPUOutOfMemoryError(RuntimeError):
    """The GPU ran out of memory; the message names the sizes that decide the memory and what to lower."""


def out_of_memory_message(cfg: DictConfig, error: BaseException) -> str:
    dataset = cfg.dataset
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    on_device = (
        " and performance.data_on_device=false (the splits then stay in host memory)"
        if cfg.performance.data_on_device
        else ""
    )
    return (
        f"GPU out of memory with dataset.batch_size={dataset.batch_size} (evaluation: dataset.eval_batch_size="
        f"{dataset.eval_batch_size}) at dataset.image_size={dataset.image_size}, backbone={cfg.backbone.name}, "
        f"trainer.precision={cfg.trainer.precision}. Lower dataset.batch_size or dataset.eval_batch_size (e.g. "
        f"{max(1, int(dataset.batch_size) // 2)}), or dataset.image_size; trainer.precision=bf16-mixed halves "
        f"activations{on_device}. Everything written so far is kept in {cfg.paths.output_dir}. ({detail})"
    )


@contextlib.contextmanager
def explained_out_of_memory(cfg: DictConfig) -> Iterator[None]:
    """Turns CUDA's out-of-memory error into one that says which config keys to lower."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as error:
        torch.cuda.empty_cache()
        raise GPUOutOfMemoryError(out_of_memory_message(cfg, error)) from error
