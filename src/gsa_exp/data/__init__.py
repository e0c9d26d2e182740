"""Data sources, their registry (``list_sources``) and the data module that serves them."""

from gsa_exp.data.datamodule import ArrayDataModule
from gsa_exp.data.fer2013 import FER2013Source
from gsa_exp.data.files import DataFormatError, DataNotFoundError
from gsa_exp.data.image_folder import ImageFolderSource
from gsa_exp.data.medmnist_npz import MedMNISTSource
from gsa_exp.data.registry import create_source, get_source, list_sources, register_source
from gsa_exp.data.splits import MULTICLASS, MULTILABEL, DataInfo, LoadedData, Split
from gsa_exp.data.synthetic import SyntheticLesions

__all__ = ["MULTICLASS", "MULTILABEL", "ArrayDataModule", "DataInfo", "LoadedData", "Split", "SyntheticLesions"]
__all__ += ["DataFormatError", "DataNotFoundError", "FER2013Source", "ImageFolderSource", "MedMNISTSource"]
__all__ += ["create_source", "get_source", "list_sources", "register_source"]
