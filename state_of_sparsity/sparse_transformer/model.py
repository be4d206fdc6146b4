"""The sparse Transformer of the paper (sos_spec 5.2, 5.3) as a subclassed Keras model, with cached decoding steps."""

import dataclasses
import functools
import re

import keras
from keras import ops

from state_of_sparsity.layers import penalized
from state_of_sparsity.sparse_transformer import attention
from state_of_sparsity.sparse_transformer import hparams as hparams_lib
from state_of_sparsity.sparse_transformer import techniques
from state_of_sparsity.sparse_transformer import timing
from state_of_sparsity.sparse_transformer import transformer_layers

PAD_ID = 0  # also the start-of-sequence id of decoding
EOS_ID = 1
PACKED_KEYS = ("inputs_segmentation", "inputs_position", "targets_segmentation", "targets_position")
# The original's target-space embedding has one row per T2T SpaceID.
NUM_TARGET_SPACES = 32


def shift_right(targets, segmentation=None):
    """Decoder input ids: `targets` shifted one position right, restarting with 0 in every packed segment.

    T2T shifts the whole packed row, so the first token of a segment sees the
    last token of the previous one; restarting per segment makes a packed
    example decode exactly as it would alone.
    """
    shifted = ops.pad(targets[:, :-1], [(0, 0), (1, 0)])
    if segmentation is None:
        return shifted
    previous_segment = ops.pad(segmentation[:, :-1], [(0, 0), (1, 0)])
    return ops.where(ops.equal(segmentation, previous_segment), shifted, ops.zeros_like(shifted))


