"""SubwordTextEncoder: T2T vocab files, the published vocabulary's exact ids, escapes, vocabulary building."""

import pathlib
import random
import time

import numpy as np
import pytest

from state_of_sparsity.sparse_transformer import text_encoder
from state_of_sparsity.sparse_transformer import tokenizer
from state_of_sparsity.sparse_transformer.text_encoder import SubwordTextEncoder

REFERENCE = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "wmt14_ende"
VOCAB = REFERENCE / "vocab.translate_ende_wmt32k.32768.subwords"
NEWSTEST_DE = REFERENCE / "newstest2014.tok.de"

VARIED_TEXTS = [
    "",
    "Hello world.",
    "Die Übersetzung ist schön, oder? Grüße aus Köln – 3,5 Mio. Euro!",
    "snake_case and back\\slash \\u and \\123; look like escapes",
    "日本語のテキスト 🙂🚀 and Ελληνικά",
    "  leading, trailing and   multiple   spaces  ",
    "tabs\tand\nnewlines\r\n",
    "\u00a0no-break\u00a0spaces, soft\u00adhyphen, zero\u200bwidth",
    "'quotes' \"double\" «guillemets» „German“",
    "\x00\x07 control characters \U0010ffff",
]


@pytest.fixture(scope="module")
def reference_encoder():
    if not VOCAB.is_file():
        pytest.skip(f"reference vocabulary not present at {VOCAB}")
    return SubwordTextEncoder(VOCAB)


# ----------------------------------------------------------------------- published vocabulary


def test_reference_vocab_has_t2t_size_and_reserved_ids(reference_encoder):
    assert reference_encoder.vocab_size == 33288
    assert reference_encoder.decode_list([0, 1, 2, 3, 4]) == ["<pad>_", "<EOS>_", ", _", "._", "the_"]
    assert (text_encoder.PAD_ID, text_encoder.EOS_ID) == (0, 1)


# Expected ids derived by hand from the vocab file: id = (line number of the quoted
# subtoken, found with `grep -n -x -F "'<subtoken>'" vocab...subwords`) - 1.
@pytest.mark.parametrize(
    "text, expected_ids",
    [
        # 'the_' is line 5.
        ("the", [4]),
        # No line starts with 'Hello, so the longest prefix of "Hello_" is 'Hell' (line 25780),
        # then 'o_' (141); 'world_' (173), '._' (4).
        ("Hello world.", [25779, 140, 172, 3]),
        # 'Die_' 58, 'Welt_' 291, 'ist_' 25, 'schön_' 9359, '!_' 208 (the inner spaces are implied).
        ("Die Welt ist schön!", [57, 290, 24, 9358, 207]),
        # 'Straße_' 4329.
        ("Straße", [4328]),
        # Tokens "a", "_", "b", "\\", "c" escape to "a_", "\\u_", "b_", "\\\\_", "c_":
        # 'a_' 14, '\u_' 798, 'b_' 869, '\\_' 6984, 'c_' 415.
        ("a_b\\c", [13, 797, 868, 6983, 414]),
        # Neither '日本' nor '本_' is a line: '日' 33121, '本' 33120, '_' 6.
        ("日本", [33120, 33119, 5]),
        # U+1F642 is outside the alphabet: "\128578;_". No line starts with '\1', so '\' (30651);
        # the only line starting with '128' is '128_', so '12' (6720); lines starting with '85'
        # are '85_', '85' (32947); with '78': '78_', '78' (14441); then ';_' (993).
        ("🙂", [30650, 6719, 32946, 14440, 992]),
        # "x", "  ", "y": 'x_' 576; neither '  _' nor '  ' is a line, so ' ' (910), ' _' (914); 'y_' 106.
        ("x  y", [575, 909, 913, 105]),
    ],
)
def test_reference_vocab_gives_hand_derived_ids(reference_encoder, text, expected_ids):
    assert reference_encoder.encode(text) == expected_ids
    assert reference_encoder.decode(expected_ids) == text


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_reference_vocab_round_trips_varied_text(reference_encoder, text):
    ids = reference_encoder.encode(text)
    assert all(0 < i < reference_encoder.vocab_size for i in ids)
    assert reference_encoder.decode(ids) == text


