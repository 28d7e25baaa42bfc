"""The catalog a replica serves: its config's models plus what the API registered."""

from __future__ import annotations

import pytest

from rollwise.domain import ModelSpec, RegisteredVersion, VersionSource, VersionSpec
from rollwise.runtime.catalog import desired_versions, merge_catalog

API = VersionSource.API


def spec(name: str, source: VersionSource = VersionSource.CONFIG, **options: object) -> VersionSpec:
    return VersionSpec(name, "fake", dict(options), source)


def model(
    name: str, *versions: VersionSpec, source: VersionSource = VersionSource.CONFIG
) -> ModelSpec:
    return ModelSpec(name, versions[0].name, {v.name: v for v in versions}, source=source)


CONFIGURED = {"iris": model("iris", spec("v1", label=1), spec("v2", label=2))}


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        pytest.param([], {"iris": ["v1", "v2"]}, id="nothing stored: the config alone"),
        pytest.param(
            [model("iris", spec("v1", label=9), spec("v2"), spec("v4", API))],
            {"iris": ["v1", "v2", "v4"]},
            id="an API version joins a configured model",
        ),
        pytest.param(
            [model("wine", spec("w1", API), source=API)],
            {"iris": ["v1", "v2"], "wine": ["w1"]},
            id="a model created through the API",
        ),
        pytest.param(
            [model("other", spec("o1"))],
            {"iris": ["v1", "v2"]},
            id="another replica's config model is not served here",
        ),
    ],
)
def test_merge_catalog(stored: list[ModelSpec], expected: dict[str, list[str]]) -> None:
    merged = merge_catalog(CONFIGURED, stored)
    assert {name: sorted(m.versions) for name, m in merged.items()} == expected


def test_this_replicas_config_is_the_source_of_its_config_versions() -> None:
    stored = [model("iris", spec("v1", label=9), spec("v2"))]
    merged = merge_catalog(CONFIGURED, stored)
    assert merged["iris"].versions["v1"].options == {"label": 1}


def test_a_parked_version_is_not_desired() -> None:
    merged = merge_catalog(CONFIGURED, [model("iris", spec("v1"), spec("v4", API))])
    registered = [
        RegisteredVersion("iris", spec("v2"), keep_loaded=False),
        RegisteredVersion("iris", spec("v4", API), keep_loaded=True),
    ]
    assert sorted(desired_versions(merged, registered)) == [("iris", "v1"), ("iris", "v4")]
