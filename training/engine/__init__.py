"""The training engine: flat config + recipes, the trainer (DDP-ready), checkpoints, evaluation and reports.

Modules are imported on demand (``from training.engine.trainer import Trainer``); this file imports nothing.
"""
