"""Global spatial attention (GSA): one attention map for the whole data set.

The map is the decision function of a pixel classifier ("important" vs "unimportant"
pixel) whose input is the pixel-feature bank (see ``bank.py``). Because the map depends
on parameters only, it is computed once per training step and cached in eval mode, so
inference costs one element-wise multiply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gsa_exp.attention.bank import BankOptions, bank_depth, build_bank
from gsa_exp.attention.base import SpatialAttention

_MODES = ("multiply", "residual")
_CLASSIFIERS = ("linear", "mlp")


@dataclass(frozen=True)
class PixelClassifierOptions:
    """The pixel classifier g_theta (``attention.classifier`` in the config)."""

    kind: str  # "linear" (logistic regression per pixel) or "mlp"
    hidden: int  # hidden width of the mlp
    kernel_size: int  # 1 = pure per-pixel; odd k > 1 lets a k x k neighbourhood vote
    normalize_fan_in: bool  # use weights / sqrt(K * k * k): the map moves at a speed independent of the bank size

    def __post_init__(self) -> None:
        if self.kind not in _CLASSIFIERS:
            raise ValueError(f"attention.classifier.kind={self.kind!r} is not one of {list(_CLASSIFIERS)}")
        if self.hidden < 1:
            raise ValueError(f"attention.classifier.hidden={self.hidden} must be a positive integer")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"attention.classifier.kernel_size={self.kernel_size} must be a positive odd integer")


@dataclass(frozen=True)
class RegularizationOptions:
    """Optional terms that make the important/unimportant boundary crisp (``attention.regularization``)."""

    sparsity: float  # weight of mean(A): prefers attending to few pixels
    binarization: float  # weight of mean(A * (1 - A)): prefers values near 0 or 1


class BankConv2d(nn.Conv2d):
    """The convolution that reads the bank, optionally with its weights scaled by 1 / sqrt(fan-in).

    With Adam every weight moves by about the learning rate per step, so an unscaled
    logit over K bank rows moves ~K times faster than one weight: with thousands of
    images the map jumps about. Scaling by 1 / sqrt(K) keeps it on the backbone's pace.
    """

    def __init__(self, depth: int, out_channels: int, kernel_size: int, normalize_fan_in: bool) -> None:
        super().__init__(depth, out_channels, kernel_size, padding=kernel_size // 2)
        self.weight_scale = (depth * kernel_size * kernel_size) ** -0.5 if normalize_fan_in else 1.0

    def forward(self, bank: Tensor) -> Tensor:
        return self._conv_forward(bank, self.weight * self.weight_scale, self.bias)


def build_pixel_classifier(depth: int, options: PixelClassifierOptions, init_bias: float) -> nn.Sequential:
    """1x1 (or k x k) convolutions over the bank; the last layer starts at zero so A starts uniform."""
    size, scaled = options.kernel_size, options.normalize_fan_in
    if options.kind == "linear":
        layers: list[nn.Module] = [BankConv2d(depth, 1, size, scaled)]
    else:
        layers = [
            BankConv2d(depth, options.hidden, size, scaled),
            nn.ReLU(inplace=True),
            nn.Conv2d(options.hidden, 1, 1),
        ]
    output = layers[-1]
    assert isinstance(output, nn.Conv2d)
    nn.init.zeros_(output.weight)
    nn.init.constant_(output.bias, init_bias)
    return nn.Sequential(*layers)


class GlobalSpatialAttention(SpatialAttention):
    """x' = x * A (or x * (1 + A)), with A = sigmoid(g_theta(bank) / temperature) shared by all images."""

    needs_training_data = True

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        num_train: int,
        bank: dict[str, Any],
        classifier: dict[str, Any],
        temperature: float,
        init_bias: float,
        mode: str,
        regularization: dict[str, float],
        freeze_after_epochs: int | None,
        lr_multiplier: float,
    ) -> None:
        super().__init__()
        if lr_multiplier <= 0:
            raise ValueError(f"attention.lr_multiplier={lr_multiplier} must be positive")
        self.lr_multiplier = float(lr_multiplier)
        if mode not in _MODES:
            raise ValueError(f"attention.mode={mode!r} is not one of {list(_MODES)}")
        if temperature <= 0:
            raise ValueError(f"attention.temperature={temperature} must be positive")
        if freeze_after_epochs is not None and freeze_after_epochs < 0:
            raise ValueError(f"attention.freeze_after_epochs={freeze_after_epochs} must be >= 0 or null")
        self.bank_options = BankOptions(**bank)
        self.classifier_options = PixelClassifierOptions(**classifier)
        self.regularization = RegularizationOptions(**regularization)
        self.temperature = float(temperature)
        self.mode = mode
        self.freeze_after_epochs = freeze_after_epochs
        self.image_size = image_size
        depth = bank_depth(num_train, in_channels, self.bank_options)
        self.register_buffer("bank", torch.zeros(depth, image_size, image_size))
        self.classifier = build_pixel_classifier(depth, self.classifier_options, init_bias)
        self._bank_ready = False
        self._cached_map: tuple[tuple, Tensor] | None = None
        self._step_map: Tensor | None = None  # the map of the current training step, reused by the regulariser
        self.register_load_state_dict_post_hook(_mark_bank_ready)

    # -- data -------------------------------------------------------------------------
    def prepare(self, images: Tensor, labels: Tensor) -> None:
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"global attention was built for {self.image_size}x{self.image_size} images but the training "
                f"images are {images.shape[-2]}x{images.shape[-1]}; every image must share dataset.image_size"
            )
        bank = build_bank(images, labels, self.bank_options)
        if bank.shape != self.bank.shape:
            raise ValueError(f"bank of shape {tuple(bank.shape)} does not match the expected {tuple(self.bank.shape)}")
        with torch.no_grad():
            self.bank.copy_(bank)
        self._bank_ready = True

    # -- the map ----------------------------------------------------------------------
    def compute_map(self) -> Tensor:
        """A fresh 1 x 1 x H x W map from the current parameters."""
        logits = self.classifier(self.bank.unsqueeze(0))
        return torch.sigmoid(logits / self.temperature)

    def attention_map(self) -> Tensor:
        """The map, recomputed in training and cached in eval until a parameter changes."""
        if not self._bank_ready:
            raise RuntimeError(
                "global attention has no pixel-feature bank yet: call prepare() with the training images "
                "(train() does this) or load a checkpoint"
            )
        if self.training or torch.is_grad_enabled():
            self._cached_map = None
            self._step_map = self.compute_map()
            return self._step_map
        key = self._cache_key()
        if self._cached_map is None or self._cached_map[0] != key:
            self._cached_map = (key, self.compute_map())
        return self._cached_map[1]

    def _cache_key(self) -> tuple:
        tensors = [self.bank, *self.classifier.parameters()]
        return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors) + (
            torch.is_autocast_enabled(),
        )

    def shared_map(self) -> Tensor:
        with torch.no_grad():
            return self.compute_map()[0, 0]

    def forward(self, images: Tensor) -> Tensor:
        attention = self.attention_map()
        if images.shape[-2:] != attention.shape[-2:]:
            raise ValueError(
                f"images of {images.shape[-2]}x{images.shape[-1]} do not fit the global attention map of "
                f"{attention.shape[-2]}x{attention.shape[-1]}; set dataset.image_size={self.image_size}"
            )
        if self.mode == "residual":
            return images * (1 + attention)
        return images * attention

    # -- training extras --------------------------------------------------------------
    def regularization_loss(self) -> Tensor | None:
        weights = self.regularization
        if (weights.sparsity == 0 and weights.binarization == 0) or self._step_map is None:
            return None
        attention = self._step_map
        return weights.sparsity * attention.mean() + weights.binarization * (attention * (1 - attention)).mean()

    def on_train_epoch_start(self, epoch: int) -> None:
        frozen = self.freeze_after_epochs is not None and epoch >= self.freeze_after_epochs
        self.classifier.requires_grad_(not frozen)


def _mark_bank_ready(module: nn.Module, incompatible_keys: Any) -> None:
    if isinstance(module, GlobalSpatialAttention):
        module._bank_ready = True
