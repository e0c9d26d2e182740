"""The pixel-feature bank of global spatial attention.

A pixel is described by its intensities across the training images: with images
x_1..x_n (C channels each), pixel p has the feature vector (x_1[:, p], ..., x_n[:, p]).
Stored as one K x H x W tensor (K = n * C), the bank is a K-channel "image" over which
the pixel classifier runs as 1x1 convolutions.

Everything here works in chunks of images so that building the bank never needs more
temporary memory than the bank itself plus one chunk.

``source=batch`` is the other reading, the variant ``global_batch``: the features of a pixel
are its intensities in the images of the current mini-batch (``batch_bank``), so
K = batch_size x C is fixed by the batch size and nothing is stored.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gsa_exp.attention.base import AttentionError
from gsa_exp.options.attention import BankOptions

_EPS = 1e-6
_SERIAL_EIGH_LIMIT = 1024  # eigen-decompositions up to this size run on one thread (see _eigh)


def selected_image_count(num_train: int, num_images: int | None) -> int:
    return num_train if num_images is None else min(num_images, num_train)


def bank_depth(num_train: int, channels: int, options: BankOptions) -> int:
    """Number of bank rows K of the fixed bank, known before any image is read (it sizes the classifier)."""
    if options.components is not None:
        return options.components + 1  # the mean image plus the principal components
    return selected_image_count(num_train, options.num_images) * channels


def stratified_subset(labels: Tensor, count: int, seed: int) -> Tensor:
    """Indices of ``count`` images drawn so that every label (or label set) keeps its share.

    Shares are rounded by largest remainder; the result is sorted so the bank order is stable.
    """
    total = labels.shape[0]
    if count >= total:
        return torch.arange(total)
    keys = labels.reshape(total, -1)
    _, strata = torch.unique(keys, dim=0, return_inverse=True)
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.bincount(strata)
    exact = sizes.double() * count / total
    quota = exact.floor().long()
    shortfall = count - int(quota.sum())
    if shortfall > 0:
        order = torch.argsort(exact - quota.double(), descending=True, stable=True)
        quota[order[:shortfall]] += 1
    chosen = []
    for stratum, take in enumerate(quota.tolist()):
        members = torch.nonzero(strata == stratum).flatten()
        chosen.append(members[torch.randperm(members.numel(), generator=generator)[:take]])
    return torch.sort(torch.cat(chosen)).values


# A chunk of the selected images: a slice when every image is selected (a view, no copy), else indices.
Chunk = Tensor | slice


def _rows(images: Tensor, chunk: Chunk, standardize: bool, out: Tensor | None = None) -> Tensor:
    """Bank rows (one per image channel) for some images, as float32 in [0, 1], optionally standardised.

    Written into ``out`` when given. Standardising removes any common scale, so standardised
    rows are computed from the raw 0..255 values (one pass fewer); the result is the same.
    """
    selected = images[chunk]
    selected = selected.reshape(selected.shape[0] * selected.shape[1], -1)
    rows = selected.to(torch.float32) if out is None else out.copy_(selected)
    if standardize:
        _standardize_rows_(rows, scale=255.0)
    else:
        rows.div_(255.0)
    return rows


def _standardize_rows_(rows: Tensor, scale: float = 1.0) -> None:
    """Zero mean and unit (unbiased) std per row, in place; ``scale``: the rows' values are this times [0, 1] units.

    Constant rows (std below 1e-6 in [0, 1] units) become zero rows. The std is the norm of
    the centred row (two passes, vectorised), much faster than ``Tensor.std``.
    """
    rows -= rows.mean(dim=1, keepdim=True)
    std = torch.linalg.vector_norm(rows, dim=1, keepdim=True).div_(max(rows.shape[1] - 1, 1) ** 0.5)
    rows /= std.clamp_min_(_EPS * scale)


def batch_bank(images: Tensor, standardize: bool) -> Tensor:
    """The 1 x (B * C) x H x W bank of ``source=batch``: a float batch's own intensities, as rows."""
    height, width = images.shape[-2:]
    rows = images.detach().reshape(-1, height * width).clone()
    if standardize:
        _standardize_rows_(rows)
    return rows.reshape(1, -1, height, width)


def _chunks(indices: Tensor, total: int, chunk_size: int) -> list[Chunk]:
    """``indices`` (sorted, unique) in chunks; slices when they are every one of the ``total`` images."""
    if indices.numel() == total:
        return [slice(start, min(start + chunk_size, total)) for start in range(0, total, chunk_size)]
    return list(torch.split(indices, chunk_size))


def _chunk_rows(chunk: Chunk, channels: int) -> int:
    count = chunk.stop - chunk.start if isinstance(chunk, slice) else chunk.numel()
    return count * channels


