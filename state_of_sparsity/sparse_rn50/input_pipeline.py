"""ImageNet TFRecord and Fashion-MNIST input pipelines with the original's preprocessing (sos_spec 6.5)."""

import glob
import os

import numpy as np
import tensorflow as tf

from state_of_sparsity.datasets import fashion_mnist

IMAGE_SIZE = 224
# Eval center crop keeps 224 / (224 + 32) = 87.5% of the short side.
CROP_PADDING = 32
SHUFFLE_BUFFER = 1024
INTERLEAVE_CYCLE = 64
READ_BUFFER_BYTES = 8 * 1024 * 1024
FILE_PATTERNS = {"train": "train-*", "validation": "validation-*"}
# tfds datasets read from disk: JPEG datasets get the ImageNet preprocessing,
# the small ones are used at their native size.
TFDS_JPEG_DATASETS = ("imagenet2012", "imagenette")
TFDS_SMALL_DATASETS = {"cifar10": (32, 32, 3), "cifar100": (32, 32, 3), "fashion_mnist": (28, 28, 1)}
DATASETS = ("imagenet", *TFDS_JPEG_DATASETS, *TFDS_SMALL_DATASETS)


def image_shape(dataset, image_size=IMAGE_SIZE):
    """(height, width, channels) of the images a dataset's pipeline yields."""
    return TFDS_SMALL_DATASETS.get(dataset, (image_size, image_size, 3))


def create_split(dataset, data_dir, split, batch_size, training, image_size=IMAGE_SIZE, seed=0):
    """Batched (images float32 in [0, 255], labels int32) of `split` ("train" or "validation").

    `dataset` "imagenet" reads TFRecord shards; the tfds names read a dataset
    already prepared under `data_dir`; "fashion_mnist" also reads the Debian
    IDX files (the default when `data_dir` is empty). Nothing is downloaded.
    """
    if dataset == "imagenet":
        return imagenet_dataset(data_dir, split, batch_size, training, image_size, seed)
    if dataset == "fashion_mnist" and not _tfds_versions(data_dir, dataset):
        return fashion_mnist_dataset(data_dir or fashion_mnist.DEFAULT_DATA_DIR, split, batch_size,
                                     training, seed)
    return tfds_dataset(dataset, data_dir, split, batch_size, training, image_size, seed)


def imagenet_files(data_dir, split):
    """The TFRecord shards of a split, sorted; a clear error when there are none."""
    if split not in FILE_PATTERNS:
        raise ValueError(f"`split` must be one of {sorted(FILE_PATTERNS)}. Received: split={split!r}")
    pattern = os.path.join(data_dir, FILE_PATTERNS[split])
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(
            f"No ImageNet TFRecords match {pattern!r}. Put the `{FILE_PATTERNS[split]}` shards "
            "made by imagenet_to_gcs.py (features image/encoded, image/class/label) there, "
            f"or pass --data_directory. Received: data_dir={data_dir!r}"
        )
    return files


