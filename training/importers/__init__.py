"""Importers: models people already have (torchreid, fast-reid checkpoints, ONNX files) → model folders.

``reid models import --format {torchreid,fastreid,onnx}``; see :mod:`training.importers.folder` for what every
importer writes and :mod:`training.importers.command` for the command line.
"""
