"""Merging a re-run's rows into an earlier recipe results.csv."""

import csv

import pytest

from state_of_sparsity import results_csv

COLUMNS = ("technique", "bleu")


def _write(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_rerun_rows_replace_their_technique_and_keep_the_others_in_recipe_order(tmp_path):
    path = tmp_path / "results.csv"
    _write(path, [{"technique": "dense", "bleu": 20.0}, {"technique": "vd", "bleu": 1.0},
                  {"technique": "l0", "bleu": 2.0}])
    merged = results_csv.merge_with_existing([{"technique": "vd", "bleu": 9.0}], str(path), COLUMNS,
                                             ("technique",), ("dense", "vd", "l0"))
    assert merged == [{"technique": "dense", "bleu": 20.0}, {"technique": "vd", "bleu": 9.0},
                      {"technique": "l0", "bleu": 2.0}]


def test_no_earlier_file_keeps_the_rows_and_a_foreign_file_is_refused(tmp_path):
    rows = [{"technique": "dense", "bleu": 1.0}]
    assert results_csv.merge_with_existing(rows, str(tmp_path / "none.csv"), COLUMNS, ("technique",), ()) == rows
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a results file"):
        results_csv.merge_with_existing(rows, str(tmp_path / "other.csv"), COLUMNS, ("technique",), ())
