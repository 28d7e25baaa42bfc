"""Hook steps and lifecycle hooks in a rollout spec: what parses, what is refused with
a message naming the key, where lifecycle hooks land among the steps, and how the
steps read in a dry run."""

from __future__ import annotations

from typing import Any

import pytest

from rollwise.errors import ConfigError
from rollwise.rollout import SetWeight, Switch, describe_step, parse_rollout_spec
from rollwise.rollout.hooks import Confirm, Header, HookCall, HookKind, OnFailure, Webhook

HOOK = "http://127.0.0.1:9/hook"


def steps_spec(*steps: Any, **top: Any) -> dict[str, Any]:
    return {"model": "iris", "candidate": "v2", "strategy": "steps", "steps": list(steps), **top}


def canary_spec(hooks: Any) -> dict[str, Any]:
    return {
        "model": "iris",
        "candidate": "v2",
        "strategy": "canary",
        "canary": {"weights": [10, 50], "pause_s": 5},
        "hooks": hooks,
    }


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        pytest.param(
            {"webhook": {"url": HOOK}},
            Webhook(HookCall(HOOK, 10.0, 2)),
            id="a webhook with only a url takes the defaults: 10 s, 2 retries, rollback",
        ),
        pytest.param(
            {"webhook": HOOK},
            Webhook(HookCall(HOOK)),
            id="a webhook written as its url alone",
        ),
        pytest.param(
            {
                "webhook": {
                    "url": HOOK,
                    "timeout_s": 30,
                    "retries": 0,
                    "on_failure": "pause",
                    "headers": {
                        "X-Suite": "smoke",
                        "Authorization": {"env": "ROLLWISE_SECRET_HOOK"},
                    },
                }
            },
            Webhook(
                HookCall(
                    HOOK,
                    30.0,
                    0,
                    (
                        Header("X-Suite", value="smoke"),
                        Header("Authorization", env="ROLLWISE_SECRET_HOOK"),
                    ),
                ),
                OnFailure.PAUSE,
            ),
            id="a webhook with every option, a credential from the environment",
        ),
        pytest.param(
            {"confirm": {"url": HOOK}},
            Confirm(HOOK, 5.0, 10.0, (), None, OnFailure.PAUSE),
            id="a confirm polls every 5 s and waits for ever by default",
        ),
        pytest.param(
            {"confirm": {"url": HOOK, "interval_s": 1, "max_wait_s": 60, "on_timeout": "rollback"}},
            Confirm(HOOK, 1.0, 10.0, (), 60.0, OnFailure.ROLLBACK),
            id="a confirm that rolls back when nobody confirms within a minute",
        ),
    ],
)
def test_hook_steps_parse(step: dict[str, Any], expected: Any) -> None:
    spec = parse_rollout_spec(steps_spec(step, {"set_weight": 100}))

    assert spec.steps[0] == expected


