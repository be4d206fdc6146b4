"""Tests for sparse_transformer/bleu.py: the Perl-free get_ende_bleu.sh pipeline and sacreBLEU."""

import hashlib
import math
import os
import pathlib
import random
import re
import subprocess

import pytest

from state_of_sparsity.sparse_transformer import bleu

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
REFERENCE = REPO_ROOT.parent / "shared" / "reference" / "wmt14_ende" / "newstest2014.tok.de"
SCRIPT = REPO_ROOT / "state_of_sparsity" / "sparse_transformer" / "decode" / "get_ende_bleu.sh"

# A hand-checked corpus: detokenised decodes and the Moses-tokenised reference style
# (the real newstest2014.tok.de keeps „ “ quotes; the hypothesis' “ becomes &quot;).
HAND_DECODES = [
    "Die Katze sitzt auf der Matte.",
    "Er liest ein Buch.",
    "Das „Preis-Leistungs-Verhältnis“ ist gut.",
]
HAND_REFERENCES = [
    "Die Katze saß auf der Matte .",
    "Er liest heute ein gutes Buch .",
    "Das „ Preis-Leistungs-Verhältnis “ ist gut .",
]
HAND_HYPOTHESIS_TOKENS = [
    "Die Katze sitzt auf der Matte .",
    "Er liest ein Buch .",
    "Das „ Preis ##AT##-##AT## Leistungs ##AT##-##AT## Verhältnis &quot; ist gut .",
]
# Counted by hand (matches / total per order; 'A' = ##AT##-##AT##):
#  1) Die Katze sitzt auf der Matte . vs Die Katze saß auf der Matte .
#     1g 6/7 (all but sitzt); 2g 4/6 (Die Katze, auf der, der Matte, Matte .);
#     3g 2/5 (auf der Matte, der Matte .); 4g 1/4 (auf der Matte .)
#  2) Er liest ein Buch . vs Er liest heute ein gutes Buch .
#     1g 5/5; 2g 2/4 (Er liest, Buch .); 3g 0/3; 4g 0/2
#  3) Das „ Preis A Leistungs A Verhältnis &quot; ist gut . (11 tokens) vs the same with “:
#     only &quot; (position 8 of 11) misses, so every n-gram covering it misses:
#     1g 10/11; 2g 8/10; 3g 6/9; 4g 4/8
#  corpus: p1 = 21/23, p2 = 14/20, p3 = 8/17, p4 = 5/14; c = 7+5+11 = 23, r = 7+7+11 = 25
#  BP = exp(1 - 25/23) = 0.91671695; BLEU = BP * (21/23 * 14/20 * 8/17 * 5/14) ** (1/4) = 0.52481156
HAND_COUNTS = [21, 14, 8, 5]
HAND_TOTALS = [23, 20, 17, 14]
HAND_BLEU = 100 * math.exp(1 - 25 / 23) * (21 / 23 * 14 / 20 * 8 / 17 * 5 / 14) ** 0.25
# The same corpus through the original Perl scripts (replace-unicode-punctuation, tokenizer,
# the ##AT## one-liner, multi-bleu.perl) printed exactly this line.
HAND_LINE = "BLEU = 52.48, 91.3/70.0/47.1/35.7 (BP=0.917, ratio=0.920, hyp_len=23, ref_len=25)"

_PERL_ASCII_SPACE = re.compile(r"[ \t\n\r\f\v]+")


