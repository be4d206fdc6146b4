"""The compressed sparse weight the op consumes: CSC values plus the CSR structure for dX."""

import typing

import numpy as np
import tensorflow as tf


class SparseWeight(typing.NamedTuple):
    """A sparse W [K, N]: CSC arrays, and the CSR structure of the same nonzeros for `dX = dY·Wᵀ`.

    `values[j]` (float32) is W[row_idx[j], n] for col_ptr[n] <= j < col_ptr[n+1].
    CSR entry i (row k for row_ptr[k] <= i < row_ptr[k+1], column col_idx[i])
    has the value values[perm[i]], so values are stored once. Indices are int32.
    """

    values: typing.Any
    col_ptr: typing.Any
    row_idx: typing.Any
    row_ptr: typing.Any
    col_idx: typing.Any
    perm: typing.Any
    shape: tuple

    @classmethod
    def from_dense(cls, weight):
        """The nonzeros of a dense [K, N] NumPy array or eager tensor."""
        weight = np.asarray(weight, dtype=np.float32)
        structure = structure_from_mask(weight != 0)
        return cls(values_from_dense(weight, structure["flat_index"]),
                   **{k: v for k, v in structure.items() if k in cls._fields})

    def to_dense(self):
        """The dense [K, N] matrix (NumPy), e.g. for checks."""
        k, n = self.shape
        col_ptr = np.asarray(self.col_ptr)
        cols = np.repeat(np.arange(n), np.diff(col_ptr))
        dense = np.zeros((k, n), np.float32)
        np.add.at(dense, (np.asarray(self.row_idx), cols), np.asarray(self.values))
        return dense


def structure_from_mask(mask):
    """CSC + CSR structure (NumPy int32) of a 0/1 mask [K, N], and `flat_index` (row-major) per value."""
    mask = np.asarray(mask) != 0
    if mask.ndim != 2:
        raise ValueError(f"The mask must be 2-D [K, N]. Received: mask.shape={mask.shape}")
    k, n = mask.shape
    cols, rows = np.nonzero(mask.T)  # column-major order = CSC order
    csr_rows, csr_cols = np.nonzero(mask)
    csc_key = cols.astype(np.int64) * k + rows
    perm = np.searchsorted(csc_key, csr_cols.astype(np.int64) * k + csr_rows)
    return {
        "col_ptr": _pointer(cols, n),
        "row_idx": rows.astype(np.int32),
        "row_ptr": _pointer(csr_rows, k),
        "col_idx": csr_cols.astype(np.int32),
        "perm": perm.astype(np.int32),
        "shape": (k, n),
        "flat_index": (rows.astype(np.int64) * n + cols),
    }


def values_from_dense(weight, flat_index):
    return np.asarray(weight, np.float32).reshape(-1)[flat_index]


def tf_structure_from_mask(mask):
    """`structure_from_mask` in TF ops (runs inside a `tf.function`), as int32 tensors."""
    mask = tf.convert_to_tensor(mask)
    if mask.dtype != tf.bool:
        mask = tf.not_equal(mask, tf.zeros([], mask.dtype))
    k = tf.shape(mask, out_type=tf.int64)[0]
    n = tf.shape(mask, out_type=tf.int64)[1]
    csc = tf.where(tf.transpose(mask))  # [nnz, 2] = (column, row), CSC order
    csr = tf.where(mask)  # (row, column), CSR order
    csc_key = csc[:, 0] * k + csc[:, 1]
    perm = tf.searchsorted(csc_key, csr[:, 1] * k + csr[:, 0])
    return {
        "col_ptr": _tf_pointer(csc[:, 0], n),
        "row_idx": tf.cast(csc[:, 1], tf.int32),
        "row_ptr": _tf_pointer(csr[:, 0], k),
        "col_idx": tf.cast(csr[:, 1], tf.int32),
        "perm": tf.cast(perm, tf.int32),
        "flat_index": csc[:, 1] * n + csc[:, 0],
    }


def _pointer(sorted_outer, size):
    counts = np.bincount(sorted_outer, minlength=size)[:size]
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)


def _tf_pointer(sorted_outer, size):
    counts = tf.math.bincount(tf.cast(sorted_outer, tf.int32), minlength=tf.cast(size, tf.int32),
                              maxlength=tf.cast(size, tf.int32), dtype=tf.int32)
    return tf.concat([[0], tf.cumsum(counts)], axis=0)