@keras.saving.register_keras_serializable(package="state_of_sparsity")
class SparseTransformer(keras.Model):
    """Transformer encoder-decoder whose every matmul is sparsified by the hparams' technique.

    Pre-norm (or post-norm for `*_v1`) residual blocks, one embedding matrix
    shared by the source lookup, the target lookup and the softmax (sparse
    through the same technique, its VD/L0 penalty added once per step),
    embeddings x sqrt(hidden) with padding rows zeroed, the T2T target-space
    embedding, sinusoidal timing at the given (packed) positions, and
    block-diagonal attention for packed batches.

    Layer names are the original's TF1 variable scopes with "/" replaced by
    "_" (Keras names cannot hold "/") and T2T's fixed inner scopes
    `multihead_attention` and `layer_prepostprocess` dropped, e.g.
    `encoder_layer_0_self_attention_q`, `decoder_layer_1_ffn_conv2`,
    `encoder_layer_0_ffn_layer_norm`, `decoder_layer_norm`; the embedding is
    `shared_embedding`. `original_scope` maps a name back.

    Args:
      hparams: an `HParams` (see `hparams.get_hparams`).
      seed: seed of random pruning's masks.

    Call arguments:
      features: dict with `inputs` and `targets`, [B, L] integer ids (0 = pad), and
        for packed batches all of `inputs_segmentation`, `inputs_position`,
        `targets_segmentation`, `targets_position` ([B, L] integers, segment 0 = pad).
      training: dropout and VD/L0 sampling on, penalty added to `model.losses`.

    Returns:
      Logits [B, L_targets, vocab_size], float32.

    Example:
    ```python
    model = SparseTransformer(get_hparams("sparse_transformer_tiny_magnitude_pruning"))
    logits = model({"inputs": np.array([[5, 6, 1]]), "targets": np.array([[7, 1]])})
    ```
    """

    def __init__(self, hparams, seed=0, **kwargs):
        kwargs.setdefault("name", "sparse_transformer")
        super().__init__(**kwargs)
        if not isinstance(hparams, hparams_lib.HParams):
            raise ValueError(
                "`hparams` must be an HParams (e.g. get_hparams('sparse_transformer_base')). "
                f"Received: hparams={hparams!r}"
            )
        self.hparams = hparams
        self.seed = seed
        make_dense = functools.partial(_make_dense, hparams, seed)
        self.shared_embedding = techniques.embedding(hparams, seed)
        self.target_space_embedding = None
        if hparams.use_target_space_embedding:
            self.target_space_embedding = keras.layers.Embedding(
                NUM_TARGET_SPACES, hparams.hidden_size,
                embeddings_initializer=techniques.kernel_initializer(hparams),
                name="target_space_embedding",
            )
        self.encoder_input_dropout = keras.layers.Dropout(
            hparams.layer_prepostprocess_dropout, name="encoder_input_dropout"
        )
        self.decoder_input_dropout = keras.layers.Dropout(
            hparams.layer_prepostprocess_dropout, name="decoder_input_dropout"
        )
        self.encoder_layers = [
            transformer_layers.EncoderLayer(hparams, make_dense, name=f"encoder_layer_{index}")
            for index in range(hparams.encoder_layers)
        ]
        self.decoder_layers = [
            transformer_layers.DecoderLayer(hparams, make_dense, name=f"decoder_layer_{index}")
            for index in range(hparams.decoder_layers)
        ]
        # Also one attribute per layer: tf.train.Checkpoint does not follow Keras' tracked lists.
        for layer in self.encoder_layers + self.decoder_layers:
            setattr(self, f"_{layer.name}", layer)
        # T2T ends each stack with layer_preprocess: a norm for pre-norm models only.
        self.encoder_norm = self.decoder_norm = None
        if hparams.layer_preprocess_sequence == "n":
            self.encoder_norm = keras.layers.LayerNormalization(
                epsilon=hparams.norm_epsilon, name="encoder_layer_norm"
            )
            self.decoder_norm = keras.layers.LayerNormalization(
                epsilon=hparams.norm_epsilon, name="decoder_layer_norm"
            )

    def build(self, input_shape=None):
        """Creates every variable (the input shape does not matter: weights depend on hparams only)."""
        del input_shape
        sequence = (None, None, self.hparams.hidden_size)
        self.shared_embedding.build((None, None))
        if self.target_space_embedding is not None:
            self.target_space_embedding.build((None,))
        for layer in self.encoder_layers:
            layer.build(sequence)
        for layer in self.decoder_layers:
            layer.build(sequence, sequence)
        for norm in (self.encoder_norm, self.decoder_norm):
            if norm is not None:
                norm.build(sequence)

    # --- full (teacher-forced) forward pass ---------------------------------------------------

    def call(self, features, training=None):
        inputs, targets, packed = _check_features(features)
        input_segmentation = packed.get("inputs_segmentation")
        target_segmentation = packed.get("targets_segmentation")
        encoder_output = self._encode(
            inputs, input_segmentation, packed.get("inputs_position"), training
        )
        if target_segmentation is None:
            encdec_bias = attention.padding_bias(inputs, PAD_ID)
        else:
            encdec_bias = attention.segment_bias(target_segmentation, input_segmentation)
        decoder_output = self._decode(
            targets, encoder_output, encdec_bias, target_segmentation,
            packed.get("targets_position"), training,
        )
        logits = self.shared_embedding(decoder_output, training=training, mode="logits")
        if training and isinstance(
            getattr(self.shared_embedding, "technique", None), penalized.PenalizedTechnique
        ):
            # Once per step however often the shared matrix was used (sos_spec 5.5).
            self.add_loss(self.shared_embedding.penalty_loss())
        return ops.cast(logits, "float32")

    def _embed(self, ids, training):
        """Shared-matrix lookup x sqrt(hidden), padding positions zeroed (the original's bottom)."""
        x = self.shared_embedding(ids, training=training)
        x = x * ops.cast(self.hparams.hidden_size**0.5, x.dtype)
        return x * ops.expand_dims(ops.cast(ops.not_equal(ids, PAD_ID), x.dtype), -1)

    def _add_timing(self, x, positions):
        signal = timing.timing_signal(positions, self.hparams.hidden_size)
        return x + ops.cast(signal, x.dtype)

    def _encode(self, inputs, segmentation, positions, training):
        x = self._embed(inputs, training)
        if segmentation is None:
            self_bias = attention.padding_bias(inputs, PAD_ID)
        else:
            self_bias = attention.segment_bias(segmentation, segmentation)
        if self.target_space_embedding is not None:
            space = self.target_space_embedding(
                ops.convert_to_tensor([self.hparams.target_space_id], "int32")
            )
            x = x + ops.cast(ops.reshape(space, (1, 1, -1)), x.dtype)
        if positions is None:
            positions = ops.expand_dims(ops.arange(ops.shape(inputs)[1]), 0)
        x = self.encoder_input_dropout(self._add_timing(x, positions), training=training)
        for layer in self.encoder_layers:
            x = layer(x, self_bias, training=training)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return x

    def _decode(self, targets, encoder_output, encdec_bias, segmentation, positions, training):
        x = self._embed(shift_right(targets, segmentation), training)
        self_bias = attention.causal_bias(ops.shape(targets)[1])
        if segmentation is not None:
            self_bias = self_bias + attention.segment_bias(segmentation, segmentation)
        if positions is None:
            positions = ops.expand_dims(ops.arange(ops.shape(targets)[1]), 0)
        x = self.decoder_input_dropout(self._add_timing(x, positions), training=training)
        for layer in self.decoder_layers:
            x = layer(x, encoder_output, self_bias, encdec_bias, training=training)
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        return x

    # --- incremental decoding -----------------------------------------------------------------

    def encode(self, inputs, training=False):
        """Encoder output [B, L, hidden] and encoder-decoder bias [B, 1, 1, L] of (unpacked) source ids [B, L]."""
        inputs = _check_ids("inputs", inputs)
        encoder_output = self._encode(inputs, None, None, training)
        return encoder_output, attention.padding_bias(inputs, PAD_ID)

    def initial_cache(self, encoder_output, encoder_decoder_bias, max_length):
        """The decoding state of `encode`'s output, for up to `max_length` decoded positions.

        Per decoder layer: zeroed self-attention keys/values ("k", "v":
        [B, heads, max_length, depth / heads]) and the encoder-decoder keys/values
        ("k_encdec", "v_encdec"), projected once here.
        """
        batch = ops.shape(encoder_output)[0]
        heads = self.hparams.num_heads
        cache = {"encoder_decoder_bias": encoder_decoder_bias}
        for index, layer in enumerate(self.decoder_layers):
            keys, values = layer.encdec_attention.project_memory(encoder_output)
            cache[f"layer_{index}"] = {
                "k": ops.zeros((batch, heads, max_length, self.hparams.key_depth // heads),
                               keys.dtype),
                "v": ops.zeros((batch, heads, max_length, self.hparams.value_depth // heads),
                               values.dtype),
                "k_encdec": keys,
                "v_encdec": values,
            }
        return cache

    def decode_step(self, ids, cache, step):
        """Logits [B, vocab] (float32) for position `step`, given the previous ids [B] (0 at step 0).

        Returns (logits, cache with this position's keys/values written). Equal
        to the full forward pass at that position, without recomputing the prefix.
        """
        x = self._embed(ops.expand_dims(ids, 1), training=False)
        x = self._add_timing(x, ops.reshape(step, (1, 1)))
        cache = dict(cache)
        for index, layer in enumerate(self.decoder_layers):
            x, cache[f"layer_{index}"] = layer.call_cached(
                x, cache[f"layer_{index}"], cache["encoder_decoder_bias"], step
            )
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        logits = self.shared_embedding(x, training=False, mode="logits")
        return ops.cast(logits[:, 0], "float32"), cache

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "hparams": dataclasses.asdict(self.hparams),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        hparams = hparams_lib.HParams(**config.pop("hparams"))
        return cls(hparams, **config)


def _make_dense(hparams, seed, units, name, use_bias=False, activation=None):
    return techniques.dense(hparams, units, name, use_bias, activation, seed=seed)


def _check_ids(name, ids):
    ids = ops.convert_to_tensor(ids)
    dtype = keras.backend.standardize_dtype(ids.dtype)
    if len(ids.shape) != 2 or "int" not in dtype:
        raise ValueError(
            f"Feature `{name}` must be integer ids of shape (batch, length). "
            f"Received: {name} with shape={tuple(ids.shape)}, dtype={dtype}"
        )
    return ids


def _check_features(features):
    if not isinstance(features, dict) or "inputs" not in features or "targets" not in features:
        keys = sorted(features) if isinstance(features, dict) else type(features).__name__
        raise ValueError(
            "SparseTransformer expects a dict with `inputs` and `targets` (and, when packed, "
            f"all of {list(PACKED_KEYS)}). Received: {keys}"
        )
    inputs = _check_ids("inputs", features["inputs"])
    targets = _check_ids("targets", features["targets"])
    present = [key for key in PACKED_KEYS if key in features]
    if present and len(present) != len(PACKED_KEYS):
        missing = sorted(set(PACKED_KEYS) - set(present))
        raise ValueError(
            f"A packed batch needs all of {list(PACKED_KEYS)}. Received {present}; "
            f"add {missing} or drop the packed features."
        )
    packed = {key: _check_ids(key, features[key]) for key in present}
    return inputs, targets, packed


_SCOPE_RULES = (
    (r"^(encoder|decoder)_layer_norm$", r"body/\1/layer_prepostprocess/layer_norm"),
    (r"^(encoder|decoder)_layer_(\d+)_(self_attention|encdec_attention|ffn)_layer_norm$",
     r"body/\1/layer_\2/\3/layer_prepostprocess/layer_norm"),
    (r"^(encoder|decoder)_layer_(\d+)_(self_attention|encdec_attention)_"
     r"(q|k|v|output_transform|[qkv]_shard_\d+)$",
     r"body/\1/layer_\2/\3/multihead_attention/\4"),
    (r"^(encoder|decoder)_layer_(\d+)_ffn_(conv1|conv2)$", r"body/\1/layer_\2/ffn/\3"),
    (r"^target_space_embedding$", "body/target_space_embedding"),
)


def original_scope(layer_name, hparams):
    """The original's TF1 variable scope of a layer (below the `sparse_transformer/` model scope).

    Variables inside it follow the technique: dense `kernel`/`bias`; pruned
    `fully_connected/weights`, `biases`, `mask`, `threshold`; VD `kernel` +
    `log_sigma2`; L0 `kernel` + `log_alpha` (sos_spec 4.2). The embedding
    scope holds `weights_<shard>` (concatenated along the vocabulary), with
    `mask`/`threshold` for pruning and `weights_<shard>_aux` (log_sigma2 or
    log_alpha) for VD/L0. Layer norms hold `layer_norm_scale`/`layer_norm_bias`
    (Keras gamma/beta), the target-space embedding `kernel`.
    """
    if layer_name == techniques.EMBEDDING_NAME:
        return f"symbol_modality_{hparams.vocab_size}_{hparams.hidden_size}/shared"
    for pattern, replacement in _SCOPE_RULES:
        if re.match(pattern, layer_name):
            return re.sub(pattern, replacement, layer_name)
    raise ValueError(
        f"Layer name {layer_name!r} is not a layer of SparseTransformer with an original "
        "variable scope (dropout layers have none)."
    )
