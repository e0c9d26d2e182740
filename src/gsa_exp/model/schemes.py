"""What the training schemes do to the backbone: freeze it, hold it in eval mode, read its features.

The split between features and classifier is the backbone's own (``classifier_path``): the
features of an image are what its main classifier head receives, for a torchvision family as
for a timm model. ``linear_probe`` trains that head alone; ``knn`` trains nothing.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from gsa_exp.backbones import classifier_path
from gsa_exp.options.scheme import END_TO_END, FROZEN_SCHEMES, LINEAR_PROBE, SCHEMES


def scheme_name(scheme: dict[str, Any] | None) -> str:
    """The scheme a model was built with; checkpoints written before the schemes trained end to end."""
    name = (scheme or {}).get("name", END_TO_END)
    if name not in SCHEMES:
        raise ValueError(f"scheme {name!r} is not one of {', '.join(SCHEMES)}")
    return name


def freeze_backbone(backbone: nn.Module, name: str) -> nn.Module | None:
    """No gradients for the backbone's weights, except the main head's with ``linear_probe``.

    Returns the head that still trains (None when nothing of the backbone does).
    """
    if name not in FROZEN_SCHEMES:
        return None
    backbone.requires_grad_(False)
    if name != LINEAR_PROBE:
        return None
    head = backbone.get_submodule(classifier_path(backbone))
    head.requires_grad_(True)
    return head


def hold_in_eval(backbone: nn.Module, head: nn.Module | None, training: bool) -> None:
    """The frozen backbone in eval mode whatever the model's mode: BatchNorm uses and keeps its
    running statistics, dropout and stochastic depth are off. Only ``head`` follows ``training``."""
    backbone.eval()
    if head is not None:
        head.train(training)


class HeadInput:
    """Forward pre-hook on the main head that keeps its input: the flattened features of each image."""

    def __init__(self, backbone: nn.Module) -> None:
        self.features: Tensor | None = None
        backbone.get_submodule(classifier_path(backbone)).register_forward_pre_hook(self)

    def __call__(self, module: nn.Module, args: tuple[Tensor, ...]) -> None:
        self.features = args[0].flatten(1)

    def take(self) -> Tensor:
        features, self.features = self.features, None
        if features is None:
            raise RuntimeError("the backbone's classifier head did not run: no features were captured")
        return features
