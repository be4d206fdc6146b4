"""state_of_sparsity: sparse neural networks for TensorFlow 2 and Keras 3."""

from state_of_sparsity.conversion import sparsify
from state_of_sparsity.conversion import strip
from state_of_sparsity.conversion import technique_names
from state_of_sparsity.layers import ConstantPenalty
from state_of_sparsity.layers import CubicEMAPenalty
from state_of_sparsity.layers import L0Regularization
from state_of_sparsity.layers import LinearPenalty
from state_of_sparsity.layers import PenaltySchedule
from state_of_sparsity.layers import PruningCallback
from state_of_sparsity.layers import SparseConv2D
from state_of_sparsity.layers import SparseDense
from state_of_sparsity.layers import SparseDepthwiseConv2D
from state_of_sparsity.layers import SparseEinsumDense
from state_of_sparsity.layers import SparseEmbedding
from state_of_sparsity.layers import Technique
from state_of_sparsity.layers import VariationalDropout
from state_of_sparsity.layers import set_log_alpha_threshold
from state_of_sparsity.layers import update_masks
from state_of_sparsity.layers.pruning import ConstantSparsity
from state_of_sparsity.layers.pruning import MagnitudePruning
from state_of_sparsity.layers.pruning import PolynomialDecay
from state_of_sparsity.layers.pruning import PruningSchedule
from state_of_sparsity.layers.pruning import RandomPruning
from state_of_sparsity.report import sparsity_report

__version__ = "0.1.0"
