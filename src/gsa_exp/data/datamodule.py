"""One LightningDataModule for every data source that yields in-memory uint8 arrays."""

from __future__ import annotations

from typing import Any, Protocol

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from gsa_exp.data.device_batches import DeviceBatches, fits_on_device
from gsa_exp.data.files import DataError
from gsa_exp.data.preprocess import Augmentation, Normalization, match_channels, resize_uint8
from gsa_exp.data.sampling import EpochShuffleSampler
from gsa_exp.data.splits import MULTILABEL, SPLITS, DataInfo, LoadedData, Split
from gsa_exp.option_schema import check_options
from gsa_exp.options.data import LoaderOptions


class DataSource(Protocol):
    """Anything that can load the three splits (a file format, a generator...)."""

    def load(self) -> LoadedData: ...


class UInt8ImageDataset(Dataset):
    """Index into uint8 tensors; ``__getitems__`` hands the loader a whole batch at once."""

    def __init__(self, split: Split) -> None:
        self.images, self.labels = split.images, split.labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


def collate_batch(batch: Any) -> Any:
    """Batches from ``__getitems__`` are already stacked; anything else is collated as usual."""
    if isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[0], Tensor):
        return batch
    return default_collate(batch)


class ArrayDataModule(pl.LightningDataModule):
    """Deterministic preprocessing once at set-up (resize, channels), batched transforms per step.

    Batches reach the model as floats in [0, 1]; the normalisation configured here travels
    to the model in ``info`` and is applied there, after the attention.

    The training split is also the source of the GSA pixel-feature bank (``bank_images``):
    deterministic images, never augmented, never validation or test data.

    ``name`` labels the data set in tables and logs; ``root`` is where its files live (None for
    generated data), kept here so that one key moves them: the source's own path options
    interpolate it (``${..root}``).
    """

    def __init__(
        self,
        *,
        name: str,
        root: str | None = None,  # run configs of generated data, which have no files, may lack it
        source: DataSource,
        image_size: int,
        channels: int | None,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        pin_memory: bool,
        normalize: dict[str, list[float]],
        augment: dict[str, Any],
        shuffle_seed: int | None,
    ) -> None:
        super().__init__()
        loader = dict(image_size=image_size, channels=channels, batch_size=batch_size, eval_batch_size=eval_batch_size)
        check_options(LoaderOptions, dict(loader, num_workers=num_workers, pin_memory=pin_memory), DataError)
        self.name = name
        self.root = root
        self.source = source
        self.image_size = image_size
        self.channels = channels
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.normalization = Normalization(**normalize)
        self.augmentation = Augmentation(**augment)
        self.shuffle_seed = shuffle_seed
        self.data: LoadedData | None = None
        self._info: DataInfo | None = None
        self._train_batches_to_skip = 0  # set when resuming mid-epoch from a checkpoint
        self.on_device, self.memory_share, self.pad_eval_batches = False, 1.0, False  # see configure_batches
        self.train_in_order = False
        self.memory_share_option = "device_memory_share"
        self._device_splits: dict[str, Split] | None = None

    # -- set-up -----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        loaded = self.source.load()
        channels = self.channels or loaded.train.images.shape[1]
        for name in SPLITS:
            split = loaded.split(name)
            images = resize_uint8(match_channels(split.images, channels), self.image_size)
            setattr(loaded, name, Split(images=images, labels=split.labels))
        if loaded.region_mask is not None and tuple(loaded.region_mask.shape) != (self.image_size,) * 2:
            mask = resize_uint8(loaded.region_mask.to(torch.uint8).mul(255)[None, None], self.image_size)
            loaded.region_mask = mask[0, 0] >= 128
        if len(loaded.train) < self.batch_size:
            raise DataError(
                f"$batch_size={self.batch_size} exceeds the {len(loaded.train)} training images; "
                "training drops incomplete batches, so no step would run"
            )
        self.data = loaded
        num_classes = loaded.train.labels.shape[1] if loaded.task == MULTILABEL else len(loaded.label_names)
        mean, std = self.normalization.per_channel(channels)
        self._info = DataInfo(
            task=loaded.task,
            num_classes=num_classes,
            channels=channels,
            image_size=self.image_size,
            num_train=len(loaded.train),
            label_names=list(loaded.label_names),
            mean=mean,
            std=std,
        )

    @property
    def info(self) -> DataInfo:
        if self._info is None:
            raise RuntimeError("call setup() before asking for the data set's info")
        return self._info

    @property
    def region_mask(self) -> Tensor | None:
        return None if self.data is None else self.data.region_mask

    def bank_images(self) -> tuple[Tensor, Tensor]:
        """Deterministic uint8 training images and labels for the GSA bank."""
        self.setup("fit")
        assert self.data is not None
        return self.data.train.images, self.data.train.labels

    def split(self, name: str) -> Split:
        self.setup()
        assert self.data is not None
        return self.data.split(name)

    # -- loaders ----------------------------------------------------------------------
    def configure_batches(
        self,
        *,
        on_device: bool,
        memory_share: float,
        pad_eval_batches: bool,
        memory_share_option: str = "device_memory_share",
        train_in_order: bool = False,
    ) -> None:
        """The ``performance`` settings that shape batches.

        ``on_device``: on a single device, the splits move to it once and batches are index
        slices there (``DeviceBatches``), unless they need more than ``memory_share`` of its
        free memory (a share in (0, 1]: ``performance``'s schema checks it); the log line saying
        so calls it ``memory_share_option`` (where the caller's config keeps it).
        ``pad_eval_batches``: short evaluation batches are completed to ``eval_batch_size`` and
        the completion is discarded after the forward, so a compiled
        model sees one shape (``on_after_batch_transfer``).
        ``train_in_order``: the training loader reads the split as the evaluation loaders read
        theirs (in order, every image once, unaugmented, in evaluation batches): a pass that
        stores features (``scheme=knn``), not one that learns.
        """
        self.on_device, self.memory_share, self.pad_eval_batches = on_device, memory_share, pad_eval_batches
        self.train_in_order = train_in_order
        self.memory_share_option = memory_share_option

    def _train_sampler(self, size: int) -> EpochShuffleSampler:
        sampler = EpochShuffleSampler(size, self.shuffle_seed)
        sampler.skip_next(self._train_batches_to_skip * self.batch_size)
        self._train_batches_to_skip = 0
        return sampler

    def _batch_device(self) -> torch.device | None:
        """The device batches are sliced on, or None for the host loader (several processes, too large, off)."""
        trainer = self.trainer
        if not self.on_device or trainer is None or trainer.world_size != 1:
            return None
        device = trainer.strategy.root_device
        if self._device_splits is None:
            assert self.data is not None
            splits = {name: self.data.split(name) for name in SPLITS}
            if not fits_on_device(splits, device, self.memory_share, self.memory_share_option):
                self.on_device = False
                return None
            self._device_splits = {
                name: Split(images=split.images.to(device), labels=split.labels.to(device))
                for name, split in splits.items()
            }
        return device

    def _loader(self, name: str, train: bool) -> DataLoader | DeviceBatches:
        split = self.split(name)
        sampler = self._train_sampler(len(split)) if train else None
        batch_size = self.batch_size if train else self.eval_batch_size
        if self._batch_device() is not None:
            assert self._device_splits is not None
            return DeviceBatches(self._device_splits[name], batch_size, sampler)
        return DataLoader(
            UInt8ImageDataset(split),
            batch_size=batch_size,
            sampler=sampler,
            drop_last=train,  # BatchNorm cannot train on a batch of one
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_batch,
            # Its own generator: creating an iterator then draws no number from the global
            # random state, which a resumed run must continue exactly (dropout, augmentation).
            generator=torch.Generator().manual_seed(sampler.seed if sampler is not None else 0),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=not self.train_in_order)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    # -- checkpointed position ----------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        """How many batches of the current epoch are done, so a resumed run skips exactly those."""
        done = 0
        if self.trainer is not None and self.trainer.training:
            completed = self.trainer.fit_loop.epoch_loop.batch_progress.current.completed
            done = completed if completed < self.trainer.num_training_batches else 0
        return {"train_batches_done": done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._train_batches_to_skip = int(state_dict.get("train_batches_done", 0))

    # -- per-batch transforms -----------------------------------------------------------
    def to_model_input(self, images: Tensor, train: bool) -> Tensor:
        """uint8 batch -> float batch in [0, 1] (augmented when ``train``), on the batch's device.

        Normalisation is the model's first step (after attention), so attention weighs
        intensities, where 0 means "nothing here", not distances from the mean.
        """
        batch = images.to(torch.float32).div_(255.0)
        if train and self.augmentation.active:
            batch = self.augmentation(batch)
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Model-ready floats; a short evaluation batch, when padding is on, completed and counted.

        Padded batches are (images, labels, count): the model keeps the first ``count`` outputs.
        """
        images, labels = batch
        training = self.trainer is not None and self.trainer.training and not self.train_in_order
        count = images.shape[0]
        if not training and self.pad_eval_batches and count < self.eval_batch_size:
            padding = self.eval_batch_size - count
            images = torch.cat([images, images[:1].expand(padding, *images.shape[1:])])
            labels = torch.cat([labels, labels[:1].expand(padding, *labels.shape[1:])])
            return self.to_model_input(images, train=False), labels, count
        return self.to_model_input(images, train=training), labels
