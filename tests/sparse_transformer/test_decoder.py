"""The decoder end to end on a tiny vocabulary and model: T2T naming and order, VD threshold, errors, decode/*.sh."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import app
from absl import flags

import state_of_sparsity as sos
from state_of_sparsity.layers import sparse_layers
from state_of_sparsity.sparse_transformer import beam_search
from state_of_sparsity.sparse_transformer import checkpoint_importer
from state_of_sparsity.sparse_transformer import config as config_lib
from state_of_sparsity.sparse_transformer import decoder
from state_of_sparsity.sparse_transformer import problems
from state_of_sparsity.sparse_transformer import train

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DECODE_DIR = os.path.join(REPO_ROOT, "state_of_sparsity", "sparse_transformer", "decode")
WORDS = "the a house dog cat sees big small red green runs sleeps".split()
SPANISH = dict(zip(WORDS, "el un casa perro gato ve grande pequeño rojo verde corre duerme".split()))
# Different word counts (sorting reorders them), a tie (2 and 2 words) and an empty line.
SOURCES = ["the dog", "a big red cat sees the small house", "cat", "", "green dog runs", "the house",
           "a small cat sleeps"]
PROBLEM = "translate_parallel_text"
DECODE_HPARAMS = "extra_length=6"  # one batch: sorting still reorders it


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A parallel-text vocabulary built as the trainer builds it, and a file to translate."""
    directory = tmp_path_factory.mktemp("data")
    english = [" ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(2 + i % 4)) for i in range(40)]
    (directory / "train.en").write_text("\n".join(english) + "\n", encoding="utf-8")
    (directory / "train.es").write_text(
        "\n".join(" ".join(SPANISH[w] for w in line.split()) for line in english) + "\n", encoding="utf-8")
    sources = problems.DataSources(data_dir=str(directory / "vocab"), train_source=str(directory / "train.en"),
                                   train_target=str(directory / "train.es"), vocab_size=64)
    encoder = problems.get_problem(PROBLEM).encoder(sources)
    (directory / "newstest.en").write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    return directory, encoder


def _config(data_dir, output_dir, **changes):
    values = dict(hparams_set="sparse_transformer_micro", problem=PROBLEM, data_dir=str(data_dir / "vocab"),
                  vocab_size=64, output_dir=str(output_dir), sparsity_technique="magnitude_pruning")
    values.update(changes)
    return config_lib.Config(**values)


def _random_model(config, encoder, seed):
    """The config's model with random weights and masks (what a trained checkpoint would hold)."""
    hparams = dataclasses.replace(config.resolved_hparams(), vocab_size=encoder.vocab_size)
    model = train.build_model(hparams, seed)
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for variable in sparse_layers.own_variables(layer):
            if variable.name == "mask":
                variable.assign((rng.random(variable.shape) < 0.7).astype(np.float32))
            elif variable.name in ("kernel", "embeddings"):
                variable.assign(rng.normal(0, 1.0, variable.shape).astype(np.float32))
            elif variable.name == "log_sigma2":
                variable.assign(rng.uniform(-8, 4, variable.shape).astype(np.float32))
    return model


def _reference_decodes(model, encoder, lines, beam_size=4, alpha=0.6, extra_length=6):
    """Each line decoded alone, in input order.

    Padded to the longest line, as in the decoder's single batch: T2T's decode length is
    the padded batch length + extra_length, and a random model runs to that limit.
    """
    id_lists = [encoder.encode_with_eos(line) for line in lines]
    length = max(len(ids) for ids in id_lists)
    outputs = []
    for ids in id_lists:
        decoded, _ = beam_search.beam_search_decode(
            model, np.array([ids + [0] * (length - len(ids))], np.int32), beam_size, alpha, extra_length)
        outputs.append(encoder.decode(decoded.numpy()[0].tolist(), strip_extraneous=True))
    return outputs


def _run(argv):
    flag_values = flags.FlagValues()
    decoder.define_flags(flag_values)
    flag_values(["decoder"] + argv)
    return decoder.run(flag_values)


def _flags(data_dir, output_dir, *extra):
    return ["--hparams_set=sparse_transformer_micro", f"--problem={PROBLEM}", f"--data_dir={data_dir / 'vocab'}",
            "--vocab_size=64", f"--output_dir={output_dir}", "--sparsity_technique=magnitude_pruning",
            f"--decode_from_file={data_dir / 'newstest.en'}", f"--decode_hparams={DECODE_HPARAMS}", *extra]


def test_decodes_an_original_checkpoint_in_input_order_under_t2ts_name(data, tmp_path):
    data_dir, encoder = data
    config = _config(data_dir, tmp_path)
    model = _random_model(config, encoder, seed=1)
    checkpoint_importer.export_tf1_checkpoint(model, tmp_path / "model.ckpt-500")

    output = _run(_flags(data_dir, tmp_path))

    assert output == (f"{data_dir / 'newstest.en'}.sparse_transformer.sparse_transformer_micro."
                      f"{PROBLEM}.beam4.alpha0.6.decodes")
    lines = open(output, encoding="utf-8").read().split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(SOURCES)
    assert lines[:-1] == _reference_decodes(model, encoder, SOURCES)
    assert len(set(lines[:-1])) > 3  # distinct translations, so a permutation would show


def test_decode_to_file_and_checkpoint_path_flags(data, tmp_path):
    data_dir, encoder = data
    model = _random_model(_config(data_dir, tmp_path), encoder, seed=2)
    prefix = checkpoint_importer.export_tf1_checkpoint(model, tmp_path / "ckpt" / "model.ckpt-7")
    target = tmp_path / "out" / "hyp.txt"
    output = _run(_flags(data_dir, tmp_path / "elsewhere", f"--checkpoint_path={prefix}",
                         f"--decode_to_file={target}", "--decode_hparams=extra_length=6,beam_size=1"))
    assert output == str(target)
    assert open(target, encoding="utf-8").read().split("\n")[:-1] == _reference_decodes(
        model, encoder, SOURCES, beam_size=1)


def test_decodes_our_tf2_checkpoint_like_the_saved_model(data, tmp_path):
    data_dir, encoder = data
    config = _config(data_dir, tmp_path)
    model = _random_model(config, encoder, seed=3)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(tmp_path), 1,
                               checkpoint_name=train.CHECKPOINT_NAME).save(checkpoint_number=3)
    output = _run(_flags(data_dir, tmp_path))
    assert open(output, encoding="utf-8").read().split("\n")[:-1] == _reference_decodes(model, encoder, SOURCES)


