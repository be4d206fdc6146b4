"""Compiled sparse-weight matmul op (forward, dX, dW at nonzeros) and the Keras layers that use it."""

from state_of_sparsity.custom_ops.sparse_dense_op_layer import OpSparseDense
from state_of_sparsity.custom_ops.sparse_format import SparseWeight
from state_of_sparsity.custom_ops.sparse_inference import SparseInferenceDense
from state_of_sparsity.custom_ops.sparse_inference import to_sparse_inference
from state_of_sparsity.custom_ops.sparse_matmul_ops import sparse_matmul
from state_of_sparsity.custom_ops.sparse_matmul_ops import sparse_matmul_grad
from state_of_sparsity.custom_ops.sparse_matmul_ops import sparse_matmul_grad_input
from state_of_sparsity.custom_ops.sparse_matmul_ops import sparse_matmul_grad_values
