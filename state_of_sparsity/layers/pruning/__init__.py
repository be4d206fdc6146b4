"""Magnitude and random pruning: schedules, techniques, mask updates and the fit callback."""

from state_of_sparsity.layers.pruning.callback import PruningCallback
from state_of_sparsity.layers.pruning.schedules import ConstantSparsity
from state_of_sparsity.layers.pruning.schedules import PolynomialDecay
from state_of_sparsity.layers.pruning.schedules import PruningSchedule
from state_of_sparsity.layers.pruning.technique import MagnitudePruning
from state_of_sparsity.layers.pruning.technique import RandomPruning
from state_of_sparsity.layers.pruning.updater import update_masks
