"""Grad-CAM of a trained classifier beside the global map: where the backbone's decision comes from.

Side by side, for the same test images, a plain backbone (attention=none) and the backbone
behind the map show whether the map moved the evidence, and where to (docs/method.md).
captum is an optional dependency (``pip install -e '.[explain]'``), imported on use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from gsa_exp.data.splits import MULTICLASS
from gsa_exp.durable import save_figure
from gsa_exp.training.interpret import attention_label, evaluating, run_map, show_image, take_sample

GRADCAM_PNG = "gradcam_comparison.png"
EXPLAIN_EXTRA = "pip install -e '.[explain]'"


def _last_conv(sequence: nn.Module) -> nn.Module:
    return [module for module in sequence.modules() if isinstance(module, nn.Conv2d)][-1]


# The last convolutional stage of each backbone family: what its classifier head pools.
GRADCAM_LAYERS: dict[type[nn.Module], Callable[[Any], nn.Module]] = {
    torchvision.models.ResNet: lambda net: net.layer4,
    torchvision.models.DenseNet: lambda net: net.features.denseblock4,  # norm5 after it is followed by an in-place ReLU
    torchvision.models.VGG: lambda net: _last_conv(net.features),
    torchvision.models.GoogLeNet: lambda net: net.inception5b,
}


class ExplainError(RuntimeError):
    """Grad-CAM cannot be computed as asked; the message says what to change."""


def require_captum() -> Any:
    """captum's attribution module, or an error naming the extra that installs it."""
    try:
        import captum.attr
    except ImportError as error:
        raise ExplainError(f"Grad-CAM needs captum, which is not installed: {EXPLAIN_EXTRA}") from error
    return captum.attr


def gradcam_layer(backbone: nn.Module) -> nn.Module:
    """The backbone's last convolutional stage (``GRADCAM_LAYERS``)."""
    for family, pick in GRADCAM_LAYERS.items():
        if isinstance(backbone, family):
            return pick(backbone)
    known = ", ".join(family.__name__ for family in GRADCAM_LAYERS)
    raise ExplainError(f"Grad-CAM knows the last stage of {known}, not of {type(backbone).__name__}")


def gradcam_maps(model: Any, images: Tensor, targets: Tensor) -> Tensor:
    """Grad-CAM (ReLU of the gradient-weighted stage channels) per image, bilinearly upsampled: N x H x W.

    ``images``: N x C x H x W in [0, 1]; ``targets``: the class explained for each image.
    The model is put in eval mode for the call and its mode restored after.
    """
    attributions = require_captum()
    if model.attention.fixed_batch_size is not None:  # its forward runs the backbone once per batch of n images
        raise ExplainError(
            f"Grad-CAM needs a model that takes any batch; this one takes batches of exactly "
            f"{model.attention.fixed_batch_size} images (attention=global_batch, or attention.bank.source=batch)"
        )
    with evaluating(model), torch.enable_grad():
        cam = attributions.LayerGradCam(model.infer, gradcam_layer(model.backbone)).attribute(
            images.to(model.device), target=targets.to(model.device), relu_attributions=True
        )
    upsampled = F.interpolate(cam.detach().float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
    return upsampled[:, 0].cpu()  # bilinear weights are >= 0: the ReLU's zero floor survives the upsampling


@dataclass
class Comparison:
    """The same test images, each with its Grad-CAM under every model and the attended model's map."""

    images: Tensor  # N x C x H x W in [0, 1]
    rows: list[tuple[str, list[int]]]  # (class name, positions in images)
    cams: list[tuple[str, Tensor]]  # (column title, N x H x W), one per model
    maps: Tensor  # N x H x W: the map each image got
    map_title: str

    @property
    def layout(self) -> tuple[int, int]:
        """(rows, columns) of the figure: one row per image; image, Grad-CAM per model, map."""
        return self.images.shape[0], 2 + len(self.cams)


def compare(plain: Any, attended: Any, datamodule: Any, per_class: int) -> Comparison:
    """Grad-CAM of ``plain`` and ``attended`` on the first ``per_class`` test images of every class."""
    for key in ("task", "num_classes", "channels", "image_size"):
        if getattr(plain.data_info, key) != getattr(attended.data_info, key):
            raise ExplainError(
                f"the two checkpoints were trained on different data ({key}: {getattr(plain.data_info, key)} vs "
                f"{getattr(attended.data_info, key)}); compare runs of the same data set"
            )
    attention_map, _ = run_map(attended, datamodule)
    if attention_map is None:
        raise ExplainError("the attended run has no map to show (no test images were evaluated)")
    sample = take_sample(attended, datamodule, attention_map.detach().float().cpu(), per_class)
    if sample is None:
        raise ExplainError("the test split has no images to explain")
    if datamodule.info.task == MULTICLASS:
        targets = sample.labels.long()
    else:  # multi-label: the label whose row the image is in
        names = list(datamodule.info.label_names)
        targets = torch.tensor([names.index(name) for name, positions in sample.rows for _ in positions])
    cams = [(f"Grad-CAM: {attention_label(m)}", gradcam_maps(m, sample.images, targets)) for m in (plain, attended)]
    return Comparison(sample.images, sample.rows, cams, sample.maps, f"{attention_label(attended)} map")


def comparison_figure(comparison: Comparison) -> Any:
    """One row per image: the image, each model's Grad-CAM over it (scaled to its own maximum), the map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = comparison.layout
    figure, axes = plt.subplots(rows, columns, figsize=(1.7 * columns + 1.2, 1.7 * rows + 0.7), squeeze=False, dpi=100)
    titles = ["image", *(title for title, _ in comparison.cams), comparison.map_title]
    class_of = {position: name for name, positions in comparison.rows for position in positions}
    shown_map = None
    for row in range(rows):
        image = comparison.images[row].numpy()
        for column in range(columns - 1):
            show_image(axes[row, column], image)
        for column, (_, cams) in enumerate(comparison.cams, start=1):
            cam = cams[row]
            scaled = cam / cam.max() if cam.max() > 0 else cam
            axes[row, column].imshow(
                scaled.numpy(), cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0, interpolation="bilinear"
            )
            if cam.max() <= 0:  # no channel speaks for the class here: say so rather than show a blank panel
                axes[row, column].set_xlabel("0 everywhere", fontsize=7)
        shown_map = axes[row, -1].imshow(
            comparison.maps[row].numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest"
        )
        axes[row, 0].set_ylabel(class_of.get(row, ""), fontsize=7)
    for column, title in enumerate(titles):
        axes[0, column].set_title(title, fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.colorbar(shown_map, ax=axes[:, -1].tolist(), fraction=0.05, pad=0.03, label="map")
    figure.suptitle("Grad-CAM (last convolutional stage, true class; each panel scaled to its maximum)", fontsize=8)
    return figure


def write_gradcam_comparison(
    plain: Any, attended: Any, datamodule: Any, out_dir: Path, per_class: int
) -> tuple[Path, tuple[int, int]]:
    """``gradcam_comparison.png`` in ``out_dir``; returns its path and the figure's (rows, columns)."""
    import matplotlib.pyplot as plt

    comparison = compare(plain, attended, datamodule, per_class)
    figure = comparison_figure(comparison)
    path = out_dir / GRADCAM_PNG
    save_figure(figure, path)
    plt.close(figure)
    return path, comparison.layout
