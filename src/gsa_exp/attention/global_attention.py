"""Global spatial attention (GSA): one attention map for the whole data set.

The map is the decision function of a pixel classifier ("important" vs "unimportant"
pixel) whose input is the pixel-feature bank (see ``bank.py``). Because the map depends
on parameters only, it is computed once per training step and cached in eval mode, so
inference costs one element-wise multiply.

The paper's original form, whose bank is each batch's own pixels, is its own variant,
``global_batch`` (``global_batch.py``); ``bank.source=batch`` builds it (see ``__new__``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsa_exp.attention.bank import bank_depth, build_bank
from gsa_exp.attention.base import AttentionError
from gsa_exp.attention.contrast import class_separability, fit_linear_readout, standardized
from gsa_exp.attention.global_batch import GlobalBatchAttention
from gsa_exp.attention.learned_map import LearnedMapAttention, apply_gate
from gsa_exp.attention.pixel_classifier import BankConv2d, build_pixel_classifier
from gsa_exp.attention.registry import register_attention
from gsa_exp.option_schema import checked
from gsa_exp.options.attention import BankOptions, ClassifierOptions, RegularizationOptions

__all__ = ["BankConv2d", "ClassifierOptions", "GlobalSpatialAttention", "RegularizationOptions"]


@register_attention("global", order=10)
class GlobalSpatialAttention(LearnedMapAttention):
    """x' = x * A (or x * (1 + A)), with A = sigmoid(g_theta(bank) / temperature) shared by all images."""

    needs_training_data = True  # the bank is built from the training split

    def __new__(cls, *args: Any, **arguments: Any) -> Any:
        # bank.source=batch, the per-batch form, is the variant global_batch. Configs
        # (attention=global attention.bank.source=batch), code and checkpoints written
        # before it spell it this way, so this spelling builds it: the one place it is mapped.
        bank = arguments.get("bank")
        if cls is GlobalSpatialAttention and isinstance(bank, dict) and bank.get("source") == "batch":
            return GlobalBatchAttention.from_global_options(**arguments)
        return super().__new__(cls)

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
        self.bank_options = checked(BankOptions, bank, AttentionError, "bank.")
        self.classifier_options = checked(ClassifierOptions, classifier, AttentionError, "classifier.")
        self.image_size = image_size
        depth = bank_depth(num_train, in_channels, self.bank_options)
        self.register_buffer("bank", torch.zeros(depth, image_size, image_size))
        self.classifier = build_pixel_classifier(depth, self.classifier_options, init_bias)
        self._bank_ready = False
        self._cached_map: tuple[tuple, Tensor] | None = None
        self.register_load_state_dict_post_hook(_mark_bank_ready)

    @property
    def meaningful_untrained(self) -> bool:
        """With ``init=class_contrast`` the map is fitted from the training split before any step."""
        return self.classifier_options.init == "class_contrast"

    # -- data -------------------------------------------------------------------------
    def prepare(self, images: Tensor, labels: Tensor) -> None:
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise AttentionError(
                f"global attention was built for {self.image_size}x{self.image_size} images but the training "
                f"images are {images.shape[-2]}x{images.shape[-1]}; every image must share $image_size"
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
        """A fresh 1 x 1 x H x W map from the current parameters and the fixed bank."""
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

    def shared_map(self) -> Tensor:
        with torch.no_grad():
            return self.compute_map()[0, 0]

    def forward(self, images: Tensor) -> Tensor:
        attention = self.attention_map()
        if images.shape[-2:] != attention.shape[-2:]:
            raise AttentionError(
                f"images of {images.shape[-2]}x{images.shape[-1]} do not fit the global attention map of "
                f"{attention.shape[-2]}x{attention.shape[-1]}; set $image_size={self.image_size}"
            )
        return apply_gate(images, attention, self.mode)


def _mark_bank_ready(module: nn.Module, incompatible_keys: Any) -> None:
    if isinstance(module, GlobalSpatialAttention):
        module._bank_ready = True
