"""Translation input: parallel text and tfds WMT14 read from disk, encoding with EOS, packed and bucketed batches."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from state_of_sparsity.sparse_transformer import input_pipeline


class _CharEncoder:
    """A toy encoder: one id per character, ids >= 2 (0 is padding, 1 is EOS)."""

    def encode(self, text):
        return [2 + ord(c) % 50 for c in text]


class _ZeroEncoder:
    def encode(self, text):
        return [0, 5]


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return str(path)


# ---------------------------------------------------------------- parallel text


def test_parallel_text_is_read_line_by_line(tmp_path):
    source = _write(tmp_path / "a.en", "Hello world.  \r\nA line\u2028with a separator\n\nLast\n")
    target = _write(tmp_path / "a.de", "Hallo Welt.\nEine Zeile\u2028mit Trenner\n\nLetzte\n")
    assert input_pipeline.read_parallel_text(source, target) == [
        ("Hello world.", "Hallo Welt."),
        ("A line\u2028with a separator", "Eine Zeile\u2028mit Trenner"),
        ("", ""),
        ("Last", "Letzte"),
    ]


def test_parallel_text_errors_name_the_file_and_the_fix(tmp_path):
    source = _write(tmp_path / "a.en", "one\ntwo\nthree\n")
    target = _write(tmp_path / "a.de", "eins\nzwei\n")
    with pytest.raises(ValueError, match=r"same number of lines.*a.en' with 3 lines.*a.de' with 2 lines"):
        input_pipeline.read_parallel_text(source, target)
    with pytest.raises(FileNotFoundError, match=r"Received: target_path='.*missing.de' \(not found\)"):
        input_pipeline.read_parallel_text(source, str(tmp_path / "missing.de"))
    latin1 = _write(tmp_path / "b.de", "Stra\u00dfe\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"`target_path` must be UTF-8 text. Received: target_path='.*b.de'"):
        input_pipeline.read_parallel_text(_write(tmp_path / "b.en", "street\n"), latin1)


# ---------------------------------------------------------------- encoding


def test_encode_pairs_appends_eos_and_drops_long_pairs():
    pairs = [("ab", "xyz"), ("abcd", "x"), ("a", "wxyz"), ("", "")]
    examples = input_pipeline.encode_pairs(pairs, _CharEncoder(), _CharEncoder(), max_length=4)
    code = lambda text: [2 + ord(c) % 50 for c in text] + [1]  # noqa: E731 - the reference encoding
    # ("abcd" + EOS) and ("wxyz" + EOS) are 5 tokens long: dropped.
    assert examples == [
        {"inputs": code("ab"), "targets": code("xyz")},
        {"inputs": [1], "targets": [1]},
    ]
    assert len(input_pipeline.encode_pairs(pairs, _CharEncoder(), _CharEncoder(), max_length=None)) == 4


def test_encode_pairs_rejects_bad_encoders_and_pairs():
    with pytest.raises(TypeError, match=r"`target_encoder` must have an `encode\(text\) -> list\[int\]` method"):
        input_pipeline.encode_pairs([("a", "b")], _CharEncoder(), "vocab.txt")
    with pytest.raises(ValueError, match=r"source_encoder.encode must return ids >= 1 \(0 is padding\).*pair 0"):
        input_pipeline.encode_pairs([("a", "b")], _ZeroEncoder(), _CharEncoder())
    with pytest.raises(ValueError, match=r"string pairs. Received: pairs\[1\]=\('Gen 1:1', 'a', 'b'\)"):
        input_pipeline.encode_pairs([("a", "b"), ("Gen 1:1", "a", "b")], _CharEncoder(), _CharEncoder())
    with pytest.raises(ValueError, match=r"`max_length` must be a positive integer or None. Received: max_length=0"):
        input_pipeline.encode_pairs([("a", "b")], _CharEncoder(), _CharEncoder(), max_length=0)


# ---------------------------------------------------------------- batching


def test_bucket_boundaries_follow_t2t():
    assert input_pipeline.bucket_boundaries(64) == [
        8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 24, 26, 28, 30, 33, 36, 39, 42, 46, 50, 55, 60]
    assert input_pipeline.bucket_boundaries(8) == []


def _random_examples(count, max_length, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {"inputs": [int(i) for i in rng.integers(2, 500, rng.integers(0, max_length))] + [1],
         "targets": [int(i) for i in rng.integers(2, 500, rng.integers(0, max_length))] + [1]}
        for _ in range(count)
    ]


def _examples_in(batch):
    """(inputs, targets) of every example in a batch, split by segment id."""
    found = []
    for r in range(batch["inputs"].shape[0]):
        for segment in range(1, batch["inputs_segmentation"][r].max() + 1):
            found.append(tuple(
                tuple(batch[side][r][batch[f"{side}_segmentation"][r] == segment]) for side in ("inputs", "targets")))
    return found


@pytest.mark.parametrize("packed", [True, False])
def test_eval_dataset_holds_every_example_once_within_the_token_budget(packed):
    examples = _random_examples(400, max_length=32)
    dataset = input_pipeline.make_eval_dataset(examples, batch_size_tokens=160, max_length=32, packed=packed)
    seen = []
    for batch in dataset.as_numpy_iterator():
        assert sorted(batch) == sorted(input_pipeline.packing.FEATURES)
        for side in ("inputs", "targets"):
            assert batch[side].dtype == np.int32
            assert batch[side].size <= 160  # rows x padded length
            padding = batch[f"{side}_segmentation"] == 0
            assert not batch[side][padding].any() and batch[side][~padding].all()
        if packed:
            assert batch["inputs"].shape[1] == 32 and batch["inputs"].shape[0] <= 160 // 32
        else:
            assert batch["inputs_segmentation"].max() == 1  # one example per row
            segment = batch["targets_segmentation"]
            np.testing.assert_array_equal(batch["targets_position"], (np.cumsum(segment, axis=1) - 1) * segment)
        seen += _examples_in(batch)
    assert sorted(seen) == sorted((tuple(e["inputs"]), tuple(e["targets"])) for e in examples)


@pytest.mark.parametrize("packed", [True, False])
def test_training_dataset_repeats_with_full_batches_and_a_seeded_order(packed):
    examples = _random_examples(60, max_length=16, seed=1)

    def first_batches(seed):
        dataset = input_pipeline.make_dataset(examples, batch_size_tokens=64, max_length=16, packed=packed, seed=seed)
        return [batch for _, batch in zip(range(12), dataset.as_numpy_iterator())]  # more than one epoch

    batches = first_batches(seed=3)
    for batch in batches:
        assert batch["inputs"].size <= 64 and batch["targets"].size <= 64
        if packed:
            assert batch["inputs"].shape == (4, 16)  # drop_remainder keeps the batch shape static
    assert all(np.array_equal(a["targets"], b["targets"]) for a, b in zip(batches, first_batches(seed=3)))
    assert not all(np.array_equal(a["targets"], b["targets"]) for a, b in zip(batches, first_batches(seed=4)))


def test_dataset_arguments_are_checked():
    examples = _random_examples(5, max_length=8)
    with pytest.raises(ValueError, match=r"at least one sequence.*batch_size_tokens=4, max_length=8"):
        input_pipeline.make_dataset(examples, batch_size_tokens=4, max_length=8)
    long_example = [{"inputs": [2] * 9 + [1], "targets": [1]}]
    with pytest.raises(ValueError, match=r"examples\[0\] has 10 tokens, more than max_length=8.*encode_pairs"):
        input_pipeline.make_dataset(long_example, batch_size_tokens=64, max_length=8)
    with pytest.raises(ValueError, match=r"`examples` is empty"):
        input_pipeline.make_eval_dataset([], batch_size_tokens=64, max_length=8)


def test_text_to_batches_end_to_end(tmp_path):
    source = _write(tmp_path / "s.en", "In the beginning.\nAnd God said.\nLet there be light.\n")
    target = _write(tmp_path / "s.es", "En el principio.\nY dijo Dios.\nSea la luz.\n")
    pairs = input_pipeline.read_parallel_text(source, target)
    examples = input_pipeline.encode_pairs(pairs, _CharEncoder(), _CharEncoder(), max_length=19)
    assert len(examples) == 2  # "Let there be light." + EOS is 20 tokens: dropped
    batch = next(input_pipeline.make_eval_dataset(examples, 64, 32).as_numpy_iterator())
    assert batch["inputs_segmentation"].max() == 2 and batch["inputs"].shape == (1, 32)


# ---------------------------------------------------------------- tfds WMT14 on disk


class _FakeWmt14(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A tiny dataset written in the real tfds on-disk format as wmt14_translate/de-en."""

    name = "wmt14_translate"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="de-en")]

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.Translation(languages=("de", "en")),
            supervised_keys=("de", "en"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(6), "test": self._generate_examples(3)}

    def _generate_examples(self, count):
        for index in range(count):
            yield index, {"de": f"Das Haus {index} ist gro\u00df.", "en": f"The house {index} is big."}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("tfds"))
    _FakeWmt14(data_dir=directory, config="de-en").download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return directory


def test_wmt14_is_read_from_disk_english_to_german_by_default(tfds_dir):
    pairs = sorted(input_pipeline.read_tfds_wmt14(tfds_dir, "test"))
    assert pairs == [(f"The house {i} is big.", f"Das Haus {i} ist gro\u00df.") for i in range(3)]
    reverse = sorted(input_pipeline.read_tfds_wmt14(tfds_dir, "train[:2]", source_language="de", target_language="en"))
    assert len(reverse) == 2 and all(source.startswith("Das Haus") for source, _ in reverse)


def test_wmt14_errors_name_what_is_missing(tfds_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"wmt14_translate/de-en is not prepared.*de-en/<version>/dataset_info"
                                                r".json.*tfds build wmt14_translate/de-en --data_dir=DIR"):
        input_pipeline.read_tfds_wmt14(str(tmp_path), "train")
    with pytest.raises(ValueError, match=r"`split` must be one of \['test', 'train'\].*split='validation'"):
        input_pipeline.read_tfds_wmt14(tfds_dir, "validation")
    with pytest.raises(ValueError, match=r"`target_language` must be one of \('de', 'en'\). Received: .*='fr'"):
        input_pipeline.read_tfds_wmt14(tfds_dir, "test", target_language="fr")
