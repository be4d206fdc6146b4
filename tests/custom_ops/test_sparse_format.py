"""Tests of the compressed weight format: CSC/CSR structure, perm, NumPy and TF builders agree."""

import numpy as np
import pytest

from state_of_sparsity.custom_ops import sparse_format


def test_structure_of_a_hand_worked_mask():
    mask = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]])
    s = sparse_format.structure_from_mask(mask)
    np.testing.assert_array_equal(s["col_ptr"], [0, 2, 2, 3, 4])
    np.testing.assert_array_equal(s["row_idx"], [0, 2, 1, 2])
    np.testing.assert_array_equal(s["row_ptr"], [0, 1, 2, 4])
    np.testing.assert_array_equal(s["col_idx"], [0, 2, 0, 3])
    np.testing.assert_array_equal(s["perm"], [0, 2, 1, 3])
    np.testing.assert_array_equal(s["flat_index"], [0, 8, 6, 11])


@pytest.mark.parametrize("shape", [(7, 5), (1, 9), (6, 1), (0, 3)])
def test_tf_builder_matches_numpy_and_round_trips(shape):
    w = np.random.default_rng(0).normal(size=shape) * (np.random.default_rng(1).random(shape) < 0.4)
    expected = sparse_format.structure_from_mask(w != 0)
    got = sparse_format.tf_structure_from_mask(w != 0)
    for name, value in got.items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    weight = sparse_format.SparseWeight.from_dense(w)
    np.testing.assert_allclose(weight.to_dense(), w.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(weight.values)[weight.perm],
                                  w[np.nonzero(w)].astype(np.float32))


def test_mask_must_be_2d():
    with pytest.raises(ValueError, match=r"must be 2-D \[K, N\].*mask.shape=\(2, 2, 2\)"):
        sparse_format.structure_from_mask(np.ones((2, 2, 2)))
