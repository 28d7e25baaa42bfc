"""What of a passed-through request and answer crosses the gateway (RFC 9110 7.6.1), and
what an answer's status says about the version."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.backends.exchange import (
    ProxyRequest,
    Verdict,
    answer_fields,
    join_fields,
    judge,
    request_fields,
)

Fields = list[tuple[bytes, bytes]]


def forwarded(fields: Fields, **options: object) -> Fields:
    settings: dict[str, object] = {"request_id": "rid", "client": "10.0.0.7", "scheme": "http"}
    settings.update(options)
    return list(request_fields(fields, **settings))  # type: ignore[arg-type]


def names(fields: Fields) -> list[bytes]:
    return [name for name, _ in fields]


@pytest.mark.parametrize(
    "name",
    [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"trailer",
        b"proxy-authorization",
        b"host",
        b"content-length",
        b"expect",
        b"x-rollwise-token",
        b"x-rollwise-version",
    ],
)
def test_a_field_that_ends_at_the_gateway_is_not_passed_on(name: bytes) -> None:
    assert name not in names(forwarded([(name, b"value"), (b"accept", b"*/*")]))


def test_fields_named_by_connection_end_at_the_gateway_too() -> None:
    fields = [
        (b"connection", b"keep-alive, X-Secret-Hop ,x-other"),
        (b"x-secret-hop", b"1"),
        (b"x-other", b"2"),
        (b"x-kept", b"3"),
    ]
    kept = names(forwarded(fields))
    assert b"x-secret-hop" not in kept and b"x-other" not in kept
    assert b"x-kept" in kept


def test_the_applications_fields_pass_unchanged_and_in_order() -> None:
    fields = [
        (b"authorization", b"Bearer the-app's"),
        (b"cookie", b"a=1; b=2"),
        (b"x-custom", b"one"),
        (b"accept", b"application/json"),
        (b"x-custom", b"two"),
    ]
    kept = forwarded(fields)
    assert kept[: len(fields)] == fields


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param([], [(b"x-forwarded-for", b"10.0.0.7")], id="the-client-alone"),
        pytest.param(
            [(b"x-forwarded-for", b"1.1.1.1")],
            [(b"x-forwarded-for", b"1.1.1.1, 10.0.0.7")],
            id="appended",
        ),
        pytest.param(
            [(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2")],
            [(b"x-forwarded-for", b"1.1.1.1, 2.2.2.2, 10.0.0.7")],
            id="folded-into-one",
        ),
    ],
)
def test_x_forwarded_for_names_every_hop(given: Fields, expected: Fields) -> None:
    kept = forwarded(given)
    assert [f for f in kept if f[0] == b"x-forwarded-for"] == expected


def test_the_gateway_adds_via_forwarded_host_and_proto_and_a_request_id() -> None:
    kept = forwarded([(b"host", b"api.example.com"), (b"via", b"1.0 edge")], scheme="https")
    assert (b"via", b"1.0 edge") in kept and (b"via", b"1.1 rollwise") in kept
    assert (b"x-forwarded-host", b"api.example.com") in kept
    assert (b"x-forwarded-proto", b"https") in kept
    assert (b"x-request-id", b"rid") in kept


def test_fields_the_client_set_itself_are_not_added_again() -> None:
    given = [
        (b"x-request-id", b"mine"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"edge"),
        (b"host", b"inner"),
    ]
    kept = forwarded(given)
    assert [v for n, v in kept if n == b"x-request-id"] == [b"mine"]
    assert [v for n, v in kept if n == b"x-forwarded-proto"] == [b"https"]
    assert [v for n, v in kept if n == b"x-forwarded-host"] == [b"edge"]


def test_an_answer_keeps_its_fields_but_the_hop_and_the_gateways_own() -> None:
    fields = [
        (b"Content-Type", b"application/json"),
        (b"Connection", b"close, X-Hop"),
        (b"X-Hop", b"1"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Keep-Alive", b"timeout=5"),
        (b"X-Request-Id", b"upstream's"),
        (b"X-Rollwise-Version", b"forged"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"Content-Length", b"12"),
    ]
    assert answer_fields(fields) == [
        (b"Content-Type", b"application/json"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"Content-Length", b"12"),
    ]


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        pytest.param(200, Verdict.ANSWERED, id="200-answered"),
        pytest.param(204, Verdict.ANSWERED, id="204-answered"),
        pytest.param(302, Verdict.ANSWERED, id="302-answered"),
        pytest.param(400, Verdict.REFUSED, id="400-the-callers"),
        pytest.param(404, Verdict.REFUSED, id="404-the-callers"),
        pytest.param(429, Verdict.REFUSED, id="429-the-callers"),
        pytest.param(499, Verdict.REFUSED, id="499-the-callers"),
        pytest.param(500, Verdict.FAILED, id="500-the-versions"),
        pytest.param(503, Verdict.FAILED, id="503-the-versions"),
        pytest.param(599, Verdict.FAILED, id="599-the-versions"),
        pytest.param(600, Verdict.FAILED, id="beyond-http-the-versions"),
    ],
)
def test_a_status_says_whose_the_outcome_is(status: int, verdict: Verdict) -> None:
    assert judge(status) is verdict


def test_joined_fields_leave_out_the_names_given() -> None:
    fields = [(b"a", b"1"), (b"x-key", b"client's"), (b"b", b"2")]
    assert join_fields(fields) == b"a: 1\r\nx-key: client's\r\nb: 2\r\n"
    assert join_fields(fields, frozenset({b"x-key"})) == b"a: 1\r\nb: 2\r\n"


@pytest.mark.parametrize(
    "field",
    [(b"x-a", b"1\r\nx-smuggled: 2"), (b"x-a\n", b"1"), (b"x-a", b"1\r")],
    ids=["value-with-crlf", "name-with-lf", "value-with-cr"],
)
def test_a_line_break_in_a_field_is_refused(field: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError, match="line break"):
        join_fields([field])


def test_a_proxy_request_pickles_as_its_constructor() -> None:
    import pickle

    request = ProxyRequest("POST", "/p?q=1", ((b"a", b"1"),), b"body", "regression", 99)
    assert pickle.loads(pickle.dumps(request)) == request


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).map(
    lambda s: s.encode()
)
_fields = st.lists(st.tuples(_token, st.binary(max_size=20).filter(lambda b: b"\n" not in b)))


@given(_fields)
def test_no_rollwise_field_or_hop_field_ever_reaches_an_upstream(fields: Fields) -> None:
    fields = [*fields, (b"x-rollwise-token", b"secret")]
    kept = forwarded(fields)
    dropped = {b"connection", b"keep-alive", b"te", b"transfer-encoding", b"upgrade", b"host"}
    assert not any(name.startswith(b"x-rollwise-") or name in dropped for name, _ in kept)


@given(_fields)
def test_every_other_field_is_passed_on_in_its_order(fields: Fields) -> None:
    special = {b"x-forwarded-for", b"via"}
    ends_here = {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"trailer",
        b"proxy-authorization",
        b"host",
        b"content-length",
        b"expect",
    }
    named = {t.strip() for n, v in fields if n == b"connection" for t in v.lower().split(b",")}
    expected = [
        f
        for f in fields
        if f[0] not in ends_here
        and f[0] not in named
        and f[0] not in special
        and not f[0].startswith(b"x-rollwise-")
    ]
    kept = [f for f in forwarded(fields) if f[0] not in special]
    assert kept[: len(expected)] == expected
