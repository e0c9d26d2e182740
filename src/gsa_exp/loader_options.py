"""The data module's loader options, declared where no torch is needed.

``ArrayDataModule`` checks its arguments with this schema, and the config layer checks a
run's data set with it before anything is built; kept out of ``gsa_exp.data`` (whose
package loads torch and Lightning) so a mistyped ``dataset.batch_size`` is answered at once.
Defaults: ``conf/dataset_base/loader.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from gsa_exp.option_schema import AtLeast


@dataclass(frozen=True)
class LoaderOptions:
    image_size: Annotated[int, AtLeast(1)]
    channels: Annotated[int | None, AtLeast(1)]
    batch_size: Annotated[int, AtLeast(1)]
    eval_batch_size: Annotated[int, AtLeast(1)]
    num_workers: Annotated[int, AtLeast(0)]
    pin_memory: bool
