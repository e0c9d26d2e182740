"""Global spatial attention (GSA): one attention map for the whole data set.

The map is the decision function of a pixel classifier ("important" vs "unimportant"
pixel) whose input is the pixel-feature bank (see ``bank.py``). Because the map depends
on parameters only, it is computed once per training step and cached in eval mode, so
inference costs one element-wise multiply.

With ``bank.source=batch`` (the paper's original form) the bank is the current batch's
own intensities, so the map is recomputed for every batch and shared by that batch's
images only. Every batch must then hold exactly ``bank.batch_size`` images: training drops
incomplete batches, and evaluation goes through ``ImageClassifier.infer``, which cuts
evaluation batches into batches of that size and completes a short last one with the
images evaluated just before it (their outputs are discarded). There is no one map in this
mode: ``shared_map()`` is None, and the map a run reports is the mean, over the evaluated
images, of their batches' maps (``last_image_maps``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsa_exp.attention.bank import BankOptions, bank_depth, batch_bank, build_bank
from gsa_exp.attention.contrast import class_separability, fit_linear_readout, standardized
from gsa_exp.attention.learned_map import LearnedMapAttention, RegularizationOptions, apply_gate
from gsa_exp.attention.registry import register_attention

__all__ = ["BankConv2d", "GlobalSpatialAttention", "PixelClassifierOptions", "RegularizationOptions"]

_CLASSIFIERS = ("linear", "mlp")
_INITS = ("constant", "class_contrast")


@dataclass(frozen=True)
class PixelClassifierOptions:
    """The pixel classifier g_theta (``attention.classifier`` in the config)."""

    kind: str  # "linear" (logistic regression per pixel) or "mlp"
    hidden: int  # hidden width of the mlp
    kernel_size: int  # 1 = pure per-pixel; odd k > 1 lets a k x k neighbourhood vote
    normalize_fan_in: bool  # use weights / sqrt(K * k * k): the map moves at a speed independent of the bank size
    init: str  # "constant": A starts uniform | "class_contrast": starts high where the classes differ
    init_scale: float  # class_contrast: logit spread (in standard deviations of the separability score)
    init_smoothing: int  # class_contrast: the score averaged over k x k neighbourhoods (odd; 1 = per pixel)

    def __post_init__(self) -> None:
        if self.kind not in _CLASSIFIERS:
            raise ValueError(f"attention.classifier.kind={self.kind!r} is not one of {list(_CLASSIFIERS)}")
        if self.init not in _INITS:
            raise ValueError(f"attention.classifier.init={self.init!r} is not one of {list(_INITS)}")
        if self.init == "class_contrast" and self.kind != "linear":
            raise ValueError(
                f"attention.classifier.init='class_contrast' needs attention.classifier.kind='linear', got "
                f"{self.kind!r}; with kind={self.kind} set attention.classifier.init=constant"
            )
        if self.init_scale < 0:
            raise ValueError(f"attention.classifier.init_scale={self.init_scale} must be >= 0")
        if self.init_smoothing < 1 or self.init_smoothing % 2 == 0:
            raise ValueError(f"attention.classifier.init_smoothing={self.init_smoothing} must be an odd integer >= 1")
        if self.hidden < 1:
            raise ValueError(f"attention.classifier.hidden={self.hidden} must be a positive integer")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"attention.classifier.kernel_size={self.kernel_size} must be a positive odd integer")


class BankConv2d(nn.Conv2d):
    """The convolution that reads the bank, optionally with its weights scaled by 1 / sqrt(fan-in).

    With Adam every weight moves by about the learning rate per step, so an unscaled
    logit over K bank rows moves ~K times faster than one weight: with thousands of
    images the map jumps about. Scaling by 1 / sqrt(K) keeps it on the backbone's pace.

    A 1x1 convolution over the one bank "image" is a single matrix product
    (out x K) @ (K x H*W): computed as such, it skips the convolution library's layout
    conversions of the whole bank, forward and backward (the same numbers, several times faster on CPUs).
    """

    def __init__(self, depth: int, out_channels: int, kernel_size: int, normalize_fan_in: bool) -> None:
        super().__init__(depth, out_channels, kernel_size, padding=kernel_size // 2)
        self.weight_scale = (depth * kernel_size * kernel_size) ** -0.5 if normalize_fan_in else 1.0

    def forward(self, bank: Tensor) -> Tensor:
        if self.kernel_size != (1, 1) or bank.shape[0] != 1:
            return self._conv_forward(bank, self.weight * self.weight_scale, self.bias)
        _, depth, height, width = bank.shape
        rows = bank.reshape(depth, height * width)
        weight = self.weight.reshape(self.out_channels, depth)
        if self.bias is None:
            logits = torch.mm(weight, rows).mul_(self.weight_scale)
        else:  # bias + scale * (weight @ rows), one kernel
            logits = torch.addmm(self.bias.unsqueeze(1), weight, rows, alpha=self.weight_scale)
        return logits.reshape(1, self.out_channels, height, width)


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


@register_attention("global")
class GlobalSpatialAttention(LearnedMapAttention):
    """x' = x * A (or x * (1 + A)), with A = sigmoid(g_theta(bank) / temperature) shared by all images."""

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        num_train: int,
        bank: dict[str, Any],
        classifier: dict[str, Any],
        init_bias: float,
        **options: Any,
    ) -> None:
        super().__init__(**options)  # temperature, mode, regularization, freeze_after_epochs, lr_multiplier
        self.bank_options = BankOptions(**bank)
        self.classifier_options = PixelClassifierOptions(**classifier)
        self.image_size = image_size
        self.batch_source = self.bank_options.source == "batch"
        self.needs_training_data = not self.batch_source  # a fixed bank is built from the training split
        depth = bank_depth(num_train, in_channels, self.bank_options)
        if not self.batch_source:
            self.register_buffer("bank", torch.zeros(depth, image_size, image_size))
        self.classifier = build_pixel_classifier(depth, self.classifier_options, init_bias)
        self._bank_ready = self.batch_source
        self._cached_map: tuple[tuple, Tensor] | None = None
        self._batch_map: Tensor | None = None  # source=batch: the map of the last evaluation batch
        self.register_load_state_dict_post_hook(_mark_bank_ready)

    @property
    def fixed_batch_size(self) -> int | None:
        return self.bank_options.batch_size if self.batch_source else None

    # -- data -------------------------------------------------------------------------
    def prepare(self, images: Tensor, labels: Tensor) -> None:
        if self.batch_source:
            return  # the bank is each batch's own pixels
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
        if self.classifier_options.init == "class_contrast":
            self._start_from_class_contrast(images, labels)

    def _start_from_class_contrast(self, images: Tensor, labels: Tensor) -> None:
        """Initial logits = init_bias + init_scale * (standardised class separability), fitted linearly."""
        options = self.classifier_options
        score = class_separability(images, labels, self.bank_options.chunk_size)
        if options.init_smoothing > 1:  # a per-pixel score from few images is noisy; regions are not single pixels
            k = options.init_smoothing
            score = F.avg_pool2d(score[None, None], k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
        target = options.init_scale * standardized(score)
        layer = self.classifier[0]
        weights = fit_linear_readout(self.bank, target, ridge=1e-3) / layer.weight_scale
        with torch.no_grad():
            layer.weight.zero_()
            centre = options.kernel_size // 2
            layer.weight[0, :, centre, centre] = weights

    # -- the map ----------------------------------------------------------------------
    def compute_map(self) -> Tensor:
        """A fresh 1 x 1 x H x W map from the current parameters and the fixed bank (source=train)."""
        if self.batch_source:
            raise RuntimeError(
                "global attention with attention.bank.source=batch has no fixed bank: its map is per batch"
            )
        # float32 even under mixed precision: the product is tiny, and casting the bank and the
        # classifier's weights to half precision would cost more kernels than it saves
        with torch.autocast(self.bank.device.type, enabled=False):
            return self.gate(self.classifier(self.bank.unsqueeze(0)))

    def attention_map(self) -> Tensor:
        """The map, recomputed in training and cached in eval until a parameter changes."""
        if not self._bank_ready:
            raise RuntimeError(
                "global attention has no pixel-feature bank yet: call prepare() with the training images "
                "(train() does this) or load a checkpoint"
            )
        if self.training or torch.is_grad_enabled():
            self._cached_map = None
            self._step_maps = [self.compute_map()]
            return self._step_maps[0]
        key = self._cache_key()
        if self._cached_map is None or self._cached_map[0] != key:
            self._cached_map = (key, self.compute_map())
        return self._cached_map[1]

    def _cache_key(self) -> tuple:
        tensors = [self.bank, *self.classifier.parameters()]
        return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors) + (torch.is_autocast_enabled(),)

    def batch_map(self, images: Tensor) -> Tensor:
        """source=batch: the 1 x 1 x H x W map of this batch, from its own pixels."""
        expected = self.bank_options.batch_size
        if images.shape[0] != expected:
            raise ValueError(
                f"global attention with attention.bank.source=batch reads its pixel features from batches of exactly "
                f"attention.bank.batch_size={expected} images, but got a batch of {images.shape[0]}; set "
                f"dataset.batch_size={expected} (or attention.bank.batch_size and dataset.batch_size to one new "
                "value), and evaluate through ImageClassifier.infer, which completes short batches"
            )
        attention = self.gate(self.classifier(batch_bank(images, self.bank_options.standardize)))
        self._step_maps = []
        self.remember(attention)
        self._batch_map = None if self.training else attention.detach()
        return attention

    def shared_map(self) -> Tensor | None:
        if self.batch_source:
            return None  # one map per batch: see last_image_maps
        with torch.no_grad():
            return self.compute_map()[0, 0]

    def last_image_maps(self) -> Tensor | None:
        if self._batch_map is None:
            return None
        return self._batch_map[0, 0].expand(self.bank_options.batch_size, -1, -1)

    def forward(self, images: Tensor) -> Tensor:
        if self.batch_source:
            return apply_gate(images, self.batch_map(images), self.mode)
        attention = self.attention_map()
        if images.shape[-2:] != attention.shape[-2:]:
            raise ValueError(
                f"images of {images.shape[-2]}x{images.shape[-1]} do not fit the global attention map of "
                f"{attention.shape[-2]}x{attention.shape[-1]}; set dataset.image_size={self.image_size}"
            )
        return apply_gate(images, attention, self.mode)


def _mark_bank_ready(module: nn.Module, incompatible_keys: Any) -> None:
    if isinstance(module, GlobalSpatialAttention):
        module._bank_ready = True
