"""tensor2tensor's SubwordTextEncoder: reads T2T vocab files and gives the published checkpoints' ids."""

import collections
import collections.abc
import itertools
import operator
import os
import re

from absl import logging

from state_of_sparsity.atomic_write import open_atomic
from state_of_sparsity.sparse_transformer import tokenizer

PAD = "<pad>"
EOS = "<EOS>"
PAD_ID = 0
EOS_ID = 1
RESERVED_TOKENS = (PAD, EOS)
# T2T (1.15) stores the reserved tokens escaped, like the published translate_ende_wmt32k
# vocabulary ('<pad>_', '<EOS>_'); some older builds stored them bare. Both are read.
_RESERVED_FORMS = (("<pad>_", "<EOS>_"), RESERVED_TOKENS)

# Every escaped token may use these characters, so they are always in the alphabet.
ESCAPE_CHARS = frozenset("\\_u;0123456789")
# `\u` -> "_", `\\` -> "\", `\213;` -> chr(213).
_UNESCAPE = re.compile(r"\\u|\\\\|\\([0-9]+);")
# What T2T writes for an escaped code point that does not exist (U+3013 GETA MARK).
_UNDEFINED_CHAR = "\u3013"
_CACHE_LIMIT = 2**20
_LINE_FORMAT = "one quoted subtoken per line, like 'the_', starting with '<pad>_' and '<EOS>_'"


def escape_token(token, alphabet):
    """Escapes `\\`, `_` and characters outside `alphabet` (and newlines), then appends `_`."""
    token = token.replace("\\", "\\\\").replace("_", "\\u")
    return "".join(c if c in alphabet and c != "\n" else f"\\{ord(c)};" for c in token) + "_"


def unescape_token(escaped_token):
    """Inverse of `escape_token` (drops one trailing `_`)."""

    def replace(match):
        if match.group(1) is None:
            return "_" if match.group(0) == "\\u" else "\\"
        try:
            return chr(int(match.group(1)))
        except (ValueError, OverflowError):
            return _UNDEFINED_CHAR

    trimmed = escaped_token[:-1] if escaped_token.endswith("_") else escaped_token
    return _UNESCAPE.sub(replace, trimmed)


def read_vocab_file(vocab_path):
    """The subtoken strings of a T2T vocab file, in id order; a clear error when it is not one.

    Like T2T, trailing whitespace is stripped from each line and one pair of enclosing
    single or double quotes is removed (T2T also accepts unquoted lines). Stricter than
    T2T: blank lines, duplicates and a first two entries other than PAD, EOS are refused,
    since each would silently shift or clash ids.
    """
    path = os.fspath(vocab_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Vocabulary file not found: {path!r}. Pass a tensor2tensor vocab file "
            f"(e.g. vocab.translate_ende_wmt32k.32768.subwords): {_LINE_FORMAT}."
        )
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"Vocabulary file {path!r} is not UTF-8 (bad byte at offset {error.start}); "
            f"a tensor2tensor vocab file is UTF-8 text, {_LINE_FORMAT}."
        ) from None
    # Only "\n" ends a line, as with T2T's gfile reader; subtokens may hold "\r", U+2028, ...
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ValueError(f"Vocabulary file {path!r} is empty; it should hold {_LINE_FORMAT}.")
    if lines[0].startswith("### SubwordTextEncoder"):
        raise ValueError(
            f"Vocabulary file {path!r} is a tfds SubwordTextEncoder file (it starts with the "
            "'### SubwordTextEncoder' header); load it with tfds.deprecated.text.SubwordTextEncoder. "
            f"This class reads tensor2tensor vocab files: {_LINE_FORMAT}."
        )
    subtokens = []
    first_line_of = {}
    for number, line in enumerate(lines, start=1):
        stripped = line.rstrip()
        if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
            stripped = stripped[1:-1]
        if not stripped:
            raise ValueError(
                f"Vocabulary file {path!r} line {number} holds no subtoken "
                f"(received {line!r}); it should hold {_LINE_FORMAT}."
            )
        if stripped in first_line_of:
            raise ValueError(
                f"Vocabulary file {path!r} lists subtoken {stripped!r} twice (lines "
                f"{first_line_of[stripped]} and {number}); every subtoken needs exactly one id."
            )
        first_line_of[stripped] = number
        subtokens.append(stripped)
    if tuple(subtokens[:2]) not in _RESERVED_FORMS:
        raise ValueError(
            f"Vocabulary file {path!r} must start with the reserved tokens '<pad>_' and '<EOS>_' "
            f"(or '<pad>' and '<EOS>') so that PAD is id 0 and EOS id 1. "
            f"Received: first entries {subtokens[:2]!r}"
        )
    return subtokens


