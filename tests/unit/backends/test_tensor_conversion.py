"""OIP tensors to numpy feature matrices and model results back to OIP tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rollwise.backends.base import Tensor
from rollwise.backends.tensors import (
    array_to_tensor,
    check_rows,
    datatype_of,
    estimator_outputs,
    label_tensor,
    predictions_tensor,
    request_matrix,
    select_outputs,
    tensor_to_array,
)
from rollwise.errors import ValidationError


def tensor(
    shape: tuple[int, ...], data: list[Any], datatype: str = "FP64", name: str = "x"
) -> Tensor:
    return Tensor(name=name, shape=shape, datatype=datatype, data=data)


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [
        ("FP64", np.float64),
        ("FP32", np.float32),
        ("FP16", np.float16),
        ("INT64", np.int64),
        ("INT8", np.int8),
        ("UINT16", np.uint16),
        ("BOOL", np.bool_),
    ],
)
def test_a_tensor_becomes_an_array_of_its_datatype_and_shape(datatype: str, dtype: Any) -> None:
    array = tensor_to_array(tensor((2, 2), [1, 0, 1, 1], datatype))
    assert array.dtype == np.dtype(dtype)
    assert array.shape == (2, 2)


def test_bytes_tensors_stay_text() -> None:
    array = tensor_to_array(tensor((2,), ["a", "b"], "BYTES"))
    assert array.dtype == object
    assert array.tolist() == ["a", "b"]


def test_a_shape_that_does_not_match_the_data_says_how_many_values_it_needs() -> None:
    with pytest.raises(ValidationError, match=r"input 'x': shape \[2, 3\] needs 6 values, got 5"):
        tensor_to_array(tensor((2, 3), [1, 2, 3, 4, 5]))


def test_an_unknown_datatype_is_named_with_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match=r"datatype 'FLOAT' is not one of BOOL, .*FP64"):
        tensor_to_array(tensor((1,), [1.0], "FLOAT"))


def test_text_in_a_numeric_tensor_is_refused() -> None:
    with pytest.raises(ValidationError, match="does not fit datatype FP32"):
        tensor_to_array(tensor((2,), [1.0, "x"], "FP32"))


def test_a_value_out_of_range_for_its_datatype_is_refused() -> None:
    with pytest.raises(ValidationError, match="does not fit datatype UINT8"):
        tensor_to_array(tensor((1,), [300], "UINT8"))


def test_a_float_beyond_its_datatype_is_refused_not_turned_into_infinity() -> None:
    with pytest.raises(ValidationError, match="does not fit datatype FP16"):
        tensor_to_array(tensor((1,), [1e10], "FP16"))


def test_one_2d_input_is_the_feature_matrix() -> None:
    matrix = request_matrix([tensor((2, 3), [1, 2, 3, 4, 5, 6])], n_features=3)
    assert matrix.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_a_1d_input_is_one_value_per_row() -> None:
    matrix = request_matrix([tensor((3,), [1, 2, 3])], n_features=1)
    assert matrix.shape == (3, 1)


def test_higher_dimensional_rows_are_flattened() -> None:
    matrix = request_matrix([tensor((2, 2, 2), list(range(8)))], n_features=4)
    assert matrix.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_several_inputs_become_columns_in_request_order() -> None:
    inputs = [
        tensor((2,), [1.0, 2.0], name="a"),
        tensor((2, 2), [10.0, 11.0, 20.0, 21.0], name="b"),
    ]
    assert request_matrix(inputs, n_features=3).tolist() == [[1.0, 10.0, 11.0], [2.0, 20.0, 21.0]]


def test_inputs_with_different_row_counts_are_refused() -> None:
    inputs = [tensor((2,), [1, 2], name="a"), tensor((3,), [1, 2, 3], name="b")]
    with pytest.raises(ValidationError, match="input 'b' has 3 rows but input 'a' has 2"):
        request_matrix(inputs)


def test_the_wrong_number_of_features_names_expected_and_got() -> None:
    with pytest.raises(ValidationError, match=r"^expected 4 features per row, got 3$"):
        request_matrix([tensor((1, 3), [1, 2, 3])], n_features=4)


def test_a_flat_row_gets_a_hint_about_its_shape() -> None:
    with pytest.raises(ValidationError, match=r"send shape \[1, 4\] for one row"):
        request_matrix([tensor((4,), [1, 2, 3, 4])], n_features=4)


def test_zero_rows_and_no_inputs_are_refused() -> None:
    with pytest.raises(ValidationError, match="0 rows"):
        request_matrix([tensor((0, 4), [])], n_features=4)
    with pytest.raises(ValidationError, match="no inputs"):
        request_matrix([])


def test_the_matrix_is_cast_to_the_dtype_the_model_computes_in() -> None:
    matrix = request_matrix([tensor((1, 2), [1, 2], "INT64")], dtype=np.float32)
    assert matrix.dtype == np.float32


def test_a_failed_cast_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="cannot be converted to float32"):
        request_matrix([tensor((1, 1), ["abc"], "BYTES")], dtype=np.float32)


@pytest.mark.parametrize(
    ("values", "datatype"),
    [
        (np.array([1, 2], dtype=np.int64), "INT64"),
        (np.array([1, 2], dtype=np.int32), "INT32"),
        (np.array([1, 2], dtype=np.uint8), "UINT8"),
        (np.array([0.5], dtype=np.float32), "FP32"),
        (np.array([0.5], dtype=np.float64), "FP64"),
        (np.array([True]), "BOOL"),
        (np.array(["a"]), "BYTES"),
        (np.array(["a"], dtype=object), "BYTES"),
    ],
)
def test_numpy_dtypes_map_to_oip_datatypes(values: Any, datatype: str) -> None:
    assert datatype_of(values.dtype) == datatype
    assert array_to_tensor("y", values).datatype == datatype


def test_complex_numbers_have_no_oip_datatype() -> None:
    with pytest.raises(ValueError, match="no Open Inference Protocol datatype"):
        datatype_of(np.dtype(np.complex128))


def test_an_output_tensor_is_flat_row_major_and_json_ready() -> None:
    out = array_to_tensor("p", np.array([[0.25, 0.75], [1.0, 0.0]]))
    assert out.shape == (2, 2)
    assert out.data == [0.25, 0.75, 1.0, 0.0]
    assert all(type(v) is float for v in out.data)


def test_object_arrays_get_their_natural_datatype_and_bytes_become_text() -> None:
    assert array_to_tensor("y", np.array([1, 2], dtype=object)).datatype == "INT64"
    text = array_to_tensor("y", np.array([b"ab", "cd"], dtype=object))
    assert (text.datatype, text.data) == ("BYTES", ["ab", "cd"])


def test_integer_labels_are_int64_and_text_labels_bytes() -> None:
    assert label_tensor(np.array([0, 2], dtype=np.int32)).datatype == "INT64"
    assert label_tensor(["cat", "dog"]).datatype == "BYTES"
    assert label_tensor([0, 1]).name == "label"


def test_predictions_are_fp64_without_a_trailing_unit_dimension() -> None:
    out = predictions_tensor(np.array([[1.5], [2.5]], dtype=np.float32))
    assert (out.name, out.datatype, out.shape, out.data) == (
        "predictions",
        "FP64",
        (2,),
        [1.5, 2.5],
    )


def test_a_classifier_gives_label_first_then_probabilities() -> None:
    outputs = estimator_outputs([1, 0], [[0.2, 0.8], [0.9, 0.1]], classifier=True)
    assert [(t.name, t.datatype, t.shape) for t in outputs] == [
        ("label", "INT64", (2,)),
        ("probabilities", "FP64", (2, 2)),
    ]


def test_a_regressor_gives_predictions_only() -> None:
    outputs = estimator_outputs(np.array([0.5, 1.5]), None, classifier=False)
    assert [(t.name, t.datatype) for t in outputs] == [("predictions", "FP64")]


def test_results_with_the_wrong_row_count_are_a_model_error() -> None:
    with pytest.raises(ValueError, match="returned 1 rows in 'label' for 2 inputs"):
        check_rows([label_tensor([0])], 2, source="model")


def test_requested_outputs_come_in_the_requested_order() -> None:
    outputs = estimator_outputs([1], [[0.2, 0.8]], classifier=True)
    assert [t.name for t in select_outputs(outputs, ())] == ["label", "probabilities"]
    assert [t.name for t in select_outputs(outputs, ("probabilities", "label"))] == [
        "probabilities",
        "label",
    ]
    with pytest.raises(ValidationError, match="'scores' do not exist; this model gives 'label'"):
        select_outputs(outputs, ("scores",))
