"""Version files, spec flags and ``--option`` pairs, merged into one version to register."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollwise.errors import ConfigError, ValidationError

SPEC_FLAGS = ("backend", "path", "sha256", "url", "uri")
"""Spec keys that have their own flag on ``versions add`` (the artifact ``url`` as
``--artifact-url``, since ``--url`` is the gateway's address on every command)."""


@dataclass(frozen=True, slots=True)
class VersionRequest:
    """What ``versions add`` (or ``deploy --version``) registers: which model and version,
    and the version's spec as in the config."""

    model: str
    name: str
    spec: dict[str, Any]


def _option_value(raw: str) -> Any:
    """A ``--option`` value: true/false, null, a number, a JSON/YAML flow list or mapping
    (``[a, b]``, ``{k: v}``), a quoted string, or else the text as it is."""
    import math

    import yaml

    text = raw.strip()
    if text[:1] in ("[", "{"):
        try:
            value = yaml.safe_load(text)
            json.dumps(value)
        except (yaml.YAMLError, TypeError, ValueError) as error:
            raise ValidationError(f"not a valid list or mapping: {raw!r} ({error})") from None
        return value
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    for number in (int, float):
        try:
            value = number(text)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            break
        return value
    # Everything else is text, as typed (paths, URLs, "Bearer x", dates).
    return text


def parse_option_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs as spec options (values as in :func:`_option_value`)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValidationError(f"--option {pair!r}: expected KEY=VALUE")
        if key in options:
            raise ValidationError(f"--option {key}: given twice")
        try:
            options[key] = _option_value(raw)
        except ValidationError as error:
            raise ValidationError(f"--option {key}: {error}") from None
    return options


def _pick(what: str, given: str | None, in_file: Any, source: str, origin: str) -> str:
    if in_file is not None and (not isinstance(in_file, str) or not in_file):
        # YAML reads `version: 2` as a number; quoting keeps the name as written.
        raise ConfigError(
            f'{source}: {what} = {in_file!r}: must be a name (quote it: {what}: "{in_file}")'
        )
    if given and in_file and given != in_file:
        raise ConfigError(f"{source}: {what} {in_file!r} in the file, but {given!r} {origin}")
    chosen = given or in_file
    if not chosen:
        raise ValidationError(f"which {what}? Give it {origin} or as '{what}:' in the file")
    return str(chosen)


def version_request(
    document: Any | None,
    *,
    source: str = "the command line",
    model: str | None = None,
    name: str | None = None,
    flags: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    origin: str = "on the command line",
) -> VersionRequest:
    """Build a version registration from a version file's content (or ``None``), the
    positional model and version (or, for ``deploy``, the rollout's model and candidate:
    ``origin`` says where they came from), the spec flags and ``--option`` pairs.

    The file holds the spec as in the config, optionally with ``model:`` and ``version:``
    (or ``name:``) beside it; or those two with the spec nested under ``spec:``, which
    leaves ``model`` free as an option (the ``http`` backend's upstream model). Flags
    and options win over the file's keys; a flag and an option for one key is refused.
    """
    spec: dict[str, Any] = {}
    in_model: Any = None
    in_name: Any = None
    if document is not None:
        if not isinstance(document, Mapping):
            raise ConfigError(
                f"{source}: expected a mapping, the version's spec "
                "(e.g. {backend: onnx, path: model.onnx}), "
                f"not {type(document).__name__}"
            )
        data = dict(document)
        odd = [repr(k) for k in data if not isinstance(k, str)]
        if odd:
            raise ConfigError(f"{source}: keys must be text, not {', '.join(odd)}")
        if "version" in data and "name" in data:
            raise ConfigError(f"{source}: give the version's name once, as version: or name:")
        in_model = data.pop("model", None)
        in_name = data.pop("version", None) if "version" in data else data.pop("name", None)
        if "spec" in data:
            nested = data.pop("spec")
            if data:
                raise ConfigError(
                    f"{source}: beside spec: only model: and version: may stand, "
                    f"not {', '.join(sorted(data))}"
                )
            if not isinstance(nested, Mapping) or not all(isinstance(k, str) for k in nested):
                raise ConfigError(f"{source}: spec: must be a mapping of option names to values")
            data = dict(nested)
        spec = data
    chosen_model = _pick("model", model, in_model, source, origin)
    chosen_name = _pick("version", name, in_name, source, origin)
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    both = sorted(set(given) & set(options or {}))
    if both:
        raise ValidationError(f"--option {both[0]} and its own flag both given; give it once")
    spec.update(given)
    spec.update(options or {})
    backend = spec.get("backend")
    if not isinstance(backend, str) or not backend:
        raise ConfigError(
            f"{source}: the version needs a backend (--backend, or backend: in the file), "
            "e.g. onnx, sklearn, http, mlflow"
        )
    return VersionRequest(chosen_model, chosen_name, spec)
