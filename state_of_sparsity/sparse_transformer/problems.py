"""Translation problems by the original's `--problem` names: where the sentence pairs and the vocabulary come from.

- `translate_ende_wmt32k_packed` (the paper's) and `translate_ende_wmt32k`: tfds
  `wmt14_translate/de-en` already prepared under `--data_dir`, English to German,
  with the published vocabulary `vocab.translate_ende_wmt32k.32768.subwords` in `--data_dir`
  (never rebuilt: the released checkpoints' ids depend on it).
- `translate_enes_bible_packed` and `translate_enes_bible`: the King James and Reina-Valera
  1909 Bibles from the Debian SWORD packages, English to Spanish, split by verse hash.
- `translate_parallel_text_packed` and `translate_parallel_text`: your own one-sentence-per-line
  files (`--train_source/--train_target`, `--eval_source/--eval_target`).
The last two build a shared subword vocabulary from their training text the first time and keep it in
`--data_dir` (`vocab.<problem>.<size>.subwords`), as T2T's data generation does.
"""

import dataclasses
import os

from absl import logging

from state_of_sparsity import atomic_write
from state_of_sparsity.sparse_transformer import bible
from state_of_sparsity.sparse_transformer import input_pipeline
from state_of_sparsity.sparse_transformer import text_encoder

WMT_VOCAB_FILE = "vocab.translate_ende_wmt32k.32768.subwords"
BUILT_VOCAB_SIZE = 8192


class DataError(ValueError):
    """The data or vocabulary a problem needs is missing or unusable (a one-line message names the fix)."""


@dataclasses.dataclass(frozen=True)
class DataSources:
    """Where a problem reads from (the trainer's and decoder's data flags)."""

    data_dir: str = ""
    sword_path: str = bible.DEFAULT_SWORD_PATH
    train_source: str = ""
    train_target: str = ""
    eval_source: str = ""
    eval_target: str = ""
    vocab_size: int = BUILT_VOCAB_SIZE


class Problem:
    """Sentence pairs per split plus the subword encoder they are encoded with."""

    name = ""
    packed = False

    def pairs(self, split, sources):
        """[(source, target)] sentence pairs of `split` ("train", "dev" or "test")."""
        raise NotImplementedError

    def vocab_path(self, sources):
        return os.path.join(_require_data_dir(sources, self.name), self.vocab_file(sources))

    def vocab_file(self, sources):
        return f"vocab.{self.name.removesuffix('_packed')}.{sources.vocab_size}.subwords"

    def encoder(self, sources):
        """The vocabulary in `--data_dir`, built from the training pairs if it is not there yet."""
        path = self.vocab_path(sources)
        if not os.path.exists(path):
            logging.info("Building a %d-subword vocabulary into %s.", sources.vocab_size, path)
            texts = [side for pair in self.pairs("train", sources) for side in pair]
            encoder = text_encoder.SubwordTextEncoder.build_from_generator(texts, sources.vocab_size)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            encoder.store_to_file(path)
        return text_encoder.SubwordTextEncoder(path)

    def examples(self, split, sources, encoder, max_length):
        """Encoded examples of `split` (EOS on both sides), longer than `max_length` dropped (0: none)."""
        return input_pipeline.encode_pairs(self.pairs(split, sources), encoder, encoder, max_length or None)


def _require_data_dir(sources, problem):
    if not sources.data_dir:
        raise ValueError(f"--problem={problem} keeps its vocabulary in --data_dir: pass --data_dir=DIR.")
    return sources.data_dir


class WmtEnde(Problem):
    """WMT14 English-German from tfds on disk (validation = newstest2013, test = newstest2014)."""

    TFDS_SPLITS = {"train": "train", "dev": "validation", "test": "test"}

    def __init__(self, name, packed):
        self.name, self.packed = name, packed

    def pairs(self, split, sources):
        return list(input_pipeline.read_tfds_wmt14(
            _require_data_dir(sources, self.name), self.TFDS_SPLITS[split]))

    def vocab_file(self, sources):
        return WMT_VOCAB_FILE

    def encoder(self, sources):
        path = self.vocab_path(sources)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"--problem={self.name} needs the published vocabulary at {path}: copy "
                f"{WMT_VOCAB_FILE} (from the original's sparse_transformer/decode/wmt_ende32k/) there."
            )
        return text_encoder.SubwordTextEncoder(path)


class Bible(Problem):
    """KJV (English) to Reina-Valera 1909 (Spanish) verse pairs; 2% dev and 2% test by verse hash."""

    def __init__(self, name, packed):
        self.name, self.packed = name, packed
        self._splits = {}

    def pairs(self, split, sources):
        if sources.sword_path not in self._splits:
            verses = bible.read_aligned_verses(sources.sword_path)
            self._splits[sources.sword_path] = dict(zip(("train", "dev", "test"), bible.split(verses)))
        return [(source, target) for _, source, target in self._splits[sources.sword_path][split]]


class ParallelText(Problem):
    """User-supplied parallel files; "dev" and "test" are both the eval files."""

    def __init__(self, name, packed):
        self.name, self.packed = name, packed

    def pairs(self, split, sources):
        prefix = "train" if split == "train" else "eval"
        source, target = getattr(sources, f"{prefix}_source"), getattr(sources, f"{prefix}_target")
        if not source or not target:
            raise ValueError(
                f"--problem={self.name} reads --{prefix}_source and --{prefix}_target: pass both files."
            )
        return input_pipeline.read_parallel_text(source, target)


PROBLEMS = {
    problem.name: problem
    for base, cls in (("translate_ende_wmt32k", WmtEnde), ("translate_enes_bible", Bible),
                      ("translate_parallel_text", ParallelText))
    for problem in (cls(base + "_packed", True), cls(base, False))
}


def get_problem(name):
    """The registered problem `name`."""
    if name not in PROBLEMS:
        raise ValueError(f"--problem must be one of {sorted(PROBLEMS)}. Received: {name!r}")
    return PROBLEMS[name]


def write_lines(path, lines):
    """Writes one line per element, atomically (decodes, held-out sources and references)."""
    with atomic_write.open_atomic(path, encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
