"""Fashion-MNIST from its original IDX files, as NumPy arrays and `tf.data` pipelines."""

import gzip
import os

import numpy as np
import tensorflow as tf

# Where the Debian package `dataset-fashion-mnist` installs the four IDX files.
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
SPLITS = {"train": "train", "test": "t10k"}
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# IDX header: two zero bytes, a dtype code, the number of dimensions, then one
# big-endian uint32 per dimension (http://yann.lecun.com/exdb/mnist/).
_UBYTE = 0x08
_INSTALL_HINT = (
    "Install it with `apt-get install dataset-fashion-mnist` or pass --data_dir"
)


def read_idx(path):
    """Reads one IDX file of unsigned bytes (gzip-compressed if its name ends in .gz).

    Args:
      path: path of an IDX file, e.g. `train-images-idx3-ubyte.gz`.

    Returns:
      A read-only uint8 array (a view of the file's bytes) with the shape
      stored in the header.

    Raises:
      ValueError: if the file is not an IDX file of unsigned bytes, or if its
        data is shorter or longer than its header says.
    """
    try:
        if str(path).endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, EOFError) as error:
        # gzip raises BadGzipFile (an OSError) or EOFError on corrupt archives.
        raise ValueError(f"Cannot read IDX file {path}: {error}") from None
    if len(data) < 4:
        raise ValueError(
            f"IDX file {path} is truncated: expected a 4-byte magic number. "
            f"Received: {len(data)} bytes"
        )
    zeros, dtype_code, ndim = data[:2], data[2], data[3]
    if zeros != b"\x00\x00" or dtype_code != _UBYTE or ndim == 0:
        raise ValueError(
            f"{path} is not an IDX file of unsigned bytes: expected a magic number "
            f"0x000008NN (NN = number of dimensions). Received: magic=0x{data[:4].hex()}"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"IDX file {path} is truncated: expected a {header_size}-byte header for "
            f"{ndim} dimensions. Received: {len(data)} bytes"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    received = len(data) - header_size
    if received != expected:
        problem = "truncated" if received < expected else "longer than its header says"
        raise ValueError(
            f"IDX file {path} is {problem}: expected {expected} data bytes for shape "
            f"{shape}. Received: {received} bytes"
        )
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(shape)


def load_split(split, data_dir=DEFAULT_DATA_DIR):
    """Loads the images and labels of one split.

    Args:
      split: "train" (60,000 examples) or "test" (10,000 examples).
      data_dir: directory holding the IDX files, gzip-compressed
        (`train-images-idx3-ubyte.gz`, ...) or not (`train-images-idx3-ubyte`).

    Returns:
      `(images, labels)`: uint8 images of shape `(N, 28, 28)` and int64 labels
      in [0, 10) of shape `(N,)`.

    Raises:
      ValueError: if the split name is unknown, a file is missing or corrupt,
        or images and labels disagree.
    """
    images_path, labels_path = split_paths(split, data_dir)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(
            f"Fashion-MNIST {split} images must have shape (N, 28, 28). "
            f"Received: shape={images.shape}"
        )
    if labels.ndim != 1:
        raise ValueError(
            f"Fashion-MNIST {split} labels must have shape (N,). "
            f"Received: shape={labels.shape}"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST {split} split must have one label per image. "
            f"Received: {len(images)} images and {len(labels)} labels"
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        raise ValueError(
            f"Fashion-MNIST {split} labels must be in [0, {NUM_CLASSES}). "
            f"Received: max label={labels.max()}"
        )
    return images, labels.astype(np.int64)


def split_paths(split, data_dir=DEFAULT_DATA_DIR):
    """Paths of the images and labels files of one split, preferring the .gz names.

    Raises:
      ValueError: if the split name is unknown, or the directory or a file is missing.
    """
    if split not in SPLITS:
        raise ValueError(
            f"`split` must be one of {sorted(SPLITS)}. Received: split={split!r}"
        )
    if not os.path.isdir(data_dir):
        raise ValueError(
            f"Fashion-MNIST directory {data_dir} does not exist. {_INSTALL_HINT} "
            "pointing to a directory with the IDX files."
        )
    prefix = SPLITS[split]
    return (
        _find(data_dir, f"{prefix}-images-idx3-ubyte"),
        _find(data_dir, f"{prefix}-labels-idx1-ubyte"),
    )


def create_split(images, labels, batch_size, shuffle=False, seed=0):
    """A batched, prefetched `tf.data.Dataset` of normalised images and labels.

    Args:
      images: uint8 array of shape `(N, 28, 28)`, e.g. from `load_split`.
      labels: integer array of shape `(N,)`.
      batch_size: examples per batch; the last batch may be smaller.
      shuffle: reshuffle the examples every epoch (for training).
      seed: seed of the shuffle order.

    Returns:
      A dataset of `(float32 images in [0, 1] of shape (B, 28, 28, 1), int64 labels)`.
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(
            f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}"
        )
    if len(images) != len(labels):
        raise ValueError(
            "`images` and `labels` must have the same length. "
            f"Received: {len(images)} images and {len(labels)} labels"
        )
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    # Normalise whole batches: one vectorised op per batch instead of one per example.
    dataset = dataset.batch(batch_size).map(
        _normalise, num_parallel_calls=tf.data.AUTOTUNE
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _normalise(images, labels):
    images = tf.cast(images, tf.float32)[..., tf.newaxis] / 255.0
    return images, tf.cast(labels, tf.int64)


def _find(data_dir, name):
    for candidate in (name + ".gz", name):
        path = os.path.join(data_dir, candidate)
        if os.path.isfile(path):
            return path
    raise ValueError(
        f"Fashion-MNIST file {name}.gz (or {name}) not found in {data_dir}. "
        f"{_INSTALL_HINT} pointing to a directory with the IDX files."
    )
