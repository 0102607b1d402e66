"""Training half of ReID Service: datasets, models, losses, trainer, evaluation and ONNX export.

Importing this package never imports torch; the torch-using modules are imported by the commands that
need them.
"""

__version__ = "0.1.0"
