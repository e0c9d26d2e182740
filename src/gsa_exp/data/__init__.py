"""Data sources and the data module that serves them."""

from gsa_exp.data.datamodule import ArrayDataModule
from gsa_exp.data.splits import MULTICLASS, MULTILABEL, DataInfo, LoadedData, Split
from gsa_exp.data.synthetic import SyntheticLesions

__all__ = ["MULTICLASS", "MULTILABEL", "ArrayDataModule", "DataInfo", "LoadedData", "Split", "SyntheticLesions"]
