"""Tests of `checkpoint_sparsity` on TF1, TF2, .keras and .weights.h5 checkpoints."""

import os
import re
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import flagsaver

import state_of_sparsity as sos
from state_of_sparsity import checkpoint_sparsity as cs

TECHNIQUES = (
    "magnitude_pruning",
    "random_pruning",
    "variational_dropout",
    "l0_regularization",
)
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ATTENTION = (
    "sparse_transformer/body/encoder/layer_0/self_attention/multihead_attention"
)
_DECODER = (
    "sparse_transformer/body/decoder/layer_3/encdec_attention/multihead_attention"
)
_FFN = "sparse_transformer/body/encoder/layer_0/ffn/conv1"
_EMBEDDING = "sparse_transformer/symbol_modality_33288_512/shared"
_LAYER_NORM = (
    "sparse_transformer/body/encoder/layer_0/ffn/layer_prepostprocess/layer_norm"
)
# Tensors every technique leaves dense; they must never be counted.
_DENSE_TENSORS = {
    "transformer": {
        "global_step": np.int64(1000),
        f"{_LAYER_NORM}/layer_norm_scale": np.ones(4, np.float32),
        f"{_LAYER_NORM}/layer_norm_bias": np.zeros(4, np.float32),
        f"{_FFN}/fully_connected/biases": np.zeros(8, np.float32),
        f"{_FFN}/bias": np.zeros(8, np.float32),
        "sparse_transformer/body/target_space_embedding/kernel": np.ones((3, 4)),
        "sparse_transformer/dkl_weight": np.float32(0.5),
    },
    "rn50": {
        "global_step": np.int64(1000),
        # The dense stem of the extended runs: `weights` but no mask beside it.
        "resnet_model/initial_conv/initial_conv/weights": np.ones((3, 3, 3, 4)),
        "resnet_model/batch_normalization/gamma": np.ones(4, np.float32),
        "resnet_model/batch_normalization/moving_variance": np.ones(4, np.float32),
        "resnet_model/final_dense/biases": np.zeros(5, np.float32),
    },
}


def _sparse_slots(technique, model):
    """(weight, sparse tensor, shape) of each sparse weight, named as the original."""
    pruning = "pruning" in technique
    extra = "log_sigma2" if technique == "variational_dropout" else "log_alpha"
    if model == "rn50":
        scopes = [
            ("resnet_model/initial_conv", (3, 3, 3, 4)),
            ("resnet_model/bottleneck_2_block_group2_3_1", (3, 3, 4, 4)),
            ("resnet_model/final_dense", (4, 5)),
        ]
        return [
            (f"{s}/weights", f"{s}/{'mask' if pruning else extra}", shape)
            for s, shape in scopes
        ]
    slots = []
    for scope, shape in (
        (f"{_ATTENTION}/q", (4, 4)),
        (f"{_DECODER}/k", (4, 4)),
        (_FFN, (4, 8)),
    ):
        if pruning:
            slots.append(
                (
                    f"{scope}/fully_connected/weights",
                    f"{scope}/fully_connected/mask",
                    shape,
                )
            )
        else:
            slots.append((f"{scope}/kernel", f"{scope}/{extra}", shape))
    embedding = f"{_EMBEDDING}/weights_0"
    slots.append(
        (embedding, f"{_EMBEDDING}/mask" if pruning else f"{embedding}_aux", (6, 4))
    )
    return slots


def _original_tensors(technique, model, threshold=3.0, seed=0):
    """Tensors named as in the original's checkpoints, and (kept, total) in NumPy."""
    rng = np.random.default_rng(seed)
    tensors = dict(_DENSE_TENSORS[model])
    kept = total = 0
    for weight_name, sparse_name, shape in _sparse_slots(technique, model):
        theta = rng.normal(0.0, 0.5, shape).astype(np.float32)
        tensors[weight_name] = theta
        if "pruning" in technique:
            values = (rng.random(shape) < 0.3).astype(np.float32)
            tensors[sparse_name.replace("mask", "threshold")] = np.float32(0.2)
            kept += int((values == 1).sum())
        elif technique == "l0_regularization":
            values = rng.uniform(-6.0, 3.0, shape).astype(np.float32)
            sigmoid = 1.0 / (1.0 + np.exp(-values.astype(np.float64)))
            # Hard-concrete gate with zeta = 1.1, gamma = -0.1.
            gate = np.clip(sigmoid * (1.1 + 0.1) - 0.1, 0.0, 1.0)
            kept += int((gate > 0).sum())
        else:
            values = rng.uniform(-6.0, 2.0, shape).astype(np.float32)
            log_alpha = values - np.log(theta.astype(np.float64) ** 2 + 1e-8)
            kept += int((log_alpha < threshold).sum())
        tensors[sparse_name] = values
        total += int(np.prod(shape))
    return tensors, (kept, total)


