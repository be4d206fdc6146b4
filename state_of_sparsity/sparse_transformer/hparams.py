"""Hyper-parameter sets of the sparse Transformer, named and valued as the original's (sos_spec 5.1)."""

import dataclasses
import difflib
import math
import typing

TECHNIQUES = ("magnitude_pruning", "random_pruning", "variational_dropout", "l0_regularization")
PENALTY_FUNCTIONS = ("linear", "cubic")
PREPROCESS_SEQUENCES = ("n", "none")  # pre-norm, or nothing (post-norm models)
POSTPROCESS_SEQUENCES = ("da", "dan")  # dropout + residual, then optionally norm
OPTIMIZERS = ("adam", "adafactor")


@dataclasses.dataclass(frozen=True)
class HParams:
    """Everything the model, trainer and decoder read; names are T2T's / the original's.

    Instances are immutable and always valid (`validate` runs on creation);
    derive variants with `dataclasses.replace` or `parse_overrides`.

    Fields the original had as problem settings rather than hparams:
    `vocab_size` (33 288 for translate_ende_wmt32k) and `target_space_id`
    (0, T2T's SpaceID.GENERIC, which that problem keeps). `sparse_embedding`
    stands for the original's `hparams.modality = {}` in the `*mpfc*` sets:
    False keeps the shared embedding/softmax dense while every other matmul
    is pruned. `symbol_modality_num_shards` only changes how the original
    split the embedding into variables (`weights_0..N-1`); here it is one
    matrix either way, and checkpoint import concatenates the shards.
    """

    # Architecture (sos_spec 5.2).
    hidden_size: int = 512
    filter_size: int = 2048
    num_hidden_layers: int = 6
    num_encoder_layers: int = 0  # 0: num_hidden_layers
    num_decoder_layers: int = 0  # 0: num_hidden_layers
    num_heads: int = 8
    attention_key_channels: int = 0  # 0: hidden_size
    attention_value_channels: int = 0  # 0: hidden_size
    ffn_layer: str = "dense_relu_dense"
    self_attention_type: str = "dot_product"
    pos: str = "timing"
    norm_type: str = "layer"
    norm_epsilon: float = 1e-6
    layer_preprocess_sequence: str = "n"
    layer_postprocess_sequence: str = "da"
    layer_prepostprocess_dropout: float = 0.1
    layer_prepostprocess_dropout_broadcast_dims: str = ""
    attention_dropout: float = 0.1
    attention_dropout_broadcast_dims: str = ""
    relu_dropout: float = 0.1
    relu_dropout_broadcast_dims: str = ""
    multiply_embedding_mode: str = "sqrt_depth"
    shared_embedding_and_softmax_weights: bool = True
    symbol_modality_num_shards: int = 16
    causal_decoder_self_attention: bool = True
    use_target_space_embedding: bool = True
    use_pad_remover: bool = True
    split_heads: bool = False
    sparse_embedding: bool = True
    vocab_size: int = 33288
    target_space_id: int = 0
    initializer: str = "uniform_unit_scaling"
    initializer_gain: float = 1.0
    # Data and batching.
    batch_size: int = 4096
    max_length: int = 256
    # Loss and optimisation (sos_spec 5.4).
    label_smoothing: float = 0.1
    optimizer: str = "adam"
    optimizer_adam_beta1: float = 0.9
    optimizer_adam_beta2: float = 0.997
    optimizer_adam_epsilon: float = 1e-9
    learning_rate_schedule: str = "constant*linear_warmup*rsqrt_decay*rsqrt_hidden_size"
    learning_rate_constant: float = 2.0
    learning_rate_decay_scheme: str = "noam"  # read by the "legacy" schedule only
    learning_rate: float = 0.2
    learning_rate_warmup_steps: int = 8000
    clip_grad_norm: float = 0.0
    weight_decay: float = 0.0
    # Sparsity (sos_spec 3.2, 5.5).
    sparsity_technique: typing.Optional[str] = None
    log_alpha_threshold: float = 3.0
    dkl_weight_fn: str = "linear"
    dkl_weight: float = 1 / (4.5 * 10**6)
    clip_log_alpha: float = 8.0
    dkl_weight_start: int = 100_000
    dkl_weight_diff: int = 100_000
    l0_norm_weight: float = 1 / (4.5 * 10**6)
    l0_weight_start: int = 100_000
    l0_weight_diff: int = 100_000
    begin_pruning_step: int = 0
    end_pruning_step: int = 200_000
    pruning_frequency: int = 10_000
    target_sparsity: float = 0.9
    threshold_decay: float = 0.0
    nbins: int = 1024
    sparsity_function_exponent: float = 3.0
    embedding_sparsity: float = -1.0  # < 0: the embedding follows target_sparsity
    load_masks_from: str = ""
    load_weights_from: str = ""
    initial_sparsity: float = 0.0

    def __post_init__(self):
        validate(self)

    @property
    def encoder_layers(self):
        return self.num_encoder_layers or self.num_hidden_layers

    @property
    def decoder_layers(self):
        return self.num_decoder_layers or self.num_hidden_layers

    @property
    def key_depth(self):
        return self.attention_key_channels or self.hidden_size

    @property
    def value_depth(self):
        return self.attention_value_channels or self.hidden_size


