"""The contract between training and serving: torch-free, imported by both halves.

* :mod:`service.contract.manifest` — the model folder's ``manifest.json`` (one pydantic model).
* :mod:`service.contract.preprocess` — decode → RGB → resize → normalize, the one implementation.
* :mod:`service.contract.scoring` — the scoring modes (what each indexes, its pair score, its threshold).
* :mod:`service.contract.tensors` — the ONNX graphs' input and output names.

It lives inside ``service`` so that a serving-only install (``pip install ".[cpu]"``, no torch) owns it;
``training`` imports it, never the reverse.
"""
