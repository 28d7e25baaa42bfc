"""The registration policy: what the control API may make every replica load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from rollwise.backends.options import BACKEND_KINDS
from rollwise.domain import VersionSource, VersionSpec
from rollwise.errors import Forbidden
from rollwise.registration import (
    DEFAULT_BACKENDS,
    KNOWN_BACKENDS,
    RegistrationPolicy,
    RegistrationSection,
    check_registration,
)

SHA = "ab" * 32


def version(backend: str, **options: Any) -> VersionSpec:
    return VersionSpec("v5", backend, options, VersionSource.API)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A config folder with a models/ folder, and a secrets/ folder beside it."""
    config_dir = tmp_path / "config"
    (config_dir / "models").mkdir(parents=True)
    (config_dir / "models" / "iris.skops").write_bytes(b"model")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "key").write_bytes(b"secret")
    return config_dir


def policy(base: Path, **section: Any) -> RegistrationPolicy:
    return RegistrationPolicy.from_section(RegistrationSection(**section), base)


def refusal(spec: VersionSpec, rules: RegistrationPolicy) -> str:
    with pytest.raises(Forbidden) as caught:
        check_registration("iris", spec, rules)
    return str(caught.value)


# -- the section ------------------------------------------------------------------------------


def test_defaults() -> None:
    section = RegistrationSection()
    assert section.backends == ["sklearn", "onnx", "http", "rest", "mlflow", "fake"]
    assert list(DEFAULT_BACKENDS) == section.backends
    assert section.artifact_dirs == []
    assert section.url_prefixes == []
    assert section.allow_trusted is False


def test_every_backend_kind_can_be_named() -> None:
    assert set(BACKEND_KINDS) <= set(KNOWN_BACKENDS)
    assert "python" not in DEFAULT_BACKENDS


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        pytest.param({"backend": ["sklearn"]}, "Extra inputs", id="unknown key"),
        pytest.param({"backends": ["skleran"]}, "unknown backend 'skleran'", id="unknown backend"),
        pytest.param({"artifact_dirs": [" "]}, "non-empty", id="blank folder"),
        pytest.param({"url_prefixes": ["models.example.com"]}, "scheme and a host", id="bare host"),
        pytest.param({"allow_trusted": "maybe"}, "boolean", id="allow_trusted not a boolean"),
    ],
)
def test_section_refuses_bad_values(data: dict[str, Any], phrase: str) -> None:
    with pytest.raises(PydanticValidationError, match=phrase):
        RegistrationSection.model_validate(data)


def test_section_is_frozen() -> None:
    with pytest.raises(PydanticValidationError):
        RegistrationSection().allow_trusted = True


def test_policy_resolves_folders_against_the_config_folder(base: Path) -> None:
    rules = policy(base, artifact_dirs=["models", "/srv/models/../shared"])
    assert rules.base_dir == base.resolve()
    assert rules.artifact_dirs == (base.resolve() / "models", Path("/srv/shared"))


# -- what the defaults allow -------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(
            version("sklearn", path="models/iris.skops"), id="a skops file below the config"
        ),
        pytest.param(version("sklearn", path="iris.skops"), id="a skops file not yet written"),
        pytest.param(version("onnx", path="models/iris.onnx", sha256=SHA), id="an onnx file"),
        pytest.param(
            version("onnx", url="https://models.example.com/iris.onnx", sha256=SHA),
            id="an artifact URL with its sha256",
        ),
        pytest.param(version("http", url="http://10.0.0.5:9001", model="iris"), id="an upstream"),
        pytest.param(version("mlflow", uri="models:/iris@champion"), id="an mlflow model"),
        pytest.param(version("mlflow", uri="runs:/0a1b/model"), id="an mlflow run"),
        pytest.param(version("fake", label=1), id="a fake version"),
        pytest.param(
            version("sklearn", path="models/iris.skops", trusted=False), id="trusted: false"
        ),
    ],
)
def test_defaults_allow(base: Path, spec: VersionSpec) -> None:
    check_registration("iris", spec, policy(base))


def test_an_absolute_path_inside_the_config_folder_is_allowed(base: Path) -> None:
    check_registration(
        "iris", version("sklearn", path=str(base / "models/iris.skops")), policy(base)
    )