def _eigh(gram: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh``, single-threaded for matrices up to 1024 wide.

    LAPACK's symmetric eigensolver is a long chain of small synchronised steps. At these
    sizes more threads save at most ~0.1 s on an idle machine (784 wide: 0.10 s on one
    thread, 0.03 s on 16), while on a busy one every step waits for a descheduled thread
    (2 busy cores, 784 wide: 0.25 s on one thread, 1 to 18 s on two).
    """
    if gram.shape[0] > _SERIAL_EIGH_LIMIT or torch.get_num_threads() == 1:
        return torch.linalg.eigh(gram)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(gram)
    finally:
        torch.set_num_threads(threads)


def build_bank(images: Tensor, labels: Tensor, options: BankOptions) -> Tensor:
    """The K x H x W bank from uint8 training images (N x C x H x W) and their labels."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"bank images must be a uint8 N x C x H x W tensor, got {images.dtype} {tuple(images.shape)}")
    count = selected_image_count(images.shape[0], options.num_images)
    indices = stratified_subset(labels, count, options.seed)
    height, width = images.shape[-2:]
    if options.components is None:
        bank = _raw_bank(images, indices, options)
    else:
        bank = _compressed_bank(images, indices, options)
    return bank.reshape(-1, height, width)


def _raw_bank(images: Tensor, indices: Tensor, options: BankOptions) -> Tensor:
    channels, pixels = images.shape[1], images.shape[2] * images.shape[3]
    bank = torch.empty(indices.numel() * channels, pixels, dtype=torch.float32)
    row = 0
    for chunk in _chunks(indices, images.shape[0], options.chunk_size):
        size = _chunk_rows(chunk, channels)
        _rows(images, chunk, options.standardize, out=bank[row : row + size])  # converted in place
        row += size
    return bank


def _compressed_bank(images: Tensor, indices: Tensor, options: BankOptions) -> Tensor:
    """Mean image plus the top principal components of the bank rows (PCA across images).

    A linear classifier on these rows equals a linear classifier on the raw rows whose
    weight vector lies in the span of the kept principal directions (and the all-ones
    direction); with every component kept, the two are the same family of maps.
    The decomposition uses the Gram matrix of the smaller side (pixels x pixels or
    rows x rows), accumulated chunk by chunk in float64; the pixel-side one needs a single
    pass over the images (chunk means and Grams combined as they come).
    """
    rows_total = indices.numel() * images.shape[1]
    pixels = images.shape[2] * images.shape[3]
    limit = min(rows_total, pixels)
    if options.components > limit:
        raise AttentionError(
            f"$bank.components={options.components}: at most min(images x channels, H x W) = {limit} "
            f"with these images (use at most {limit})"
        )
    chunks = _chunks(indices, images.shape[0], options.chunk_size)
    if pixels <= rows_total:
        mean, components = _components_from_pixel_gram(images, chunks, options)
    else:
        mean = torch.zeros(pixels, dtype=torch.float64)
        for chunk in chunks:
            mean += _rows(images, chunk, options.standardize).sum(dim=0, dtype=torch.float64)
        mean /= rows_total
        components = _components_from_row_gram(images, chunks, options, mean)
    bank = torch.cat([mean.to(torch.float32).unsqueeze(0), components])
    if options.standardize:
        _standardize_rows_(bank)
    return bank


def _components_from_pixel_gram(images: Tensor, chunks: list[Chunk], options: BankOptions) -> tuple[Tensor, Tensor]:
    """Mean row and top components in one pass over the images.

    Each chunk is centred on its own mean; the centred Gram is the sum of the chunks' Grams
    (float32 products of centred rows, summed in float64) plus the between-chunk part
    sum_c n_c (m_c - m)(m_c - m)^T, added once the overall mean m is known.
    """
    pixels = images.shape[2] * images.shape[3]
    gram = torch.zeros(pixels, pixels, dtype=torch.float64)
    means = torch.empty(len(chunks), pixels, dtype=torch.float64)  # allocated up front: nothing small
    sizes = []  # outlives a loop iteration, which would fragment the heap the chunks are taken from
    for index, chunk in enumerate(chunks):
        rows = _rows(images, chunk, options.standardize)
        chunk_mean = rows.mean(dim=0)
        rows -= chunk_mean
        gram += rows.T @ rows
        means[index] = chunk_mean
        sizes.append(rows.shape[0])
    weights = torch.tensor(sizes, dtype=torch.float64).unsqueeze(1)
    mean = (weights * means).sum(dim=0) / weights.sum()
    spread = (means - mean) * weights.sqrt()
    gram.addmm_(spread.T, spread)
    eigenvalues, eigenvectors = _eigh(gram)
    top = torch.argsort(eigenvalues, descending=True)[: options.components]
    scale = eigenvalues[top].clamp_min(0).sqrt()
    return mean, (eigenvectors[:, top] * scale).T.to(torch.float32)


def _components_from_row_gram(images: Tensor, chunks: list[Chunk], options: BankOptions, mean: Tensor) -> Tensor:
    sizes = [_chunk_rows(chunk, images.shape[1]) for chunk in chunks]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    total = sum(sizes)
    gram = torch.zeros(total, total, dtype=torch.float64)
    for i, chunk_i in enumerate(chunks):
        rows_i = _rows(images, chunk_i, options.standardize).double() - mean
        for j in range(i, len(chunks)):
            rows_j = rows_i if j == i else _rows(images, chunks[j], options.standardize).double() - mean
            block = rows_i @ rows_j.T
            gram[offsets[i] : offsets[i] + sizes[i], offsets[j] : offsets[j] + sizes[j]] = block
            gram[offsets[j] : offsets[j] + sizes[j], offsets[i] : offsets[i] + sizes[i]] = block.T
    eigenvalues, eigenvectors = _eigh(gram)
    top = torch.argsort(eigenvalues, descending=True)[: options.components]
    directions = eigenvectors[:, top]  # rows_total x k, orthonormal
    components = torch.zeros(options.components, mean.numel(), dtype=torch.float64)
    for i, chunk in enumerate(chunks):
        centred = _rows(images, chunk, options.standardize).double() - mean
        components.addmm_(directions[offsets[i] : offsets[i] + sizes[i]].T, centred)
    return components.to(torch.float32)
