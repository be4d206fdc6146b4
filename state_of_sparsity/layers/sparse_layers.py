"""Keras 3 layers whose weight is made sparse by a pluggable technique.

Each class is the standard Keras layer (same arguments, same weights, same
maths) plus one `technique` argument; the technique owns the extra variables
and decides the effective weight. So every technique works with every op
without one class per (technique, op) pair.
"""

import keras
from keras import ops

from state_of_sparsity.layers import technique as technique_lib

_PACKAGE = "state_of_sparsity"


def own_variables(layer):
    """The layer's own variables, without those of nested layers (whose names repeat).

    Keras keeps no public accessor for this; `layer.weights` includes sublayers.
    """
    return layer._trainable_variables + layer._non_trainable_variables


class SparseLayerMixin:
    """Adds a sparsity technique to a Keras layer with one main weight.

    Subclasses set `weight_attribute` (the Keras attribute holding the weight,
    e.g. "kernel" or "embeddings") and implement `_op(inputs, weight)` and
    `_epilogue(outputs)` (bias and activation).

    Variables are saved by name (`kernel`, `mask`, ...) in `.keras` and
    `.weights.h5` files, rather than by position as Keras does, so
    `checkpoint_sparsity` can find them without rebuilding the model.
    """

    weight_attribute = "kernel"
    # True when the op gathers rows of the weight (Embedding) instead of mixing inputs.
    is_lookup = False

    def __init__(self, *args, technique="magnitude_pruning", **kwargs):
        super().__init__(*args, **kwargs)
        self.technique = technique_lib.get(technique)

    @property
    def sparse_weight(self):
        """The raw (dense) weight variable that the technique sparsifies."""
        private = getattr(self, "_" + self.weight_attribute, None)
        return private if private is not None else getattr(self, self.weight_attribute)

    def build(self, input_shape):
        super().build(input_shape)
        if getattr(self, "quantization_mode", None):
            raise ValueError(
                f"Layer '{self.name}': sparse layers do not support quantization. "
                f"Received: quantization_mode={self.quantization_mode!r}"
            )
        self.technique.build(self, self.sparse_weight)

    def call(self, inputs, training=None):
        outputs = self.technique.apply(
            self, self._op, inputs, self.sparse_weight, training
        )
        return self._epilogue(outputs)

    def _epilogue(self, outputs):
        if getattr(self, "bias", None) is not None:
            outputs = ops.add(outputs, self.bias)
        if getattr(self, "activation", None) is not None:
            outputs = self.activation(outputs)
        return outputs

    def _variance_op(self, inputs, variance):
        """The op applied to squared inputs and a per-weight variance (for the LRT), in float32."""
        return self._op(ops.square(ops.cast(inputs, variance.dtype)), variance)

    def _noise_shape(self, outputs):
        """Shape of the LRT noise: one value per output element unless a layer shares it."""
        return ops.shape(outputs)

    def nonzeros_and_size(self):
        """(kept weights at evaluation, total weights) of the sparsified weight."""
        return self.technique.nonzeros(self), int(ops.size(self.sparse_weight))

    def get_config(self):
        config = super().get_config()
        config["technique"] = keras.saving.serialize_keras_object(self.technique)
        return config

    def save_own_variables(self, store):
        if not self.built:
            return
        for name, variable in self._variables_by_name().items():
            store[name] = variable

    def load_own_variables(self, store):
        for name, variable in self._variables_by_name().items():
            if name not in store:
                raise ValueError(
                    f"Layer '{self.name}': the saved file has no variable "
                    f"'{name}'. It holds {sorted(store.keys())}; was it "
                    "saved from a model with the same sparsity technique?"
                )
            variable.assign(store[name])

    def _variables_by_name(self):
        variables = {variable.name: variable for variable in own_variables(self)}
        # The technique's RNG state too (Keras saves no seed generator), so a
        # run resumed from a .keras / .weights.h5 backup draws the same noise.
        seed_generator = getattr(self, "sparsity_seed_generator", None)
        if seed_generator is not None:
            variables["sparsity_seed_state"] = seed_generator.state
        return variables


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparseDense(SparseLayerMixin, keras.layers.Dense):
    """`keras.layers.Dense` with a sparse kernel.

    Args:
      units, activation, use_bias, ...: as `keras.layers.Dense`.
      technique: a technique name ("magnitude_pruning", "random_pruning") or
        instance, e.g. `MagnitudePruning(PolynomialDecay(0.9, 0, 1000, 100))`.

    Example:
    ```python
    layer = SparseDense(10, technique="magnitude_pruning")
    y = layer(np.ones((2, 4)))
    ```
    """

    def _op(self, inputs, kernel):
        return ops.matmul(inputs, kernel)

    def _noise_shape(self, outputs):
        # Rank >= 3 (e.g. [batch, length, units]): one noise value per example
        # and unit, shared by every position, as the original's broadcast matmul.
        shape = ops.shape(outputs)
        return (shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparseEinsumDense(SparseLayerMixin, keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` (attention projections) with a sparse kernel.

    Args:
      equation, output_shape, bias_axes, ...: as `keras.layers.EinsumDense`.
      technique: technique name or instance, as for `SparseDense`.
    """

    def _op(self, inputs, kernel):
        return ops.einsum(self.equation, inputs, kernel)

    def _noise_shape(self, outputs):
        # Like rank-3 Dense: output axes that come from the input only (not the
        # batch axis, not kernel axes) are sequence axes and share the noise.
        _, rest = self.equation.replace(" ", "").split(",")
        kernel_spec, output_spec = rest.split("->")
        shape = ops.shape(outputs)
        labels = list(output_spec.replace("...", "." * (len(shape) - len(output_spec) + 3)))
        return tuple(
            size if index == 0 or label in kernel_spec else 1
            for index, (label, size) in enumerate(zip(labels, shape))
        )


class _SparseConvMixin(SparseLayerMixin):
    """Bias and activation of Keras convolutions, shared by the conv variants."""

    def _epilogue(self, outputs):
        if self.use_bias:
            channels = self.bias.shape[0]
            if self.data_format == "channels_last":
                bias_shape = (1,) * (self.rank + 1) + (channels,)
            else:
                bias_shape = (1, channels) + (1,) * self.rank
            outputs = ops.add(outputs, ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparseConv2D(_SparseConvMixin, keras.layers.Conv2D):
    """`keras.layers.Conv2D` with a sparse kernel.

    Args:
      filters, kernel_size, strides, padding, ...: as `keras.layers.Conv2D`.
      technique: technique name or instance, as for `SparseDense`.
    """

    def _op(self, inputs, kernel):
        return self.convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparseDepthwiseConv2D(_SparseConvMixin, keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` with a sparse depthwise kernel.

    Args:
      kernel_size, strides, depth_multiplier, ...: as `keras.layers.DepthwiseConv2D`.
      technique: technique name or instance, as for `SparseDense`.
    """

    def _op(self, inputs, kernel):
        return ops.depthwise_conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparseEmbedding(SparseLayerMixin, keras.layers.Embedding):
    """`keras.layers.Embedding` with a sparse embedding matrix.

    Args:
      input_dim, output_dim, mask_zero, ...: as `keras.layers.Embedding`.
      technique: technique name or instance, as for `SparseDense`.
    """

    weight_attribute = "embeddings"
    is_lookup = True

    def _op(self, inputs, embeddings):
        if inputs.dtype not in ("int32", "int64"):
            inputs = ops.cast(inputs, "int32")
        return ops.take(embeddings, inputs, axis=0)

    def _variance_op(self, inputs, variance):
        # A lookup selects rows: the variance of an output is that of its row.
        return self._op(inputs, variance)

    def _epilogue(self, outputs):
        return ops.cast(outputs, self.compute_dtype)


# The Keras layer each sparse layer extends, for `sparsify` and `strip`.
SPARSE_LAYER_FOR = {
    keras.layers.Dense: SparseDense,
    keras.layers.EinsumDense: SparseEinsumDense,
    keras.layers.Conv2D: SparseConv2D,
    keras.layers.DepthwiseConv2D: SparseDepthwiseConv2D,
    keras.layers.Embedding: SparseEmbedding,
}


def keras_base_class(sparse_cls):
    """The standard Keras layer class a sparse layer class extends (for `strip`)."""
    return next(cls for cls in sparse_cls.__mro__ if cls in SPARSE_LAYER_FOR)
