"""Sparse Keras 3 layers: one class per op, one pluggable technique per sparsity method."""

from state_of_sparsity.layers.callback import PruningCallback
from state_of_sparsity.layers.l0_regularization import L0Regularization
from state_of_sparsity.layers.penalty_schedules import ConstantPenalty
from state_of_sparsity.layers.penalty_schedules import CubicEMAPenalty
from state_of_sparsity.layers.penalty_schedules import LinearPenalty
from state_of_sparsity.layers.penalty_schedules import PenaltySchedule
from state_of_sparsity.layers.sparse_layers import SparseConv2D
from state_of_sparsity.layers.sparse_layers import SparseDense
from state_of_sparsity.layers.sparse_layers import SparseDepthwiseConv2D
from state_of_sparsity.layers.sparse_layers import SparseEinsumDense
from state_of_sparsity.layers.sparse_layers import SparseEmbedding
from state_of_sparsity.layers.sparse_layers import SparseLayerMixin
from state_of_sparsity.layers.sparse_layers import keras_base_class
from state_of_sparsity.layers.technique import Technique
from state_of_sparsity.layers.updater import update_masks
from state_of_sparsity.layers.variational_dropout import VariationalDropout
from state_of_sparsity.layers.variational_dropout import set_log_alpha_threshold