def test_reference_vocab_round_trips_newstest_quickly(reference_encoder):
    if not NEWSTEST_DE.is_file():
        pytest.skip(f"newstest2014 reference not present at {NEWSTEST_DE}")
    lines = NEWSTEST_DE.read_text(encoding="utf-8").splitlines()
    fresh = SubwordTextEncoder(VOCAB)  # empty token cache
    start = time.perf_counter()
    encoded = [fresh.encode(line) for line in lines]
    elapsed = time.perf_counter() - start
    assert [fresh.decode(ids) for ids in encoded] == lines
    # ~0.1 s here; 30k sentences must take seconds, not minutes.
    assert elapsed < 5.0, f"encoding {len(lines)} sentences took {elapsed:.1f} s"


def test_encode_with_eos_appends_eos_and_decode_can_strip_it(reference_encoder):
    ids = reference_encoder.encode_with_eos("the")
    assert ids == [4, text_encoder.EOS_ID]
    assert reference_encoder.decode(ids) == "the<EOS>"  # T2T keeps EOS unless asked
    assert reference_encoder.decode(ids + [0, 0], strip_extraneous=True) == "the"


def test_decode_skips_ids_outside_vocab_like_t2t(reference_encoder):
    assert reference_encoder.decode([4, -1, 33288, 10**9]) == "the"


def test_decode_accepts_numpy_ids_and_rejects_floats(reference_encoder):
    assert reference_encoder.decode(np.array([25779, 140, 172, 3], dtype=np.int64)) == "Hello world."
    with pytest.raises(TypeError, match="integer subtoken ids"):
        reference_encoder.decode([4.0])


# ---------------------------------------------------------------------- fabricated vocabulary

# Ids:            0         1       2      3     4     5      6     7
FABRICATED = ["<pad>_", "<EOS>_", "abc", "ab_", "ab", "\\u", "a", "b",
              # 8    9    10   11    12   13   14   15   16   17   18   19
              "c", "_", "\\", "u", ";", "<", ">", "p", "d", "E", "O", "S",
              # 20..29
              *"0123456789"]


@pytest.fixture
def fabricated_path(tmp_path):
    path = tmp_path / "fabricated.subwords"
    path.write_text("".join(f"'{s}'\n" for s in FABRICATED), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, expected_ids",
    [
        # "abcab_": 'abc' is the longest prefix (not 'ab'), then 'ab_' (not 'ab' + '_').
        ("abcab", [2, 3]),
        ("ab", [3]),
        # "abab_": greedy takes 'ab' first (no 'aba'), then 'ab_'.
        ("abab", [4, 3]),
        # "_" escapes to "\u_": '\u' (5) beats '\', then '_'.
        ("_", [5, 9]),
        # "\" escapes to "\\_": '\', '\', '_'.
        ("\\", [10, 10, 9]),
        # "é" (233) is outside the alphabet: "\233;_".
        ("é", [10, 22, 23, 23, 12, 9]),
        # Tokens "a", "b" (the space is implied) are escaped one by one: "a_", "b_", so 'ab_'
        # cannot match across the token boundary: 'a', '_', 'b', '_'.
        ("a b", [6, 9, 7, 9]),
    ],
)
def test_fabricated_vocab_greedy_longest_match_and_escapes(fabricated_path, text, expected_ids):
    encoder = SubwordTextEncoder(fabricated_path)
    assert encoder.encode(text) == expected_ids
    assert encoder.decode(expected_ids) == text


def test_fabricated_vocab_alphabet_is_vocab_characters_plus_escape_characters(fabricated_path):
    encoder = SubwordTextEncoder(fabricated_path)
    assert encoder.alphabet == frozenset("<pad>_EOSabc\\u;0123456789")


def test_vocab_lines_may_be_double_quoted_or_bare(tmp_path, fabricated_path):
    mixed = tmp_path / "mixed.subwords"
    lines = [f'"{s}"' if i % 3 == 0 else (s if i % 3 == 1 else f"'{s}'") for i, s in enumerate(FABRICATED)]
    mixed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert SubwordTextEncoder(mixed).all_subtoken_strings == tuple(FABRICATED)


def test_store_to_file_writes_t2t_format_that_reloads(tmp_path, fabricated_path):
    encoder = SubwordTextEncoder(fabricated_path)
    stored = tmp_path / "stored.subwords"
    encoder.store_to_file(stored)
    assert stored.read_bytes() == fabricated_path.read_bytes()
    bare = tmp_path / "bare.subwords"
    encoder.store_to_file(bare, add_single_quotes=False)
    assert bare.read_text(encoding="utf-8").splitlines()[:3] == ["<pad>_", "<EOS>_", "abc"]
    assert SubwordTextEncoder(bare).all_subtoken_strings == tuple(FABRICATED)


