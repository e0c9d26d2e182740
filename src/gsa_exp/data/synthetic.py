"""The embedded data set: aligned "fundus-like" images where *where* a lesion is decides the class.

Every image shows the same anatomy (an organ with a bright disc and two vessels) at almost
the same place. Lesion-like blobs are scattered over the organ in both classes; an image is
positive when one of them lies inside a fixed region (the ground-truth mask), negative when
none does. Both classes carry the same number of blobs, so counting blobs or judging their
look cannot solve the task: only their position can. This is the situation the paper's
premise describes, and the mask makes "does the global map find the region" measurable.

Generated on the fly, deterministically from ``seed``; no files needed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gsa_exp.data.files import DataError
from gsa_exp.data.registry import register_source
from gsa_exp.data.splits import MULTICLASS, LoadedData, Split
from gsa_exp.option_schema import check_options
from gsa_exp.options.data import SyntheticOptions

_REGION_CENTRE = (0.64, 0.62)  # (row, col) as fractions of the image size, inside the organ
_ORGAN = ((0.5, 0.5), (0.40, 0.36))  # centre and radii of the organ ellipse
_DISC = ((0.5, 0.25), 0.085)  # the bright "optic disc"
_CHANNEL_TINT = (1.0, 0.78, 0.55)  # colour images look fundus-like: red strongest


@register_source("synthetic")
class SyntheticLesions:
    """Deterministic two-class data set with a known attention region."""

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        num_train: int,
        num_val: int,
        num_test: int,
        lesion_amplitude: float,
        distractor_amplitude: float,
        lesion_sigma: float,
        region_radius: float,
        max_blobs: int,
        noise_std: float,
        jitter: float,
        seed: int,
    ) -> None:
        options = {name: value for name, value in locals().items() if name in SyntheticOptions.__dataclass_fields__}
        check_options(SyntheticOptions, options, DataError, prefix="source.")
        self.image_size = image_size
        self.channels = channels
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.lesion_amplitude = lesion_amplitude
        self.distractor_amplitude = distractor_amplitude
        self.lesion_sigma = lesion_sigma
        self.region_radius = region_radius
        self.max_blobs = max_blobs
        self.noise_std = noise_std
        self.jitter = jitter
        self.seed = seed

    def load(self) -> LoadedData:
        splits = {
            name: self._generate(count, torch.Generator().manual_seed(self.seed * 1000 + index))
            for index, (name, count) in enumerate(self.sizes.items())
        }
        return LoadedData(
            **splits,
            task=MULTICLASS,
            label_names=["no lesion in region", "lesion in region"],
            region_mask=self.region_mask(),
        )

    def region_mask(self) -> Tensor:
        rows, cols = _grid(self.image_size)
        distance = torch.hypot(rows - _REGION_CENTRE[0], cols - _REGION_CENTRE[1])
        return distance <= self.region_radius

    # -- generation -------------------------------------------------------------------
    def _generate(self, count: int, generator: torch.Generator) -> Split:
        labels = torch.randperm(count, generator=generator) % 2  # balanced classes, shuffled
        images = torch.empty(count, self.channels, self.image_size, self.image_size, dtype=torch.uint8)
        for start in range(0, count, 512):
            chunk_labels = labels[start : start + 512]
            images[start : start + 512] = self._images(chunk_labels, generator)
        return Split(images=images, labels=labels.long())

    def _images(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        count = labels.shape[0]
        rows, cols = _grid(self.image_size)
        shift = (torch.rand(count, 2, 1, 1, generator=generator) * 2 - 1) * self.jitter / self.image_size
        rows, cols = rows - shift[:, 0], cols - shift[:, 1]
        gain = 0.85 + 0.3 * torch.rand(count, 1, 1, generator=generator)
        canvas = _anatomy(rows, cols) * gain
        canvas = canvas + self._blobs(labels, rows, cols, generator)
        canvas = canvas + self.noise_std * torch.randn(canvas.shape, generator=generator)
        tint = torch.tensor(_CHANNEL_TINT[: self.channels] if self.channels == 3 else (1.0,)).view(1, -1, 1, 1)
        pixels = (canvas.unsqueeze(1) * tint).clamp_(0, 1).mul_(255).round_()
        return pixels.to(torch.uint8)

    def _blobs(self, labels: Tensor, rows: Tensor, cols: Tensor, generator: torch.Generator) -> Tensor:
        """Same blob count in both classes; positives have exactly one blob inside the region.

        The lesion (inside the region) may be fainter than the distractors: a network that
        does not know where to look is drawn to the brighter blobs elsewhere.
        """
        count = labels.shape[0]
        blob_count = torch.randint(1, self.max_blobs + 1, (count,), generator=generator)
        centres = self._outside_region(count * self.max_blobs, generator).view(count, self.max_blobs, 2)
        inside = self._inside_region(count, generator)
        centres[:, 0] = torch.where(labels.bool().view(-1, 1), inside, centres[:, 0])
        active = torch.arange(self.max_blobs).view(1, -1) < blob_count.view(-1, 1)
        peak = torch.full((count, self.max_blobs), self.distractor_amplitude)
        peak[:, 0] = torch.where(labels.bool(), self.lesion_amplitude, self.distractor_amplitude)
        amplitude = peak * (0.8 + 0.4 * torch.rand(count, self.max_blobs, generator=generator)) * active
        d2 = (rows.unsqueeze(1) - centres[..., 0, None, None]) ** 2 + (
            cols.unsqueeze(1) - centres[..., 1, None, None]
        ) ** 2
        return (amplitude[..., None, None] * torch.exp(-d2 / (2 * self.lesion_sigma**2))).sum(dim=1)

    def _inside_region(self, count: int, generator: torch.Generator) -> Tensor:
        radius = 0.6 * self.region_radius * torch.rand(count, generator=generator).sqrt()
        angle = 2 * math.pi * torch.rand(count, generator=generator)
        return torch.stack(
            [_REGION_CENTRE[0] + radius * torch.sin(angle), _REGION_CENTRE[1] + radius * torch.cos(angle)], dim=1
        )

    def _outside_region(self, count: int, generator: torch.Generator) -> Tensor:
        """Uniform points of the organ farther than the region (plus a blob's reach) from its centre."""
        (centre_r, centre_c), (radius_r, radius_c) = _ORGAN
        keep_out = self.region_radius + 2.5 * self.lesion_sigma
        points = torch.empty(0, 2)
        while points.shape[0] < count:
            radius = 0.85 * torch.rand(4 * count, generator=generator).sqrt()
            angle = 2 * math.pi * torch.rand(4 * count, generator=generator)
            candidates = torch.stack(
                [centre_r + radius_r * radius * torch.sin(angle), centre_c + radius_c * radius * torch.cos(angle)],
                dim=1,
            )
            distance = torch.hypot(candidates[:, 0] - _REGION_CENTRE[0], candidates[:, 1] - _REGION_CENTRE[1])
            points = torch.cat([points, candidates[distance > keep_out]])
        return points[:count]


def _grid(size: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates as fractions of the image size."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    return axis.view(-1, 1).expand(size, size), axis.view(1, -1).expand(size, size)


def _anatomy(rows: Tensor, cols: Tensor) -> Tensor:
    """Background, organ, bright disc and two vessels, as intensities in [0, 1]."""
    (centre_r, centre_c), (radius_r, radius_c) = _ORGAN
    ellipse = ((rows - centre_r) / radius_r) ** 2 + ((cols - centre_c) / radius_c) ** 2
    organ = torch.sigmoid((1 - ellipse) * 12)
    (disc_r, disc_c), disc_radius = _DISC
    disc = torch.exp(-((rows - disc_r) ** 2 + (cols - disc_c) ** 2) / (2 * disc_radius**2))
    vessels = 0.0
    for sign in (-1, 1):
        path = disc_r + sign * 0.18 * torch.sin(math.pi * (cols - disc_c) / 0.9).clamp(min=0)
        vessels = vessels + torch.exp(-((rows - path) ** 2) / (2 * 0.012**2)) * (cols > disc_c)
    return 0.08 + 0.42 * organ + 0.35 * disc - 0.15 * vessels * organ
