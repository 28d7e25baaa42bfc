"""Routing tables: immutable, precomputed answers to "which version serves this request?".

A table is built from stored routing plus the versions that are ready, then swapped in
whole; the request path only reads it.

Bucket ranges: the versions other than the anchor (``Routing.stable``), in name order,
take ranges from the ends of ``[0, BUCKETS)``: the first grows up from bucket 0, the
second down from the top, any further ones stack up after the first; the anchor owns
the middle. Raising a version's weight therefore only adds buckets to it and the users
it already had stay on it, and with up to two candidates beside the anchor no candidate
ever moves another's users. (A third candidate, or a candidate joining or leaving, can
shift the ranges stacked after it.)
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from rollwise.domain import BUCKETS, Routing, StickyKey
from rollwise.routing.hashing import bucket_of


@dataclass(frozen=True, slots=True)
class ModelTable:
    """The routing of one model, ready for the request path."""

    model: str
    sticky_key: StickyKey | None
    salt: str
    bounds: tuple[int, ...]
    """Exclusive upper bucket of each range, ascending; the last is ``BUCKETS``."""
    versions: tuple[str, ...]
    mirrors: tuple[tuple[str, int], ...]
    """(version, percent) of ready shadow versions."""
    routing: Routing
    unavailable: tuple[str, ...] = ()
    """Versions that have weight but are not ready; their share went to the anchor."""
    fallbacks: tuple[tuple[int, int, str], ...] = ()
    """(first bucket, end bucket, version) of each range whose version is not ready
    here, so that a request the anchor answers in its place can be told apart."""

    @property
    def serving(self) -> bool:
        return bool(self.versions)

    def version_for_bucket(self, bucket: int) -> str:
        return self.versions[bisect_right(self.bounds, bucket)]

    def choose(self, key: str | None, random_bucket: int) -> str:
        """The version for a request with sticky ``key`` (or none: ``random_bucket``)."""
        if len(self.versions) == 1:
            return self.versions[0]
        bucket = bucket_of(self.salt, key) if key is not None else random_bucket
        return self.versions[bisect_right(self.bounds, bucket)]

    def fallback_for(self, key: str | None, random_bucket: int) -> str | None:
        """The version routing meant for this request when it is not ready here (the
        anchor answers instead); None when the request goes where routing meant."""
        bucket = bucket_of(self.salt, key) if key is not None else random_bucket
        for start, end, version in self.fallbacks:
            if start <= bucket < end:
                return version
        return None

    def effective_weights(self) -> dict[str, int]:
        """The percent each ready version actually receives."""
        result: dict[str, int] = {}
        low = 0
        for bound, version in zip(self.bounds, self.versions, strict=True):
            result[version] = result.get(version, 0) + (bound - low) * 100 // BUCKETS
            low = bound
        return result


def build_table(
    routing: Routing, ready: Collection[str], sticky_key: StickyKey | None
) -> ModelTable:
    """Compile ``routing`` into a table that only routes to ``ready`` versions.

    The share of a version that is not ready goes to the anchor; if the anchor is not
    ready either, its range goes to the ready version with the largest weight. With no
    ready version the table serves nothing.
    """
    weights: Mapping[str, int] = routing.weights
    unavailable = tuple(sorted(v for v, w in weights.items() if w > 0 and v not in ready))
    ready_weighted = {v: w for v, w in weights.items() if w > 0 and v in ready}
    anchor = routing.stable
    if anchor not in ready_weighted:
        anchor = max(sorted(ready_weighted), key=ready_weighted.__getitem__, default="")
    bounds: list[int] = []
    versions: list[str] = []
    if anchor:
        # Ranges keep their positions when a version is not ready (the anchor covers
        # its range), so the users of every other version stay where they are.
        segments: list[tuple[int, int, str]] = []
        low, high = 0, BUCKETS
        fallbacks: list[tuple[int, int, str]] = []
        candidates = sorted(v for v, w in weights.items() if w > 0 and v != routing.stable)
        for index, version in enumerate(candidates):
            size = weights[version] * (BUCKETS // 100)
            owner = version if version in ready_weighted else anchor
            if index == 1:
                segment = (high - size, high, owner)
                high -= size
            else:
                segment = (low, low + size, owner)
                low += size
            segments.append(segment)
            if owner != version and segment[1] > segment[0]:
                fallbacks.append((segment[0], segment[1], version))
        segments.append((low, high, anchor))
        for start, end, owner in sorted(segments):
            if end <= start:
                continue
            if versions and versions[-1] == owner:
                bounds[-1] = end
            else:
                bounds.append(end)
                versions.append(owner)
    mirrors = tuple(
        (version, percent)
        for version, percent in sorted(routing.mirrors.items())
        if version in ready and percent > 0
    )
    return ModelTable(
        model=routing.model,
        sticky_key=sticky_key,
        salt=routing.salt or routing.model,
        bounds=tuple(bounds),
        versions=tuple(versions),
        mirrors=mirrors,
        routing=routing,
        unavailable=unavailable,
        fallbacks=tuple(sorted(fallbacks)) if anchor else (),
    )
