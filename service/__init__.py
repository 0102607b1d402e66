"""Serving half of ReID Service: FastAPI + onnxruntime + FAISS. Never imports torch."""

__version__ = "0.1.0"
