"""Sparse Keras 3 layers: one class per op, one pluggable technique per sparsity method."""

from state_of_sparsity.layers.sparse_layers import SparseConv2D
from state_of_sparsity.layers.sparse_layers import SparseDense
from state_of_sparsity.layers.sparse_layers import SparseDepthwiseConv2D
from state_of_sparsity.layers.sparse_layers import SparseEinsumDense
from state_of_sparsity.layers.sparse_layers import SparseEmbedding
from state_of_sparsity.layers.sparse_layers import SparseLayerMixin
from state_of_sparsity.layers.sparse_layers import keras_base_class
from state_of_sparsity.layers.technique import Technique
