"""Packs (inputs, targets) examples into fixed-length rows with segment ids and positions, as T2T's packed problems."""

import numpy as np

FEATURES = (
    "inputs",
    "targets",
    "inputs_segmentation",
    "targets_segmentation",
    "inputs_position",
    "targets_position",
)
# T2T's translate problems pack with no spacing; pack_examples keeps up to 10 open rows.
DEFAULT_SPACING = 0
DEFAULT_QUEUE_SIZE = 10


class _Row:
    """One packed row under construction: several examples' inputs and targets side by side."""

    def __init__(self):
        self.sides = {"inputs": [], "targets": []}
        self.segments = {"inputs": [], "targets": []}
        self.positions = {"inputs": [], "targets": []}
        self.num_examples = 0

    def fits(self, example, packed_length, spacing):
        gap = spacing if self.num_examples else 0
        return all(len(self.sides[side]) + gap + len(example[side]) <= packed_length for side in self.sides)

    def add(self, example, spacing):
        gap = spacing if self.num_examples else 0
        self.num_examples += 1
        for side in self.sides:
            ids = list(example[side])
            self.sides[side] += [0] * gap + ids
            self.segments[side] += [0] * gap + [self.num_examples] * len(ids)
            self.positions[side] += [0] * gap + list(range(len(ids)))

    def features(self):
        return {
            "inputs": self.sides["inputs"],
            "targets": self.sides["targets"],
            "inputs_segmentation": self.segments["inputs"],
            "targets_segmentation": self.segments["targets"],
            "inputs_position": self.positions["inputs"],
            "targets_position": self.positions["targets"],
        }


def _check_example(index, example, packed_length):
    try:
        lengths = len(example["inputs"]), len(example["targets"])
    except (KeyError, TypeError):
        raise ValueError(
            "Each example must be a dict with token-id lists under 'inputs' and 'targets' "
            f"(as encode_pairs returns). Received: examples[{index}]={example!r:.200}"
        ) from None
    if min(lengths) == 0:
        raise ValueError(
            "Examples need at least one input and one target token (encode_pairs appends EOS). "
            f"Received: examples[{index}] with {lengths[0]} input and {lengths[1]} target tokens"
        )
    if max(lengths) > packed_length:
        raise ValueError(
            f"examples[{index}] has {lengths[0]} input and {lengths[1]} target tokens, more than "
            f"packed_length={packed_length}. Drop long pairs with encode_pairs(..., max_length="
            f"{packed_length}) or raise packed_length."
        )


def iter_packed_rows(examples, packed_length, spacing=DEFAULT_SPACING, queue_size=DEFAULT_QUEUE_SIZE):
    """Yields packed rows (dicts of unpadded int lists, keys `FEATURES`), greedy first fit.

    Each example goes into the first of up to `queue_size` open rows where both
    its inputs and its targets still fit; when none has room, the oldest row
    is emitted (if the queue is full) and a new row is opened. An example's
    inputs and targets get the same segment id (1, 2, ... in the row), so
    encoder-decoder attention can be kept within the example; `spacing` zeros
    separate consecutive examples (segment and position 0 there).
    """
    if packed_length < 1:
        raise ValueError(f"`packed_length` must be a positive integer. Received: packed_length={packed_length}")
    if spacing < 0 or queue_size < 1:
        raise ValueError(
            f"`spacing` must be >= 0 and `queue_size` >= 1. Received: spacing={spacing}, queue_size={queue_size}"
        )
    open_rows = []
    for index, example in enumerate(examples):
        _check_example(index, example, packed_length)
        row = next((r for r in open_rows if r.fits(example, packed_length, spacing)), None)
        if row is None:
            if len(open_rows) == queue_size:
                yield open_rows.pop(0).features()
            row = _Row()
            open_rows.append(row)
        row.add(example, spacing)
    for row in open_rows:
        yield row.features()


def pack_examples(examples, packed_length, spacing=DEFAULT_SPACING, queue_size=DEFAULT_QUEUE_SIZE):
    """Dict of int32 arrays [num_rows, packed_length] (keys `FEATURES`), zero-padded, from `iter_packed_rows`.

    Example:

    >>> rows = pack_examples([{"inputs": [5, 1], "targets": [6, 7, 1]},
    ...                       {"inputs": [8, 1], "targets": [1]}], packed_length=5)
    >>> rows["targets"].tolist(), rows["targets_segmentation"].tolist()
    ([[6, 7, 1, 1, 0]], [[1, 1, 1, 2, 0]])
    >>> rows["inputs_position"].tolist()
    [[0, 1, 0, 1, 0]]
    """
    rows = list(iter_packed_rows(examples, packed_length, spacing, queue_size))
    packed = {name: np.zeros((len(rows), packed_length), np.int32) for name in FEATURES}
    for row_index, row in enumerate(rows):
        for name in FEATURES:
            values = row[name]
            packed[name][row_index, : len(values)] = values
    return packed
