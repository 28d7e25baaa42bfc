"""Which secrets a rollout spec may use, checked when the spec is read (pure).

Rollout specs are written by operators, but the gateway reads the environment variables
they name (hook headers ``{env: NAME}``, a web gate's ``bearer_token_env``) and sends the
value to a URL of the spec's choosing. Any name would let an operator send the admin's
tokens anywhere, so a spec may only name variables under ``SPEC_ENV_PREFIX``: an admin
puts there exactly the secrets specs are meant to use. The gateway config file is the
admin's own and may name any variable; it does not go through these checks.

Headers whose names look like credentials must not be written literally in a spec either,
because specs are stored and shown to viewers in events.

A version's ``headers`` option (``rest``, ``http``, ``openai`` backends) may hold an
upstream's API key; ``mask_option_headers`` hides its values wherever options are shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rollwise.errors import ConfigError

SPEC_ENV_PREFIX = "ROLLWISE_SECRET_"
"""The only environment variables a rollout spec may name start with this."""

MASK = "***"
"""What a hidden value reads as."""

SECRET_HEADER_WORDS = ("authorization", "token", "secret", "key", "password", "cookie")
"""A header whose name holds one of these carries a credential (case-insensitive)."""


def check_spec_env_name(name: str, key: str) -> None:
    """Refuse an environment variable ``name`` a rollout spec names at ``key`` unless it
    starts with ``SPEC_ENV_PREFIX``."""
    # A bare prefix names no secret: it is always a typo.
    if not name.startswith(SPEC_ENV_PREFIX) or name == SPEC_ENV_PREFIX:
        raise ConfigError(
            f"{key}: environment variable {name!r} may not be named in a rollout spec: "
            f"only variables whose names start with {SPEC_ENV_PREFIX} can be "
            "(an admin puts a secret there for specs to use)"
        )


def is_secret_header(name: str) -> bool:
    """Whether a header called ``name`` carries a credential."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_HEADER_WORDS)


def check_literal_header(name: str, key: str, example: str) -> None:
    """Refuse a literal value for a credential header ``name`` written at ``key`` in a
    rollout spec; ``example`` shows the spec's way of reading it from the environment."""
    if is_secret_header(name):
        raise ConfigError(
            f"{key}: a credential must come from the environment, e.g. {example}; "
            "a literal value would be stored and shown in events"
        )


def mask_option_headers(options: Mapping[str, Any]) -> dict[str, Any]:
    """A version's ``options`` for viewers: every value of ``headers`` reads ``MASK`` and
    the names stay, so a viewer sees which headers are set but not what they hold."""
    shown = dict(options)
    headers = shown.get("headers")
    if isinstance(headers, Mapping):
        shown["headers"] = {name: MASK for name in headers}
    elif headers is not None:
        # Not a mapping (a backend would refuse it), but it may still hold a secret.
        shown["headers"] = MASK
    return shown