@pytest.mark.parametrize(
    ("step", "message"),
    [
        pytest.param({"webhook": {}}, "steps[0].webhook: missing key 'url'", id="no url"),
        pytest.param(
            {"webhook": {"url": "ftp://x/y"}},
            "steps[0].webhook.url: must be an http:// or https:// URL",
            id="not http",
        ),
        pytest.param(
            {"webhook": {"url": "http:///path"}},
            "steps[0].webhook.url: 'http:///path' has no host",
            id="no host",
        ),
        pytest.param(
            {"webhook": {"url": "http://me:pw@host/"}},
            "steps[0].webhook.url: credentials in the URL",
            id="credentials in the url",
        ),
        pytest.param(
            {"webhook": {"url": HOOK, "retries": -1}},
            "steps[0].webhook.retries: must be a whole number within 0..10, got -1",
            id="negative retries",
        ),
        pytest.param(
            {"webhook": {"url": HOOK, "retries": 1.5}},
            "steps[0].webhook.retries: must be a whole number",
            id="fractional retries",
        ),
        pytest.param(
            {"webhook": {"url": HOOK, "timeout_s": 0}},
            "steps[0].webhook.timeout_s: must be seconds > 0, got 0",
            id="zero timeout",
        ),
        pytest.param(
            {"webhook": {"url": HOOK, "on_failure": "ignore"}},
            "steps[0].webhook.on_failure: 'ignore' is not one of rollback, pause",
            id="unknown on_failure",
        ),
        pytest.param(
            {"webhook": {"url": HOOK, "method": "GET"}},
            "steps[0].webhook: unknown key 'method'",
            id="unknown key",
        ),
        pytest.param(
            {"webhook": {"url": HOOK, "headers": {"Authorization": "Bearer abc"}}},
            "steps[0].webhook.headers.Authorization: a credential must come from the environment",
            id="a literal credential in a header",
        ),
        pytest.param(
            {"webhook": {"url": HOOK, "headers": {"X-Api-Key": {"env": ""}}}},
            "steps[0].webhook.headers.X-Api-Key: must be text or {env: NAME}",
            id="an empty environment variable name",
        ),
        pytest.param(
            {"webhook": {"url": HOOK, "headers": {"Authorization": {"env": "ROLLWISE_TOKENS"}}}},
            "steps[0].webhook.headers.Authorization: environment variable 'ROLLWISE_TOKENS' may "
            "not be named in a rollout spec: only variables whose names start with "
            "ROLLWISE_SECRET_ can be (an admin puts a secret there for specs to use)",
            id="the admin tokens named in a header",
        ),
        pytest.param(
            {"confirm": {"url": HOOK, "headers": {"X-Home": {"env": "HOME"}}}},
            "steps[0].confirm.headers.X-Home: environment variable 'HOME' may not be named",
            id="any other variable named in a confirm header",
        ),
        pytest.param(
            {"webhook": {"url": HOOK, "headers": {"X-Count": 3}}},
            "steps[0].webhook.headers.X-Count: must be text or {env: NAME}, got 3",
            id="a number as a header value",
        ),
        pytest.param(
            {"confirm": {"url": HOOK, "interval_s": -1}},
            "steps[0].confirm.interval_s: must be seconds > 0, got -1",
            id="negative confirm interval",
        ),
        pytest.param(
            {"confirm": {"url": HOOK, "max_wait_s": 0}},
            "steps[0].confirm.max_wait_s: must be seconds > 0, got 0",
            id="zero confirm wait",
        ),
        pytest.param(
            {"confirm": {"url": HOOK, "retries": 2}},
            "steps[0].confirm: unknown key 'retries'",
            id="confirm retries by polling, not retries",
        ),
    ],
)
def test_bad_hook_steps_are_refused_naming_the_key(step: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_rollout_spec(steps_spec(step, {"set_weight": 100}))

    assert message in str(error.value)


def test_lifecycle_hooks_land_before_the_first_step_and_before_all_traffic() -> None:
    spec = parse_rollout_spec(
        canary_spec(
            {
                "pre_rollout": [{"url": "http://h/pre1"}, {"url": "http://h/pre2"}],
                "pre_promotion": [{"url": "http://h/promote"}],
                "post_promotion": [{"url": "http://h/done"}],
                "on_rollback": [{"url": "http://h/back", "retries": 0}],
            }
        )
    )

    hooks = [(i, s.kind, s.call.url) for i, s in enumerate(spec.steps) if isinstance(s, Webhook)]
    assert hooks[:2] == [
        (0, HookKind.PRE_ROLLOUT, "http://h/pre1"),
        (1, HookKind.PRE_ROLLOUT, "http://h/pre2"),
    ]
    last = len(spec.steps) - 1
    assert hooks[2] == (last - 1, HookKind.PRE_PROMOTION, "http://h/promote")
    assert spec.steps[last] == SetWeight(100)
    assert all(s.on_failure is OnFailure.ROLLBACK for s in spec.steps if isinstance(s, Webhook))
    assert spec.hooks.post_promotion == (HookCall("http://h/done"),)
    assert spec.hooks.on_rollback == (HookCall("http://h/back", retries=0),)


def test_pre_promotion_goes_before_a_blue_green_switch() -> None:
    spec = parse_rollout_spec(
        {
            "model": "iris",
            "candidate": "v2",
            "strategy": "bluegreen",
            "bluegreen": {"auto_switch": False},
            "hooks": {"pre_promotion": {"url": "http://h/promote"}},
        }
    )

    at = next(i for i, s in enumerate(spec.steps) if isinstance(s, Switch))
    assert isinstance(spec.steps[at - 1], Webhook)
    assert spec.steps[at - 1].kind is HookKind.PRE_PROMOTION


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        pytest.param(
            {"before": [{"url": HOOK}]},
            "rollout.hooks: unknown key 'before' (known: pre_rollout, pre_promotion, "
            "post_promotion, on_rollback)",
            id="unknown lifecycle",
        ),
        pytest.param(
            {"pre_rollout": [{"url": HOOK, "on_failure": "pause"}]},
            "rollout.hooks.pre_rollout[0]: unknown key 'on_failure'",
            id="a lifecycle hook has no on_failure: its failure is fixed",
        ),
        pytest.param(
            {"on_rollback": "yes"},
            "rollout.hooks.on_rollback: must be a list of hooks",
            id="not a list",
        ),
        pytest.param(
            {"post_promotion": [{"url": "localhost:9"}]},
            "rollout.hooks.post_promotion[0].url: must be an http:// or https:// URL",
            id="a url without scheme",
        ),
    ],
)
def test_bad_lifecycle_hooks_are_refused_naming_the_key(hooks: Any, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_rollout_spec(canary_spec(hooks))

    assert message in str(error.value)


def test_a_pre_promotion_hook_on_a_rollout_that_never_promotes_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"hooks\.pre_promotion: this rollout never promotes"):
        parse_rollout_spec(
            steps_spec({"mirror": 50}, {"pause": 5}, hooks={"pre_promotion": [{"url": HOOK}]})
        )


