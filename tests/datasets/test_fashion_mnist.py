"""Tests for the Fashion-MNIST IDX reader and input pipeline, on small files in the real format."""

import gzip
import os
import struct

import numpy as np
import pytest

from state_of_sparsity.datasets import fashion_mnist


def _idx_bytes(array, dtype_code=0x08):
    # IDX: 0x00 0x00, dtype code, number of dims, then big-endian uint32 sizes.
    header = bytes([0, 0, dtype_code, array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path, data):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)
    return str(path)


def _write_split(directory, prefix, images, labels, compressed=True):
    suffix = ".gz" if compressed else ""
    _write(directory / f"{prefix}-images-idx3-ubyte{suffix}", _idx_bytes(images))
    _write(directory / f"{prefix}-labels-idx1-ubyte{suffix}", _idx_bytes(labels))


def _example_split(num_examples=5):
    images = (np.arange(num_examples * 28 * 28) % 256).astype(np.uint8)
    images = images.reshape(num_examples, 28, 28)
    labels = np.array([9, 0, 3, 7, 1][:num_examples], dtype=np.uint8)
    return images, labels


@pytest.mark.parametrize("name", ["data-idx2-ubyte.gz", "data-idx2-ubyte"])
def test_read_idx_returns_header_shape_and_bytes(tmp_path, name):
    path = _write(tmp_path / name, _idx_bytes(np.array([[0, 1, 2], [253, 254, 255]])))

    array = fashion_mnist.read_idx(path)

    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, [[0, 1, 2], [253, 254, 255]])


def test_read_idx_rejects_wrong_magic(tmp_path):
    path = _write(tmp_path / "x.gz", _idx_bytes(np.zeros(4), dtype_code=0x0D))

    with pytest.raises(
        ValueError, match=r"not an IDX file of unsigned bytes.*magic=0x00000d01"
    ):
        fashion_mnist.read_idx(path)


def test_read_idx_rejects_truncated_data(tmp_path):
    path = _write(tmp_path / "x", _idx_bytes(np.zeros((2, 3)))[:-1])

    with pytest.raises(
        ValueError,
        match=r"truncated: expected 6 data bytes for shape \(2, 3\)\. Received: 5",
    ):
        fashion_mnist.read_idx(path)


def test_read_idx_rejects_truncated_header(tmp_path):
    path = _write(tmp_path / "x", _idx_bytes(np.zeros((2, 3, 4)))[:9])

    with pytest.raises(ValueError, match=r"truncated: expected a 16-byte header"):
        fashion_mnist.read_idx(path)


def test_read_idx_rejects_trailing_bytes(tmp_path):
    path = _write(tmp_path / "x", _idx_bytes(np.zeros(3)) + b"\x00")

    with pytest.raises(
        ValueError, match=r"longer than its header says.*Received: 4 bytes"
    ):
        fashion_mnist.read_idx(path)


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    path = _write(tmp_path / "x.gz", b"")
    with open(path, "rb") as f:
        compressed = f.read()
    with open(path, "wb") as f:
        f.write(compressed[:-6])

    with pytest.raises(ValueError, match=r"Cannot read IDX file .*x\.gz"):
        fashion_mnist.read_idx(path)


@pytest.mark.parametrize("compressed", [True, False])
def test_load_split_reads_both_splits(tmp_path, compressed):
    images, labels = _example_split()
    _write_split(tmp_path, "train", images, labels, compressed)
    _write_split(tmp_path, "t10k", images[:2], labels[:2], compressed)

    train_images, train_labels = fashion_mnist.load_split("train", str(tmp_path))
    test_images, test_labels = fashion_mnist.load_split("test", str(tmp_path))

    assert train_images.dtype == np.uint8 and train_images.shape == (5, 28, 28)
    np.testing.assert_array_equal(train_images, images)
    assert train_images[1, 0, 0] == (28 * 28) % 256
    np.testing.assert_array_equal(train_labels, [9, 0, 3, 7, 1])
    assert train_labels.dtype == np.int64
    np.testing.assert_array_equal(test_images, images[:2])
    np.testing.assert_array_equal(test_labels, [9, 0])


