"""The Bible recipe end to end on a tiny SWORD library: train, translate the test verses, BLEU, CSV and plot."""

import csv
import dataclasses

import pytest

from state_of_sparsity.sparse_transformer import bible
from state_of_sparsity.sparse_transformer import bible_recipe as recipe

WORDS = "god light day night water earth heaven good man woman".split()
SPANISH = dict(zip(WORDS, "dios luz día noche agua tierra cielo bueno hombre mujer".split()))


@pytest.fixture(scope="module")
def sword_path(tmp_path_factory, write_ztext_module):
    """Both default modules, 120 verses of a word-for-word toy pair, in the real zText format."""
    path = str(tmp_path_factory.mktemp("sword"))
    english, spanish = {}, {}
    for index in range(120):
        chapter, verse = 1 + index // 30, 1 + index % 30
        words = [WORDS[(index * 3 + j) % len(WORDS)] for j in range(2 + index % 3)]
        english[("Gen", chapter, verse)] = " ".join(words) + "."
        spanish[("Gen", chapter, verse)] = " ".join(SPANISH[w] for w in words) + "."
    write_ztext_module(path, bible.DEFAULT_SOURCE_MODULE, english)
    write_ztext_module(path, bible.DEFAULT_TARGET_MODULE, spanish)
    return path


def test_recipe_trains_decodes_and_scores_every_technique(sword_path, tmp_path):
    base = recipe.base_config(3, str(tmp_path / "runs"), str(tmp_path / "data"), sword_path, warmup_steps=2)
    base = dataclasses.replace(base, hparams_set="sparse_transformer_micro", hparams="max_length=32,batch_size=256",
                               vocab_size=64, eval_steps=2)
    test_pairs = recipe.problems.get_problem(recipe.PROBLEM).pairs("test", base.data_sources)
    assert test_pairs, "the hash split should hold a few of the 120 verses out"
    rows = [recipe.run_one(recipe.run_config(t, base, 0.5), test_pairs, dict(beam_size=2, alpha=0.6, extra_length=5))
            for t in ("dense", "magnitude_pruning", "variational_dropout")]
    recipe.write_results(rows, str(tmp_path / "out"))
    with open(tmp_path / "out" / "results.csv") as f:
        written = list(csv.DictReader(f))
    assert [r["technique"] for r in written] == ["dense", "magnitude_pruning", "variational_dropout"]
    assert float(written[1]["global_sparsity"]) == pytest.approx(0.5, abs=0.01)
    assert all(0 <= float(r["bleu"]) <= 100 and float(r["decode_time_s"]) > 0 for r in written)
    decodes = (tmp_path / "runs" / "magnitude_pruning" / "test.decodes").read_text(encoding="utf-8").splitlines()
    assert len(decodes) == len(test_pairs)
    assert (tmp_path / "out" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pruning_runs_ramp_over_the_middle_of_training():
    base = recipe.base_config(1000, "/tmp/runs", "/tmp/data", "/usr/share/sword", warmup_steps=100)
    config = recipe.run_config("random_pruning", base, 0.9)
    hparams = config.resolved_hparams()
    assert (hparams.sparsity_technique, hparams.target_sparsity) == ("random_pruning", 0.9)
    assert (hparams.begin_pruning_step, hparams.end_pruning_step, hparams.pruning_frequency) == (200, 700, 25)
    assert recipe.run_config("dense", base, 0.9).resolved_hparams().sparsity_technique is None
    assert hparams.learning_rate_warmup_steps == 100 and hparams.max_length == 128


def test_penalty_runs_take_the_given_weights():
    base = recipe.base_config(1000, "/tmp/runs", "/tmp/data", "/usr/share/sword", warmup_steps=100)
    vd = recipe.run_config("variational_dropout", base, 0.9, vd_weight=3e-6).resolved_hparams()
    l0 = recipe.run_config("l0_regularization", base, 0.9, l0_weight=4e-6).resolved_hparams()
    assert (vd.sparsity_technique, vd.dkl_weight, vd.dkl_weight_diff) == ("variational_dropout", 3e-6, 700)
    assert (l0.sparsity_technique, l0.l0_norm_weight) == ("l0_regularization", 4e-6)
    default = recipe.run_config("variational_dropout", base, 0.9).resolved_hparams()
    assert default.dkl_weight == recipe.VD_WEIGHT
