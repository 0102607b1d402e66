"""schemathesis hooks: real images for the image fields, the one constraint JSON Schema cannot state.

The OpenAPI document states every other limit (image count, non-empty parts, metric names, form fields …);
"these bytes decode to a JPEG, PNG, WebP or BMP image" has no JSON Schema keyword, so without these hooks
schemathesis's positive cases send random bytes as images and the service rightly answers 400. Loaded by
``schemathesis.toml`` (``schemathesis run`` from the repository root) and by ``SCHEMATHESIS_HOOKS`` in
``tests/reliability/test_openapi_contract.py``.
"""

from __future__ import annotations

import base64
import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.transport.serialization import Binary

#: (format, media type) of every image kind the decoder accepts.
KINDS = (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp"), ("BMP", "image/bmp"))
SIZES = ((1, 1), (8, 16), (64, 128))


def _encode(kind: str, size: tuple[int, int], seed: int) -> bytes:
    image = Image.new("RGB", size, ((seed * 67) % 256, (seed * 131) % 256, (seed * 29) % 256))
    out = io.BytesIO()
    image.save(out, format=kind)
    return out.getvalue()


IMAGES: dict[str, list[bytes]] = {
    media: [_encode(kind, size, i) for i, size in enumerate(SIZES)] for kind, media in KINDS
}
ALL_IMAGES = [data for samples in IMAGES.values() for data in samples]

# File parts (sent with a filename). Not schemathesis.openapi.media_type: it sends parts without a filename,
# which a multipart parser reads as text fields, not files.
schemathesis.openapi.format("binary", st.sampled_from(ALL_IMAGES).map(Binary))
schemathesis.openapi.format(  # base64 strings in JSON bodies
    "byte", st.sampled_from(ALL_IMAGES).map(lambda data: base64.b64encode(data).decode("ascii"))
)