def test_load_split_rejects_missing_directory(tmp_path):
    missing = os.path.join(tmp_path, "nowhere")

    with pytest.raises(
        ValueError,
        match=r"directory .*nowhere does not exist\. Install it with "
        r"`apt-get install dataset-fashion-mnist` or pass --data_dir",
    ):
        fashion_mnist.load_split("train", missing)


def test_load_split_rejects_missing_file(tmp_path):
    images, labels = _example_split()
    _write(tmp_path / "t10k-images-idx3-ubyte.gz", _idx_bytes(images))

    with pytest.raises(
        ValueError,
        match=r"t10k-labels-idx1-ubyte\.gz \(or t10k-labels-idx1-ubyte\) not found in .*"
        r"apt-get install dataset-fashion-mnist` or pass --data_dir",
    ):
        fashion_mnist.load_split("test", str(tmp_path))


def test_load_split_rejects_count_mismatch(tmp_path):
    images, labels = _example_split()
    _write_split(tmp_path, "train", images, labels[:4])

    with pytest.raises(
        ValueError, match=r"one label per image\. Received: 5 images and 4 labels"
    ):
        fashion_mnist.load_split("train", str(tmp_path))


def test_load_split_rejects_wrong_image_shape(tmp_path):
    _write_split(tmp_path, "train", np.zeros((2, 28, 27)), np.zeros(2))

    with pytest.raises(
        ValueError, match=r"shape \(N, 28, 28\)\. Received: shape=\(2, 28, 27\)"
    ):
        fashion_mnist.load_split("train", str(tmp_path))


def test_load_split_rejects_label_out_of_range(tmp_path):
    images, _ = _example_split(2)
    _write_split(tmp_path, "train", images, np.array([3, 10]))

    with pytest.raises(
        ValueError, match=r"labels must be in \[0, 10\)\. Received: max label=10"
    ):
        fashion_mnist.load_split("train", str(tmp_path))


def test_load_split_rejects_unknown_split(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"`split` must be one of \['test', 'train'\]\. Received: split='val'",
    ):
        fashion_mnist.load_split("val", str(tmp_path))


def test_create_split_normalises_and_batches():
    images, labels = _example_split()

    batches = list(fashion_mnist.create_split(images, labels, batch_size=3))

    assert [len(y) for _, y in batches] == [3, 2]
    x = np.concatenate([x.numpy() for x, _ in batches])
    assert x.dtype == np.float32 and x.shape == (5, 28, 28, 1)
    np.testing.assert_allclose(x[..., 0], images / np.float32(255.0), rtol=1e-6)
    np.testing.assert_array_equal(
        np.concatenate([y.numpy() for _, y in batches]), labels
    )


def test_create_split_shuffle_is_seeded_and_keeps_every_example():
    images = np.repeat(np.arange(20, dtype=np.uint8), 28 * 28).reshape(20, 28, 28)
    labels = np.arange(20) % 10

    def order(seed):
        dataset = fashion_mnist.create_split(images, labels, 4, shuffle=True, seed=seed)
        return np.concatenate(
            [np.round(x.numpy()[:, 0, 0, 0] * 255) for x, _ in dataset]
        )

    first = order(seed=1)
    assert sorted(first) == list(range(20))
    np.testing.assert_array_equal(first, order(seed=1))
    assert not np.array_equal(first, np.arange(20))


def test_create_split_rejects_bad_batch_size():
    images, labels = _example_split()

    with pytest.raises(
        ValueError,
        match=r"`batch_size` must be a positive integer\. Received: batch_size=0",
    ):
        fashion_mnist.create_split(images, labels, batch_size=0)


@pytest.mark.skipif(
    not os.path.isdir(fashion_mnist.DEFAULT_DATA_DIR),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_load_split_reads_installed_test_split():
    images, labels = fashion_mnist.load_split("test")

    assert images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)