def _write_tf1_checkpoint(directory, tensors, step=1000):
    """Writes a name-based checkpoint with a TF1 `Saver`, as the original's runs did."""
    graph = tf.Graph()
    with graph.as_default():
        variables = {
            name: tf.compat.v1.Variable(value, name=f"v{i}")
            for i, (name, value) in enumerate(tensors.items())
        }
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return saver.save(
                session, os.path.join(directory, "model.ckpt"), global_step=step
            )


@pytest.mark.parametrize("model", ["transformer", "rn50"])
@pytest.mark.parametrize("technique", TECHNIQUES)
def test_original_tf1_checkpoint_counts_like_numpy(tmp_path, technique, model):
    tensors, (kept, total) = _original_tensors(technique, model)
    prefix = _write_tf1_checkpoint(str(tmp_path), tensors)

    assert cs.checkpoint_nonzeros(prefix, technique, model) == (kept, total)
    sparsity = cs.checkpoint_sparsity(prefix, technique, model)
    assert sparsity == pytest.approx(1 - kept / total)
    assert 0 < sparsity < 1


def test_variational_dropout_threshold_changes_kept_weights(tmp_path):
    tensors, (kept, total) = _original_tensors(
        "variational_dropout", "rn50", threshold=0.5
    )
    _, (kept_at_3, _) = _original_tensors("variational_dropout", "rn50", threshold=3.0)
    prefix = _write_tf1_checkpoint(str(tmp_path), tensors)

    assert kept != kept_at_3
    result = cs.checkpoint_nonzeros(
        prefix, "variational_dropout", "rn50", log_alpha_threshold=0.5
    )
    assert result == (kept, total)


def test_tf1_checkpoint_given_as_index_file_or_directory_uses_latest(tmp_path):
    old, _ = _original_tensors("magnitude_pruning", "transformer", seed=1)
    new, (kept, total) = _original_tensors("magnitude_pruning", "transformer", seed=2)
    _write_tf1_checkpoint(str(tmp_path), old, step=100)
    prefix = _write_tf1_checkpoint(str(tmp_path), new, step=200)

    assert cs.resolve_checkpoint(str(tmp_path)) == prefix
    assert cs.resolve_checkpoint(prefix + ".index") == prefix
    for path in (str(tmp_path), prefix + ".index", prefix + ".data-00000-of-00001"):
        assert cs.checkpoint_nonzeros(path, "magnitude_pruning") == (kept, total)


OWN_SCHEDULES = {
    "magnitude_pruning": sos.PolynomialDecay(0.8, 0, 4, 1),
    "random_pruning": sos.PolynomialDecay(0.8, 0, 4, 1),
    "variational_dropout": sos.LinearPenalty(0.05, 0, 4),
    "l0_regularization": sos.LinearPenalty(0.05, 0, 4),
}


def _kept_by_numpy(model, technique):
    """(kept, total) over the model's sparse layers, counted here from the raw variables."""
    kept = total = 0
    for layer in model.layers:
        variables = {v.name: v.numpy().astype(np.float64) for v in layer.weights}
        if "pruning" in technique and "mask" in variables:
            kept += int((variables["mask"] != 0).sum())
        elif technique == "variational_dropout" and "log_sigma2" in variables:
            theta = variables.get("kernel", variables.get("embeddings"))
            kept += int((variables["log_sigma2"] - np.log(theta**2 + 1e-8) < 3.0).sum())
        elif technique == "l0_regularization" and "log_alpha" in variables:
            kept += int((1 / (1 + np.exp(-variables["log_alpha"])) * 1.2 - 0.1 > 0).sum())
        else:
            continue
        total += layer.sparse_weight.numpy().size
    return kept, total


