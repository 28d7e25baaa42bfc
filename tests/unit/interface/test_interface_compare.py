"""Two versions' interfaces compared: what breaks a caller of the stable version, what is
only reported, and what cannot be told."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.backends.base import ModelMetadata, TensorSpec
from rollwise.interface import Change, compare, shapes_compatible

FEATURES = TensorSpec("input-0", "FP64", (-1, 4))
LABEL = TensorSpec("label", "INT64", (-1,))
PROBABILITIES = TensorSpec("probabilities", "FP64", (-1, 3))


def meta(
    inputs: tuple[TensorSpec, ...] = (FEATURES,),
    outputs: tuple[TensorSpec, ...] = (LABEL, PROBABILITIES),
) -> ModelMetadata:
    return ModelMetadata("test", inputs, outputs)


STABLE = meta()

# (candidate, lenient inputs, expected (side, name, change, breaking) in order)
CASES = [
    pytest.param(meta(), True, [], id="same-interface"),
    pytest.param(
        meta(outputs=(TensorSpec("predict", "INT64", (-1,)),)),
        True,
        [
            ("output", "label", Change.REMOVED, True),
            ("output", "probabilities", Change.REMOVED, True),
            ("output", "predict", Change.ADDED, False),
        ],
        id="output-renamed",
    ),
    pytest.param(
        meta(outputs=(LABEL, PROBABILITIES, TensorSpec("score", "FP64", (-1,)))),
        True,
        [("output", "score", Change.ADDED, False)],
        id="output-added-is-not-breaking",
    ),
    pytest.param(
        meta(outputs=(TensorSpec("label", "BYTES", (-1,)), PROBABILITIES)),
        True,
        [("output", "label", Change.DATATYPE, True)],
        id="dtype-changed",
    ),
    pytest.param(
        meta(outputs=(LABEL, TensorSpec("probabilities", "FP32", (-1, 3)))),
        True,
        [("output", "probabilities", Change.DATATYPE, False)],
        id="dtype-width-changed-is-not-breaking",
    ),
    pytest.param(
        meta(outputs=(LABEL, TensorSpec("probabilities", "FP64", (-1, 4)))),
        True,
        [("output", "probabilities", Change.SHAPE, True)],
        id="shape-changed",
    ),
    pytest.param(
        meta(outputs=(LABEL, TensorSpec("probabilities", "FP64", (-1, 3, 1)))),
        True,
        [("output", "probabilities", Change.SHAPE, True)],
        id="rank-changed",
    ),
    pytest.param(
        meta(inputs=(TensorSpec("input-0", "FP64", (-1, -1)),)),
        True,
        [],
        id="wildcard-dim-compatible",
    ),
    pytest.param(
        meta(inputs=(TensorSpec("input", "FP32", (-1, 4)),)),
        True,
        [("input", "input-0", Change.RENAMED, False), ("input", "input-0", Change.DATATYPE, False)],
        id="lone-input-renamed-taken-by-position",
    ),
    pytest.param(
        meta(inputs=(TensorSpec("input", "FP32", (-1, 4)),)),
        False,
        [
            ("input", "input-0", Change.REMOVED, True),
            ("input", "input", Change.ADDED, True),
        ],
        id="lone-input-renamed-on-a-pass-through-backend",
    ),
    pytest.param(
        meta(inputs=(TensorSpec("input-0", "FP32", (-1, 4)),)),
        False,
        [("input", "input-0", Change.DATATYPE, True)],
        id="input-width-changed-on-a-pass-through-backend",
    ),
    pytest.param(
        meta(inputs=(FEATURES, TensorSpec("country", "BYTES", (-1, 1)))),
        True,
        [("input", "country", Change.ADDED, True)],
        id="input-added",
    ),
    pytest.param(
        meta(inputs=(TensorSpec("input-0", "FP64", (-1, 5)),)),
        True,
        [("input", "input-0", Change.SHAPE, True)],
        id="input-width-changed",
    ),
]


@pytest.mark.parametrize(("candidate", "lenient", "expected"), CASES)
def test_differences_and_which_break_a_caller(
    candidate: ModelMetadata, lenient: bool, expected: list[tuple[str, str, Change, bool]]
) -> None:
    diff = compare(STABLE, candidate, stable_name="v1", candidate_name="v2", lenient_inputs=lenient)
    assert [(d.side, d.name, d.change, d.breaking) for d in diff.differences] == expected
    assert diff.unknown == ()
    assert len(diff.lines()) == len(expected)


@pytest.mark.parametrize(
    ("stable", "candidate", "unknown", "breaking"),
    [
        pytest.param(
            STABLE, ModelMetadata("http"),
            ["inputs: v2 describes none", "outputs: v2 describes none"],
            False, id="unknown-signature",
        ),
        pytest.param(
            meta(inputs=()), meta(outputs=(TensorSpec("predict", "INT64", (-1,)),)),
            ["inputs: v1 describes none"], True, id="unknown-inputs-outputs-still-compared",
        ),
        pytest.param(
            None, STABLE, ["no metadata at hand for v1"], False, id="stable-not-loaded-here"
        ),
    ],
)  # fmt: skip
def test_what_a_version_does_not_describe_is_unknown_not_a_mismatch(
    stable: ModelMetadata | None, candidate: ModelMetadata, unknown: list[str], breaking: bool
) -> None:
    diff = compare(stable, candidate, stable_name="v1", candidate_name="v2")
    assert list(diff.unknown) == unknown
    assert bool(diff.breaking) is breaking
    assert diff.lines()[len(diff.differences) :] == [f"not compared: {u}" for u in unknown]


def test_each_difference_is_one_readable_line() -> None:
    candidate = meta(
        outputs=(
            TensorSpec("predict", "INT64", (-1,)),
            TensorSpec("probabilities", "FP64", (-1, 4)),
        )
    )
    diff = compare(STABLE, candidate, stable_name="v1", candidate_name="v2")
    assert diff.lines() == [
        "output 'label' removed (was INT64 [-1]) — breaking",
        "output 'predict' added (INT64 [-1])",
        "output 'probabilities' shape [-1, 3] → [-1, 4] — breaking",
    ]
    assert diff.to_dict()["breaking"] is True


# -- invariants ----------------------------------------------------------------------------

DATATYPES = st.sampled_from(["BOOL", "INT64", "UINT8", "FP32", "FP64", "BYTES"])
SHAPES = st.lists(st.integers(1, 8), min_size=1, max_size=3).map(tuple)
TENSORS = st.builds(TensorSpec, st.sampled_from(["a", "b", "c"]), DATATYPES, SHAPES)
UNIQUE_TENSORS = st.lists(TENSORS, min_size=1, max_size=3, unique_by=lambda t: t.name).map(tuple)
SIGNATURES = st.builds(ModelMetadata, st.just("x"), UNIQUE_TENSORS, UNIQUE_TENSORS)


def _wildcarded(signature: ModelMetadata, mask: int) -> ModelMetadata:
    def blur(t: TensorSpec) -> TensorSpec:
        shape = tuple(-1 if mask >> i & 1 else d for i, d in enumerate(t.shape))
        return TensorSpec(t.name, t.datatype, shape)

    return ModelMetadata(
        "x", tuple(map(blur, signature.inputs)), tuple(map(blur, signature.outputs))
    )


@given(SIGNATURES, st.integers(0, 7), st.booleans())
def test_a_signature_differs_neither_from_itself_nor_from_itself_with_wildcards(
    signature: ModelMetadata, mask: int, lenient: bool
) -> None:
    assert compare(signature, signature, lenient_inputs=lenient).differences == ()
    blurred = _wildcarded(signature, mask)
    assert compare(signature, blurred, lenient_inputs=lenient).differences == ()
    assert compare(blurred, signature, lenient_inputs=lenient).differences == ()


@given(SHAPES, SHAPES)
def test_shape_compatibility_is_symmetric(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    assert shapes_compatible(a, b) == shapes_compatible(b, a)
