"""Recipe result tables: merge a re-run's rows into an earlier results.csv instead of losing the others."""

import csv
import os

from state_of_sparsity import atomic_write


def merge_with_existing(rows, path, columns, key_columns, techniques):
    """`rows` plus the rows of an earlier CSV at `path` for runs not repeated now, in recipe order.

    Lets one technique be re-run (`--techniques=random`) without losing the others.
    Rows are keyed by `key_columns` ("technique" first), numbers are read back as
    floats, and the result is sorted by the position of the technique in `techniques`.
    """
    if not os.path.exists(path):
        return rows
    with open(path, newline="") as f:
        old = list(csv.DictReader(f))
    if not old or set(old[0]) != set(columns):
        raise ValueError(f"{path} is not a results file of this recipe: move it away or pick another --output_dir.")

    def key(row):
        return tuple(row[c] if c == "technique" else float(row[c]) for c in key_columns)

    new_keys = {key(r) for r in rows}
    kept = [{**r, **{c: float(r[c]) for c in columns if c != "technique"}} for r in old if key(r) not in new_keys]
    order = {t: i for i, t in enumerate(techniques)}
    return sorted(kept + rows, key=lambda r: (order.get(r["technique"], len(order)),) + key(r)[1:])


def write_merged(rows, path, columns, key_columns, techniques):
    """Writes `merge_with_existing(...)` to `path` atomically; returns the merged rows (for the plot)."""
    rows = merge_with_existing(rows, path, columns, key_columns, techniques)
    atomic_write.write_csv(path, rows, columns)
    return rows