@pytest.fixture(scope="module", params=TECHNIQUES)
def trained_model_files(request, tmp_path_factory):
    """A small model sparsified with one technique, trained, saved in each of our formats."""
    technique = request.param
    directory = tmp_path_factory.mktemp(technique)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,), dtype="int32")
    x = keras.layers.Embedding(10, 4)(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(6, activation="relu")(x)
    outputs = keras.layers.Dense(2)(x)
    model = sos.sparsify(keras.Model(inputs, outputs), technique, OWN_SCHEDULES[technique])
    model.compile(keras.optimizers.Adam(0.05), "mse")
    rng = np.random.default_rng(0)
    model.fit(
        rng.integers(0, 10, (16, 3)),
        rng.normal(size=(16, 2)),
        batch_size=4,
        epochs=3,
        verbose=0,
        callbacks=[sos.PruningCallback()],
    )
    # A few training steps barely move log_sigma2 / log_alpha: spread them so that
    # the counting rules keep and drop many weights of every layer.
    for layer in model.layers:
        if hasattr(layer, "log_sigma2"):
            theta = layer.sparse_weight.numpy().astype(np.float64)
            spread = rng.uniform(-3.0, 9.0, theta.shape)
            layer.log_sigma2.assign((np.log(theta**2 + 1e-8) + spread).astype(np.float32))
        if hasattr(layer, "log_alpha"):
            layer.log_alpha.assign(rng.uniform(-6.0, 3.0, layer.log_alpha.shape).astype(np.float32))
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(
        checkpoint, str(directory / "tf2"), max_to_keep=1
    )
    files = {
        "tf2_prefix": manager.save(),
        "tf2_directory": str(directory / "tf2"),
        "keras": str(directory / "model.keras"),
        "weights_h5": str(directory / "model.weights.h5"),
    }
    model.save(files["keras"])
    model.save_weights(files["weights_h5"])
    return technique, model, files


@pytest.mark.parametrize(
    "file_format", ["tf2_prefix", "tf2_directory", "keras", "weights_h5"]
)
def test_own_checkpoints_match_sparsity_report(trained_model_files, file_format):
    technique, model, files = trained_model_files
    kept, total = _kept_by_numpy(model, technique)

    assert total == 10 * 4 + 12 * 6 + 6 * 2
    assert cs.checkpoint_nonzeros(files[file_format], technique) == (kept, total)
    sparsity = cs.checkpoint_sparsity(files[file_format], technique)
    assert sparsity == pytest.approx(sos.sparsity_report(model)["global"])
    assert sparsity == pytest.approx(1 - kept / total)
    if "pruning" in technique:
        assert sparsity == pytest.approx(0.8, abs=0.05)
    else:
        assert 0.2 < sparsity < 0.8


def _write_weights_h5(path, technique, seed=0):
    """A `.weights.h5` laid out as Sparse* layers write it, and (kept, total)."""
    rng = np.random.default_rng(seed)
    kept = total = 0
    with h5py.File(path, "w") as h5_file:
        h5_file["optimizer/vars/2"] = rng.normal(size=(4, 3)).astype(np.float32)
        for layer, weight, shape in (
            ("sparse_dense", "kernel", (4, 3)),
            ("sparse_embedding", "embeddings", (7, 4)),
        ):
            theta = rng.normal(0.0, 0.5, shape).astype(np.float32)
            h5_file[f"layers/{layer}/vars/{weight}"] = theta
            h5_file[f"layers/{layer}/vars/bias"] = np.zeros(shape[-1], np.float32)
            if technique == "variational_dropout":
                values = rng.uniform(-6.0, 2.0, shape).astype(np.float32)
                kept += int(
                    (values - np.log(theta.astype(np.float64) ** 2 + 1e-8) < 3.0).sum()
                )
                h5_file[f"layers/{layer}/vars/log_sigma2"] = values
            else:
                values = rng.uniform(-6.0, 3.0, shape).astype(np.float32)
                kept += int(
                    (1.0 / (1.0 + np.exp(-values.astype(np.float64))) > 1 / 12).sum()
                )
                h5_file[f"layers/{layer}/vars/log_alpha"] = values
            total += int(np.prod(shape))
    return kept, total


@pytest.mark.parametrize("technique", ["variational_dropout", "l0_regularization"])
def test_weights_h5_and_keras_archive_count_vd_and_l0_by_layer(tmp_path, technique):
    weights = str(tmp_path / "model.weights.h5")
    expected = _write_weights_h5(weights, technique)
    archive = str(tmp_path / "model.keras")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zip_file:
        zip_file.writestr("config.json", "{}")
        zip_file.write(weights, "model.weights.h5")

    assert cs.checkpoint_nonzeros(weights, technique) == expected
    assert cs.checkpoint_nonzeros(archive, technique, model="rn50") == expected
    # A directory without a TF checkpoint but with model.weights.h5: unzipped .keras.
    assert cs.checkpoint_nonzeros(str(tmp_path), technique) == expected


def test_bad_paths_raise_clear_errors(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"No checkpoint at .*Received: checkpoint='.*missing'"
    ):
        cs.checkpoint_sparsity(str(tmp_path / "missing"), "magnitude_pruning")
    with pytest.raises(FileNotFoundError, match=r"Directory .* holds no checkpoint"):
        cs.checkpoint_sparsity(str(tmp_path), "magnitude_pruning")
    text = tmp_path / "notes.keras"
    text.write_text("not a checkpoint")
    with pytest.raises(
        ValueError, match=r"neither a TensorFlow checkpoint .* Received: checkpoint="
    ):
        cs.checkpoint_sparsity(str(text), "magnitude_pruning")
    archive = tmp_path / "other.keras"
    with zipfile.ZipFile(archive, "w") as zip_file:
        zip_file.writestr("config.json", "{}")
    with pytest.raises(ValueError, match=r"zip archive without model.weights.h5"):
        cs.checkpoint_sparsity(str(archive), "magnitude_pruning")
    (tmp_path / "broken.index").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"Cannot read TensorFlow checkpoint .*broken"):
        cs.checkpoint_sparsity(str(tmp_path / "broken"), "magnitude_pruning")
    tensors, _ = _original_tensors("magnitude_pruning", "rn50")
    prefix = _write_tf1_checkpoint(str(tmp_path / "truncated"), tensors)
    os.truncate(prefix + ".data-00000-of-00001", 100)
    with pytest.raises(ValueError, match=r"Cannot read tensor .*mask.* truncated"):
        cs.checkpoint_sparsity(prefix, "magnitude_pruning", "rn50")