def test_vd_threshold_comes_from_hparams(data, tmp_path):
    data_dir, encoder = data
    reference = _random_model(_config(data_dir, tmp_path, sparsity_technique="variational_dropout"), encoder, 4)
    checkpoint_importer.export_tf1_checkpoint(reference, tmp_path / "model.ckpt-1")
    config = _config(data_dir, tmp_path, sparsity_technique="variational_dropout",
                     hparams="log_alpha_threshold=0.5")
    hparams = dataclasses.replace(config.resolved_hparams(), vocab_size=encoder.vocab_size)

    model, _ = decoder.load_model(config, hparams)

    thresholds = {float(layer.log_alpha_threshold.numpy()) for layer in model._flatten_layers()
                  if hasattr(layer, "log_alpha_threshold")}
    assert thresholds == {0.5}
    features = {"inputs": np.array([[4, 5, 6, 1]]), "targets": np.array([[7, 8, 1]])}
    at_three = reference(features, training=False).numpy()  # built with the default threshold 3.0
    assert not np.allclose(model(features, training=False).numpy(), at_three)
    sos.set_log_alpha_threshold(reference, 0.5)
    np.testing.assert_allclose(model(features, training=False).numpy(), reference(features, training=False).numpy(),
                               rtol=1e-6, atol=1e-6)


def test_return_beams_writes_every_beam_best_first(data, tmp_path):
    data_dir, encoder = data
    config = _config(data_dir, tmp_path)
    model = _random_model(config, encoder, seed=5)
    checkpoint_importer.export_tf1_checkpoint(model, tmp_path / "model.ckpt-1")
    decode_hp = decoder.parse_decode_hparams("beam_size=3,extra_length=6,return_beams=true")
    output = decoder.decode_from_file(config, decode_hp, str(data_dir / "newstest.en"), str(tmp_path / "beams"))
    lines = open(output, encoding="utf-8").read().split("\n")[:-1]
    assert [len(line.split("\t")) for line in lines] == [3] * len(SOURCES)
    assert [line.split("\t")[0] for line in lines] == _reference_decodes(model, encoder, SOURCES, beam_size=3)


def test_translate_lines_sorts_longest_first_and_restores_order():
    batches = []

    def shout(texts):
        batches.append(list(texts))
        return [text.upper() for text in texts]

    lines = ["b b", "a a a a", "c", "d d", "", "e e e"]
    assert decoder.translate_lines(lines, shout, batch_size=4) == [line.upper() for line in lines]
    # T2T's order: word count descending, ties in input order.
    assert batches == [["a a a a", "e e e", "b b", "d d"], ["c", ""]]


def test_parse_decode_hparams_and_t2t_defaults():
    assert decoder.parse_decode_hparams("") == decoder.DecodeHParams(4, 0.6, 100, 32, False)
    parsed = decoder.parse_decode_hparams("beam_size=2, alpha=1,batch_size=0,return_beams=True")
    assert (parsed.beam_size, parsed.alpha, parsed.batch_size, parsed.return_beams) == (2, 1.0, 32, True)
    for text, message in [("beam=4", "names in"), ("beam_size=2.5", "type int"), ("beam_size=0", ">= 1"),
                          ("alpha=-1", ">= 0"), ("alpha=nan", ">= 0"), ("return_beams=maybe", "type bool"),
                          ("alpha=1,alpha=2", "twice"), ("extra_length", "names in")]:
        with pytest.raises(ValueError, match=message):
            decoder.parse_decode_hparams(text)


