"""The small-scale recipe end to end on tiny IDX files: one row per run, CSV and plot written."""

import csv
import gzip
import struct

import numpy as np
import pytest

from state_of_sparsity.sparse_rn50 import fashion_mnist_recipe as recipe


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 16), ("t10k", 8)):
        with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", count, 28, 28)
                    + rng.integers(0, 256, (count, 28, 28), dtype=np.uint8).tobytes())
        with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", count) + bytes(i % 10 for i in range(count)))
    return str(directory)


def test_recipe_writes_one_row_per_technique_and_target(idx_dir, tmp_path):
    base = recipe.base_config("tiny", 1.0, 8, 16, 8, idx_dir, str(tmp_path / "runs"))
    rows = recipe.run_all(base, ["threshold", "variational_dropout"], [0.5, 0.9])
    recipe.write_results(rows, str(tmp_path / "out"))
    with open(tmp_path / "out" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["technique"], r["target"]) for r in rows] == [
        ("threshold", "0.5"), ("threshold", "0.9"), ("variational_dropout", "0.5"), ("variational_dropout", "0.9")]
    threshold = {r["target"]: float(r["global_sparsity"]) for r in rows if r["technique"] == "threshold"}
    assert threshold == {"0.5": pytest.approx(0.5, abs=0.02), "0.9": pytest.approx(0.9, abs=0.02)}
    assert all(0 <= float(r["top_1_accuracy"]) <= 1 and float(r["wall_time_s"]) > 0 for r in rows)
    assert (tmp_path / "out" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learned_techniques_scale_the_penalty_with_the_target():
    from state_of_sparsity.sparse_rn50 import config as config_lib

    base = config_lib.Config(dataset="fashion_mnist", num_train_images=1000, train_steps=100)
    low, high = (recipe.run_config("l0_regularization", t, base) for t in (0.5, 0.95))
    assert low.reg_scalar == pytest.approx(3 / 1000) and high.reg_scalar == pytest.approx(100 / 1000)
    assert (low.log_sigma2_init, low.log_alpha_init) == (-8.0, 1.0)
    pruned = recipe.run_config("threshold", 0.8, base)
    assert (pruned.end_sparsity, pruned.sparsity_begin_step, pruned.sparsity_end_step) == (0.8, 10, 60)


def test_rerunning_one_technique_keeps_the_other_rows(tmp_path):
    def row(technique, target, accuracy):
        return {"technique": technique, "target": target, "reg_scalar": 0.0, "top_1_accuracy": accuracy,
                "top_5_accuracy": 1.0, "global_sparsity": target, "train_steps": 10, "wall_time_s": 1.0}

    recipe.write_results([row("random", 0.5, 0.1), row("threshold", 0.5, 0.2)], str(tmp_path))
    recipe.write_results([row("random", 0.5, 0.3), row("random", 0.9, 0.4)], str(tmp_path))
    with open(tmp_path / "results.csv") as f:
        rows = [(r["technique"], float(r["target"]), float(r["top_1_accuracy"])) for r in csv.DictReader(f)]
    assert rows == [("threshold", 0.5, 0.2), ("random", 0.5, 0.3), ("random", 0.9, 0.4)]


def test_a_foreign_results_file_is_left_alone(tmp_path):
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a results file"):
        recipe.write_results([], str(tmp_path))
    assert (tmp_path / "results.csv").read_text() == "a,b\n1,2\n"
