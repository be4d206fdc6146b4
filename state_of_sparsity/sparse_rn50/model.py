"""ResNet-50 v1 of the paper (sos_spec 6.2), CIFAR-size ResNets and a tiny test variant, as Keras models.

Layer names follow the original's variable scopes (`initial_conv`,
`bottleneck_2_block_group2_3_1`, `final_dense`, ...) so per-layer sparsity
overrides and checkpoint names read the same. The dense model is built here;
`sparsify` turns its Conv2D/Dense layers into sparse ones.
"""

import keras

# ImageNet statistics of the in-model input normalisation, on the [0, 255] scale.
IMAGENET_MEAN = tuple(255.0 * m for m in (0.485, 0.456, 0.406))
IMAGENET_STDDEV = tuple(255.0 * s for s in (0.229, 0.224, 0.225))
BATCH_NORM_MOMENTUM = 0.9
BATCH_NORM_EPSILON = 1e-5
FIRST_LAYER_NAME = "initial_conv"
LAST_LAYER_NAME = "final_dense"


def _l2(weight_decay):
    """TF1's l2_regularizer(wd) is wd * sum(w^2) / 2; Keras' L2(l) is l * sum(w^2)."""
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


def _conv(x, filters, kernel_size, strides, name, weight_decay=0.0):
    """Conv without bias; stride > 1 uses the original's fixed padding, then VALID."""
    if strides > 1:
        pad_total = kernel_size - 1
        pad_before = pad_total // 2
        x = keras.layers.ZeroPadding2D(
            ((pad_before, pad_total - pad_before), (pad_before, pad_total - pad_before)),
            name=f"{name}_pad",
        )(x)
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid" if strides > 1 else "same",
        use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(),
        kernel_regularizer=_l2(weight_decay),
        name=name,
    )(x)


def _batch_norm(x, name, relu=True, zero_gamma=False):
    x = keras.layers.BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM,
        epsilon=BATCH_NORM_EPSILON,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=f"{name}_bn",
    )(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _bottleneck_block(x, filters, strides, projection, block, wd):
    """1x1 -> 3x3 (carries the stride) -> 1x1 (4x filters), last BN gamma zero-initialised."""
    shortcut = x
    if projection:
        shortcut = _conv(x, 4 * filters, 1, strides, f"bottleneck_projection_{block}", wd)
        shortcut = _batch_norm(shortcut, f"bottleneck_projection_{block}", relu=False)
    x = _conv(x, filters, 1, 1, f"bottleneck_1_{block}", wd)
    x = _batch_norm(x, f"bottleneck_1_{block}")
    x = _conv(x, filters, 3, strides, f"bottleneck_2_{block}", wd)
    x = _batch_norm(x, f"bottleneck_2_{block}")
    x = _conv(x, 4 * filters, 1, 1, f"bottleneck_3_{block}", wd)
    x = _batch_norm(x, f"bottleneck_3_{block}", relu=False, zero_gamma=True)
    x = keras.layers.Add(name=f"{block}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{block}_out")(x)


def _basic_block(x, filters, strides, projection, block, wd):
    """3x3 -> 3x3 basic block (ResNet-18 and CIFAR ResNets), last BN gamma zero-initialised."""
    shortcut = x
    if projection:
        shortcut = _conv(x, filters, 1, strides, f"basic_projection_{block}", wd)
        shortcut = _batch_norm(shortcut, f"basic_projection_{block}", relu=False)
    x = _conv(x, filters, 3, strides, f"basic_1_{block}", wd)
    x = _batch_norm(x, f"basic_1_{block}")
    x = _conv(x, filters, 3, 1, f"basic_2_{block}", wd)
    x = _batch_norm(x, f"basic_2_{block}", relu=False, zero_gamma=True)
    x = keras.layers.Add(name=f"{block}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{block}_out")(x)


def _block_group(x, block_fn, filters, blocks, strides, group, in_filters, wd):
    """A group of blocks named like the original: the first carries the projection."""
    out_filters = 4 * filters if block_fn is _bottleneck_block else filters
    projection = strides != 1 or in_filters != out_filters
    x = block_fn(x, filters, strides, projection, f"block_group_projection_block_group{group}", wd)
    for index in range(1, blocks):
        x = block_fn(x, filters, 1, False, f"block_group{group}_{index}_1", wd)
    return x, out_filters


def _normalize(inputs, mean, stddev):
    """(x - mean) / stddev inside the model, so exported models take raw pixels."""
    return keras.layers.Normalization(mean=mean, variance=[s * s for s in stddev], name="normalize")(
        inputs
    )


def _classifier(x, num_classes, wd):
    x = keras.layers.GlobalAveragePooling2D(name="average_pool")(x)
    x = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        kernel_regularizer=_l2(wd),
        name=LAST_LAYER_NAME,
    )(x)
    # float32 logits under mixed precision, for a stable softmax and top-k metrics.
    return keras.layers.Activation("linear", dtype="float32", name="logits")(x)