def _reference_multi_bleu(hypotheses, references):
    """A few-line transcription of multi-bleu.perl (one reference, bytes split on ASCII space)."""
    correct, total = [0] * 4, [0] * 4
    hyp_len = ref_len = 0
    for hypothesis, reference in zip(hypotheses, references):
        hyp_words = _PERL_ASCII_SPACE.split(hypothesis.strip(" \t\n\r\f\v"))
        ref_words = _PERL_ASCII_SPACE.split(reference.strip(" \t\n\r\f\v"))
        hyp_words = [w for w in hyp_words if w]
        ref_words = [w for w in ref_words if w]
        hyp_len += len(hyp_words)
        ref_len += len(ref_words)
        for n in range(1, 5):
            hyp_ngrams, ref_ngrams = {}, {}
            for start in range(len(hyp_words) - n + 1):
                key = tuple(hyp_words[start : start + n])
                hyp_ngrams[key] = hyp_ngrams.get(key, 0) + 1
            for start in range(len(ref_words) - n + 1):
                key = tuple(ref_words[start : start + n])
                ref_ngrams[key] = ref_ngrams.get(key, 0) + 1
            for key, count in hyp_ngrams.items():
                total[n - 1] += count
                correct[n - 1] += min(count, ref_ngrams.get(key, 0))
    precisions = [c / t if t else 0.0 for c, t in zip(correct, total)]
    bp = math.exp(1 - ref_len / hyp_len) if hyp_len < ref_len else 1.0
    score = bp * math.exp(sum(math.log(p) if p else -9999999999 for p in precisions) / 4)
    return 100 * score, correct, total, hyp_len, ref_len


def _read_reference():
    if not REFERENCE.is_file():
        pytest.skip(f"reference file absent: {REFERENCE}")
    return REFERENCE.read_text(encoding="utf-8").split("\n")[:-1]


# --- BLEU arithmetic -------------------------------------------------------------------------


def test_multi_bleu_matches_hand_counted_corpus():
    score = bleu.multi_bleu(HAND_HYPOTHESIS_TOKENS, [bleu.split_compounds(r) for r in HAND_REFERENCES])
    assert score.counts == HAND_COUNTS
    assert score.totals == HAND_TOTALS
    assert (score.sys_len, score.ref_len) == (23, 25)
    assert score.bp == pytest.approx(math.exp(1 - 25 / 23), abs=1e-12)
    assert score.score == pytest.approx(HAND_BLEU, abs=1e-6)
    assert bleu.format_multi_bleu(score) == HAND_LINE


def test_moses_bleu_tokenizes_raw_decodes_like_get_ende_bleu():
    assert [bleu.split_compounds(line) for line in bleu.normalize_and_tokenize(HAND_DECODES)] == (
        HAND_HYPOTHESIS_TOKENS
    )
    score = bleu.moses_bleu(HAND_DECODES, HAND_REFERENCES)
    assert score.score == pytest.approx(HAND_BLEU, abs=1e-6)
    assert bleu.format_multi_bleu(score) == HAND_LINE


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_multi_bleu_matches_python_transcription_of_perl_on_random_corpus(seed):
    rng = random.Random(seed)
    # Tiny vocabulary so n-grams repeat and clip; "a\xa0b" is one token for multi-bleu.perl.
    vocab = ["der", "die", "das", "Haus", ",", ".", "&quot;", "a\xa0b", "x\u2009y", "##AT##-##AT##"]
    hypotheses, references = [], []
    for _ in range(40):
        hypotheses.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12))))
        references.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12))))
    expected_score, correct, total, hyp_len, ref_len = _reference_multi_bleu(hypotheses, references)
    score = bleu.multi_bleu(hypotheses, references)
    assert score.counts == correct and score.totals == total
    assert (score.sys_len, score.ref_len) == (hyp_len, ref_len)
    assert score.score == pytest.approx(expected_score, abs=1e-9)


def test_multi_bleu_keeps_unicode_spaces_inside_tokens_like_perl():
    # multi-bleu.perl printed: BLEU = 82.23, 85.7/80.0/66.7/100.0 (... hyp_len=7, ref_len=6);
    # plain sacreBLEU would split "a\xa0b" and count 8 and 7 tokens.
    score = bleu.multi_bleu(["a\xa0b c d e", "x y z"], ["a\xa0b c d e", "x y"])
    assert bleu.format_multi_bleu(score) == (
        "BLEU = 82.23, 85.7/80.0/66.7/100.0 (BP=1.000, ratio=1.167, hyp_len=7, ref_len=6)"
    )


def test_multi_bleu_is_zero_without_smoothing_when_an_order_has_no_match():
    score = bleu.multi_bleu(["a b c", "x y"], ["a b c d e", "x y"])  # no 4-gram at all
    assert score.score == 0.0
    assert bleu.format_multi_bleu(score) == (
        "BLEU = 0.00, 100.0/100.0/100.0/0.0 (BP=0.670, ratio=0.714, hyp_len=5, ref_len=7)"
    )