@pytest.mark.parametrize(
    ("step", "text"),
    [
        pytest.param(
            Webhook(HookCall(HOOK)), f"call webhook {HOOK} (rollback on failure)", id="webhook"
        ),
        pytest.param(
            Webhook(HookCall(HOOK), OnFailure.PAUSE, HookKind.PRE_ROLLOUT),
            f"pre-rollout hook {HOOK} (pause on failure)",
            id="pre-rollout hook",
        ),
        pytest.param(Confirm(HOOK), f"wait for confirmation from {HOOK}", id="confirm"),
        pytest.param(
            Confirm(HOOK, max_wait_s=60, on_timeout=OnFailure.ROLLBACK),
            f"wait for confirmation from {HOOK}, rollback after 60 s",
            id="confirm with a limit",
        ),
    ],
)
def test_hook_steps_read_in_a_dry_run(step: Any, text: str) -> None:
    assert describe_step(step) == text


def test_hook_steps_round_trip_through_their_dict() -> None:
    raw = steps_spec(
        {"webhook": {"url": HOOK, "headers": {"X-Token": {"env": "ROLLWISE_SECRET_T"}}}},
        {"set_weight": 10},
        {"confirm": {"url": HOOK, "max_wait_s": 30}},
        {"set_weight": 100},
    )
    spec = parse_rollout_spec(raw)

    again = parse_rollout_spec(steps_spec(*(s.to_dict() for s in spec.steps)))

    assert again.steps == spec.steps


@pytest.mark.parametrize(
    ("variable", "allowed"),
    [
        pytest.param("ROLLWISE_SECRET_CI_TOKEN", True, id="the prefix"),
        pytest.param("ROLLWISE_SECRET_x", True, id="the prefix, any rest"),
        pytest.param("ROLLWISE_TOKENS", False, id="the admin tokens"),
        pytest.param("AWS_SECRET_ACCESS_KEY", False, id="a cloud credential"),
        pytest.param("CI_TOKEN", False, id="an unprefixed name"),
        pytest.param("ROLLWISE_SECRET_", False, id="the bare prefix"),
        pytest.param("rollwise_secret_ci", False, id="the prefix in lower case"),
        pytest.param("X_ROLLWISE_SECRET_CI", False, id="the prefix not at the start"),
    ],
)
def test_hooks_may_only_name_prefixed_variables(variable: str, allowed: bool) -> None:
    hook = {"url": HOOK, "headers": {"Authorization": {"env": variable}}}
    spec = canary_spec({"pre_rollout": [hook]})
    if allowed:
        parse_rollout_spec(spec)
        return
    with pytest.raises(ConfigError) as error:
        parse_rollout_spec(spec)
    assert str(error.value) == (
        "rollout.hooks.pre_rollout[0].headers.Authorization: environment variable "
        f"{variable!r} may not be named in a rollout spec: only variables whose names start "
        "with ROLLWISE_SECRET_ can be (an admin puts a secret there for specs to use)"
    )
