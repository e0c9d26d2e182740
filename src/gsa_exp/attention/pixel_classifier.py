"""The pixel classifier g_theta of global spatial attention: convolutions over the pixel-feature bank.

Shared by both forms of the global map: the fixed bank of the training split (``global``)
and each batch's own pixels (``global_batch``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gsa_exp.attention.base import AttentionError
from gsa_exp.errors import OptionMessage

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
            raise AttentionError(
                f"$classifier.kind={OptionMessage.quoted(self.kind)} is not one of {list(_CLASSIFIERS)}"
            )
        if self.init not in _INITS:
            raise AttentionError(f"$classifier.init={OptionMessage.quoted(self.init)} is not one of {list(_INITS)}")
        if self.init == "class_contrast" and self.kind != "linear":
            raise AttentionError(
                f"$classifier.init='class_contrast' needs $classifier.kind='linear', got "
                f"{OptionMessage.quoted(self.kind)}; with kind={self.kind} set $classifier.init=constant"
            )
        if self.init_scale < 0:
            raise AttentionError(f"$classifier.init_scale={self.init_scale} must be >= 0")
        if self.init_smoothing < 1 or self.init_smoothing % 2 == 0:
            raise AttentionError(f"$classifier.init_smoothing={self.init_smoothing} must be an odd integer >= 1")
        if self.hidden < 1:
            raise AttentionError(f"$classifier.hidden={self.hidden} must be a positive integer")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise AttentionError(f"$classifier.kernel_size={self.kernel_size} must be a positive odd integer")


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