def _fail(name, expected, value):
    raise ValueError(f"hparam `{name}` must be {expected}. Received: {name}={value!r}")


def _check_type(name, value, annotation):
    if annotation is bool:
        ok = isinstance(value, bool)
    elif annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif annotation is str:
        ok = isinstance(value, str)
    else:  # Optional[str]
        ok = value is None or isinstance(value, str)
    if not ok:
        _fail(name, f"of type {_type_name(annotation)}", value)


def _type_name(annotation):
    return "str or None" if annotation == typing.Optional[str] else annotation.__name__


def _broadcast_dims(name, value):
    if value.strip() == "":
        return
    if not all(part.strip().isdigit() for part in value.split(",")):
        _fail(name, 'a comma-separated list of axes such as "0,1" (or "")', value)


def validate(hparams):
    """Checks every field's type and range and the combinations the model relies on; returns `hparams`."""
    hints = typing.get_type_hints(HParams)
    for field in dataclasses.fields(hparams):
        _check_type(field.name, getattr(hparams, field.name), hints[field.name])
    h = hparams
    for name in ("hidden_size", "filter_size", "num_hidden_layers", "num_heads", "vocab_size",
                 "batch_size", "pruning_frequency", "symbol_modality_num_shards"):
        if getattr(h, name) < 1:
            _fail(name, "an integer >= 1", getattr(h, name))
    for name in ("num_encoder_layers", "num_decoder_layers", "attention_key_channels",
                 "attention_value_channels", "max_length", "learning_rate_warmup_steps",
                 "dkl_weight_start", "l0_weight_start", "begin_pruning_step", "target_space_id"):
        if getattr(h, name) < 0:
            _fail(name, "an integer >= 0", getattr(h, name))
    for name in ("dkl_weight_diff", "l0_weight_diff"):
        if getattr(h, name) < 1:
            _fail(name, "an integer >= 1 (the length of the penalty ramp)", getattr(h, name))
    if h.end_pruning_step <= h.begin_pruning_step:
        raise ValueError(
            "hparam `end_pruning_step` must be greater than `begin_pruning_step`. "
            f"Received: begin_pruning_step={h.begin_pruning_step}, "
            f"end_pruning_step={h.end_pruning_step}"
        )
    for name in ("layer_prepostprocess_dropout", "attention_dropout", "relu_dropout",
                 "label_smoothing", "target_sparsity", "initial_sparsity", "threshold_decay",
                 "optimizer_adam_beta1", "optimizer_adam_beta2"):
        if not 0.0 <= getattr(h, name) < 1.0:
            _fail(name, "a number in [0, 1)", getattr(h, name))
    if h.embedding_sparsity >= 1.0:
        _fail("embedding_sparsity", "a number in [0, 1), or negative to follow target_sparsity",
              h.embedding_sparsity)
    for name in ("norm_epsilon", "optimizer_adam_epsilon", "initializer_gain",
                 "sparsity_function_exponent"):
        if getattr(h, name) <= 0:
            _fail(name, "a number > 0", getattr(h, name))
    for name in ("dkl_weight", "l0_norm_weight", "clip_log_alpha", "clip_grad_norm",
                 "weight_decay", "learning_rate", "learning_rate_constant"):
        if getattr(h, name) < 0:
            _fail(name, "a number >= 0", getattr(h, name))
    choices = {
        "sparsity_technique": (None,) + TECHNIQUES,
        "dkl_weight_fn": PENALTY_FUNCTIONS,
        "layer_preprocess_sequence": PREPROCESS_SEQUENCES,
        "layer_postprocess_sequence": POSTPROCESS_SEQUENCES,
        "optimizer": OPTIMIZERS,
        "ffn_layer": ("dense_relu_dense",),
        "self_attention_type": ("dot_product",),
        "pos": ("timing",),
        "norm_type": ("layer",),
        "multiply_embedding_mode": ("sqrt_depth",),
        "initializer": ("uniform_unit_scaling",),
    }
    for name, allowed in choices.items():
        if getattr(h, name) not in allowed:
            _fail(name, f"one of {list(allowed)}", getattr(h, name))
    for name in ("layer_prepostprocess_dropout_broadcast_dims", "attention_dropout_broadcast_dims",
                 "relu_dropout_broadcast_dims"):
        _broadcast_dims(name, getattr(h, name))
    if h.hidden_size % h.num_heads or h.key_depth % h.num_heads or h.value_depth % h.num_heads:
        raise ValueError(
            "hparams `hidden_size` and the attention key/value channels must be divisible by "
            f"`num_heads`. Received: hidden_size={h.hidden_size}, "
            f"attention_key_channels={h.attention_key_channels}, "
            f"attention_value_channels={h.attention_value_channels}, num_heads={h.num_heads}"
        )
    if not h.shared_embedding_and_softmax_weights:
        # The original asserts it whenever a technique is on; every set of the paper shares.
        _fail("shared_embedding_and_softmax_weights", "True (one embedding/softmax matrix)", False)
    if not h.causal_decoder_self_attention:
        _fail("causal_decoder_self_attention", "True (autoregressive decoding)", False)
    return hparams


