"""Classification metrics: known answers on tiny arrays, invariants by hypothesis, clear errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stemsight.training.metrics import (
    classification_metrics,
    cohen_kappa,
    confusion_matrix,
    entropy_reduction,
    expected_calibration_error,
    posterior_entropy,
)

LABELS = ["M", "V_M", "V_X", "D_M"]


def one_hot(codes, k):
    return np.eye(k)[np.asarray(codes)]


# --- known answers -----------------------------------------------------------------------------


def test_entropy_of_uniform_is_log_k_and_of_one_hot_is_zero():
    for k in (1, 2, 3, 7):
        assert posterior_entropy(np.full((2, k), 1.0 / k)) == pytest.approx([math.log(k)] * 2)
    assert posterior_entropy(one_hot([0, 2, 1], 3)) == pytest.approx([0.0, 0.0, 0.0])


def test_entropy_of_a_two_class_row_by_hand():
    h = posterior_entropy([[0.25, 0.75, 0.0]])
    assert h[0] == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))


def test_confusion_matrix_rows_truth_columns_prediction():
    cm = confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_kappa_against_hand_computed_value():
    # cm = [[2,1,0],[0,2,0],[0,0,1]]: p_o = 5/6; marginals (3,2,1)/6 and (2,3,1)/6 -> p_e = 13/36
    truth = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 1, 2]
    assert cohen_kappa(truth, pred, ["a", "b", "c"]) == pytest.approx(17 / 23)


def test_kappa_is_zero_for_chance_agreement_and_undefined_for_one_shared_class():
    # independent marginals: p_o = p_e = 1/2
    assert cohen_kappa([0, 0, 1, 1], [0, 1, 0, 1], ["a", "b"]) == pytest.approx(0.0)
    assert cohen_kappa([1, 1, 1], [1, 1, 1], ["a", "b"]) is None


def test_ece_of_a_perfectly_calibrated_case_is_zero():
    # ten sites at confidence 0.8, eight of them right
    probs = np.tile([0.8, 0.2], (10, 1))
    truth = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, truth) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_an_over_confident_case_by_hand():
    # bin (0.93, 1]: two sites at 1.0, both right (gap 0); bin (0.53, 0.6]: two at 0.6, one right (gap 0.1)
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.4], [0.6, 0.4]])
    truth = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probs, truth) == pytest.approx(0.5 * 0.0 + 0.5 * 0.1)
    # four sites at 0.9, half right: |0.5 - 0.9| = 0.4
    assert expected_calibration_error(np.tile([0.9, 0.1], (4, 1)), [0, 0, 1, 1]) == pytest.approx(0.4)


def test_classification_metrics_by_hand():
    # predictions (argmax): M, V_M, V_M, M, M, V_M ; truth: M, V_M, M, V_X, M, V_M
    probs = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.1, 0.8, 0.1, 0.0],
            [0.3, 0.6, 0.1, 0.0],
            [0.5, 0.1, 0.4, 0.0],
            [0.9, 0.0, 0.1, 0.0],
            [0.2, 0.7, 0.1, 0.0],
        ]
    )
    truth = np.array([0, 1, 0, 2, 0, 1])
    m = classification_metrics(probs, truth, LABELS)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # recall: M 2/3, V_M 2/2, V_X 0/1 ; D_M absent from truth and prediction
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert set(m["per_class"]) == {"M", "V_M", "V_X"}
    assert m["per_class"]["M"] == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3),
                                   "support": 3, "predicted": 3}  # fmt: skip
    assert m["per_class"]["V_M"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["V_M"]["recall"] == pytest.approx(1.0)
    assert m["per_class"]["V_X"] == {"precision": None, "recall": 0.0, "support": 1, "predicted": 0}
    assert m["confusion"] == {"labels": ["M", "V_M", "V_X"], "matrix": [[2, 1, 0], [0, 2, 0], [1, 0, 0]]}
    # kappa: p_o = 4/6; truth marginals (3,2,1), prediction marginals (3,3,0) -> p_e = 15/36
    assert m["kappa"] == pytest.approx((4 / 6 - 15 / 36) / (1 - 15 / 36))
    assert m["mean_entropy"] == pytest.approx(posterior_entropy(probs).mean())
    assert m["ece"] == pytest.approx(expected_calibration_error(probs, truth))
    json.loads(json.dumps(m))  # JSON-ready, plain Python types


def test_macro_recall_ignores_labels_absent_from_truth():
    # V_M predicted once but never true: it appears in per_class/confusion, not in the macro mean
    probs = one_hot([0, 0, 1, 2], 4)
    truth = np.array([0, 0, 0, 2])
    m = classification_metrics(probs, truth, LABELS)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert m["per_class"]["V_M"] == {"precision": 0.0, "recall": None, "support": 0, "predicted": 1}
    assert m["confusion"]["labels"] == ["M", "V_M", "V_X"]


def test_confusion_sums_to_n_and_diagonal_counts_the_correct_sites():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), size=50)
    truth = rng.integers(0, 4, size=50)
    m = classification_metrics(probs, truth, LABELS)
    matrix = np.array(m["confusion"]["matrix"])
    assert matrix.sum() == 50
    assert np.trace(matrix) == int((probs.argmax(axis=1) == truth).sum())


def test_entropy_reduction():
    assert entropy_reduction({"mean_entropy": 0.25}, {"mean_entropy": 1.0}) == pytest.approx(0.75)
    assert entropy_reduction({"mean_entropy": 1.5}, {"mean_entropy": 1.0}) == pytest.approx(-0.5)
    assert entropy_reduction({"mean_entropy": 0.0}, {"mean_entropy": 0.0}) is None


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        (np.array([0.5, 0.5]), "shape"),
        (np.array([[0.5, np.nan]]), "NaN"),
        (np.array([[0.5, 0.6]]), "sum to 1"),
        (np.array([[1.5, -0.5]]), "negative"),
    ],
)
def test_bad_probs_raise(probs, match):
    with pytest.raises(ValueError, match=match):
        posterior_entropy(probs)


def test_empty_input_raises_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        classification_metrics(np.zeros((0, 4)), np.zeros(0, dtype=int), LABELS)
    with pytest.raises(ValueError, match="empty"):
        expected_calibration_error(np.zeros((0, 2)), np.zeros(0, dtype=int))


def test_mismatched_inputs_raise():
    probs = one_hot([0, 1], 4)
    with pytest.raises(ValueError, match="labels"):
        classification_metrics(probs, [0, 1], LABELS[:3])
    with pytest.raises(ValueError, match="rows"):
        classification_metrics(probs, [0, 1, 1], LABELS)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        classification_metrics(probs, [0, 4], LABELS)
    with pytest.raises(ValueError, match="integer"):
        classification_metrics(probs, [0.0, 1.0], LABELS)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(probs, [0, 1], n_bins=0)


# --- properties --------------------------------------------------------------------------------


@st.composite
def probs_and_truth(draw, min_k=1):
    k = draw(st.integers(min_k, 6))
    n = draw(st.integers(1, 40))
    weights = draw(st.lists(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k), min_size=n, max_size=n))
    w = np.array(weights) + 1e-9
    probs = w / w.sum(axis=1, keepdims=True)
    truth = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    return probs, truth, [f"L{i}" for i in range(k)]


@settings(max_examples=60, deadline=None)
@given(probs_and_truth())
def test_accuracy_is_trace_over_n(case):
    probs, truth, labels = case
    m = classification_metrics(probs, truth, labels)
    matrix = np.array(m["confusion"]["matrix"])
    assert matrix.sum() == m["n"] == len(truth)
    assert m["accuracy"] == pytest.approx(np.trace(matrix) / m["n"])
    assert 0.0 <= m["ece"] <= 1.0
    json.dumps(m)


@settings(max_examples=60, deadline=None)
@given(probs_and_truth())
def test_entropy_between_zero_and_log_k(case):
    probs, _, labels = case
    h = posterior_entropy(probs)
    assert h.shape == (len(probs),)
    assert np.all(h >= 0.0)
    assert np.all(h <= math.log(len(labels)) + 1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 6).flatmap(lambda k: st.tuples(st.just(k), st.lists(st.integers(0, k - 1), min_size=2)))
)
def test_kappa_is_one_for_perfect_agreement(case):
    k, codes = case
    truth = np.array(codes)
    labels = [f"L{i}" for i in range(k)]
    kappa = cohen_kappa(truth, truth, labels)
    if len(set(codes)) >= 2:
        assert kappa == pytest.approx(1.0)
    else:
        assert kappa is None