# -- each rule refuses, naming itself -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "section", "rule", "phrase"),
    [
        pytest.param(
            version("python", target="pkg.mod:predict"),
            {},
            "backends",
            "backend 'python' is not allowed (allowed: sklearn, onnx, http, rest, mlflow, fake)",
            id="python is refused by default",
        ),
        pytest.param(
            version("http", url="http://10.0.0.5:9001"),
            {"backends": ["sklearn"]},
            "backends",
            "backend 'http' is not allowed (allowed: sklearn)",
            id="a backend left out of the list",
        ),
        pytest.param(
            version("mlflow", uri="/srv/mlruns/0/model"),
            {},
            "backends",
            "uri starting with models:/ or runs:/",
            id="an mlflow uri that is a path",
        ),
        pytest.param(
            version("mlflow", uri="file:///etc"),
            {},
            "backends",
            "got 'file:///etc'",
            id="an mlflow uri that is a file URL",
        ),
        pytest.param(
            version("sklearn", path="models/iris.pkl", trusted=True, sha256=SHA),
            {},
            "allow_trusted",
            "trusted: true",
            id="a trusted pickle",
        ),
        pytest.param(
            version("sklearn", path="models/iris.skops", trusted_types=["mymod.Estimator"]),
            {},
            "allow_trusted",
            "trusted_types",
            id="extra skops trusted types",
        ),
        pytest.param(
            version("sklearn", path="/etc/passwd"),
            {},
            "artifact_dirs",
            "path '/etc/passwd' is outside the allowed folders",
            id="an absolute path elsewhere",
        ),
        pytest.param(
            version("sklearn", path="models/../../secrets/key"),
            {},
            "artifact_dirs",
            "is outside the allowed folders",
            id="dot-dot out of the config folder",
        ),
        pytest.param(
            version("onnx", path="~/iris.onnx"),
            {},
            "artifact_dirs",
            "is outside the allowed folders",
            id="a home-relative path",
        ),
        pytest.param(
            version("sklearn", path="iris.skops"),
            {"artifact_dirs": ["models"]},
            "artifact_dirs",
            "is outside the allowed folders",
            id="the config folder is not allowed once folders are listed",
        ),
        pytest.param(
            version("python", target="evil:run", python_path=["models", "/tmp"]),
            {"backends": ["python"]},
            "artifact_dirs",
            "python_path '/tmp' is outside",
            id="python_path is held to the folders too",
        ),
        pytest.param(
            version("sklearn", path=7),
            {},
            "artifact_dirs",
            "path 7 is not a path",
            id="a path that is not a string",
        ),
        pytest.param(
            version("onnx", url="https://models.example.com/iris.onnx"),
            {},
            "url_prefixes",
            "needs a sha256",
            id="an artifact URL without its sha256",
        ),
        pytest.param(
            version("onnx", url="https://models.example.com/iris.onnx", sha256="123"),
            {},
            "url_prefixes",
            "needs a sha256",
            id="an artifact URL with a malformed sha256",
        ),
        pytest.param(
            version("sklearn", url="https://models.example.com/iris.skops"),
            {"url_prefixes": ["https://models.example.com/"]},
            "url_prefixes",
            "needs a sha256",
            id="an allowed prefix still needs the sha256",
        ),
        pytest.param(
            version("onnx", url="file:///etc/passwd", sha256=SHA),
            {},
            "url_prefixes",
            "not an http(s) URL",
            id="a file URL",
        ),
        pytest.param(
            version("onnx", url="https://evil.org/iris.onnx", sha256=SHA),
            {"url_prefixes": ["https://models.example.com/iris/"]},
            "url_prefixes",
            "is not under an allowed prefix (https://models.example.com/iris/)",
            id="an artifact URL elsewhere",
        ),
        pytest.param(
            version("onnx", url="https://models.example.com.evil.org/iris/a.onnx", sha256=SHA),
            {"url_prefixes": ["https://models.example.com"]},
            "url_prefixes",
            "not under an allowed prefix",
            id="a host that only starts like the allowed one",
        ),
        pytest.param(
            version("onnx", url="https://models.example.com@evil.org/a.onnx", sha256=SHA),
            {"url_prefixes": ["https://models.example.com"]},
            "url_prefixes",
            "not under an allowed prefix",
            id="the allowed host as user info",
        ),
        pytest.param(
            version("onnx", url="https://models.example.com/iris-evil/a.onnx", sha256=SHA),
            {"url_prefixes": ["https://models.example.com/iris"]},
            "url_prefixes",
            "not under an allowed prefix",
            id="a path that only starts like the allowed one",
        ),
        pytest.param(
            version("onnx", url="https://models.example.com/iris/%2e%2e/secret", sha256=SHA),
            {"url_prefixes": ["https://models.example.com/iris/"]},
            "url_prefixes",
            "'.' or '..'",
            id="an encoded dot-dot out of the prefix",
        ),
        pytest.param(
            version("http", url="http://169.254.169.254/latest", model="iris"),
            {"url_prefixes": ["http://10.0.0.5:9001"]},
            "url_prefixes",
            "not under an allowed prefix (http://10.0.0.5:9001)",
            id="an upstream server outside the prefixes",
        ),
    ],
)
def test_each_rule_refuses_and_names_itself(
    base: Path, spec: VersionSpec, section: dict[str, Any], rule: str, phrase: str
) -> None:
    message = refusal(spec, policy(base, **section))
    assert message.startswith(f"registration refused by registration.{rule}: ")
    assert phrase in message


