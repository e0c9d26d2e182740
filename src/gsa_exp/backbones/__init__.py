"""torchvision classification backbones, adapted to small medical images."""

from gsa_exp.backbones.common import BackboneError, split_outputs
from gsa_exp.backbones.densenet import build_densenet
from gsa_exp.backbones.googlenet import build_googlenet
from gsa_exp.backbones.resnet import build_resnet
from gsa_exp.backbones.vgg import build_vgg

__all__ = ["BackboneError", "build_densenet", "build_googlenet", "build_resnet", "build_vgg", "split_outputs"]