def alphabet_of(subtoken_strings):
    """Every character of the subtokens plus the escape characters (T2T's alphabet rule)."""
    return frozenset(itertools.chain.from_iterable(subtoken_strings)) | ESCAPE_CHARS


def _as_id(subtoken_id):
    try:
        return operator.index(subtoken_id)
    except TypeError:
        raise TypeError(
            f"`ids` must be a flat sequence of integer subtoken ids. Received an element: {subtoken_id!r}"
        ) from None


def _check_reserved_tokens(reserved_tokens):
    reserved_tokens = list(reserved_tokens)
    if tuple(reserved_tokens[:2]) != RESERVED_TOKENS:
        raise ValueError(
            "`reserved_tokens` must start with ['<pad>', '<EOS>'] so that PAD is id 0 and EOS id 1. "
            f"Received: reserved_tokens={reserved_tokens!r}"
        )
    return reserved_tokens


class SubwordTextEncoder:
    """Invertible text <-> subword ids with a tensor2tensor vocabulary (T2T's class of the same name).

    Encoding has four steps (T2T `data_generators/text_encoder.py`):

    1. `tokenizer.encode` splits the text into alphanumeric / other tokens.
    2. Each token is escaped: `\\` -> `\\\\`, `_` -> `\\u`, a character outside the
       vocabulary's alphabet (or a newline) -> `\\<decimal code point>;`, then `_` is
       appended as the end-of-token marker, so no other `_` is left in an escaped token.
    3. The escaped token is split greedily from the left, always taking the longest
       vocabulary subtoken that is a prefix of the rest.
    4. The subtoken ids of all tokens are concatenated. EOS is not appended (use
       `encode_with_eos`); ids 0 and 1 are PAD and EOS.

    Decoding concatenates the subtoken strings, cuts at every `_`, unescapes the pieces
    and joins them with `tokenizer.decode`, so `decode(encode(text)) == text` for any
    string. tfds's `SubwordTextEncoder` cannot stand in: it wants its own file header
    and escapes differently, so its ids differ from the checkpoints'.

    Args:
        vocab_path: a T2T vocab file (one quoted subtoken per line; line n is id n - 1),
            e.g. the original's `vocab.translate_ende_wmt32k.32768.subwords`. `None`
            gives an empty encoder for `build_from_token_counts`.

    Example:
        encoder = SubwordTextEncoder("vocab.translate_ende_wmt32k.32768.subwords")
        ids = encoder.encode_with_eos("Hello world.")  # feed to the model
        text = encoder.decode(ids[:-1])                 # "Hello world."
    """

    def __init__(self, vocab_path=None):
        self.vocab_path = None if vocab_path is None else os.fspath(vocab_path)
        self._alphabet = frozenset()
        self._init_subtokens([])
        if vocab_path is not None:
            subtokens = read_vocab_file(vocab_path)
            self._init_subtokens(subtokens)
            self._alphabet = alphabet_of(subtokens)
            self._check_alphabet_is_covered()

    @property
    def vocab_size(self):
        """Number of subtokens (rows of the embedding and softmax), reserved ones included."""
        return len(self._all_subtoken_strings)

    @property
    def all_subtoken_strings(self):
        return tuple(self._all_subtoken_strings)

    @property
    def alphabet(self):
        """Characters that are not escaped (all other characters become `\\<code point>;`)."""
        return self._alphabet

    def encode(self, text):
        """Subtoken ids of a string, EOS not appended (as in T2T)."""
        self._check_has_vocabulary()
        ids = []
        for token in tokenizer.encode(text):
            ids.extend(self._token_to_subtoken_ids(token))
        return ids

    def encode_with_eos(self, text):
        """`encode(text)` followed by EOS_ID, the form the Transformer is trained and decodes on."""
        return self.encode(text) + [EOS_ID]

    def encode_without_tokenizing(self, token_text):
        """Subtoken ids of `token_text` taken as one token (no tokenizer split)."""
        if not isinstance(token_text, str):
            raise TypeError(f"`token_text` must be a str. Received: token_text={token_text!r}")
        self._check_has_vocabulary()
        return list(self._token_to_subtoken_ids(token_text))

    def decode(self, ids, strip_extraneous=False):
        """The text of a sequence of subtoken ids; ids outside [0, vocab_size) decode to nothing.

        With `strip_extraneous`, trailing PAD and EOS ids are dropped first (T2T's option).
        Otherwise nothing is cut: id 1 decodes to the text "<EOS>", as in T2T, so cut a
        model's output at its first EOS before decoding.
        """
        ids = [_as_id(subtoken_id) for subtoken_id in ids]
        if strip_extraneous:
            while ids and ids[-1] in (PAD_ID, EOS_ID):
                ids.pop()
        return tokenizer.decode(self._subtoken_ids_to_tokens(ids))

    def decode_list(self, ids):
        """The (escaped) subtoken string of each id, for inspecting an encoding."""
        return [self._subtoken_id_to_string(subtoken_id) for subtoken_id in ids]

    def store_to_file(self, vocab_path, add_single_quotes=True):
        """Writes the vocabulary in T2T's format, one (single-quoted) subtoken per line."""
        quote = "'" if add_single_quotes else ""
        with open_atomic(os.fspath(vocab_path), encoding="utf-8", newline="\n") as handle:
            for subtoken in self._all_subtoken_strings:
                handle.write(f"{quote}{subtoken}{quote}\n")

    # ----------------------------------------------------------------- encoding internals

    def _init_subtokens(self, subtoken_strings):
        self._all_subtoken_strings = list(subtoken_strings)
        # T2T skips empty strings and lets a later duplicate win; read_vocab_file refuses both.
        self._subtoken_string_to_id = {s: i for i, s in enumerate(self._all_subtoken_strings) if s}
        # Longest subtoken: no longer prefix needs to be looked up.
        self._max_subtoken_len = max((len(s) for s in self._all_subtoken_strings), default=0)
        self._cache = {}

    def _check_has_vocabulary(self):
        if not self._all_subtoken_strings:
            raise ValueError(
                "This SubwordTextEncoder has no vocabulary yet; pass `vocab_path` or call "
                "`build_from_token_counts` first."
            )

    def _check_alphabet_is_covered(self):
        # Greedy splitting can always fall back to one character only if every alphabet
        # character is a subtoken; T2T-built vocabularies list them all.
        missing = sorted(c for c in self._alphabet if c not in self._subtoken_string_to_id)
        if missing:
            shown = "".join(missing[:20])
            raise ValueError(
                f"Vocabulary file {self.vocab_path!r} has no single-character subtoken for "
                f"{len(missing)} character(s) it uses, e.g. {shown!r}; a tensor2tensor vocabulary "
                "lists every character of its subtokens, and each of \\_u;0123456789, on a line "
                "of its own, so that any text can be encoded."
            )

    def _token_to_subtoken_ids(self, token):
        ids = self._cache.get(token)
        if ids is None:
            escaped = escape_token(token, self._alphabet)
            pieces = self._escaped_token_to_subtoken_strings(escaped)
            ids = tuple(self._subtoken_string_to_id[piece] for piece in pieces)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[token] = ids
        return ids

    def _escaped_token_to_subtoken_strings(self, escaped_token):
        """Greedy left-to-right split into the longest matching subtokens (not always the fewest)."""
        pieces = []
        start = 0
        token_len = len(escaped_token)
        string_to_id = self._subtoken_string_to_id
        while start < token_len:
            for end in range(min(token_len, start + self._max_subtoken_len), start, -1):
                subtoken = escaped_token[start:end]
                if subtoken in string_to_id:
                    pieces.append(subtoken)
                    start = end
                    break
            else:
                raise ValueError(
                    f"Cannot split the escaped token {escaped_token!r}: no subtoken of the vocabulary "
                    f"({self.vocab_path or 'built in memory'}) matches at {escaped_token[start:]!r}."
                )
        return pieces

    def _subtoken_id_to_string(self, subtoken_id):
        subtoken_id = _as_id(subtoken_id)
        if 0 <= subtoken_id < len(self._all_subtoken_strings):
            return self._all_subtoken_strings[subtoken_id]
        return ""

    def _subtoken_ids_to_tokens(self, ids):
        concatenated = "".join(self._subtoken_id_to_string(subtoken_id) for subtoken_id in ids)
        tokens = []
        for piece in concatenated.split("_"):
            if piece:
                token = unescape_token(piece + "_")
                if token:
                    tokens.append(token)
        return tokens

    # ------------------------------------------------------------------ building a vocabulary

    def build_from_token_counts(
        self, token_counts, min_count, num_iterations=4, reserved_tokens=None, max_subtoken_length=None
    ):
        """Learns the vocabulary from token counts (T2T's algorithm); returns `self`.

        Starting from the single characters, each iteration splits every escaped token
        with the current vocabulary, counts all substrings that start at a split point
        (weighted by the token's count), and keeps those seen at least `min_count` times.
        Candidates are taken longest first, and a kept string's count is taken off its
        prefixes so that they are not kept just for being part of it. The new vocabulary
        is the reserved tokens, then the kept strings and the alphabet's characters sorted
        by (count, string) descending.

        Args:
            token_counts: mapping token (str) -> count, e.g. `tokenizer.count_tokens(lines)`.
            min_count: discard candidate subtokens seen fewer times (values < 1 act as 1).
            num_iterations: rounds of refinement (T2T uses 4).
            reserved_tokens: tokens given the first ids, escaped like any token ('<pad>'
                becomes '<pad>_', as in the published vocabulary); must start with
                `RESERVED_TOKENS`, which is the default.
            max_subtoken_length: caps candidate length; `None` means no cap (memory and time
                then grow with the square of the longest token). As in T2T, candidates are
                at most `max_subtoken_length - 1` characters long.
        """
        if not isinstance(token_counts, collections.abc.Mapping):
            raise TypeError(
                "`token_counts` must be a mapping token -> count (e.g. tokenizer.count_tokens(lines)). "
                f"Received: token_counts of type {type(token_counts).__name__}"
            )
        if not isinstance(num_iterations, int) or num_iterations < 0:
            raise ValueError(
                f"`num_iterations` must be an integer >= 0. Received: num_iterations={num_iterations!r}"
            )
        if max_subtoken_length is not None and not (
            isinstance(max_subtoken_length, int) and max_subtoken_length >= 1
        ):
            raise ValueError(
                f"`max_subtoken_length` must be None or an integer >= 1. "
                f"Received: max_subtoken_length={max_subtoken_length!r}"
            )
        if reserved_tokens is None:
            reserved_tokens = RESERVED_TOKENS
        reserved_tokens = _check_reserved_tokens(reserved_tokens)

        # The reserved tokens' characters belong to the alphabet too, or they could not be encoded.
        # "\n" is left out (T2T's one difference): it is always escaped, so T2T's vocabulary only
        # gains an unused "\n" entry, which would break the line-based file.
        self._alphabet = alphabet_of(itertools.chain(token_counts, reserved_tokens)) - {"\n"}
        # The first split uses single characters only (T2T leaves the reserved tokens out of
        # this first lookup table too); the ids of this interim vocabulary are never used.
        self._init_subtokens(sorted(self._alphabet))
        escaped_reserved = [escape_token(token, self._alphabet) for token in reserved_tokens]
        min_count = max(min_count, 1)
        for iteration in range(num_iterations):
            subtoken_counts = self._count_candidate_subtokens(token_counts, max_subtoken_length)
            kept = self._select_subtokens(subtoken_counts, min_count)
            self._init_subtokens(escaped_reserved + kept)
            logging.debug(
                "Subword iteration %d (min_count %s): vocab_size %d", iteration, min_count, self.vocab_size
            )
        return self

    def _count_candidate_subtokens(self, token_counts, max_subtoken_length):
        """Counts of every substring starting at a boundary of the current greedy split."""
        subtoken_counts = collections.defaultdict(int)
        for token, count in token_counts.items():
            escaped = escape_token(token, self._alphabet)
            start = 0
            for subtoken in self._escaped_token_to_subtoken_strings(escaped):
                last_end = len(escaped)
                if max_subtoken_length is not None:
                    last_end = min(last_end, start + max_subtoken_length - 1)
                for end in range(start + 1, last_end + 1):
                    subtoken_counts[escaped[start:end]] += count
                start += len(subtoken)
        return subtoken_counts

    def _select_subtokens(self, subtoken_counts, min_count):
        """Frequent candidates (longest first, prefixes discounted) plus the alphabet, sorted."""
        by_length = collections.defaultdict(list)
        for subtoken, count in subtoken_counts.items():
            if count >= min_count:
                by_length[len(subtoken)].append(subtoken)
        scored = []
        for length in sorted(by_length, reverse=True):
            for subtoken in by_length[length]:
                count = subtoken_counts[subtoken]
                if count >= min_count:
                    # Alphabet characters are added below whatever their count.
                    if subtoken not in self._alphabet:
                        scored.append((count, subtoken))
                    for prefix_len in range(1, length):
                        subtoken_counts[subtoken[:prefix_len]] -= count
        scored.extend((subtoken_counts.get(char, 0), char) for char in self._alphabet)
        scored.sort(reverse=True)
        return [subtoken for _, subtoken in scored]

    @classmethod
    def build_to_target_size(
        cls, target_size, token_counts, min_val, max_val, max_subtoken_length=None, reserved_tokens=None,
        num_iterations=4,
    ):
        """The encoder whose vocabulary size is nearest `target_size` over a bisection of min_count.

        min_count is bisected in [min_val, max_val] (a larger min_count keeps fewer
        subtokens); the search stops once a vocabulary is within 1% of `target_size`
        (T2T's rule) or the interval is empty, and the nearest encoder seen on the path wins.
        """
        if target_size < 1:
            raise ValueError(f"`target_size` must be >= 1. Received: target_size={target_size!r}")
        if min_val > max_val:
            raise ValueError(
                "`min_val` (lower bound of the minimum subtoken count) must be <= `max_val`. "
                f"Received: min_val={min_val!r}, max_val={max_val!r}"
            )

        def bisect(low, high):
            min_count = (low + high) // 2
            logging.info("Trying subword min_count %d", min_count)
            encoder = cls().build_from_token_counts(
                token_counts, min_count, num_iterations, reserved_tokens=reserved_tokens,
                max_subtoken_length=max_subtoken_length,
            )
            close_enough = abs(encoder.vocab_size - target_size) * 100 < target_size
            if close_enough or low >= high or min_count < 2:
                return encoder
            if encoder.vocab_size > target_size:
                other = bisect(min_count + 1, high)
            else:
                other = bisect(low, min_count - 1)
            if abs(other.vocab_size - target_size) < abs(encoder.vocab_size - target_size):
                return other
            return encoder

        return bisect(min_val, max_val)

    @classmethod
    def build_from_generator(cls, texts, target_vocab_size, max_subtoken_length=None, reserved_tokens=None):
        """Builds a vocabulary of about `target_vocab_size` subtokens from an iterable of texts.

        Each text is tokenized as given, so strip line ends first (T2T's text generators
        yield stripped lines). min_count is searched in [1, 1000], as in T2T.
        """
        return cls.build_to_target_size(
            target_vocab_size, tokenizer.count_tokens(texts), 1, 1000,
            max_subtoken_length=max_subtoken_length, reserved_tokens=reserved_tokens,
        )
