"""L0 regularisation with hard-concrete gates (Louizos et al. 2018)."""

from state_of_sparsity.layers.l0_regularization.technique import L0Regularization
