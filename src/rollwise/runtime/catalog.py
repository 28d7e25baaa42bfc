"""Which models and versions this replica serves: its config's, plus those registered
through the control API and kept in the store for the whole fleet.

Config-managed versions come from this replica's own config (the config stays their
source); API-managed versions and models come from the store. Which of them to keep in
memory is the store's ``keep_loaded`` flag, the same for every replica.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from rollwise.domain import ModelSpec, RegisteredVersion, VersionSource, VersionSpec

Key = tuple[str, str]


def merge_catalog(
    configured: Mapping[str, ModelSpec], stored: Sequence[ModelSpec]
) -> dict[str, ModelSpec]:
    """The models this replica serves: configured ones with the API-managed versions
    added to them, and the models created through the API."""
    merged = dict(configured)
    for model in stored:
        api_versions = {
            name: spec for name, spec in model.versions.items() if spec.source is VersionSource.API
        }
        own = merged.get(model.name)
        if own is not None:
            if api_versions:
                versions = {**api_versions, **own.versions}
                merged[model.name] = dataclasses.replace(own, versions=versions)
        elif model.source is VersionSource.API:
            merged[model.name] = model
    return dict(sorted(merged.items()))


def desired_versions(
    models: Mapping[str, ModelSpec], registered: Iterable[RegisteredVersion]
) -> dict[Key, VersionSpec]:
    """Every version to keep loaded here: all of the catalog's, but those the store
    parked (``keep_loaded`` false, e.g. the previous stable after a promotion)."""
    parked = {(r.model, r.name) for r in registered if not r.keep_loaded}
    return {
        (model.name, name): spec
        for model in models.values()
        for name, spec in model.versions.items()
        if (model.name, name) not in parked
    }
