"""End-to-end smoke runs of the sparse ResNet trainer on tiny data for every pruning method."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from state_of_sparsity.sparse_rn50 import config as config_lib
from state_of_sparsity.sparse_rn50 import learning_rate
from state_of_sparsity.sparse_rn50 import train

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_shards(directory):
    rng = np.random.default_rng(0)
    for name, count in (("train-00000-of-00001", 8), ("validation-00000-of-00001", 4)):
        with tf.io.TFRecordWriter(os.path.join(directory, name)) as writer:
            for index in range(count):
                jpeg = tf.io.encode_jpeg(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).numpy()
                feature = {
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
                    "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[index % 4 + 1])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("imagenet")
    _write_shards(str(directory))
    return str(directory)


def tiny_config(data_dir, output_dir, **overrides):
    values = dict(
        model="tiny", data_directory=data_dir, output_dir=output_dir, image_size=32,
        num_label_classes=4, train_batch_size=4, eval_batch_size=2, num_train_images=8,
        num_eval_images=4, train_steps=3, steps_per_checkpoint=2, steps_per_log=1,
        sparsity_begin_step=0, sparsity_end_step=2, pruning_frequency=1, end_sparsity=0.5,
        reg_scalar=1e-3, mode="train_and_eval",
    )
    values.update(overrides)
    return config_lib.Config(**values)


@pytest.mark.parametrize("method", [m for m in config_lib.PRUNING_METHODS if m != "scratch"])
def test_smoke_run_trains_checkpoints_summarises_and_evaluates(method, data_dir, tmp_path):
    config = tiny_config(data_dir, str(tmp_path), pruning_method=method)
    metrics = train.train_and_evaluate(config)
    assert np.isfinite(metrics["train"]["loss"])
    (results_file,) = [name for name in os.listdir(tmp_path) if name.startswith("eval_results")]
    with open(tmp_path / results_file) as f:
        results = json.load(f)
    assert set(results) >= {"top_1_accuracy", "top_5_accuracy", "global_sparsity"}
    assert 0 <= results["top_1_accuracy"] <= 1 and results["step"] == 3
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-3")
    assert os.path.exists(tmp_path / "model.ckpt-2.index")
    assert any("tfevents" in name for _, _, files in os.walk(tmp_path / "train") for name in files)
    if method in ("threshold", "random"):
        assert results["global_sparsity"] == pytest.approx(0.5, abs=0.01)


def test_resume_continues_the_step_count(data_dir, tmp_path):
    train.train_and_evaluate(tiny_config(data_dir, str(tmp_path), mode="train", pruning_method="threshold"))
    metrics = train.train_and_evaluate(
        tiny_config(data_dir, str(tmp_path), mode="train_and_eval", pruning_method="threshold", train_steps=5))
    assert metrics["eval"]["step"] == 5
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-5")


def test_eval_once_restores_the_requested_checkpoint(data_dir, tmp_path):
    train.train_and_evaluate(tiny_config(data_dir, str(tmp_path), mode="train", pruning_method="threshold"))
    metrics = train.train_and_evaluate(
        tiny_config(data_dir, str(tmp_path), mode="eval_once", checkpoint_step=2, pruning_method="threshold"))
    assert metrics["eval"]["checkpoint"].endswith("model.ckpt-2") and metrics["eval"]["step"] == 2
    assert metrics["eval"]["global_sparsity"] == pytest.approx(0.5, abs=0.01)  # masks restored
    with pytest.raises(ValueError, match="does not hold every variable of a --model=tiny --pruning_method=var"):
        train.train_and_evaluate(tiny_config(data_dir, str(tmp_path), mode="eval_once", checkpoint_step=2,
                                             pruning_method="variational_dropout"))
    with pytest.raises(ValueError, match=r"No checkpoint .*model.ckpt-7.*--checkpoint_step=7"):
        train.train_and_evaluate(tiny_config(data_dir, str(tmp_path), mode="eval_once", checkpoint_step=7))


def test_first_and_last_layer_overrides_are_both_honoured(data_dir, tmp_path):
    config = tiny_config(data_dir, str(tmp_path), pruning_method="threshold",
                         first_layer_sparsity=0.2, last_layer_sparsity=0.7)
    model = train.build_model(config)
    assert model.get_layer("initial_conv").technique.schedule.target_sparsity == 0.2
    assert model.get_layer("final_dense").technique.schedule.target_sparsity == 0.7
    dense_stem = train.build_model(tiny_config(data_dir, str(tmp_path), pruning_method="threshold",
                                               prune_first_layer=False))
    assert type(dense_stem.get_layer("initial_conv")).__name__ == "Conv2D"


def test_learning_rate_warms_up_then_steps_down():
    schedule = learning_rate.WarmupStepDecay(0.4, steps_per_epoch=10)
    values = [float(schedule(step)) for step in (0, 25, 50, 299, 300, 600, 800, 1000)]
    np.testing.assert_allclose(values, [0.0, 0.2, 0.4, 0.4, 0.04, 0.004, 0.0004, 0.0004], rtol=1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(end_sparsity=1.0), r"--end_sparsity must be a fraction of zeros in \[0, 1\)"),
        (dict(sparsity_begin_step=10, sparsity_end_step=5), "--sparsity_begin_step must be >= 0 and below"),
        (dict(pruning_method="magnitude"), r"--pruning_method must be one of \['baseline'"),
        (dict(data_directory=""), "--data_directory is required for --dataset=imagenet"),
        (dict(data_directory="/nonexistent"), "--data_directory='/nonexistent' is not a directory"),
        (dict(pruning_method="variational_dropout", first_layer_sparsity=0.5), "apply to --pruning_method=threshold"),
        (dict(clip_log_alpha=-1.0), "--clip_log_alpha and --seed must be >= 0"),
    ],
)
def test_bad_configs_are_rejected(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        tiny_config(str(tmp_path), str(tmp_path), **overrides)


def test_command_line_rejects_bad_flags_with_non_zero_exit(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "state_of_sparsity.sparse_rn50.imagenet_train_eval",
         "--pruning_method=threshold", "--end_sparsity=1.5", "--data_directory=/nonexistent",
         f"--output_dir={tmp_path}"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
    )
    assert result.returncode != 0
    assert "--end_sparsity must be a fraction of zeros in [0, 1). Received: 1.5" in result.stderr


def test_evaluate_script_runs_eval_once_on_a_trained_checkpoint(data_dir, tmp_path):
    config = tiny_config(data_dir, str(tmp_path), mode="train", pruning_method="threshold", train_steps=2)
    train.train_and_evaluate(config)
    # The released script evaluates step 128000; point it at ours through its flags' defaults.
    script = os.path.join(REPO_ROOT, "state_of_sparsity", "sparse_rn50", "evaluate", "evaluate_mp.sh")
    with open(script) as f:
        command = f.read().split("python -m ", 1)[1].replace("\\\n", " ")
    arguments = command.replace('"$1"', str(tmp_path)).replace('"$2"', data_dir).replace(
        "--checkpoint_step=128000", "--checkpoint_step=2").split()
    tiny = ["--model=tiny", "--image_size=32", "--num_label_classes=4", "--num_eval_images=4",
            "--train_batch_size=4", "--num_train_images=8", "--sparsity_begin_step=0",
            "--sparsity_end_step=2", "--pruning_frequency=1", "--end_sparsity=0.5"]
    result = subprocess.run([sys.executable, "-m", *arguments, *tiny], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "eval_results.json") as f:
        results = json.load(f)
    assert results["checkpoint"].endswith("model.ckpt-2") and results["global_sparsity"] > 0.4


def test_scratch_run_trains_the_loaded_masks_unchanged_with_sparse_init(data_dir, tmp_path):
    source_dir, scratch_dir = str(tmp_path / "source"), str(tmp_path / "scratch")
    train.train_and_evaluate(tiny_config(data_dir, source_dir, mode="train", pruning_method="threshold"))
    source = train.build_model(tiny_config(data_dir, source_dir, pruning_method="threshold"))
    tf.train.Checkpoint(model=source).restore(tf.train.latest_checkpoint(source_dir)).expect_partial()
    config = tiny_config(data_dir, scratch_dir, mode="train", pruning_method="scratch",
                         load_mask_dir=source_dir, init_method="sparse", train_steps=4)
    train.train_and_evaluate(config)
    trained = train.build_model(config)
    tf.train.Checkpoint(model=trained).restore(tf.train.latest_checkpoint(scratch_dir)).expect_partial()
    for layer in source.layers:
        if hasattr(layer, "mask"):
            np.testing.assert_array_equal(trained.get_layer(layer.name).mask.numpy(), layer.mask.numpy())
            assert 0.3 < layer.mask.numpy().mean() < 0.7


def test_sparse_init_matches_the_nnz_scaled_variance(data_dir, tmp_path):
    from state_of_sparsity.sparse_rn50 import model as model_lib
    from state_of_sparsity.sparse_rn50 import warm_start
    import state_of_sparsity as sos

    model = sos.sparsify(model_lib.create_model("resnet20", 10, (32, 32, 3)), "magnitude_pruning",
                         sos.ConstantSparsity(0.75))
    sos.update_masks(model, 0)
    warm_start.sparse_initialize(model, seed=3)
    conv = model.get_layer("basic_2_block_group3_2_1")  # 3x3x64x64
    nnz = conv.mask.numpy().sum()
    assert conv.sparse_weight.numpy().std() == pytest.approx(np.sqrt(2 / (nnz / 64)), rel=0.02)
    fc = model.get_layer("final_dense")
    limit = np.sqrt(6 / (fc.mask.numpy().sum() / 10 + fc.mask.numpy().sum() / 64))
    assert np.abs(fc.sparse_weight.numpy()).max() <= limit


def test_scratch_needs_a_mask_directory():
    with pytest.raises(ValueError, match="--pruning_method=scratch and --load_mask_dir go together"):
        config_lib.Config(pruning_method="scratch", dataset="fashion_mnist")


@pytest.mark.parametrize("method", ["variational_dropout", "threshold"])
def test_mixed_bfloat16_run_is_finite_and_restores_the_policy(method, data_dir, tmp_path):
    import keras

    config = tiny_config(data_dir, str(tmp_path), pruning_method=method, precision="mixed_bfloat16")
    metrics = train.train_and_evaluate(config)
    assert np.isfinite(metrics["train"]["loss"]) and np.isfinite(metrics["eval"]["loss"])
    assert keras.mixed_precision.global_policy().name == "float32"


def test_mirrored_strategy_over_two_cpus_trains(data_dir, tmp_path):
    script = (
        "import tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "import sys; sys.argv = sys.argv[:1]\n"
        "from state_of_sparsity.sparse_rn50.imagenet_train_eval import app, main\n"
        f"sys.argv += ['--model=tiny', '--data_directory={data_dir}', '--output_dir={tmp_path}',\n"
        "  '--image_size=32', '--num_label_classes=4', '--train_batch_size=4', '--eval_batch_size=2',\n"
        "  '--num_train_images=8', '--num_eval_images=4', '--train_steps=2', '--steps_per_checkpoint=2',\n"
        "  '--pruning_method=random', '--sparsity_begin_step=0', '--sparsity_end_step=1',\n"
        "  '--pruning_frequency=1', '--end_sparsity=0.5', '--mode=train_and_eval',\n"
        "  '--distribution_strategy=mirrored']\n"
        "app.run(main)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "eval_results.json") as f:
        results = json.load(f)
    assert results["step"] == 2 and results["global_sparsity"] == pytest.approx(0.5, abs=0.02)


def test_vd_evaluation_uses_the_threshold_flag_not_the_saved_one(data_dir, tmp_path):
    common = dict(pruning_method="variational_dropout", reg_scalar=0.0)
    train.train_and_evaluate(tiny_config(data_dir, str(tmp_path), mode="train", **common))
    import state_of_sparsity as sos
    from state_of_sparsity.sparse_rn50 import warm_start

    # Spread log alpha so that the two thresholds keep different sets of weights.
    config = tiny_config(data_dir, str(tmp_path), **common)
    model = train.build_model(config)
    train.compile_model(model, config)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    checkpoint.restore(tf.train.latest_checkpoint(str(tmp_path))).expect_partial()
    for layer in warm_start.walk.sparse_layers(model):
        theta = layer.sparse_weight.numpy()
        layer.log_sigma2.assign(np.log(theta**2 + 1e-8) + np.random.default_rng(0).uniform(-4, 4, theta.shape))
    checkpoint.write(os.path.join(str(tmp_path), "model.ckpt-9"))
    results = {}
    for threshold in (0.5, 3.0):
        metrics = train.train_and_evaluate(tiny_config(
            data_dir, str(tmp_path), mode="eval_once", checkpoint_step=9, log_alpha_threshold=threshold, **common))
        results[threshold] = metrics["eval"]["global_sparsity"]
        assert os.path.exists(tmp_path / f"eval_results_{int(threshold * 10)}.json")
    assert results[0.5] > results[3.0] + 0.1
    assert isinstance(sos.sparsity_report(model)["global"], float)


class _FakeResolver:
    def __init__(self, task_type, task_id, cluster):
        self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._cluster)


class _FakeStrategy:
    def __init__(self, resolver):
        self.cluster_resolver = resolver


@pytest.mark.parametrize(
    "task_type, task_id, cluster, chief",
    [
        ("worker", 0, {"worker": ["a:1", "b:1"]}, True),
        ("worker", 1, {"worker": ["a:1", "b:1"]}, False),
        ("chief", 0, {"chief": ["c:1"], "worker": ["a:1"]}, True),
        ("worker", 0, {"chief": ["c:1"], "worker": ["a:1"]}, False),
    ],
)
def test_only_the_chief_writes_into_output_dir(task_type, task_id, cluster, chief):
    strategy = _FakeStrategy(_FakeResolver(task_type, task_id, cluster))
    assert train.is_chief(strategy) is chief
    expected = "/out" if chief else f"/out/workertemp_{task_type}_{task_id}"
    assert train.worker_dir("/out", strategy) == expected
    assert train.is_chief(tf.distribute.get_strategy())


def test_eval_mode_evaluates_checkpoints_until_the_last_step(data_dir, tmp_path):
    train.train_and_evaluate(tiny_config(data_dir, str(tmp_path), mode="train", pruning_method="threshold"))
    metrics = train.train_and_evaluate(tiny_config(data_dir, str(tmp_path), mode="eval",
                                                   pruning_method="threshold", eval_timeout_s=1))
    assert metrics["eval"]["step"] == 3 and metrics["eval"]["checkpoint"].endswith("model.ckpt-3")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No checkpoint appeared in --output_dir=.*within --eval_timeout_s=1"):
        train.train_and_evaluate(tiny_config(data_dir, str(empty), mode="eval", eval_timeout_s=1))
