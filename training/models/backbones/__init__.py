"""Backbones in plain torch, one file per family, all registered in :mod:`.registry`.

Usage::

    from training.models.backbones import build_backbone, list_backbones

    backbone = build_backbone("resnet50", last_stride=1, pretrained="weights/resnet50-0676ba61.pth")
    feature_map = backbone(images)  # N × backbone.feature_dim × h × w, not pooled

Families: ``resnet50``, ``osnet_x1_0`` / ``x0_75`` / ``x0_5`` / ``x0_25``, ``osnet_ibn_x1_0``,
``osnet_ain_x1_0`` / ``x0_75`` / ``x0_5`` / ``x0_25``, ``mobilenetv3_large``,
``efficientnet_b0`` … ``b5``, ``vgg16``. Importing this package registers all of them.
"""

from training.models.backbones import efficientnet, mobilenetv3, osnet, osnet_ain, resnet, vgg
from training.models.backbones.base import Backbone
from training.models.backbones.registry import (
    build_backbone,
    list_backbones,
    load_pretrained,
    register_backbone,
)

__all__ = [
    "Backbone",
    "build_backbone",
    "efficientnet",
    "list_backbones",
    "load_pretrained",
    "mobilenetv3",
    "osnet",
    "osnet_ain",
    "register_backbone",
    "resnet",
    "vgg",
]