def test_refusing_a_path_names_the_allowed_folders(tmp_path: Path) -> None:
    srv = tmp_path / "srv" / "models"
    srv.mkdir(parents=True)
    message = refusal(
        version("onnx", path="/etc/passwd"), policy(tmp_path, artifact_dirs=[str(srv)])
    )
    assert message == (
        "registration refused by registration.artifact_dirs: path '/etc/passwd' is outside "
        f"the allowed folders ({srv.resolve()})"
    )


def test_a_symlink_out_of_the_allowed_folder_is_refused(base: Path) -> None:
    (base / "models" / "escape.skops").symlink_to(base.parent / "secrets" / "key")
    (base / "models" / "elsewhere").symlink_to(base.parent / "secrets", target_is_directory=True)
    rules = policy(base, artifact_dirs=["models"])
    for path in ("models/escape.skops", "models/elsewhere/key"):
        message = refusal(version("sklearn", path=path), rules)
        assert "registration.artifact_dirs" in message
        assert str((base.parent / "secrets" / "key").resolve()) in message


def test_a_symlink_within_the_allowed_folder_is_allowed(base: Path) -> None:
    (base / "models" / "latest.skops").symlink_to(base / "models" / "iris.skops")
    check_registration("iris", version("sklearn", path="models/latest.skops"), policy(base))


def test_allowed_on_request(base: Path) -> None:
    rules = policy(
        base,
        backends=["python", "sklearn", "onnx", "http"],
        artifact_dirs=["models", str(base.parent / "secrets")],
        url_prefixes=["https://models.example.com/iris/", "s3://bucket/models"],
        allow_trusted=True,
    )
    allowed = [
        version("python", target="iris_model:predict", python_path="models"),
        version("sklearn", path="models/iris.pkl", trusted=True, sha256=SHA),
        version("sklearn", path="models/iris.skops", trusted_types=["mymod.Estimator"]),
        version("onnx", path="../secrets/key"),
        version("onnx", url="https://models.example.com/iris/v5.onnx", sha256=SHA),
        version("onnx", url="s3://bucket/models/v5.onnx", sha256=SHA),
        version("http", url="https://MODELS.example.com/iris/", model="iris"),
    ]
    for spec in allowed:
        check_registration("iris", spec, rules)


def test_an_upstream_needs_no_sha256(base: Path) -> None:
    rules = policy(base, url_prefixes=["http://10.0.0.5:9001"])
    check_registration("iris", version("http", url="http://10.0.0.5:9001/v1"), rules)


def test_a_policy_built_by_hand_with_no_folders_allows_the_config_folder(base: Path) -> None:
    rules = RegistrationPolicy(base_dir=base)
    check_registration("iris", version("sklearn", path="models/iris.skops"), rules)
    assert "artifact_dirs" in refusal(version("sklearn", path="/etc/passwd"), rules)


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        pytest.param("ROLLWISE_SECRET_LLM_KEY", True, id="a variable an admin put there"),
        pytest.param("ROLLWISE_TOKENS", False, id="the gateway's own tokens"),
        pytest.param("AWS_SECRET_ACCESS_KEY", False, id="any other secret"),
    ],
)
def test_an_api_key_variable_named_through_the_api_must_be_meant_for_it(
    name: str, allowed: bool
) -> None:
    policy = RegistrationPolicy(base_dir=Path("/srv"), backends=("openai",))
    spec = VersionSpec(
        "v2", "openai", {"url": "http://llm:8000/v1", "model": "m", "api_key_env": name}
    )
    if allowed:
        check_registration("chat", spec, policy)
        return
    with pytest.raises(Forbidden, match=f"environment variable '{name}' may not be named"):
        check_registration("chat", spec, policy)
