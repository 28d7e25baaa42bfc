"""Sticky hashing: a user key and a per-model salt map to one of 10,000 buckets.

blake2b is stable across processes and machines (unlike ``hash()``), so every gateway
replica sends the same user to the same version.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

from rollwise.domain import BUCKETS

MAX_SALTS = 1024
"""Keyed hashers kept, one per salt (a salt per model and rollout): beyond, all are
dropped and made again as needed."""

_keyed: dict[str, Any] = {}
"""Per salt, a BLAKE2b already keyed with it: a copy of it hashes a key with one
compression, where keying a new hasher costs another (the key is a block of its own).
The digests are the same either way."""


def bucket_of(salt: str, key: str) -> int:
    """The bucket in ``[0, BUCKETS)`` of ``key`` under ``salt``."""
    keyed = _keyed.get(salt)
    if keyed is None:
        if len(_keyed) >= MAX_SALTS:
            _keyed.clear()
        keyed = _keyed[salt] = blake2b(digest_size=8, key=salt.encode()[:64])
    digest = keyed.copy()
    digest.update(key.encode())
    return int.from_bytes(digest.digest(), "big") % BUCKETS
