"""Sticky hashing: a user key and a per-model salt map to one of 10,000 buckets.

blake2b is stable across processes and machines (unlike ``hash()``), so every gateway
replica sends the same user to the same version.
"""

from __future__ import annotations

from hashlib import blake2b

from rollwise.domain import BUCKETS


def bucket_of(salt: str, key: str) -> int:
    """The bucket in ``[0, BUCKETS)`` of ``key`` under ``salt``."""
    digest = blake2b(key.encode(), digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") % BUCKETS
