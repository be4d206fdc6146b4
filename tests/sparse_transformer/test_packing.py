"""Packing (inputs, targets) examples into rows: hand-worked layouts, T2T's first-fit queue, invariants, errors."""

import numpy as np
import pytest

from state_of_sparsity.sparse_transformer import packing


def _example(inputs, targets):
    return {"inputs": inputs, "targets": targets}


def test_two_examples_share_a_row_and_the_third_opens_another():
    examples = [
        _example([5, 6, 1], [7, 1]),
        _example([8, 1], [9, 10, 11, 1]),
        _example([12, 13, 14, 15, 1], [16, 1]),
    ]
    rows = packing.pack_examples(examples, packed_length=6)
    expected = {
        "inputs": [[5, 6, 1, 8, 1, 0], [12, 13, 14, 15, 1, 0]],
        "targets": [[7, 1, 9, 10, 11, 1], [16, 1, 0, 0, 0, 0]],
        "inputs_segmentation": [[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 0]],
        "targets_segmentation": [[1, 1, 2, 2, 2, 2], [1, 1, 0, 0, 0, 0]],
        "inputs_position": [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 0]],
        "targets_position": [[0, 1, 0, 1, 2, 3], [0, 1, 0, 0, 0, 0]],
    }
    assert sorted(rows) == sorted(packing.FEATURES)
    for name, values in expected.items():
        assert rows[name].dtype == np.int32 and rows[name].tolist() == values, name


def test_an_example_goes_to_the_first_open_row_with_room_on_both_sides():
    examples = [_example([2, 2, 1], [3, 3, 1]), _example([4, 4, 1], [1]), _example([1], [5, 1])]
    rows = packing.pack_examples(examples, packed_length=4)
    # The third does not fit row 0 (targets 3 + 2 > 4), so it joins row 1.
    assert rows["inputs"].tolist() == [[2, 2, 1, 0], [4, 4, 1, 1]]
    assert rows["targets"].tolist() == [[3, 3, 1, 0], [1, 5, 1, 0]]
    examples = [_example([2, 2, 1], [3, 3, 1]), _example([4, 4, 1], [1]), _example([1], [1])]
    rows = packing.pack_examples(examples, packed_length=4)
    # Now the third fits the first row, which is still open.
    assert rows["inputs_segmentation"].tolist() == [[1, 1, 1, 2], [1, 1, 1, 0]]
    assert rows["targets"].tolist() == [[3, 3, 1, 1], [1, 0, 0, 0]]


def test_a_full_queue_emits_its_oldest_row_first():
    examples = [_example([2, 2, 1], [3, 3, 1]), _example([4, 4, 1], [1]), _example([1], [1])]
    rows = packing.pack_examples(examples, packed_length=4, queue_size=1)
    # Row 0 left the queue when the second example opened row 1, so the third joins row 1.
    assert rows["inputs"].tolist() == [[2, 2, 1, 0], [4, 4, 1, 1]]
    assert rows["targets_segmentation"].tolist() == [[1, 1, 1, 0], [1, 2, 0, 0]]


def test_spacing_puts_zeros_between_examples():
    rows = packing.pack_examples([_example([5, 1], [6, 1]), _example([7, 1], [1])], packed_length=6, spacing=2)
    assert rows["inputs"].tolist() == [[5, 1, 0, 0, 7, 1]]
    assert rows["inputs_segmentation"].tolist() == [[1, 1, 0, 0, 2, 2]]
    assert rows["targets_position"].tolist() == [[0, 1, 0, 0, 0, 0]]


def _unpack(rows):
    """The examples a packed batch holds, rebuilt from segment ids alone (reference for the invariants)."""
    examples = []
    for r in range(rows["inputs"].shape[0]):
        num_segments = rows["inputs_segmentation"][r].max()
        assert rows["targets_segmentation"][r].max() == num_segments
        for segment in range(1, num_segments + 1):
            example = []
            for side in ("inputs", "targets"):
                where = np.flatnonzero(rows[f"{side}_segmentation"][r] == segment)
                assert where.size and np.all(np.diff(where) == 1)  # one contiguous run
                np.testing.assert_array_equal(rows[f"{side}_position"][r, where], np.arange(where.size))
                example.append(tuple(rows[side][r, where]))
            examples.append(tuple(example))
        for side in ("inputs", "targets"):
            padding = rows[f"{side}_segmentation"][r] == 0
            assert not rows[side][r, padding].any() and not rows[f"{side}_position"][r, padding].any()
    return examples


@pytest.mark.parametrize("queue_size", [1, 3, 10])
def test_random_examples_each_appear_exactly_once(queue_size):
    rng = np.random.default_rng(queue_size)
    def ids():
        return list(rng.integers(2, 99, rng.integers(0, 16))) + [1]

    examples = [_example(ids(), ids()) for _ in range(300)]
    rows = packing.pack_examples(examples, packed_length=16, queue_size=queue_size)
    assert rows["inputs"].shape[1] == 16
    rebuilt = _unpack(rows)
    original = [(tuple(e["inputs"]), tuple(e["targets"])) for e in examples]
    assert sorted(rebuilt) == sorted(original)
    # Packing is worth it: rows are mostly full.
    assert (rows["inputs_segmentation"] > 0).mean() > 0.5


def test_iter_packed_rows_yields_unpadded_rows_lazily():
    rows = packing.iter_packed_rows(iter([_example([2, 1], [3, 1])] * 3), packed_length=4)
    assert next(rows)["inputs"] == [2, 1, 2, 1]
    assert next(rows)["targets_segmentation"] == [1, 1]
    assert next(rows, None) is None


def test_too_long_example_is_rejected_with_the_fix():
    with pytest.raises(ValueError, match=r"examples\[1\] has 3 input and 5 target tokens, more than packed_length=4"
                                         r".*encode_pairs\(\.\.\., max_length=4\)"):
        packing.pack_examples([_example([1], [1]), _example([2, 2, 1], [3, 3, 3, 3, 1])], packed_length=4)


@pytest.mark.parametrize("example, pattern", [
    ({"inputs": [2, 1]}, r"dict with token-id lists under 'inputs' and 'targets'.*examples\[0\]"),
    (([2, 1], [3, 1]), r"dict with token-id lists"),
    (_example([], [3, 1]), r"at least one input and one target token.*0 input and 2 target"),
])
def test_malformed_examples_are_rejected(example, pattern):
    with pytest.raises(ValueError, match=pattern):
        packing.pack_examples([example], packed_length=8)


def test_bad_packing_arguments_are_rejected():
    with pytest.raises(ValueError, match=r"`packed_length` must be a positive integer. Received: packed_length=0"):
        packing.pack_examples([_example([1], [1])], packed_length=0)
    with pytest.raises(ValueError, match=r"`queue_size` >= 1. Received: spacing=0, queue_size=0"):
        packing.pack_examples([_example([1], [1])], packed_length=4, queue_size=0)