def parse_example(serialized):
    """(JPEG bytes, 0-based label) of one record; labels are stored 1-based."""
    features = tf.io.parse_single_example(
        serialized,
        {
            "image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        },
    )
    return features["image/encoded"], tf.cast(features["image/class/label"] - 1, tf.int32)


def _center_crop_window(shape, image_size):
    height, width = shape[0], shape[1]
    crop = tf.cast(
        image_size / (image_size + CROP_PADDING) * tf.cast(tf.minimum(height, width), tf.float32),
        tf.int32,
    )
    return tf.stack([(height - crop + 1) // 2, (width - crop + 1) // 2, crop, crop])


def _decode_crop_resize(jpeg, window, image_size):
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    return tf.image.resize(image, [image_size, image_size], method="bicubic")


def preprocess_eval(jpeg, image_size=IMAGE_SIZE):
    """Center crop of 87.5% of the short side, bicubic resize; float values in [0, 255]."""
    window = _center_crop_window(tf.image.extract_jpeg_shape(jpeg), image_size)
    return _decode_crop_resize(jpeg, window, image_size)


def preprocess_train(jpeg, image_size=IMAGE_SIZE, seed=None, area_range=(0.08, 1.0)):
    """Inception-style random crop (area 8-100%, aspect 3/4-4/3), bicubic resize, random flip.

    When the crop search fails (it returns the whole image) the eval center
    crop is used instead, as in the original.
    """
    shape = tf.image.extract_jpeg_shape(jpeg)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
        seed=seed,
    )
    offset_y, offset_x, _ = tf.unstack(begin)
    height, width, _ = tf.unstack(size)
    window = tf.stack([offset_y, offset_x, height, width])
    # The crop search returns size [h, w, -1]: a whole-image crop means it failed.
    whole_image = tf.reduce_all(tf.equal(shape[:2], size[:2]))
    window = tf.cond(whole_image, lambda: _center_crop_window(shape, image_size), lambda: window)
    image = _decode_crop_resize(jpeg, window, image_size)
    return tf.image.random_flip_left_right(image, seed=seed)


def imagenet_dataset(data_dir, split, batch_size, training, image_size=IMAGE_SIZE, seed=0):
    """Batched (images [B, S, S, 3] float32 in [0, 255], labels [B] int32) from ImageNet TFRecords.

    Training repeats, shuffles records and drops the last partial batch;
    evaluation reads each record once in file order.
    """
    files = tf.data.Dataset.from_tensor_slices(imagenet_files(data_dir, split))
    dataset = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES),
        cycle_length=INTERLEAVE_CYCLE,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not training,
    )
    if training:
        dataset = dataset.repeat().shuffle(SHUFFLE_BUFFER, seed=seed)

    def preprocess(serialized):
        jpeg, label = parse_example(serialized)
        image = preprocess_train(jpeg, image_size) if training else preprocess_eval(jpeg, image_size)
        return image, label

    dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def fashion_mnist_dataset(data_dir, split, batch_size, training, seed=0):
    """Batched Debian Fashion-MNIST (images [B, 28, 28, 1] float32 in [0, 255], labels int32)."""
    images, labels = fashion_mnist.load_split("train" if split == "train" else "test", data_dir)
    dataset = tf.data.Dataset.from_tensor_slices(
        (images[..., np.newaxis].astype(np.float32), labels.astype(np.int32))
    )
    if training:
        dataset = dataset.repeat().shuffle(len(images), seed=seed)
    return dataset.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def _tfds_versions(data_dir, name):
    """Prepared versions of a tfds dataset under `data_dir`, newest last."""
    if not data_dir:
        return []
    infos = glob.glob(os.path.join(data_dir, name, "*", "dataset_info.json"))
    versions = [os.path.dirname(path) for path in infos]
    return sorted(versions, key=lambda d: tuple(int(p) for p in os.path.basename(d).split(".") if p.isdigit()))


def tfds_dataset(name, data_dir, split, batch_size, training, image_size=IMAGE_SIZE, seed=0):
    """A tfds dataset that is already prepared on disk, read without any network access."""
    versions = _tfds_versions(data_dir, name)
    if not versions:
        raise ValueError(
            f"tfds dataset {name!r} is not prepared under {data_dir!r}: expected "
            f"{os.path.join(data_dir or '<data_dir>', name, '<version>', 'dataset_info.json')}. "
            f"Build it elsewhere with `tfds build {name} --data_dir=DIR`, copy DIR here and pass "
            "--data_directory=DIR (no download is attempted)."
        )
    import tensorflow_datasets as tfds  # imported lazily: heavy, and only this path needs it

    builder = tfds.builder_from_directory(versions[-1])
    splits = builder.info.splits
    tfds_split = "train" if split == "train" else ("validation" if "validation" in splits else "test")
    jpeg = name in TFDS_JPEG_DATASETS
    dataset = builder.as_dataset(
        split=tfds_split,
        as_supervised=True,
        shuffle_files=training,
        decoders={"image": tfds.decode.SkipDecoding()} if jpeg else None,
    )
    if training:
        dataset = dataset.repeat().shuffle(SHUFFLE_BUFFER, seed=seed)

    def preprocess(image, label):
        if jpeg:
            image = preprocess_train(image, image_size) if training else preprocess_eval(image, image_size)
        return tf.cast(image, tf.float32), tf.cast(label, tf.int32)

    dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)
