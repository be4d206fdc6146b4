"""tensor2tensor's invertible tokenizer: alphanumeric/other split, implied single spaces, token counts."""

import random
import sys
import unicodedata

import pytest

from state_of_sparsity.sparse_transformer import tokenizer


def _is_letter_or_number(char):
    return unicodedata.category(char)[0] in "LN"


def test_encode_splits_t2t_docstring_example():
    assert tokenizer.encode("Dude - that's so cool.") == ["Dude", " - ", "that", "'", "s", "so", "cool", "."]


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("", []),
        (" ", [" "]),
        ("a b", ["a", "b"]),  # inner single space is implied
        (" a b ", [" ", "a", "b", " "]),  # first and last single spaces are kept
        ("a  b", ["a", "  ", "b"]),  # two spaces are a real token
        ("a, b", ["a", ", ", "b"]),
        ("Grüße aus Köln!", ["Grüße", "aus", "Köln", "!"]),  # umlauts and ß are letters
        ("x_y", ["x", "_", "y"]),  # "_" is not alphanumeric (unlike regex \w)
        ("3,5 Mio.", ["3", ",", "5", "Mio", "."]),
        ("日本語 🙂", ["日本語", " 🙂"]),  # CJK is letters (Lo); an emoji is not
        ("a \u00a0 b", ["a", " \u00a0 ", "b"]),
    ],
)
def test_encode_matches_t2t_rules(text, tokens):
    assert tokenizer.encode(text) == tokens


def test_decode_puts_back_space_between_alphanumeric_tokens_only():
    assert tokenizer.decode(["Hello", "world", "!", "x"]) == "Hello world!x"


def test_alphanumeric_split_is_exactly_unicode_letters_and_numbers():
    # Every code point: the regex runs and is_alphanumeric agree with categories L*/N*.
    alnum, other = [], []
    for code_point in range(sys.maxunicode + 1):
        char = chr(code_point)
        (alnum if _is_letter_or_number(char) else other).append(char)
    alnum_text, other_text = "".join(alnum), "".join(other)
    assert tokenizer.encode(alnum_text) == [alnum_text]
    assert tokenizer.encode(other_text) == [other_text]
    assert all(tokenizer.is_alphanumeric(c) for c in alnum)
    assert not any(tokenizer.is_alphanumeric(c) for c in other)


def test_decode_inverts_encode_on_random_text():
    rng = random.Random(0)
    pool = list("aZß9 ,.-_\\'\"\t\n") + ["ü", "Ö", "\u00a0", "日", "🙂", "\u00ad", "\u2028", "\x00"]
    for _ in range(2000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 25)))
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_encode_rejects_bytes():
    with pytest.raises(TypeError, match="text"):
        tokenizer.encode(b"bytes")


def test_count_tokens_counts_every_occurrence():
    counts = tokenizer.count_tokens(["the cat", "the dog."])
    assert counts == {"the": 2, "cat": 1, "dog": 1, ".": 1}


def test_corpus_token_counts_strips_lines_and_limits_lines(tmp_path):
    (tmp_path / "a.txt").write_text("der Hund\n  der Hund.  \n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("die Katze\n", encoding="utf-8")
    pattern = str(tmp_path / "*.txt")
    assert tokenizer.corpus_token_counts(pattern) == {"der": 2, "Hund": 2, ".": 1, "die": 1, "Katze": 1}
    assert tokenizer.corpus_token_counts(pattern, corpus_max_lines=1) == {"der": 1, "Hund": 1}
    whole = tokenizer.corpus_token_counts(str(tmp_path / "b.txt"), split_on_newlines=False)
    assert whole == {"die": 1, "Katze": 1, "\n": 1}


def test_corpus_token_counts_without_matching_files_names_the_pattern(tmp_path):
    with pytest.raises(ValueError, match="missing"):
        tokenizer.corpus_token_counts(str(tmp_path / "missing*.txt"))
