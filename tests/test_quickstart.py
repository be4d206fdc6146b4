"""Smoke test of the quickstart job on tiny Fashion-MNIST files in the real IDX format."""

import csv
import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from matplotlib import image as mpl_image

from state_of_sparsity import quickstart

NUM_TRAIN = 64
NUM_TEST = 32
SPARSITY = 0.9
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_idx(path, array):
    # IDX: 0x00 0x00, dtype 0x08 (unsigned byte), number of dims, big-endian uint32 sizes.
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fashion_mnist")
    rng = np.random.default_rng(0)
    for prefix, size in (("train", NUM_TRAIN + 16), ("t10k", NUM_TEST)):
        _write_idx(
            directory / f"{prefix}-images-idx3-ubyte.gz",
            rng.integers(0, 256, (size, 28, 28)),
        )
        _write_idx(
            directory / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, size)
        )
    return str(directory)


@pytest.fixture(scope="module")
def smoke_run(data_dir, tmp_path_factory):
    config = quickstart.Config(
        data_dir=data_dir,
        output_dir=str(tmp_path_factory.mktemp("quickstart_output")),
        epochs=1,
        batch_size=16,
        sparsity=SPARSITY,
        max_train_examples=NUM_TRAIN,
    )
    return config, quickstart.run(config)


def test_run_trains_every_default_technique(smoke_run):
    config, rows = smoke_run

    assert [row["technique"] for row in rows] == [
        "dense",
        "magnitude_pruning",
        "random_pruning",
        "variational_dropout",
        "l0_regularization",
    ]
    for row in rows:
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert np.isfinite(row["train_time_s"]) and row["train_time_s"] > 0


def test_run_reaches_target_sparsity_and_strip_keeps_accuracy(smoke_run):
    _, rows = smoke_run

    dense, *pruned, vd, l0 = rows
    assert dense["sparsity"] == 0.0 and dense["target_sparsity"] == 0.0
    assert dense["kernel_sparsity"] == 0.0
    for row in (vd, l0):  # learned sparsity: no target, one tiny epoch prunes little
        assert row["target_sparsity"] is None
        assert 0.0 <= row["sparsity"] < 0.5
    for row in pruned:
        assert row["target_sparsity"] == SPARSITY
        assert abs(row["sparsity"] - SPARSITY) < 0.005
        # conv1 stays dense, so all kernels together are a little less sparse.
        assert SPARSITY - 0.005 < row["kernel_sparsity"] < row["sparsity"]
    for row in rows:
        assert row["stripped_test_accuracy"] == row["test_accuracy"]


def test_run_writes_csv_png_and_no_temporary_files(smoke_run):
    config, rows = smoke_run

    with open(os.path.join(config.output_dir, "results.csv"), newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == quickstart.CSV_COLUMNS
        written = list(reader)
    assert [r["technique"] for r in written] == [row["technique"] for row in rows]
    for csv_row, row in zip(written, rows, strict=True):
        assert float(csv_row["test_accuracy"]) == row["test_accuracy"]
        assert float(csv_row["sparsity"]) == row["sparsity"]
    png = os.path.join(config.output_dir, "results.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert mpl_image.imread(png).ndim == 3
    assert not [name for name in os.listdir(config.output_dir) if name.endswith(".tmp")]


def test_write_csv_keeps_previous_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "results.csv")
    with open(path, "w") as f:
        f.write("previous")

    with pytest.raises(ValueError, match="not_a_column"):
        quickstart.write_csv([{"not_a_column": 1}], path)

    with open(path) as f:
        assert f.read() == "previous"
    assert os.listdir(tmp_path) == ["results.csv"]


@pytest.mark.parametrize("total_steps", [1, 2, 3, 7, 20, 1000])
def test_pruning_schedule_ends_within_the_run(total_steps):
    schedule = quickstart.pruning_schedule(SPARSITY, total_steps)

    assert 0 <= schedule.begin_step < schedule.end_step <= total_steps
    assert 1 <= schedule.frequency <= schedule.end_step - schedule.begin_step
    assert float(schedule(schedule.end_step)) == pytest.approx(SPARSITY)


def test_config_rejects_unknown_technique():
    with pytest.raises(
        ValueError,
        match=r"`techniques` must be .*Received: techniques=\('dense', 'l1'\)",
    ):
        quickstart.Config(techniques=("dense", "l1"))


def test_flags_reject_unknown_technique_and_bad_sparsity():
    with flagsaver.flagsaver():
        with pytest.raises(
            flags.IllegalFlagValueError,
            match=r"--techniques must be .*Received: 'dense,l1'",
        ):
            flags.FLAGS(["quickstart", "--techniques=dense,l1"])
        with pytest.raises(
            flags.IllegalFlagValueError, match=r"--sparsity must be .*Received: 1.0"
        ):
            flags.FLAGS(["quickstart", "--sparsity=1.0"])


def test_parse_flags_rejects_positional_arguments():
    with flagsaver.flagsaver():
        with pytest.raises(
            SystemExit,
            match=r"takes flags only\. Received extra arguments: \['extra'\]",
        ):
            quickstart.parse_flags(["quickstart", "extra"])


def test_script_exits_nonzero_on_bad_flag(data_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "state_of_sparsity.quickstart",
            f"--data_dir={data_dir}",
            "--epochs=0",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "flag --epochs=0: 0 is not a positive integer" in result.stderr


def test_run_writes_tensorboard_logs_per_technique(smoke_run):
    config, rows = smoke_run

    for row in rows:
        log_dir = os.path.join(config.output_dir, row["technique"], "tensorboard")
        events = [name for _, _, files in os.walk(log_dir) for name in files]
        assert any(name.startswith("events.out.tfevents") for name in events)