# --- The registered sets -------------------------------------------------------------------------

def sparse_transformer_base_v1():
    """T2T basic_params1 + the original's v1 changes: post-norm, no attention/ReLU dropout."""
    return HParams(
        layer_preprocess_sequence="none",
        layer_postprocess_sequence="dan",
        layer_prepostprocess_dropout=0.1,
        attention_dropout=0.0,
        relu_dropout=0.0,
        learning_rate_schedule="legacy",
        learning_rate=0.1,
        learning_rate_constant=1.0,
        learning_rate_warmup_steps=4000,
        optimizer_adam_beta2=0.98,
    )


def sparse_transformer_base_v2():
    """Pre-norm residual blocks with 0.1 dropout everywhere, warmup 8000."""
    return dataclasses.replace(
        sparse_transformer_base_v1(),
        layer_preprocess_sequence="n",
        layer_postprocess_sequence="da",
        layer_prepostprocess_dropout=0.1,
        attention_dropout=0.1,
        relu_dropout=0.1,
        learning_rate_warmup_steps=8000,
        learning_rate=0.2,
    )


def sparse_transformer_base_v3():
    """Adam beta2 0.997 and the constant*linear_warmup*rsqrt_decay*rsqrt_hidden_size schedule."""
    return dataclasses.replace(
        sparse_transformer_base_v2(),
        optimizer_adam_beta2=0.997,
        learning_rate_schedule="constant*linear_warmup*rsqrt_decay*rsqrt_hidden_size",
        learning_rate_constant=2.0,
    )


def sparse_transformer_base():
    """Transformer-base of the paper (sos_spec 5.1, = v3)."""
    return sparse_transformer_base_v3()


def sparse_transformer_tiny():
    """2 layers, hidden 128, filter 512, 4 heads."""
    return dataclasses.replace(
        sparse_transformer_base(), num_hidden_layers=2, hidden_size=128, filter_size=512,
        num_heads=4,
    )


def _with_technique(base, technique, **changes):
    return lambda: dataclasses.replace(base(), sparsity_technique=technique, **changes)


def _for_tpu(base):
    """The original's update_hparams_for_tpu: Adafactor, rsqrt decay, length 64, broadcast dropout."""
    return lambda: dataclasses.replace(
        base(),
        optimizer="adafactor",
        learning_rate_schedule="rsqrt_decay",
        learning_rate_warmup_steps=10000,
        symbol_modality_num_shards=1,
        max_length=64,
        batch_size=2048,
        attention_dropout_broadcast_dims="0,1",
        relu_dropout_broadcast_dims="1",
        layer_prepostprocess_dropout_broadcast_dims="1",
    )


def _paper_set(technique, batch_size=2048, **changes):
    """The technique sets of the paper: base + one shard, max_length 64, batch 2048."""
    return _with_technique(
        sparse_transformer_base, technique, symbol_modality_num_shards=1, max_length=64,
        batch_size=batch_size, **changes,
    )


def sparse_transformer_micro():
    """Not in the original: a seconds-per-run model for tests and smoke runs."""
    return dataclasses.replace(
        sparse_transformer_base(), num_hidden_layers=2, hidden_size=16, filter_size=32,
        num_heads=2, symbol_modality_num_shards=1, max_length=32, batch_size=256,
    )


