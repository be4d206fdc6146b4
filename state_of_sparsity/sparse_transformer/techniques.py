"""From hparams to the sparsity technique of each Transformer layer (sos_spec 3.2, 5.5), and layer factories."""

import re

import keras

import state_of_sparsity as sos
from state_of_sparsity.sparse_transformer import shared_embedding

EMBEDDING_NAME = "shared_embedding"
# The original's log_sigma2 init of the embedding aux (sos_spec 4.2); dense layers use -10 too.
LOG_SIGMA2_INIT = -10.0


def sparsity_map(hparams):
    """`{layer-name regex: target sparsity}` overrides of the pruning target (the original's weight_sparsity_map).

    Only the shared embedding can be overridden, by `embedding_sparsity >= 0`.
    """
    if hparams.embedding_sparsity >= 0:
        return {f"^{EMBEDDING_NAME}$": hparams.embedding_sparsity}
    return {}


def penalty_schedule(weight, start, diff, function):
    """The VD/L0 penalty weight ramp over [start, start + diff] (sos_spec 5.5)."""
    if function == "linear":
        return sos.LinearPenalty(weight, start, start + diff)
    return sos.CubicEMAPenalty(weight, start, start + diff, decay=0.9)


def technique_for(hparams, layer_name, seed=0):
    """The technique instance of layer `layer_name`, or None for a dense layer.

    Args:
      hparams: an `HParams`.
      layer_name: the Keras name of the layer (decides `sparsity_map` overrides).
      seed: random-pruning seed.
    """
    technique = hparams.sparsity_technique
    if not technique or (layer_name == EMBEDDING_NAME and not hparams.sparse_embedding):
        return None
    if technique in ("magnitude_pruning", "random_pruning"):
        schedule = sos.PolynomialDecay(
            hparams.target_sparsity, hparams.begin_pruning_step, hparams.end_pruning_step,
            hparams.pruning_frequency, exponent=hparams.sparsity_function_exponent,
        )
        target = next(
            (value for pattern, value in sparsity_map(hparams).items()
             if re.search(pattern, layer_name)),
            None,
        )
        if target is not None:
            schedule = schedule.with_target(target)
        if technique == "random_pruning":
            return sos.RandomPruning(schedule, seed=seed)
        return sos.MagnitudePruning(schedule)
    if technique == "variational_dropout":
        return sos.VariationalDropout(
            penalty_schedule(hparams.dkl_weight, hparams.dkl_weight_start,
                             hparams.dkl_weight_diff, hparams.dkl_weight_fn),
            threshold=hparams.log_alpha_threshold,
            clip_alpha=hparams.clip_log_alpha,
            log_sigma2_initializer=LOG_SIGMA2_INIT,
        )
    # The original's L0 reuses dkl_weight_fn for its schedule shape.
    return sos.L0Regularization(
        penalty_schedule(hparams.l0_norm_weight, hparams.l0_weight_start,
                         hparams.l0_weight_diff, hparams.dkl_weight_fn)
    )


def kernel_initializer(hparams):
    """T2T's uniform_unit_scaling: variance scaling, fan_avg, uniform (a fresh instance per layer)."""
    return keras.initializers.VarianceScaling(
        scale=hparams.initializer_gain, mode="fan_avg", distribution="uniform"
    )


def dense(hparams, units, name, use_bias, activation=None, seed=0):
    """A Dense layer, sparse (`SparseDense`) when the hparams ask for a technique."""
    kwargs = dict(
        units=units, use_bias=use_bias, activation=activation,
        kernel_initializer=kernel_initializer(hparams), name=name,
    )
    technique = technique_for(hparams, name, seed)
    if technique is None:
        return keras.layers.Dense(**kwargs)
    return sos.SparseDense(technique=technique, **kwargs)


def embedding(hparams, seed=0):
    """The shared embedding/softmax matrix, N(0, hidden^-0.5), sparse when the hparams ask for it."""
    kwargs = dict(
        input_dim=hparams.vocab_size,
        output_dim=hparams.hidden_size,
        embeddings_initializer=keras.initializers.RandomNormal(
            0.0, hparams.hidden_size**-0.5
        ),
        name=EMBEDDING_NAME,
    )
    technique = technique_for(hparams, EMBEDDING_NAME, seed)
    if technique is None:
        return shared_embedding.SharedEmbedding(**kwargs)
    return shared_embedding.SparseSharedEmbedding(technique=technique, **kwargs)
