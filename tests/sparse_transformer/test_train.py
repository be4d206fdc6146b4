"""End-to-end smoke runs of the Transformer trainer on tiny parallel text files, one per technique."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from absl import flags

from state_of_sparsity import config_flags
from state_of_sparsity.sparse_transformer import config as config_lib
from state_of_sparsity.sparse_transformer import problems
from state_of_sparsity.sparse_transformer import train
from state_of_sparsity.sparse_transformer import trainer

WORDS = "the a house dog cat sees big small red green runs sleeps".split()
SPANISH = dict(zip(WORDS, "el un casa perro gato ve grande pequeño rojo verde corre duerme".split()))


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    """Parallel files in the real one-sentence-per-line format (a word-for-word toy language pair)."""
    directory = tmp_path_factory.mktemp("text")
    for prefix, count, offset in (("train", 60, 0), ("eval", 12, 7)):
        english = [" ".join(WORDS[(i * 5 + j + offset) % len(WORDS)] for j in range(2 + i % 4))
                   for i in range(count)]
        (directory / f"{prefix}.en").write_text("\n".join(english) + "\n", encoding="utf-8")
        spanish = [" ".join(SPANISH[w] for w in line.split()) for line in english]
        (directory / f"{prefix}.es").write_text("\n".join(spanish) + "\n", encoding="utf-8")
    return directory


def _config(text_dir, output_dir, **changes):
    values = dict(
        hparams_set="sparse_transformer_micro", hparams="batch_size=128,max_length=32",
        problem="translate_parallel_text_packed", data_dir=str(text_dir / "data"),
        train_source=str(text_dir / "train.en"), train_target=str(text_dir / "train.es"),
        eval_source=str(text_dir / "eval.en"), eval_target=str(text_dir / "eval.es"),
        vocab_size=64, output_dir=str(output_dir), train_steps=3, steps_per_checkpoint=2,
        steps_per_log=1, eval_steps=2,
    )
    values.update(changes)
    return config_lib.Config(**values)


TECHNIQUE_FLAGS = {
    None: {},
    "magnitude_pruning": dict(target_sparsity=0.5, begin_pruning_step=0, end_pruning_step=2,
                              pruning_frequency=1),
    "random_pruning": dict(target_sparsity=0.5, begin_pruning_step=0, end_pruning_step=2,
                           pruning_frequency=1),
    "variational_dropout": dict(dkl_weight=1e-4, dkl_weight_start=0, dkl_weight_diff=2, dkl_weight_fn="cubic"),
    "l0_regularization": dict(l0_norm_weight=1e-4, l0_weight_start=0, l0_weight_diff=2),
}


@pytest.mark.parametrize("technique", list(TECHNIQUE_FLAGS))
def test_smoke_run_writes_checkpoints_summaries_and_eval(text_dir, tmp_path, technique):
    config = _config(text_dir, tmp_path / "run", sparsity_technique=technique, **TECHNIQUE_FLAGS[technique])
    metrics = train.train_and_evaluate(config)
    assert metrics["train"]["loss"] == pytest.approx(metrics["train"]["loss"])  # finite, not NaN
    assert tf.train.latest_checkpoint(config.output_dir).endswith("model.ckpt-3")
    assert any(name.startswith("events") for name in os.listdir(tmp_path / "run" / "train"))
    with open(tmp_path / "run" / train.EVAL_RESULTS_FILE) as f:
        results = json.load(f)
    assert results["step"] == 3 and results["tokens"] > 0 and 0 <= results["accuracy"] <= 1
    if technique in ("magnitude_pruning", "random_pruning"):
        assert results["global_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert os.path.exists(text_dir / "data" / "vocab.translate_parallel_text.64.subwords")


def test_resume_continues_the_step_count(text_dir, tmp_path):
    train.train_and_evaluate(_config(text_dir, tmp_path, train_steps=2, mode="train"))
    metrics = train.train_and_evaluate(_config(text_dir, tmp_path, train_steps=4))
    assert metrics["eval"]["step"] == 4
    assert sorted(int(p.rsplit("-", 1)[1]) for p in tf.train.get_checkpoint_state(str(tmp_path))
                  .all_model_checkpoint_paths) == [2, 4]


def test_eval_mode_restores_the_latest_checkpoint(text_dir, tmp_path):
    train.train_and_evaluate(_config(text_dir, tmp_path, mode="train", train_steps=2))
    metrics = train.train_and_evaluate(_config(text_dir, tmp_path, mode="eval"))
    assert metrics["eval"]["step"] == 2 and metrics["eval"]["checkpoint"].endswith("model.ckpt-2")


def test_flags_override_hparams_and_regularization_modes():
    config = config_lib.Config(hparams_set="sparse_transformer_tiny", hparams="num_heads=2",
                               target_sparsity=0.75, sparsity_technique="magnitude_pruning",
                               regularization="none")
    hparams = config.resolved_hparams()
    assert (hparams.num_heads, hparams.target_sparsity, hparams.sparsity_technique) == (2, 0.75, "magnitude_pruning")
    assert (hparams.label_smoothing, hparams.attention_dropout, hparams.layer_prepostprocess_dropout) == (0, 0, 0)
    more = config_lib.Config(hparams_set="sparse_transformer_tiny",
                             regularization="moredropout+label_smoothing").resolved_hparams()
    assert (more.layer_prepostprocess_dropout, more.attention_dropout, more.label_smoothing) == (0.3, 0.1, 0.1)
    # Flags not given leave the set's value.
    assert config_lib.Config(hparams_set="sparse_transformer_tiny").resolved_hparams().target_sparsity == 0.9


@pytest.mark.parametrize("changes, message", [
    (dict(target_sparsity=1.0), "target_sparsity"),
    (dict(begin_pruning_step=10, end_pruning_step=5), "end_pruning_step"),
    (dict(sparsity_technique="pruning"), "sparsity_technique"),
    (dict(hparams_set="transformer_big"), "hparams set"),
    (dict(hparams="hidden_size=abc"), "hidden_size"),
    (dict(problem="translate_enfr"), "--problem"),
    (dict(train_steps=0), "--train_steps"),
    (dict(load_masks_from="/no/such/dir"), "--load_masks_from"),
])
def test_bad_flags_fail_up_front(changes, message):
    with pytest.raises(ValueError, match=message):
        config_lib.Config(**changes)


def test_flags_parse_into_a_config_with_only_given_overrides():
    flag_values = flags.FlagValues()
    trainer.define_flags(flag_values)
    flag_values(["trainer", "--hparams_set=sparse_transformer_tiny", "--dkl_weight=3e-7", "--train_steps=10"])
    config = config_flags.config_from_flags(config_lib.Config, flag_values)
    assert (config.dkl_weight, config.train_steps, config.target_sparsity) == (3e-7, 10, None)


def test_missing_data_is_a_one_line_error(text_dir, tmp_path):
    with pytest.raises(problems.DataError, match="--train_source"):
        train.train_and_evaluate(_config(text_dir, tmp_path, train_source=""))
    with pytest.raises(problems.DataError, match="source_path"):
        train.train_and_evaluate(_config(text_dir, tmp_path, train_source=str(tmp_path / "missing.en")))


def test_script_exits_non_zero_naming_the_flag(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "state_of_sparsity.sparse_transformer.trainer", "--problem=translate_enes_bible",
         f"--sword_path={tmp_path}", f"--data_dir={tmp_path}", "--hparams_set=sparse_transformer_micro"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "apt-get install sword-text-kjv sword-text-sparv" in result.stderr


def test_checkpoints_reach_every_weight_and_a_partial_one_is_refused(tmp_path):
    hparams = config_lib.Config(hparams_set="sparse_transformer_micro", sparsity_technique="variational_dropout",
                                hparams="split_heads=true").resolved_hparams()
    model = train.build_model(hparams)
    train.check_reachable(tf.train.Checkpoint(model=model), model)  # layers held in lists too
    partial = tf.train.Checkpoint(model=tf.train.Checkpoint(embedding=model.shared_embedding))
    with pytest.raises(ValueError, match="cannot reach"):
        train.check_reachable(partial, model)
    path = partial.save(str(tmp_path / "partial" / "ckpt"))
    with pytest.raises(ValueError, match="does not hold every variable"):
        train.restore(train.build_model(hparams), path, "test")


def test_mixed_bfloat16_run_is_finite_and_restores_the_policy(text_dir, tmp_path):
    import keras

    config = _config(text_dir, tmp_path, precision="mixed_bfloat16", train_steps=2,
                     sparsity_technique="variational_dropout", dkl_weight=1e-4)
    metrics = train.train_and_evaluate(config)
    assert metrics["train"]["loss"] == pytest.approx(metrics["train"]["loss"])  # not NaN
    assert metrics["eval"]["loss"] == pytest.approx(metrics["eval"]["loss"])
    assert keras.mixed_precision.global_policy().name == "float32"


def test_mirrored_strategy_over_two_cpus_trains(text_dir, tmp_path):
    flags_list = [
        "--hparams_set=sparse_transformer_micro", "--hparams=batch_size=128,max_length=32",
        "--problem=translate_parallel_text_packed", f"--data_dir={text_dir / 'data'}",
        f"--train_source={text_dir / 'train.en'}", f"--train_target={text_dir / 'train.es'}",
        f"--eval_source={text_dir / 'eval.en'}", f"--eval_target={text_dir / 'eval.es'}",
        "--vocab_size=64", f"--output_dir={tmp_path}", "--train_steps=2", "--eval_steps=2",
        "--sparsity_technique=magnitude_pruning", "--target_sparsity=0.5", "--begin_pruning_step=0",
        "--end_pruning_step=1", "--pruning_frequency=1", "--distribution_strategy=mirrored",
    ]
    script = (
        "import tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "import sys\n"
        "from state_of_sparsity.sparse_transformer import trainer\n"
        "trainer.define_flags()\n"
        f"sys.argv = ['trainer'] + {flags_list!r}\n"
        "trainer.app.run(trainer.main)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / train.EVAL_RESULTS_FILE) as f:
        results = json.load(f)
    assert results["step"] == 2 and results["global_sparsity"] == pytest.approx(0.5, abs=0.01)
