"""The paper's networks, built through a registry: ``create_model(name, ...)``, ``list_models()``."""

from .registry import create_model, list_models, register_model
from .resnet import PreActResNet, ResNetV1
from .resnet_ours import ResNetOurs

__all__ = ["create_model", "list_models", "register_model", "ResNetOurs", "ResNetV1", "PreActResNet"]
