"""The pixel classifier g_theta of global spatial attention: convolutions over the pixel-feature bank.

Shared by both forms of the global map: the fixed bank of the training split (``global``)
and each batch's own pixels (``global_batch``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gsa_exp.options.attention import BatchClassifierOptions, ClassifierOptions


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


def build_pixel_classifier(
    depth: int, options: BatchClassifierOptions | ClassifierOptions, init_bias: float
) -> nn.Sequential:
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
