"""Encoder and decoder layers of the sparse Transformer: attention and FFN sub-blocks with T2T's pre/post-processing."""

import keras

from state_of_sparsity.sparse_transformer import attention


def _residual_dropout(hparams, name):
    noise_shape = attention.broadcast_noise_shape(
        hparams.layer_prepostprocess_dropout_broadcast_dims, 3
    )
    return keras.layers.Dropout(
        hparams.layer_prepostprocess_dropout, noise_shape=noise_shape, name=name
    )


class FeedForward(keras.layers.Layer):
    """T2T's dense_relu_dense: conv1 (ReLU, bias), ReLU dropout, conv2 (bias).

    Args:
      hparams: `HParams` (filter_size, hidden_size, relu_dropout and its broadcast dims).
      make_dense: `(units, name, use_bias, activation) -> layer`.
      name: prefix of the sublayers (`<name>_conv1`, `<name>_conv2`).
    """

    def __init__(self, hparams, make_dense, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = make_dense(hparams.filter_size, f"{self.name}_conv1", True, "relu")
        self.dropout = keras.layers.Dropout(
            hparams.relu_dropout,
            noise_shape=attention.broadcast_noise_shape(hparams.relu_dropout_broadcast_dims, 3),
            name=f"{self.name}_relu_dropout",
        )
        self.conv2 = make_dense(hparams.hidden_size, f"{self.name}_conv2", True, None)
        self.filter_size = hparams.filter_size

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.conv1.build(input_shape)
        self.conv2.build(input_shape[:-1] + (self.filter_size,))

    def call(self, x, training=None):
        return self.conv2(self.dropout(self.conv1(x), training=training))


class _Block(keras.layers.Layer):
    """T2T's layer pre/post-processing around each sub-block.

    Preprocess "n" normalises the sub-block's input ("none": identity);
    postprocess "da" adds dropout(output) to the input, "dan" then normalises.
    """

    def __init__(self, hparams, **kwargs):
        super().__init__(**kwargs)
        self.pre_norm = hparams.layer_preprocess_sequence == "n"
        self.post_norm = hparams.layer_postprocess_sequence == "dan"
        self.residual_dropout = _residual_dropout(hparams, f"{self.name}_residual_dropout")

    def _norm(self, hparams, sub_block):
        # T2T scope <layer>/<sub_block>/layer_prepostprocess/layer_norm.
        return keras.layers.LayerNormalization(
            epsilon=hparams.norm_epsilon, name=f"{self.name}_{sub_block}_layer_norm"
        )

    def _preprocess(self, x, norm):
        return norm(x) if self.pre_norm else x

    def _postprocess(self, x, y, norm, training):
        x = x + self.residual_dropout(y, training=training)
        return norm(x) if self.post_norm else x


class EncoderLayer(_Block):
    """Self-attention then FFN, each wrapped in T2T's layer pre/post-processing.

    Args:
      hparams: `HParams`.
      make_dense: `(units, name, use_bias=False, activation=None) -> layer`.
      name: e.g. "encoder_layer_0"; sublayers are `<name>_self_attention_q`, `<name>_ffn_conv1`, ...
    """

    def __init__(self, hparams, make_dense, **kwargs):
        super().__init__(hparams, **kwargs)
        self.self_attention = _attention(hparams, make_dense, f"{self.name}_self_attention")
        self.self_attention_norm = self._norm(hparams, "self_attention")
        self.ffn = FeedForward(hparams, make_dense, name=f"{self.name}_ffn")
        self.ffn_norm = self._norm(hparams, "ffn")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        for layer in (self.self_attention, self.self_attention_norm, self.ffn, self.ffn_norm):
            layer.build(input_shape)

    def call(self, x, bias, training=None):
        y = self.self_attention(self._preprocess(x, self.self_attention_norm), bias=bias,
                                training=training)
        x = self._postprocess(x, y, self.self_attention_norm, training)
        y = self.ffn(self._preprocess(x, self.ffn_norm), training=training)
        return self._postprocess(x, y, self.ffn_norm, training)


class DecoderLayer(_Block):
    """Causal self-attention, encoder-decoder attention, FFN; plus a cached one-position step for decoding.

    Args:
      hparams: `HParams`.
      make_dense: `(units, name, use_bias=False, activation=None) -> layer`.
      name: e.g. "decoder_layer_0"; sublayers are `<name>_self_attention_q`,
        `<name>_encdec_attention_k`, `<name>_ffn_conv2`, ...
    """

    def __init__(self, hparams, make_dense, **kwargs):
        super().__init__(hparams, **kwargs)
        self.self_attention = _attention(hparams, make_dense, f"{self.name}_self_attention")
        self.self_attention_norm = self._norm(hparams, "self_attention")
        self.encdec_attention = _attention(hparams, make_dense, f"{self.name}_encdec_attention")
        self.encdec_attention_norm = self._norm(hparams, "encdec_attention")
        self.ffn = FeedForward(hparams, make_dense, name=f"{self.name}_ffn")
        self.ffn_norm = self._norm(hparams, "ffn")

    def build(self, input_shape, encoder_output_shape=None):
        input_shape = tuple(input_shape)
        memory_shape = input_shape if encoder_output_shape is None else tuple(encoder_output_shape)
        self.self_attention.build(input_shape)
        self.encdec_attention.build(input_shape, memory_shape)
        for layer in (self.self_attention_norm, self.encdec_attention_norm, self.ffn,
                      self.ffn_norm):
            layer.build(input_shape)

    def call(self, x, encoder_output, self_attention_bias, encoder_decoder_bias, training=None):
        y = self.self_attention(self._preprocess(x, self.self_attention_norm),
                                bias=self_attention_bias, training=training)
        x = self._postprocess(x, y, self.self_attention_norm, training)
        y = self.encdec_attention(self._preprocess(x, self.encdec_attention_norm),
                                  encoder_output, bias=encoder_decoder_bias, training=training)
        x = self._postprocess(x, y, self.encdec_attention_norm, training)
        y = self.ffn(self._preprocess(x, self.ffn_norm), training=training)
        return self._postprocess(x, y, self.ffn_norm, training)

    def call_cached(self, x, cache, encoder_decoder_bias, step):
        """Decodes position `step` ([B, 1, D]) at inference; returns (output, updated layer cache).

        `cache` holds "k"/"v" ([B, H, T, d], this layer's self-attention keys and
        values so far) and "k_encdec"/"v_encdec" (the encoder output projected once).
        """
        y, keys, values = self.self_attention.call_cached(
            self._preprocess(x, self.self_attention_norm), cache["k"], cache["v"], step
        )
        x = self._postprocess(x, y, self.self_attention_norm, training=False)
        y = self.encdec_attention.attend(
            self._preprocess(x, self.encdec_attention_norm), cache["k_encdec"],
            cache["v_encdec"], encoder_decoder_bias,
        )
        x = self._postprocess(x, y, self.encdec_attention_norm, training=False)
        y = self.ffn(self._preprocess(x, self.ffn_norm), training=False)
        x = self._postprocess(x, y, self.ffn_norm, training=False)
        return x, {**cache, "k": keys, "v": values}


def _attention(hparams, make_dense, name):
    return attention.MultiHeadAttention(
        key_depth=hparams.key_depth,
        value_depth=hparams.value_depth,
        output_depth=hparams.hidden_size,
        num_heads=hparams.num_heads,
        dropout_rate=hparams.attention_dropout,
        make_dense=lambda units, layer_name: make_dense(units, layer_name, False, None),
        dropout_broadcast_dims=hparams.attention_dropout_broadcast_dims,
        split_heads=hparams.split_heads,
        name=name,
    )