def test_checkpoint_without_the_techniques_tensors_raises(tmp_path):
    dense = _write_tf1_checkpoint(
        str(tmp_path / "dense"), _DENSE_TENSORS["transformer"]
    )
    with pytest.raises(ValueError, match=r"no sparse tensor .* looks dense"):
        cs.checkpoint_sparsity(dense, "magnitude_pruning")
    pruned, _ = _original_tensors("magnitude_pruning", "rn50")
    prefix = _write_tf1_checkpoint(str(tmp_path / "pruned"), pruned)
    with pytest.raises(
        ValueError,
        match=r"suggest --sparsity_technique=magnitude_pruning or random_pruning",
    ):
        cs.checkpoint_sparsity(prefix, "variational_dropout")


def test_variational_dropout_without_its_weight_raises(tmp_path):
    tensors, _ = _original_tensors("variational_dropout", "transformer")
    prefix = _write_tf1_checkpoint(str(tmp_path), tensors)
    with pytest.raises(
        ValueError,
        match=r"/k/log_sigma2' .* no weight beside it.*/k/weights.*--model=transf",
    ):
        cs.checkpoint_sparsity(prefix, "variational_dropout", model="rn50")
    weights = tmp_path / "model.weights.h5"
    with h5py.File(weights, "w") as h5_file:
        h5_file["layers/sparse_dense/vars/kernel"] = np.ones((2, 3), np.float32)
        h5_file["layers/sparse_dense/vars/log_sigma2"] = np.ones((3, 2), np.float32)
    with pytest.raises(
        ValueError, match=r"must have the shape of their weight.*\(3, 2\).*\(2, 3\)"
    ):
        cs.checkpoint_sparsity(str(weights), "variational_dropout")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            {"technique": "pruning"},
            r"--sparsity_technique must be one of .* sparsity_technique='pruning'",
        ),
        ({"model": "bert"}, r"--model must be one of .* Received: model='bert'"),
        (
            {"log_alpha_threshold": float("nan")},
            r"finite number .* Received: log_alpha_threshold=nan",
        ),
        (
            {"log_alpha_threshold": "3"},
            r"finite number .* Received: log_alpha_threshold='3'",
        ),
    ],
)
def test_bad_arguments_raise_before_reading(tmp_path, arguments, message):
    arguments = {
        "path": str(tmp_path / "missing"),
        "technique": "magnitude_pruning",
        **arguments,
    }
    with pytest.raises(ValueError, match=message):
        cs.checkpoint_sparsity(**arguments)