def _imagenet_resnet(block_fn, layers, num_classes, input_shape, width, wd, name):
    inputs = keras.Input(input_shape, name="images")
    channels = input_shape[-1]
    x = _normalize(inputs, IMAGENET_MEAN[:channels], IMAGENET_STDDEV[:channels])
    x = _conv(x, int(64 * width), 7, 2, FIRST_LAYER_NAME, wd)
    x = _batch_norm(x, FIRST_LAYER_NAME)
    x = keras.layers.MaxPooling2D(3, 2, padding="same", name="initial_max_pool")(x)
    filters_in = int(64 * width)
    for group, (blocks, strides) in enumerate(zip(layers, (1, 2, 2, 2)), start=1):
        x, filters_in = _block_group(
            x, block_fn, int(64 * width * 2 ** (group - 1)), blocks, strides, group, filters_in, wd
        )
    return keras.Model(inputs, _classifier(x, num_classes, wd), name=name)


def _cifar_resnet(depth, num_classes, input_shape, width, wd, name):
    """He et al. (2016) CIFAR ResNet: 3 groups of (depth - 2) / 6 basic blocks, 16/32/64 filters."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2. Received: depth={depth}")
    blocks = (depth - 2) // 6
    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.Rescaling(1.0 / 255.0, offset=-0.5, name="normalize")(inputs)
    x = _conv(x, int(16 * width), 3, 1, FIRST_LAYER_NAME, wd)
    x = _batch_norm(x, FIRST_LAYER_NAME)
    filters_in = int(16 * width)
    for group, strides in enumerate((1, 2, 2), start=1):
        x, filters_in = _block_group(
            x, _basic_block, int(16 * width * 2 ** (group - 1)), blocks, strides, group, filters_in, wd
        )
    return keras.Model(inputs, _classifier(x, num_classes, wd), name=name)


def _tiny(num_classes, input_shape, width, wd):
    """Two-block ResNet for tests: every layer kind of the big models, seconds per step."""
    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.Rescaling(1.0 / 255.0, offset=-0.5, name="normalize")(inputs)
    x = _conv(x, int(8 * width), 3, 2, FIRST_LAYER_NAME, wd)
    x = _batch_norm(x, FIRST_LAYER_NAME)
    x, _ = _block_group(x, _bottleneck_block, int(4 * width), 1, 2, 1, int(8 * width), wd)
    return keras.Model(inputs, _classifier(x, num_classes, wd), name="resnet_tiny")


_VARIANTS = {
    "resnet50": lambda n, s, w, wd: _imagenet_resnet(_bottleneck_block, (3, 4, 6, 3), n, s, w, wd, "resnet50"),
    "resnet18": lambda n, s, w, wd: _imagenet_resnet(_basic_block, (2, 2, 2, 2), n, s, w, wd, "resnet18"),
    "resnet20": lambda n, s, w, wd: _cifar_resnet(20, n, s, w, wd, "resnet20"),
    "resnet32": lambda n, s, w, wd: _cifar_resnet(32, n, s, w, wd, "resnet32"),
    "resnet44": lambda n, s, w, wd: _cifar_resnet(44, n, s, w, wd, "resnet44"),
    "resnet56": lambda n, s, w, wd: _cifar_resnet(56, n, s, w, wd, "resnet56"),
    "tiny": _tiny,
}


def model_names():
    """Names accepted by `create_model`."""
    return sorted(_VARIANTS)


def create_model(name, num_classes=1000, input_shape=(224, 224, 3), width=1.0, weight_decay=0.0):
    """The dense Keras model of one variant.

    Args:
      name: one of `model_names()`: "resnet50" (the paper's), "resnet18",
        the CIFAR ResNets "resnet20/32/44/56", or "tiny" (tests).
      num_classes: classifier outputs.
      input_shape: (height, width, channels) of the raw [0, 255] images.
      width: channel multiplier (the original's --width; 1.0 is standard).
      weight_decay: L2 coefficient on conv/FC kernels only, as TF1's
        `l2_regularizer(weight_decay)` (1e-4 in the paper; 0 disables).
    """
    if name not in _VARIANTS:
        raise ValueError(f"Unknown model. Expected one of {model_names()}. Received: name={name!r}")
    if not width > 0:
        raise ValueError(f"`width` must be positive. Received: width={width!r}")
    return _VARIANTS[name](num_classes, tuple(input_shape), width, weight_decay)