def test_multi_bleu_is_case_sensitive():
    assert bleu.multi_bleu(["Das Haus ist rot ."], ["das haus ist rot ."]).counts == [3, 2, 1, 0]


def test_multi_bleu_rejects_misaligned_or_malformed_input():
    with pytest.raises(ValueError, match=r"one line per sentence.*Received: 2 and 1 lines"):
        bleu.multi_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match=r"`tokenized_hypotheses` must be a sequence of strings.*not one string"):
        bleu.multi_bleu("a b", ["a b"])
    with pytest.raises(ValueError, match=r"tokenized_references\[1\]=3"):
        bleu.multi_bleu(["a", "b"], ["a", 3])
    with pytest.raises(ValueError, match="empty"):
        bleu.multi_bleu([], [])


def test_sacre_bleu_tokenizes_with_13a():
    # 13a splits "Matte." into "Matte ." so the counts are those of hand sentence 1: 6/7, 4/6, 2/5, 1/4.
    score = bleu.sacre_bleu(["Die Katze sitzt auf der Matte."], ["Die Katze saß auf der Matte."])
    assert score.counts == [6, 4, 2, 1] and score.totals == [7, 6, 5, 4]
    assert score.score == pytest.approx(100 * (6 / 7 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25, abs=1e-6)
    with pytest.raises(ValueError, match="one line per sentence"):
        bleu.sacre_bleu(["a"], ["a", "b"])


# --- tokenisation ----------------------------------------------------------------------------
# Every expected string below is what replace-unicode-punctuation.perl | tokenizer.perl -l de printed.


@pytest.mark.parametrize(
    "raw, tokenized",
    [
        ('Er sagte "Hallo".', "Er sagte &quot; Hallo &quot; ."),
        ("„Hallo“, sagte er.", "„ Hallo &quot; , sagte er ."),
        ("Es ist's A&B | <x> [y]", "Es ist &apos; s A &amp; B &#124; &lt; x &gt; &#91; y &#93;"),
        ("Zahl １２３ und ０．５", "Zahl &quot; 23 und 0 . 5"),  # the Perl maps fullwidth 1 to "
        ("Wir treffen uns am 26.", "Wir treffen uns am 26."),  # final non-breaking prefix kept
        ("Er kam.", "Er kam ."),
        ("Nr. 5 ist ca. 3 Meter lang usw.", "Nr. 5 ist ca. 3 Meter lang usw."),
        ("Stoff a-b-c", "Stoff a-b-c"),  # no aggressive hyphen splitting
        ("a\x1fb c", "ab c"),  # tokenizer.perl deletes U+001F; Python's \s would make it a space
        ("Hallo.\n", "Hallo ."),
        ("", ""),
        ("  ", "  "),  # blank lines are printed unchanged
    ],
)
def test_normalize_and_tokenize_matches_moses_perl(raw, tokenized):
    assert bleu.normalize_and_tokenize([raw]) == [tokenized]


def test_replace_unicode_punctuation_follows_perl_not_sacremoses():
    assert bleu.replace_unicode_punctuation("１") == '"'
    assert bleu.replace_unicode_punctuation("a。\tb．  c…") == "a. \tb. c..."  # only spaces are eaten
    assert bleu.replace_unicode_punctuation("„Hallo“ ’s") == "„Hallo\" 's"  # „ is not in the table


def test_normalize_and_tokenize_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`lines` must be a sequence of strings.*not one string"):
        bleu.normalize_and_tokenize("Hallo Welt.")
    with pytest.raises(ValueError, match="`lang` must be a language code.*Received: lang=''"):
        bleu.normalize_and_tokenize(["Hallo"], lang="")


@pytest.mark.parametrize(
    "line, split",
    [
        ("a-b-c", "a ##AT##-##AT## b-c"),  # Perl's s///g does not overlap matches
        ("Preis-Leistungs-Verhältnis", "Preis ##AT##-##AT## Leistungs ##AT##-##AT## Verhältnis"),
        ("a--b", "a ##AT##-##AT## -b"),
        (" - ", " - "),
        ("-a a-", "-a a-"),
        ("a\xa0-b", "a\xa0 ##AT##-##AT## b"),  # bytes: a no-break space is not \s for perl -ple
        ("ä-ö 2013-2014", "ä ##AT##-##AT## ö 2013 ##AT##-##AT## 2014"),
        ("x ##AT##-##AT## y", "x ##AT## ##AT##-##AT## ##AT## y"),  # not idempotent, in Perl either
    ],
)
def test_split_compounds_matches_perl_one_liner(line, split):
    assert bleu.split_compounds(line) == split


def test_split_compounds_rejects_non_string():
    with pytest.raises(ValueError, match="`line` must be a string"):
        bleu.split_compounds(["a-b"])


# --- the real newstest2014 reference ---------------------------------------------------------


def test_split_compounds_on_real_reference_equals_perl_output_and_round_trips():
    reference = _read_reference()
    split = [bleu.split_compounds(line) for line in reference]
    # sha256 and count of `perl -ple 's{(\S)-(\S)}{$1 ##AT##-##AT## $2}g' < newstest2014.tok.de`.
    digest = hashlib.sha256(("\n".join(split) + "\n").encode("utf-8")).hexdigest()
    assert digest == "13ce670ffa17bb8da6261022dc02275d5d8a97b750762f808eeb017ecd60594f"
    assert sum(line.count("##AT##-##AT##") for line in split) == 709
    assert [line.replace(" ##AT##-##AT## ", "-") for line in split] == reference
    # The reference scored against itself: BLEU 100 over multi-bleu.perl's 64 496 tokens.
    score = bleu.multi_bleu(split, split)
    assert score.score == pytest.approx(100.0, abs=1e-9)
    assert score.sys_len == score.ref_len == 64496


def test_moses_bleu_of_detokenised_real_reference_equals_perl_pipeline():
    reference = _read_reference()
    # The Perl pipeline printed this for the sacremoses 0.2.0 detokenisation of the reference; it
    # is below 100 because the hypothesis' “ becomes &quot; while the reference keeps “.
    score = bleu.moses_bleu(bleu.detokenize(reference), reference)
    assert bleu.format_multi_bleu(score) == (
        "BLEU = 98.79, 99.5/99.0/98.6/98.1 (BP=1.000, ratio=1.000, hyp_len=64496, ref_len=64496)"
    )


# --- command line ----------------------------------------------------------------------------


@pytest.fixture
def hand_files(tmp_path):
    decodes = tmp_path / "decodes.de"
    reference = tmp_path / "ref.tok.de"
    decodes.write_text("\n".join(HAND_DECODES) + "\n", encoding="utf-8")
    reference.write_text("\n".join(HAND_REFERENCES) + "\n", encoding="utf-8")
    return decodes, reference


@pytest.fixture
def no_default_reference(monkeypatch, tmp_path):
    monkeypatch.delenv(bleu.REFERENCE_ENV_VAR, raising=False)
    monkeypatch.setattr(bleu, "DEFAULT_REFERENCE", str(tmp_path / "absent" / bleu.REFERENCE_BASENAME))


def test_main_prints_moses_bleu_and_approximate_sacrebleu(hand_files, capsys, no_default_reference):
    decodes, reference = hand_files
    assert bleu.main(["bleu", f"--decodes={decodes}", f"--reference={reference}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == HAND_LINE
    expected = bleu.sacre_bleu(HAND_DECODES, bleu.detokenize(HAND_REFERENCES))
    assert lines[1].startswith(f"sacreBLEU: BLEU = {expected.score:.2f} ")
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in lines[1] and "APPROXIMATE" in lines[1]


def test_main_uses_raw_reference_for_sacrebleu(hand_files, tmp_path, capsys, no_default_reference):
    decodes, reference = hand_files
    raw = tmp_path / "ref.de"
    raw.write_text("Die Katze saß auf der Matte.\nEr liest ein Buch.\nDas ist gut.\n", encoding="utf-8")
    assert bleu.main(["bleu", f"--decodes={decodes}", f"--reference={reference}", f"--raw_reference={raw}"]) == 0
    sacre_line = capsys.readouterr().out.splitlines()[1]
    expected = bleu.sacre_bleu(HAND_DECODES, raw.read_text(encoding="utf-8").split("\n")[:-1])
    assert sacre_line.startswith(f"sacreBLEU: BLEU = {expected.score:.2f} ")
    assert f"reference {raw}" in sacre_line and "APPROXIMATE" not in sacre_line


def test_main_finds_reference_from_env_then_beside_script(hand_files, capsys, monkeypatch, no_default_reference):
    decodes, reference = hand_files
    monkeypatch.setenv(bleu.REFERENCE_ENV_VAR, str(reference))
    assert bleu.main(["bleu", f"--decodes={decodes}"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == HAND_LINE
    monkeypatch.delenv(bleu.REFERENCE_ENV_VAR)
    monkeypatch.setattr(bleu, "DEFAULT_REFERENCE", str(reference))
    assert bleu.main(["bleu", f"--decodes={decodes}"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == HAND_LINE


def test_main_without_reference_says_where_to_put_it(hand_files, capsys, no_default_reference):
    decodes, _ = hand_files
    assert bleu.main(["bleu", f"--decodes={decodes}"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "--reference=FILE" in error and bleu.REFERENCE_ENV_VAR in error and bleu.DEFAULT_REFERENCE in error


def test_main_rejects_missing_file_and_line_count_mismatch(hand_files, tmp_path, capsys, monkeypatch):
    decodes, reference = hand_files
    missing = tmp_path / "nope.de"
    assert bleu.main(["bleu", f"--decodes={missing}", f"--reference={reference}"]) == 1
    assert capsys.readouterr().err == f"bleu: --decodes file not found: {missing}\n"
    monkeypatch.setenv(bleu.REFERENCE_ENV_VAR, str(missing))
    assert bleu.main(["bleu", f"--decodes={decodes}"]) == 1
    assert f"names a missing file: {missing}" in capsys.readouterr().err
    short = tmp_path / "short.de"
    short.write_text("Nur eine Zeile.\n", encoding="utf-8")
    assert bleu.main(["bleu", f"--decodes={short}", f"--reference={reference}"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--decodes has 1 lines" in error and "--reference has 3" in error
    # A bad --raw_reference is reported before any score is printed.
    assert bleu.main(["bleu", f"--decodes={decodes}", f"--reference={reference}", f"--raw_reference={short}"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "--raw_reference has 1" in captured.err
    latin1 = tmp_path / "latin1.de"
    latin1.write_bytes("Straße\n".encode("latin-1"))
    assert bleu.main(["bleu", f"--decodes={latin1}", f"--reference={reference}"]) == 1
    assert f"--decodes is not UTF-8 text (invalid continuation byte at byte 4): {latin1}" in capsys.readouterr().err
    empty = tmp_path / "empty.de"
    empty.write_text("", encoding="utf-8")
    assert bleu.main(["bleu", f"--decodes={empty}", f"--reference={reference}"]) == 1
    assert f"--decodes is empty: {empty}" in capsys.readouterr().err


def test_main_rejects_bad_command_line(hand_files, capsys):
    decodes, reference = hand_files
    assert bleu.main(["bleu", "--decode_file=x"]) == 2
    assert "decode_file" in capsys.readouterr().err
    assert bleu.main(["bleu", f"--decodes={decodes}", f"--reference={reference}", "extra"]) == 2
    assert "unexpected arguments ['extra']" in capsys.readouterr().err
    assert bleu.main(["bleu"]) == 2
    assert "--decodes=FILE is required" in capsys.readouterr().err


def test_shell_script_prints_usage_without_arguments():
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ") and "<decodes> [reference]" in result.stderr
    assert result.stdout == ""


def test_shell_script_scores_decodes_end_to_end(hand_files):
    decodes, reference = hand_files
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        ["bash", str(SCRIPT), str(decodes), str(reference)], capture_output=True, text=True, cwd=REPO_ROOT, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == HAND_LINE
    assert result.stdout.splitlines()[1].startswith("sacreBLEU: BLEU = ")
