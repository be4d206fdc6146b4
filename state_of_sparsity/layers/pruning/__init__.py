"""Magnitude and random pruning: schedules, mask selection and the techniques."""

from state_of_sparsity.layers.pruning.schedules import ConstantSparsity
from state_of_sparsity.layers.pruning.schedules import PolynomialDecay
from state_of_sparsity.layers.pruning.schedules import PruningSchedule
from state_of_sparsity.layers.pruning.technique import MagnitudePruning
from state_of_sparsity.layers.pruning.technique import RandomPruning