def _run_main(argv):
    """Runs the CLI in-process: absl parsing as `app.run` does it, then `main`."""
    with flagsaver.flagsaver():
        cs.main(cs._parse_flags(["checkpoint_sparsity", *argv]))


def test_main_prints_one_line_with_the_resolved_checkpoint(tmp_path, capsys):
    tensors, (kept, total) = _original_tensors("l0_regularization", "transformer")
    prefix = _write_tf1_checkpoint(str(tmp_path), tensors)
    _run_main([f"--checkpoint={tmp_path}", "--sparsity_technique=l0_regularization"])
    output = capsys.readouterr().out
    match = re.fullmatch(
        rf"{re.escape(prefix)} global sparsity = ([0-9.e-]+)%\n", output
    )
    assert match
    assert float(match.group(1)) == pytest.approx(100 * (1 - kept / total))


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--checkpoint=/nonexistent/model.ckpt-1"],
            r"No checkpoint at '/nonexistent/model.ckpt-1'\..*",
        ),
        (
            ["--checkpoint=x", "--model=bert"],
            r"flag --model=bert: value should be one of .*",
        ),
        (
            ["--checkpoint=x", "--log_alpha_threshold=inf"],
            r"--log_alpha_threshold must be a finite number.*",
        ),
        (
            ["--checkpoint=x", "extra"],
            r"Unexpected positional arguments.*Received: \['extra'\]",
        ),
        ([], r"--checkpoint is required\. Received: checkpoint=None"),
    ],
)
def test_main_errors_are_one_line_with_exit_code_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        _run_main(argv)
    assert exit_info.value.code == 2
    assert re.fullmatch(
        rf"checkpoint_sparsity: error: {message}\n", capsys.readouterr().err
    )


def _start_cli(*argv):
    return subprocess.Popen(
        [sys.executable, "-m", "state_of_sparsity.checkpoint_sparsity", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=_REPO,
        env={**os.environ, "PYTHONPATH": _REPO},
    )


@pytest.mark.parametrize("trained_model_files", ["magnitude_pruning"], indirect=True)
def test_command_line_end_to_end(trained_model_files):
    _, model, files = trained_model_files
    # Both runs start at once: each spends seconds importing TensorFlow.
    success = _start_cli(f"--checkpoint={files['keras']}")
    failure = _start_cli(
        f"--checkpoint={files['keras']}", "--sparsity_technique=variational_dropout"
    )
    stdout, stderr = success.communicate(timeout=120)
    assert success.returncode == 0, stderr
    match = re.fullmatch(
        rf"{re.escape(files['keras'])} global sparsity = ([0-9.e-]+)%\n", stdout
    )
    assert match
    assert float(match.group(1)) == pytest.approx(
        100 * sos.sparsity_report(model)["global"]
    )

    stdout, stderr = failure.communicate(timeout=120)
    assert failure.returncode == 2
    assert stdout == ""
    assert "Traceback" not in stderr
    # TensorFlow logs its own lines while importing; ours is the last one.
    last_line = stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"checkpoint_sparsity: error: Checkpoint '.*model\.keras' has no sparse .*",
        last_line,
    )