def test_decode_filename_follows_t2t():
    hp = decoder.DecodeHParams(beam_size=2, alpha=1)
    assert decoder.decode_filename("/d/newstest2014.en", "sparse_transformer_l0_regularization_tpu",
                                   "translate_ende_wmt32k_packed", hp) == (
        "/d/newstest2014.en.sparse_transformer.sparse_transformer_l0_regularization_tpu."
        "translate_ende_wmt32k_packed.beam2.alpha1.0.decodes")
    assert decoder.decode_filename("x.beam2.alpha1.0.decodes", "s", "p", hp) == "x.beam2.alpha1.0.decodes"


@pytest.mark.parametrize("extra, message", [
    (["--decode_from_file="], "--decode_from_file is required"),
    (["--decode_from_file=/no/such/file.en"], "/no/such/file.en"),
    (["--data_dir=/no/such/vocab"], "vocabulary it was trained with"),
    (["--decode_hparams=beam_size=-1"], "beam_size"),
    ([], "No checkpoint in --output_dir"),
])
def test_bad_flags_and_missing_files_are_usage_errors(data, tmp_path, extra, message):
    data_dir, _ = data
    with pytest.raises(app.UsageError, match=message):
        _run(_flags(data_dir, tmp_path / "empty", *extra))


def test_checkpoint_of_another_technique_is_a_usage_error(data, tmp_path):
    data_dir, encoder = data
    model = _random_model(_config(data_dir, tmp_path), encoder, seed=6)
    checkpoint_importer.export_tf1_checkpoint(model, tmp_path / "model.ckpt-1")
    with pytest.raises(app.UsageError, match="log_sigma2"):
        _run(_flags(data_dir, tmp_path, "--sparsity_technique=variational_dropout"))


def test_script_exits_non_zero_with_a_one_line_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "state_of_sparsity.sparse_transformer.decoder", f"--output_dir={tmp_path}",
         "--decode_from_file=/no/such/newstest2014.en"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )
    assert result.returncode != 0
    assert "--decode_from_file='/no/such/newstest2014.en' does not exist" in result.stderr


def test_only_the_sparse_transformer_model_is_accepted():
    flag_values = flags.FlagValues()
    decoder.define_flags(flag_values)
    with pytest.raises(flags.IllegalFlagValueError, match="sparse_transformer"):
        flag_values(["decoder", "--model=transformer"])


SCRIPTS = {"decode_mp.sh": [], "decode_vd.sh": ["0.5"], "decode_l0.sh": []}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_scripts_print_usage_without_arguments(script):
    path = os.path.join(DECODE_DIR, script)
    assert os.access(path, os.X_OK)
    result = subprocess.run([path], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("usage:") and script in result.stderr


@pytest.fixture
def fake_python(tmp_path):
    """A stand-in interpreter that records its arguments, and a vocab dir the scripts accept."""
    stub = tmp_path / "python"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    vocab = tmp_path / "vocab"
    vocab.mkdir()
    (vocab / problems.WMT_VOCAB_FILE).write_text("'<pad>_'\n'<EOS>_'\n")
    source = tmp_path / "newstest2014.en"
    source.write_text("Hello.\n")
    env = dict(os.environ, PYTHON=str(stub), SOS_WMT_VOCAB_DIR=str(vocab))
    return env, source


@pytest.mark.parametrize("script, hparams_set, hparams", [
    ("decode_mp.sh", "sparse_transformer_magnitude_pruning_tpu", "symbol_modality_num_shards=1"),
    ("decode_vd.sh", "sparse_transformer_variational_dropout_tpu",
     "symbol_modality_num_shards=1,log_alpha_threshold=0.5"),
    ("decode_l0.sh", "sparse_transformer_l0_regularization_tpu", "symbol_modality_num_shards=1"),
])
def test_scripts_run_the_decoder_with_the_original_flags(fake_python, script, hparams_set, hparams):
    env, source = fake_python
    result = subprocess.run([os.path.join(DECODE_DIR, script), "/ckpts/run", *SCRIPTS[script], str(source)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == [
        "-m", "state_of_sparsity.sparse_transformer.decoder", f"--hparams_set={hparams_set}",
        "--output_dir=/ckpts/run", "--model=sparse_transformer", "--problem=translate_ende_wmt32k_packed",
        f"--data_dir={env['SOS_WMT_VOCAB_DIR']}", f"--decode_from_file={source}", f"--hparams={hparams}"]


def test_scripts_need_the_source_and_the_vocabulary(fake_python, tmp_path):
    env, _ = fake_python
    script = os.path.join(DECODE_DIR, "decode_vd.sh")
    missing_source = dict(env, SOS_NEWSTEST2014_EN=str(tmp_path / "absent.en"))
    result = subprocess.run([script, "/ckpts/run", "0.5"], capture_output=True, text=True, timeout=60,
                            env=missing_source)
    assert result.returncode == 1 and "absent.en not found" in result.stderr
    assert len(result.stderr.strip().split("\n")) == 1
    no_vocab = dict(env, SOS_WMT_VOCAB_DIR=str(tmp_path))
    result = subprocess.run([script, "/ckpts/run", "0.5", str(tmp_path / "newstest2014.en")],
                            capture_output=True, text=True, timeout=60, env=no_vocab)
    assert result.returncode == 1 and "vocab.translate_ende_wmt32k.32768.subwords" in result.stderr
