"""Multiresolution hash encoding (Instant-NGP, tiny-cuda-nn conventions).

``hash_encode(x, table, config=...)`` maps ``(N, 3)`` points to ``(N, L*F)``
features; ``reference.py`` documents the conventions, ``kernel.py`` holds the
Pallas kernels, ``backward.py`` the XLA stages of the table gradient and
``pallas.py`` the custom VJP and its table-gradient variants.
"""

from .api import default_implementation, hash_encode
from .pallas import hash_encode_pallas
from .reference import HashEncodingConfig, hash_encode_reference, init_table

__all__ = [
    "HashEncodingConfig",
    "default_implementation",
    "hash_encode",
    "hash_encode_pallas",
    "hash_encode_reference",
    "init_table",
]
