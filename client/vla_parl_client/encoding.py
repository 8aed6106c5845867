"""Request fields as the server reads them: images as lossless base64 PNG, vectors as lists of floats."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

__all__ = ["encode_png", "float_list"]


def encode_png(image: Any) -> str:
    """uint8 H×W×3 array (or PIL image) → base64 PNG text."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"image must be a uint8 H×W×3 array, got dtype {array.dtype} shape {array.shape}")
        image = Image.fromarray(np.ascontiguousarray(array))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def float_list(value: Any) -> list[float] | None:
    """A vector (any array-like) as a flat list of floats; None stays None."""
    return None if value is None else np.asarray(value, dtype=np.float64).reshape(-1).tolist()