def test_escape_token_escapes_newline_even_inside_alphabet():
    alphabet = {"a", "b", "\n"} | text_encoder.ESCAPE_CHARS
    assert text_encoder.escape_token("a\nb_\\", alphabet) == "a\\10;b\\u\\\\_"
    assert text_encoder.unescape_token("a\\10;b\\u\\\\_") == "a\nb_\\"
    assert text_encoder.unescape_token("\\99999999;_") == "\u3013"  # no such code point


def test_encode_without_tokenizing_keeps_one_token(fabricated_path):
    encoder = SubwordTextEncoder(fabricated_path)
    # "a b" as one token: "a b_" with " " outside the alphabet -> "a\32;b_".
    assert encoder.encode_without_tokenizing("a b") == [6, 10, 23, 22, 12, 7, 9]


# ------------------------------------------------------------------------- malformed vocab files


def _write(tmp_path, text, name="vocab.subwords"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_vocab_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.subwords.*one quoted subtoken per line"):
        SubwordTextEncoder(tmp_path / "nowhere.subwords")


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("### SubwordTextEncoder\n### Metadata: {}\n'a_'\n", "tfds SubwordTextEncoder file"),
        ("'<pad>_'\n'<EOS>_'\n\n'a'\n", "line 3 holds no subtoken"),
        ("'<pad>_'\n'<EOS>_'\n'a'\n'a'\n", "twice \\(lines 3 and 4\\)"),
        ("'a'\n'<pad>_'\n'<EOS>_'\n", "must start with the reserved tokens"),
        ("'<pad>_'\n'<EOS>_'\n'ab_'\n", "no single-character subtoken"),
    ],
)
def test_malformed_vocab_file_raises_clear_error(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(ValueError, match=message) as error:
        SubwordTextEncoder(path)
    assert str(path) in str(error.value)


def test_non_utf8_vocab_file_raises_clear_error(tmp_path):
    path = tmp_path / "latin1.subwords"
    path.write_bytes("'<pad>_'\n'<EOS>_'\n'ü'\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8 .*offset 19"):
        SubwordTextEncoder(path)


def test_empty_encoder_refuses_to_encode():
    with pytest.raises(ValueError, match="no vocabulary yet"):
        SubwordTextEncoder().encode("text")


# ------------------------------------------------------------------------- building a vocabulary


def test_build_from_token_counts_hand_derived_tiny_vocab():
    # {"aa": 5}, min_count 5. Iteration 1 splits "aa_" into characters; candidates from
    # split points: a 10, aa 5, aa_ 5, a_ 5, _ 5. Longest first: keep aa_ (a -> 5, aa -> 0),
    # keep a_ (a -> 0); "_" is alphabet. Sorted by (count, string) descending, then the
    # zero-count alphabet in descending code points.
    alphabet_tail = ["u", "p", "d", "a", "\\", "S", "O", "E", ">", "<", ";", *"9876543210"]
    one = SubwordTextEncoder().build_from_token_counts({"aa": 5}, 5, num_iterations=1)
    assert list(one.all_subtoken_strings) == ["<pad>_", "<EOS>_", "aa_", "a_", "_", *alphabet_tail]
    # Iteration 2 splits "aa_" whole, so only aa_ survives and every character count is 0.
    four = SubwordTextEncoder().build_from_token_counts({"aa": 5}, 5)
    expected = ["<pad>_", "<EOS>_", "aa_", "u", "p", "d", "a", "_", "\\", "S", "O", "E", ">", "<", ";",
                *"9876543210"]
    assert list(four.all_subtoken_strings) == expected
    assert four.encode("aa aa") == [2, 2]


def test_build_max_subtoken_length_caps_candidates_like_t2t():
    counts = {"abcdef": 10}
    capped = SubwordTextEncoder().build_from_token_counts(counts, 1, max_subtoken_length=4)
    # T2T counts candidates of at most max_subtoken_length - 1 characters.
    assert max(len(s) for s in capped.all_subtoken_strings[2:]) == 3
    free = SubwordTextEncoder().build_from_token_counts(counts, 1)
    assert "abcdef_" in free.all_subtoken_strings


def test_built_vocab_never_holds_newline_so_its_file_stays_line_based(tmp_path):
    # "\n" is always escaped as "\10;"; unlike T2T it is not listed as an (unused) subtoken.
    encoder = SubwordTextEncoder().build_from_token_counts({"\n": 5, "a": 5}, 1)
    assert not any("\n" in s for s in encoder.all_subtoken_strings)
    assert "\\10;_" in encoder.all_subtoken_strings
    path = tmp_path / "newline.subwords"
    encoder.store_to_file(path)
    reloaded = SubwordTextEncoder(path)
    assert reloaded.all_subtoken_strings == encoder.all_subtoken_strings
    assert reloaded.decode(reloaded.encode("a\na")) == "a\na"


def _corpus(num_lines=400, seed=0):
    """Sentences of made-up German/English-like words with Zipf frequencies (rank r: weight 1/r)."""
    rng = random.Random(seed)
    syllables = ["ha", "us", "stra", "ße", "schö", "n", "gro", "ß", "ü", "bung", "und", "nicht", "the",
                 "ho", "use", "st", "reet", "be", "au", "ti", "ful", "ex", "er", "cise", "an", "d", "no",
                 "t", "ver", "ge", "en", "ich", "ä"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(300)]
    weights = [1.0 / rank for rank in range(1, len(words) + 1)]
    lines = []
    for _ in range(num_lines):
        sentence = " ".join(rng.choices(words, weights, k=rng.randint(3, 14)))
        ending = rng.choice([".", ",", "!", "?", " -", ":", " 2014."])
        lines.append(sentence[0].upper() + sentence[1:] + ending)
    return lines


def test_build_from_generator_reaches_target_size_and_round_trips(tmp_path):
    lines = _corpus()
    target = 300
    encoder = SubwordTextEncoder.build_from_generator(lines, target)
    assert abs(encoder.vocab_size - target) <= 0.05 * target
    assert encoder.all_subtoken_strings[:2] == ("<pad>_", "<EOS>_")
    for line in lines[:50] + VARIED_TEXTS:
        assert encoder.decode(encoder.encode(line)) == line
    # The most frequent word becomes one subtoken.
    most_frequent = tokenizer.count_tokens(lines).most_common(1)[0][0]
    assert encoder.decode_list(encoder.encode(most_frequent)) == [most_frequent + "_"]
    path = tmp_path / "built.subwords"
    encoder.store_to_file(path)
    reloaded = SubwordTextEncoder(path)
    assert reloaded.all_subtoken_strings == encoder.all_subtoken_strings
    assert [reloaded.encode(line) for line in lines] == [encoder.encode(line) for line in lines]


def test_build_to_target_size_picks_count_nearest_target():
    counts = tokenizer.count_tokens(_corpus())
    small = SubwordTextEncoder.build_to_target_size(150, counts, 1, 1000)
    large = SubwordTextEncoder.build_to_target_size(350, counts, 1, 1000)
    assert small.vocab_size < large.vocab_size
    # A larger min_count keeps fewer subtokens, so the best found beats both bracket ends.
    lowest_count = SubwordTextEncoder().build_from_token_counts(counts, 1)
    highest_count = SubwordTextEncoder().build_from_token_counts(counts, 1000)
    for encoder, target in ((small, 150), (large, 350)):
        best = abs(encoder.vocab_size - target)
        assert best <= abs(lowest_count.vocab_size - target)
        assert best <= abs(highest_count.vocab_size - target)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target_size": 0}, "target_size"),
        ({"min_val": 10, "max_val": 5}, "min_val"),
        ({"reserved_tokens": ["<EOS>", "<pad>"]}, "reserved_tokens"),
    ],
)
def test_build_to_target_size_rejects_bad_arguments(kwargs, message):
    arguments = {"target_size": 10, "token_counts": {"a": 1}, "min_val": 1, "max_val": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        SubwordTextEncoder.build_to_target_size(**arguments)


def test_build_from_token_counts_rejects_bad_arguments():
    with pytest.raises(TypeError, match="token_counts"):
        SubwordTextEncoder().build_from_token_counts(["a", "b"], 1)
    with pytest.raises(ValueError, match="num_iterations"):
        SubwordTextEncoder().build_from_token_counts({"a": 1}, 1, num_iterations=-1)
    with pytest.raises(ValueError, match="max_subtoken_length"):
        SubwordTextEncoder().build_from_token_counts({"a": 1}, 1, max_subtoken_length=0)
