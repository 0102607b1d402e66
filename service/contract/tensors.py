"""Input and output names of the ONNX graphs in a model folder: written by the exporter, read by the service.

Every graph has a dynamic batch axis (dimension 0).
"""

from __future__ import annotations

#: ``embedding.onnx`` / ``encoder.onnx`` input: float32 (N, 3, H, W), normalized by the manifest's mean / std.
IMAGES = "images"
#: ``embedding.onnx`` output: (N, D) embeddings.
EMBEDDINGS = "embeddings"
#: ``verification_head.onnx`` inputs: two (N, D) embedding batches.
EMBEDDINGS_A = "embeddings_a"
EMBEDDINGS_B = "embeddings_b"
#: ``verification_head.onnx`` output: (N, 2) softmax probabilities (the manifest names the "same" column).
PROBABILITIES = "probabilities"
#: ``encoder.onnx`` outputs (pairwise models): the comparator's encoding and the ranking descriptor.
ENCODING = "encoding"
DESCRIPTOR = "descriptor"
#: ``comparator.onnx`` inputs and output (pairwise models): two (N, E) encodings → (N,) scores.
ENCODING_A = "encoding_a"
ENCODING_B = "encoding_b"
SCORE = "score"
#: ``comparator.onnx`` extra outputs (pairwise models): (N, 2) probabilities and the (N,) feature distance.
DISTANCE = "distance"

#: The graphs' inputs and outputs in order, as the exporter names them.
EMBEDDING_INPUTS: tuple[str, ...] = (IMAGES,)
EMBEDDING_OUTPUTS: tuple[str, ...] = (EMBEDDINGS,)
HEAD_INPUTS: tuple[str, ...] = (EMBEDDINGS_A, EMBEDDINGS_B)
HEAD_OUTPUTS: tuple[str, ...] = (PROBABILITIES,)
ENCODER_OUTPUTS: tuple[str, ...] = (ENCODING, DESCRIPTOR)
COMPARATOR_INPUTS: tuple[str, ...] = (ENCODING_A, ENCODING_B)
COMPARATOR_OUTPUTS: tuple[str, ...] = (SCORE, PROBABILITIES, DISTANCE)
