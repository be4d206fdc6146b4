"""ImageNet TFRecord pipeline on tiny JPEG shards written in the real format, and Fashion-MNIST."""

import gzip
import struct

import numpy as np
import pytest
import tensorflow as tf

from state_of_sparsity.sparse_rn50 import input_pipeline


def _example(jpeg, label):
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"JPEG"])),
    })).SerializeToString()


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
    """Two train and one validation shard of small JPEGs; label = 1-based class id."""
    directory = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    shards = {"train-00000-of-00002": [1, 2, 3], "train-00001-of-00002": [4, 5],
              "validation-00000-of-00001": [7, 8, 9]}
    for name, labels in shards.items():
        with tf.io.TFRecordWriter(str(directory / name)) as writer:
            for label in labels:
                height, width = rng.integers(40, 90, size=2)
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                writer.write(_example(tf.io.encode_jpeg(pixels).numpy(), label))
    return str(directory)


def test_eval_split_reads_every_record_once_with_0_based_labels(imagenet_dir):
    dataset = input_pipeline.imagenet_dataset(imagenet_dir, "validation", 2, training=False, image_size=32)
    batches = list(dataset)
    labels = np.concatenate([labels.numpy() for _, labels in batches])
    assert sorted(labels.tolist()) == [6, 7, 8]
    images = batches[0][0].numpy()
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.float32
    # Raw pixel scale (bicubic resizing of noise overshoots [0, 255] a little).
    assert 100 < images.mean() < 155 and images.std() > 30


def test_train_split_repeats_and_drops_partial_batches(imagenet_dir):
    dataset = input_pipeline.imagenet_dataset(imagenet_dir, "train", 4, training=True, image_size=24)
    labels = [labels.numpy() for _, labels in dataset.take(25)]  # 100 draws: every class shows
    assert all(batch.shape == (4,) for batch in labels)
    assert set(np.concatenate(labels)) == {0, 1, 2, 3, 4}


def test_eval_center_crop_matches_the_original_rule():
    pixels = np.random.default_rng(2).integers(0, 256, (256, 301, 3), dtype=np.uint8)
    jpeg = tf.io.encode_jpeg(pixels, quality=100)
    window = input_pipeline._center_crop_window(tf.image.extract_jpeg_shape(jpeg), 224).numpy()
    crop = int(224 / 256 * 256)  # 87.5% of the short side
    np.testing.assert_array_equal(window, [(256 - crop + 1) // 2, (301 - crop + 1) // 2, crop, crop])
    image = input_pipeline.preprocess_eval(jpeg, image_size=224).numpy()
    decoded = tf.io.decode_jpeg(jpeg).numpy().astype(np.float32)
    expected = decoded[window[0]:window[0] + crop, window[1]:window[1] + crop]
    np.testing.assert_allclose(image, expected, atol=1e-3)  # same size: bicubic is the identity


def test_train_crop_falls_back_to_the_eval_center_crop_when_the_search_fails():
    jpeg = tf.io.encode_jpeg(np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    # An area range of exactly the whole image makes the search return the whole image.
    fallback = input_pipeline.preprocess_train(jpeg, image_size=16, seed=1, area_range=(1.0, 1.0)).numpy()
    center = input_pipeline.preprocess_eval(jpeg, image_size=16).numpy()
    assert np.allclose(fallback, center) or np.allclose(fallback, center[:, ::-1])  # maybe flipped


def test_train_crop_stays_inside_the_image_and_is_resized():
    jpeg = tf.io.encode_jpeg(np.full((50, 70, 3), 200, np.uint8))
    for seed in range(5):
        image = input_pipeline.preprocess_train(jpeg, image_size=16, seed=seed).numpy()
        assert image.shape == (16, 16, 3)
        np.testing.assert_allclose(image, 200, atol=3)


def test_missing_shards_name_the_pattern_and_the_flag(tmp_path):
    with pytest.raises(ValueError, match=r"No ImageNet TFRecords match .*train-\*.*--data_directory"):
        input_pipeline.imagenet_files(str(tmp_path), "train")
    with pytest.raises(ValueError, match="split.*Received: split='test'"):
        input_pipeline.imagenet_files(str(tmp_path), "test")


def test_fashion_mnist_pixels_stay_on_the_0_255_scale(tmp_path):
    rng = np.random.default_rng(1)
    for prefix, count in (("train", 6), ("t10k", 4)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        with gzip.open(tmp_path / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", count, 28, 28) + images.tobytes())
        with gzip.open(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", count) + bytes(range(count)))
        if prefix == "t10k":
            expected = images
    batches = list(input_pipeline.fashion_mnist_dataset(str(tmp_path), "validation", 4, training=False))
    np.testing.assert_array_equal(batches[0][0].numpy()[..., 0], expected.astype(np.float32))
    assert batches[0][1].numpy().tolist() == [0, 1, 2, 3]
