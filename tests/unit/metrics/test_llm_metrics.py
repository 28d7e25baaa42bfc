"""LLM measures (rollwise.metrics.llm): streamed and whole answers, tokens counted when
no usage comes, and the LLM fields of a VersionWindow merging and surviving the store."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.metrics.llm import (
    LlmUsage,
    Prices,
    StreamMeter,
    answer_usage,
    prompt_words,
    record_llm,
)
from rollwise.metrics.recorder import VersionWindow

NO_PRICES = Prices()


def chunk(text: str | None, finish: str | None = None, *, chat: bool = True) -> bytes:
    choice: dict[str, object] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["delta"] = {} if text is None else {"content": text}
    else:
        choice["text"] = text or ""
    return b"data: " + orjson.dumps({"choices": [choice]}) + b"\n\n"


def usage_event(prompt: int, completion: int) -> bytes:
    body = {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def sse(*words: str, finish: str = "stop", usage: tuple[int, int] | None = None) -> bytes:
    parts = [chunk(w) for w in words] + [chunk(None, finish)]
    if usage is not None:
        parts.append(usage_event(*usage))
    return b"".join(parts) + b"data: [DONE]\n\n"


def meter(stream: bytes, times_ms: list[float] | None = None) -> StreamMeter:
    """A meter fed ``stream`` one event at a time, event i at ``times_ms[i]``."""
    found = StreamMeter()
    events = [e + b"\n\n" for e in stream.split(b"\n\n") if e]
    for i, event in enumerate(events):
        found.feed(event, times_ms[i] if times_ms else float(i))
    return found


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        pytest.param(
            sse("a", " b", " c", usage=(7, 3)),
            {"prompt_tokens": 7, "completion_tokens": 3, "estimated": False, "text": "a b c"},
            id="usage-in-the-stream-is-taken-as-is",
        ),
        pytest.param(
            sse("a", " b", " c", " d"),
            {"prompt_tokens": 5, "completion_tokens": 4, "estimated": True, "text": "a b c d"},
            id="without-usage-a-chunk-is-a-token-and-the-prompt-is-counted-in-words",
        ),
        pytest.param(
            sse("cut", finish="length"),
            {"finish_reason": "length", "completion_tokens": 1},
            id="the-last-finish-reason-is-kept",
        ),
        pytest.param(
            sse(finish="content_filter"),
            {"text": "", "completion_tokens": 0, "finish_reason": "content_filter"},
            id="an-answer-with-no-content-is-empty",
        ),
        pytest.param(
            chunk("x", chat=False) + chunk(" y", "stop", chat=False),
            {"text": "x y", "completion_tokens": 2},
            id="completions-chunks-carry-text",
        ),
        pytest.param(
            b"data: {not json\n\n" + sse("ok"),
            {"text": "ok", "completion_tokens": 1},
            id="an-event-that-is-not-json-is-skipped",
        ),
    ],
)
def test_a_stream_is_measured_from_its_events(stream: bytes, expected: dict[str, object]) -> None:
    usage = meter(stream).usage(100.0, 5, NO_PRICES)
    for key, value in expected.items():
        assert getattr(usage, key) == value, key


def test_ttft_is_the_first_content_chunk_and_itl_the_mean_gap_after_it() -> None:
    # Events: "a" at 40 ms, "b" at 50, "c" at 70, the finish at 75, [DONE] at 76.
    usage = meter(sse("a", "b", "c"), [40.0, 50.0, 70.0, 75.0, 76.0]).usage(80.0, 0, NO_PRICES)
    assert usage.ttft_ms == 40.0
    assert usage.itl_ms == pytest.approx(15.0)
    assert usage.total_ms == 80.0


def test_a_stream_without_content_has_its_whole_latency_as_ttft_and_no_itl() -> None:
    usage = meter(sse()).usage(33.0, 0, NO_PRICES)
    assert usage.ttft_ms == 33.0
    assert usage.itl_ms is None


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_where_the_bytes_are_split_changes_nothing(cuts: list[int]) -> None:
    stream = sse("alpha", " beta", " gamma", " delta", finish="length", usage=(3, 4))
    whole = StreamMeter()
    whole.feed(stream, 1.0)
    pieces = StreamMeter()
    start = 0
    for cut in sorted({min(c, len(stream)) for c in cuts}):
        pieces.feed(stream[start:cut], 1.0)
        start = cut
    pieces.feed(stream[start:], 1.0)
    assert pieces.usage(9.0, 0, NO_PRICES) == whole.usage(9.0, 0, NO_PRICES)


def test_a_whole_answer_is_measured_from_its_usage_and_first_choice() -> None:
    body = orjson.dumps(
        {
            "choices": [{"message": {"content": "hi there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2},
        }
    )
    usage = answer_usage(body, 50.0, 0, Prices(1.0, 3.0), embeddings=False)
    assert (usage.ttft_ms, usage.total_ms, usage.itl_ms) == (50.0, 50.0, None)
    assert usage.text == "hi there"
    assert usage.cost == pytest.approx((10 * 1.0 + 2 * 3.0) / 1000)
    assert usage.tokens_per_s == pytest.approx(2 / 0.05)


def test_an_embedding_is_never_an_empty_answer() -> None:
    body = orjson.dumps({"data": [], "usage": {"prompt_tokens": 4, "total_tokens": 4}})
    usage = answer_usage(body, 5.0, 0, NO_PRICES, embeddings=True)
    window = VersionWindow()
    record_llm(window, usage)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.estimated) == (4, 0, False)
    assert window.empty_answers == 0 and window.llm_answers == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param({"messages": [{"role": "user", "content": "a b  c"}]}, 3, id="chat"),
        pytest.param(
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a b"}]}]},
            2,
            id="chat-content-parts",
        ),
        pytest.param({"prompt": "one two"}, 2, id="completion"),
        pytest.param({"input": ["a", "b c"]}, 3, id="embedding-inputs"),
        pytest.param({"messages": "not a list"}, 0, id="a-malformed-body-counts-nothing"),
    ],
)
def test_prompt_words_approximate_prompt_tokens(body: dict[str, object], words: int) -> None:
    assert prompt_words(body) == words


def usage(ttft_ms: float, text: str = "x y", finish: str = "stop") -> LlmUsage:
    return LlmUsage(
        ttft_ms=ttft_ms,
        total_ms=ttft_ms + 10.0,
        itl_ms=5.0,
        prompt_tokens=3,
        completion_tokens=2,
        estimated=False,
        finish_reason=finish,
        text=text,
        cost=0.25,
    )


def test_llm_fields_merge_and_survive_the_store_payload() -> None:
    first, second = VersionWindow(), VersionWindow()
    record_llm(first, usage(10.0))
    record_llm(first, usage(20.0, text=" ", finish="length"))
    record_llm(second, usage(400.0, finish="content_filter"))
    first.merge(second)
    back = VersionWindow.from_payload(orjson.loads(orjson.dumps(first.to_payload())))
    summary = back.summary()
    assert summary["llm_answers"] == 3
    assert summary["cost_total"] == pytest.approx(0.75)
    assert summary["cost_per_request"] == pytest.approx(0.25)
    assert summary["finish_length_rate"] == pytest.approx(1 / 3)
    assert summary["finish_content_filter_rate"] == pytest.approx(1 / 3)
    assert summary["empty_answer_rate"] == pytest.approx(1 / 3)
    assert summary["itl_mean_ms"] == pytest.approx(5.0)
    assert 300.0 < summary["ttft_p99_ms"] < 500.0
    assert back.ttft_ms.count == 3
    assert summary["completion_tokens"] == 6


def test_a_window_without_llm_answers_shows_no_llm_figures() -> None:
    window = VersionWindow()
    window.record_call(5.0, failed=False, timed_out=False)
    assert "ttft_p95_ms" not in window.summary()
    assert "ttft_ms" not in window.to_payload()