HPARAMS_SETS = {
    "sparse_transformer_base_v1": sparse_transformer_base_v1,
    "sparse_transformer_base_v2": sparse_transformer_base_v2,
    "sparse_transformer_base_v3": sparse_transformer_base_v3,
    "sparse_transformer_base": sparse_transformer_base,
    "sparse_transformer_tiny": sparse_transformer_tiny,
    "sparse_transformer_tiny_variational_dropout": _with_technique(
        sparse_transformer_tiny, "variational_dropout"),
    "sparse_transformer_tiny_l0_regularization": _with_technique(
        sparse_transformer_tiny, "l0_regularization"),
    "sparse_transformer_tiny_magnitude_pruning": _with_technique(
        sparse_transformer_tiny, "magnitude_pruning"),
    "sparse_transformer_tiny_shmp": _with_technique(
        sparse_transformer_tiny, "magnitude_pruning", split_heads=True),
    "sparse_transformer_tiny_random_pruning": _with_technique(
        sparse_transformer_tiny, "random_pruning"),
    "sparse_transformer_tpu": _for_tpu(sparse_transformer_base),
    "sparse_transformer_tiny_tpu": _for_tpu(sparse_transformer_tiny),
    "sparse_transformer_magnitude_pruning_tpu": _paper_set("magnitude_pruning"),
    "sparse_transformer_random_pruning_tpu": _paper_set("random_pruning"),
    "sparse_transformer_variational_dropout_tpu": _paper_set("variational_dropout"),
    "sparse_transformer_l0_regularization_tpu": _paper_set("l0_regularization"),
    # "mpfc": magnitude pruning of the fully connected layers only (embedding dense).
    "sparse_transformer_mpfc_tpu": _paper_set(
        "magnitude_pruning", batch_size=4096, sparse_embedding=False),
    "sparse_transformer_mpfc_2k_tpu": _paper_set(
        "magnitude_pruning", batch_size=2048, sparse_embedding=False),
    "sparse_transformer_split_head_mpfc_tpu": _paper_set(
        "magnitude_pruning", batch_size=4096, sparse_embedding=False, split_heads=True),
    "sparse_transformer_magnitude_pruning_4k_tpu": _paper_set(
        "magnitude_pruning", batch_size=4096),
    "sparse_transformer_split_head_magnitude_pruning_4k_tpu": _paper_set(
        "magnitude_pruning", batch_size=4096, split_heads=True),
    "sparse_transformer_micro": sparse_transformer_micro,
}


def get_hparams(name):
    """The registered set `name` (a fresh, validated `HParams`)."""
    if name not in HPARAMS_SETS:
        raise ValueError(
            f"Unknown hparams set. Expected one of {sorted(HPARAMS_SETS)}. "
            f"Received: hparams_set={name!r}"
        )
    return HPARAMS_SETS[name]()


# --- T2T's --hparams override string -------------------------------------------------------------

_TRUE, _FALSE = ("true", "1"), ("false", "0")


def _parse_value(name, text, annotation):
    text = text.strip()
    try:
        if annotation is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if annotation is int:
            return int(text)
        if annotation is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
    except ValueError:
        raise ValueError(
            f"hparam `{name}` must be of type {_type_name(annotation)}. "
            f"Received: {name}={text!r}"
        ) from None
    if annotation is str:
        return text
    return None if text.lower() in ("", "none") else text  # Optional[str]


def parse_overrides(hparams, overrides):
    """`hparams` with T2T-style `"name=value,name=value"` overrides applied and validated.

    Values are parsed by the field's type (int, float, bool as true/false/1/0,
    str; "none" clears `sparsity_technique`). Unknown names, duplicates,
    malformed items and values of the wrong type raise a ValueError that names
    the offending hparam.
    """
    if not overrides or not overrides.strip():
        return hparams
    hints = typing.get_type_hints(HParams)
    changes = {}
    for item in overrides.split(","):
        if not item.strip():
            continue
        name, separator, text = item.partition("=")
        name = name.strip()
        if not separator or not name:
            raise ValueError(
                "Each hparams override must look like `name=value`. "
                f"Received: {item!r} in overrides={overrides!r}"
            )
        if name not in hints:
            close = difflib.get_close_matches(name, hints, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(f"Unknown hparam {name!r} in overrides={overrides!r}.{hint}")
        if name in changes:
            raise ValueError(f"hparam {name!r} is set twice in overrides={overrides!r}")
        changes[name] = _parse_value(name, text, hints[name])
    return dataclasses.replace(hparams, **changes)
