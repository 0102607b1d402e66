"""Re-ID models: backbones (``training.models.backbones``), embedding heads and siamese networks.

This package file imports nothing on purpose (no torch at import time); import the subpackages you need,
e.g. ``from training.models.backbones import build_backbone``.
"""
