"""Text comparison: normalisation, similarity, cosine, the judge's answers and the win
rate's Wilson interval (statsmodels as the oracle)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint

from rollwise.analysis.text_compare import (
    JudgeAnswerError,
    Normalisation,
    Preference,
    cosine,
    exact_match,
    judge_messages,
    judge_order,
    read_verdict,
    similarity,
    win_rate_interval,
)

ALL = Normalisation()
NONE = Normalisation(case=False, whitespace=False, punctuation=False)


@pytest.mark.parametrize(
    ("a", "b", "normalisation", "equal"),
    [
        pytest.param("Paris.", "paris", ALL, True, id="case and punctuation ignored"),
        pytest.param("  the   cat\n sat ", "the cat sat", ALL, True, id="whitespace collapsed"),
        pytest.param("Paris", "paris", NONE, False, id="case kept when switched off"),
        pytest.param(
            "Paris!", "Paris", Normalisation(punctuation=False), False, id="punctuation kept"
        ),
        pytest.param("a  b", "a b", Normalisation(whitespace=False), False, id="whitespace kept"),
        pytest.param("Ｐａｒｉｓ", "paris", ALL, True, id="full-width letters are letters"),
        pytest.param("«oui»", "oui", ALL, True, id="unicode punctuation dropped"),
        pytest.param("yes", "no", ALL, False, id="different words differ"),
        pytest.param("", "  ", ALL, True, id="empty and blank are equal"),
    ],
)
def test_exact_match_after_normalisation(
    a: str, b: str, normalisation: Normalisation, equal: bool
) -> None:
    assert exact_match(a, b, normalisation) is equal


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [
        pytest.param("The answer is 42.", "the answer is 42", 1.0, 1.0, id="equal once normalised"),
        pytest.param("kitten", "sitting", 0.55, 0.65, id="indel ratio of a classic pair"),
        pytest.param("abc", "xyz", 0.0, 0.0, id="nothing in common"),
        pytest.param("", "", 1.0, 1.0, id="two empty answers agree"),
        pytest.param("", "something", 0.0, 0.0, id="an empty answer against text"),
    ],
)
def test_similarity_table(a: str, b: str, low: float, high: float) -> None:
    assert low <= similarity(a, b, ALL) <= high


@given(st.text(max_size=60), st.text(max_size=60))
def test_similarity_is_symmetric_and_a_share(a: str, b: str) -> None:
    s = similarity(a, b, ALL)
    assert 0.0 <= s <= 1.0
    assert s == pytest.approx(similarity(b, a, ALL))


@given(st.text(max_size=60), st.text(max_size=60))
def test_an_exact_match_is_fully_similar(a: str, b: str) -> None:
    assert similarity(a, a, ALL) == 1.0
    if exact_match(a, b, ALL):
        assert similarity(a, b, ALL) == 1.0


@given(st.text(max_size=40))
def test_normalisation_is_idempotent(text: str) -> None:
    once = ALL.apply(text)
    assert ALL.apply(once) == once


@pytest.mark.parametrize(
    ("u", "v", "expected"),
    [
        pytest.param([1.0, 0.0], [2.0, 0.0], 1.0, id="same direction"),
        pytest.param([1.0, 0.0], [0.0, 3.0], 0.0, id="orthogonal"),
        pytest.param([1.0, 1.0], [-1.0, -1.0], -1.0, id="opposite"),
        pytest.param([1.0, 2.0, 3.0], [1.0, 2.0, 4.0], 0.9914601339836675, id="close"),
    ],
)
def test_cosine(u: list[float], v: list[float], expected: float) -> None:
    assert cosine(u, v) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("u", "v"),
    [
        pytest.param([1.0], [1.0, 2.0], id="lengths differ"),
        pytest.param([0.0, 0.0], [1.0, 2.0], id="zero vector"),
        pytest.param([], [], id="empty"),
    ],
)
def test_cosine_refuses(u: list[float], v: list[float]) -> None:
    with pytest.raises(ValueError):
        cosine(u, v)


@pytest.mark.parametrize(
    ("content", "candidate_first", "expected"),
    [
        pytest.param('{"winner": "a"}', True, Preference.CANDIDATE, id="a is the candidate"),
        pytest.param('{"winner": "a"}', False, Preference.STABLE, id="a is the stable answer"),
        pytest.param('{"winner": "b"}', False, Preference.CANDIDATE, id="b is the candidate"),
        pytest.param('{"winner": "B"}', True, Preference.STABLE, id="case of the letter"),
        pytest.param('{"winner": "tie"}', True, Preference.TIE, id="tie either way"),
        pytest.param('```json\n{"winner": "b"}\n```', True, Preference.STABLE, id="fenced"),
    ],
)
def test_read_verdict(content: str, candidate_first: bool, expected: Preference) -> None:
    assert read_verdict(content, candidate_first) is expected


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("a", id="not JSON"),
        pytest.param('{"winner": "c"}', id="unknown winner"),
        pytest.param('{"best": "a"}', id="wrong key"),
        pytest.param('["a"]', id="not an object"),
        pytest.param('{"winner": 1}', id="not a string"),
    ],
)
def test_read_verdict_refuses_answers_off_the_schema(content: str) -> None:
    with pytest.raises(JudgeAnswerError):
        read_verdict(content, True)


def test_judge_order_is_a_coin_from_the_draw_passed_in() -> None:
    assert judge_order(lambda: 0.1) is True
    assert judge_order(lambda: 0.9) is False


def test_judge_messages_hold_both_answers_in_order() -> None:
    messages = judge_messages("2+2?", "four", "4")
    assert messages[0]["role"] == "system" and '"winner"' in messages[0]["content"]
    assert messages[1]["content"].endswith("Answer a:\nfour\n\nAnswer b:\n4")


@given(st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_win_rate_interval_is_wilsons(counts: tuple[int, int]) -> None:
    wins, judged = counts
    if judged == 0:
        interval = win_rate_interval(wins, judged)
        assert (interval.low, interval.high) == (0.0, 1.0)
        return
    low, high = proportion_confint(wins, judged, alpha=0.05, method="wilson")
    interval = win_rate_interval(wins, judged)
    assert interval.low == pytest.approx(low, abs=1e-9)
    assert interval.high == pytest.approx(high, abs=1e-9)
    # The observed rate is always inside, also at 0 and 1 (exact ends there).
    assert interval.low <= wins / judged <= interval.high
