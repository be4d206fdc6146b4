"""tfds datasets already prepared on disk: read without network, JPEG ones with ImageNet preprocessing."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from state_of_sparsity.sparse_rn50 import config as config_lib
from state_of_sparsity.sparse_rn50 import input_pipeline
from state_of_sparsity.sparse_rn50 import train


class _FakeCifar10(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A tiny dataset written in the real tfds on-disk format under the name cifar10."""

    name = "cifar10"
    VERSION = tfds.core.Version("3.0.2")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(32, 32, 3)),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(8), "test": self._generate_examples(4)}

    def _generate_examples(self, count):
        rng = np.random.default_rng(count)
        for index in range(count):
            yield index, {"image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "label": index % 10}


class _FakeImagenette(_FakeCifar10, skip_registration=True):
    """Variable-size JPEG images with a validation split, like imagenette."""

    name = "imagenette"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(encoding_format="jpeg"),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(6), "validation": self._generate_examples(3)}

    def _generate_examples(self, count):
        rng = np.random.default_rng(count)
        for index in range(count):
            height, width = rng.integers(40, 70, size=2)
            yield index, {"image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "label": index}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("tfds"))
    for builder_cls in (_FakeCifar10, _FakeImagenette):
        builder_cls(data_dir=directory).download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return directory


def test_small_tfds_dataset_is_read_at_native_size(tfds_dir):
    batches = list(input_pipeline.create_split("cifar10", tfds_dir, "validation", 2, training=False))
    assert len(batches) == 2  # the test split stands in for validation
    images, labels = batches[0]
    assert images.shape == (2, 32, 32, 3) and images.dtype == "float32" and labels.dtype == "int32"
    assert images.numpy().max() > 1  # raw [0, 255] pixels; the model normalises


def test_jpeg_tfds_dataset_gets_imagenet_preprocessing(tfds_dir):
    train_batch = next(iter(input_pipeline.create_split("imagenette", tfds_dir, "train", 3, training=True,
                                                       image_size=24)))
    assert train_batch[0].shape == (3, 24, 24, 3)
    labels = np.concatenate([l.numpy() for _, l in input_pipeline.create_split(
        "imagenette", tfds_dir, "validation", 2, training=False, image_size=24)])
    assert sorted(labels.tolist()) == [0, 1, 2]


def test_missing_tfds_dataset_names_the_expected_path_and_build_command(tmp_path):
    with pytest.raises(ValueError, match=r"'cifar100' is not prepared.*dataset_info.json.*tfds build cifar100"):
        input_pipeline.create_split("cifar100", str(tmp_path), "train", 2, training=True)


def test_trainer_runs_on_a_tfds_dataset(tfds_dir, tmp_path):
    config = config_lib.Config(
        model="tiny", dataset="cifar10", data_directory=tfds_dir, output_dir=str(tmp_path),
        num_label_classes=10, train_batch_size=4, eval_batch_size=2, num_train_images=8,
        num_eval_images=4, train_steps=2, steps_per_checkpoint=2, pruning_method="threshold",
        sparsity_begin_step=0, sparsity_end_step=1, pruning_frequency=1, end_sparsity=0.5,
        mode="train_and_eval",
    )
    metrics = train.train_and_evaluate(config)
    assert np.isfinite(metrics["train"]["loss"]) and metrics["eval"]["global_sparsity"] > 0.45
