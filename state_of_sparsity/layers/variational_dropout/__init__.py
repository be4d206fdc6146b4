"""Variational dropout (Molchanov et al. 2017): technique, maths and threshold control."""

from state_of_sparsity.layers.variational_dropout.technique import VariationalDropout
from state_of_sparsity.layers.variational_dropout.technique import set_log_alpha_threshold
