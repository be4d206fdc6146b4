"""The paper's "Moses BLEU" on WMT14 en-de decodes, and detokenised sacreBLEU, with no Perl (sos_spec 5.6).

The original `decode/get_ende_bleu.sh` ran four mosesdecoder Perl steps:

  1. `replace-unicode-punctuation.perl -l de` on the hypothesis,
  2. `tokenizer.perl -l de` (Moses escaping: `"` -> `&quot;` ...) on the hypothesis,
  3. `perl -ple 's{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g'` on the hypothesis and on the
     Moses-tokenised reference `newstest2014.tok.de`,
  4. `multi-bleu.perl` (case-sensitive corpus BLEU, no smoothing, no further tokenisation).

`moses_bleu` reproduces that chain; `sacre_bleu` is the standard detokenised score (13a).

  python -m state_of_sparsity.sparse_transformer.bleu --decodes=FILE [--reference=FILE] \\
      [--raw_reference=FILE]

Where the Python tools differ from the Perl scripts, this module follows the Perl:
- `replace_unicode_punctuation` is its own copy of the Perl table. sacremoses'
  `MosesPunctNormalizer.replace_unicode_punct` maps `１` to `1` (the Perl maps it to `"`) and lets
  `。` and `．` swallow any whitespace after them (the Perl only spaces).
- `tokenizer.perl` deletes the control characters U+001C..U+001F; Python's `\\s` counts them as
  spaces, so they are deleted before sacremoses runs.
- `multi-bleu.perl` reads bytes, so only ASCII whitespace separates tokens; sacreBLEU splits on
  Unicode whitespace (no-break space, U+2009, ...). Such characters are swapped for private-use
  stand-ins before counting, which keeps them inside their tokens as the Perl does.
- sacreBLEU's default smoothing ('exp') is replaced by 'none': multi-bleu.perl takes log(0) as
  -9999999999, i.e. BLEU 0 when any n-gram order has no match. Brevity penalty and closest
  reference length agree. One gap is left: when every hypothesis line is blank multi-bleu.perl
  dies (division by zero); here BP and BLEU are 0.
- sacremoses keeps a final `X.` when `X` is a non-breaking prefix (`... am 26.`), like
  `tokenizer.perl` before mosesdecoder PR #204 (Nov 2018), which split every final period. The
  reference `newstest2014.tok.de` was tokenised the old way (it ends lines with `26.`), which this
  module follows; on the detokenised reference the two rules differ by 0.03 BLEU.
"""

import functools
import math
import os
import re
import sys

import sacrebleu
from absl import flags
from sacremoses import MosesDetokenizer
from sacremoses import MosesTokenizer

REFERENCE_ENV_VAR = "SOS_WMT14_REFERENCE"
REFERENCE_BASENAME = "newstest2014.tok.de"
# The original kept the reference beside get_ende_bleu.sh.
DEFAULT_REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "decode", REFERENCE_BASENAME)

# replace-unicode-punctuation.perl, line by line and in its order (the `１` -> `"` slip included).
_REPLACE_UNICODE_PUNCTUATION = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        ("，", ","),
        ("。 *", ". "),
        ("、", ","),
        ("”", '"'),
        ("“", '"'),
        ("∶", ":"),
        ("：", ":"),
        ("？", "?"),
        ("《", '"'),
        ("》", '"'),
        ("）", ")"),
        ("！", "!"),
        ("（", "("),
        ("；", ";"),
        ("１", '"'),
        ("」", '"'),
        ("「", '"'),
        ("０", "0"),
        ("３", "3"),
        ("２", "2"),
        ("５", "5"),
        ("６", "6"),
        ("９", "9"),
        ("７", "7"),
        ("８", "8"),
        ("４", "4"),
        ("． *", ". "),
        ("～", "~"),
        ("’", "'"),
        ("…", "..."),
        ("━", "-"),
        ("〈", "<"),
        ("〉", ">"),
        ("【", "["),
        ("】", "]"),
        ("％", "%"),
    )
)

# Perl's \s on character strings: Python's str.isspace() minus U+001C..U+001F.
_PERL_BLANK_LINE = re.compile("[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*")
_CONTROL_CHARS_PERL_DELETES = re.compile("[\x1c-\x1f]")

# `perl -ple` without -C works on bytes: \S is anything but ASCII whitespace.
_COMPOUND = re.compile(r"([^ \t\n\r\f\v])-([^ \t\n\r\f\v])")
_COMPOUND_REPLACEMENT = r"\1 ##AT##-##AT## \2"

# Characters Python's str.split() breaks on but multi-bleu.perl (bytes, ASCII \s) does not,
# mapped to distinct non-space stand-ins in Supplementary Private Use Area-B.
_ASCII_WHITESPACE = " \t\n\r\f\v"
_KEEP_INSIDE_TOKENS = {
    code: 0x100000 + code
    for code in range(0x3001)
    if chr(code).isspace() and chr(code) not in _ASCII_WHITESPACE
}


def replace_unicode_punctuation(line):
    """`replace-unicode-punctuation.perl` on one line (its `-l` argument is ignored by the script)."""
    for pattern, replacement in _REPLACE_UNICODE_PUNCTUATION:
        line = pattern.sub(replacement, line)
    return line


@functools.lru_cache(maxsize=None)
def _moses_tokenizer(lang):
    return MosesTokenizer(lang=lang)


def _as_lines(lines, name):
    """`lines` as a list of str, or a ValueError naming the argument."""
    if isinstance(lines, (str, bytes)):
        raise ValueError(
            f"`{name}` must be a sequence of strings, one sentence each, not one string. Received: {name}={lines!r:.80}"
        )
    lines = list(lines)
    for index, line in enumerate(lines):
        if not isinstance(line, str):
            raise ValueError(f"`{name}` must hold only strings. Received: {name}[{index}]={line!r:.80}")
    return lines


def normalize_and_tokenize(lines, lang="de"):
    """Steps 1-2 of get_ende_bleu.sh: Perl punctuation replacement, then the Moses tokenizer.

    Args:
      lines: sequence of detokenised sentences, one per string (a trailing newline is dropped).
      lang: the language code given to `tokenizer.perl -l` (non-breaking prefixes).

    Returns:
      The tokenised sentences with Moses escaping (`&quot;`, `&apos;`, `&amp;`, ...). Blank lines
      pass through unchanged, as `tokenizer.perl` prints them.
    """
    lines = _as_lines(lines, "lines")
    if not isinstance(lang, str) or not lang:
        raise ValueError(f"`lang` must be a language code such as 'de'. Received: lang={lang!r}")
    tokenizer = _moses_tokenizer(lang)
    tokenized = []
    for line in lines:
        line = line[:-1] if line.endswith("\n") else line
        if _PERL_BLANK_LINE.fullmatch(line):
            tokenized.append(line)
            continue
        line = _CONTROL_CHARS_PERL_DELETES.sub("", replace_unicode_punctuation(line))
        tokenized.append(tokenizer.tokenize(line, aggressive_dash_splits=False, return_str=True, escape=True))
    return tokenized


def split_compounds(line):
    """Step 3 of get_ende_bleu.sh: `X-Y` -> `X ##AT##-##AT## Y` for non-space X and Y.

    Matches do not overlap, exactly like Perl's `s///g`: `a-b-c` becomes `a ##AT##-##AT## b-c`,
    because the `b` of the first match cannot start the second one.
    """
    if not isinstance(line, str):
        raise ValueError(f"`line` must be a string. Received: line={line!r:.80}")
    return _COMPOUND.sub(_COMPOUND_REPLACEMENT, line)


def multi_bleu(tokenized_hypotheses, tokenized_references):
    """Step 4 of get_ende_bleu.sh: `multi-bleu.perl` corpus BLEU on already tokenised text.

    Case-sensitive, one reference per sentence, tokens split on ASCII whitespace only, no
    smoothing. Returns sacreBLEU's `BLEUScore` (`score` in [0, 100], `counts`, `totals`,
    `precisions`, `bp`, `sys_len`, `ref_len`).
    """
    tokenized_hypotheses = _as_lines(tokenized_hypotheses, "tokenized_hypotheses")
    tokenized_references = _as_lines(tokenized_references, "tokenized_references")
    if len(tokenized_hypotheses) != len(tokenized_references):
        raise ValueError(
            "`tokenized_hypotheses` and `tokenized_references` must have one line per sentence each. "
            f"Received: {len(tokenized_hypotheses)} and {len(tokenized_references)} lines."
        )
    if not tokenized_hypotheses:
        raise ValueError("`tokenized_hypotheses` is empty: there is nothing to score.")
    metric = sacrebleu.BLEU(tokenize="none", lowercase=False, smooth_method="none", force=True)
    return metric.corpus_score(
        [line.translate(_KEEP_INSIDE_TOKENS) for line in tokenized_hypotheses],
        [[line.translate(_KEEP_INSIDE_TOKENS) for line in tokenized_references]],
    )


def moses_bleu(hypotheses, tokenized_references, lang="de"):
    """The paper's BLEU: get_ende_bleu.sh on detokenised decodes against a Moses-tokenised reference.

    Args:
      hypotheses: detokenised model outputs, one sentence per string.
      tokenized_references: the Moses-tokenised reference (e.g. the lines of newstest2014.tok.de).
      lang: target language for the tokenizer.

    Returns:
      sacreBLEU's `BLEUScore` with multi-bleu.perl semantics (see `multi_bleu`).
    """
    tokenized = normalize_and_tokenize(hypotheses, lang=lang)
    tokenized_references = _as_lines(tokenized_references, "tokenized_references")
    return multi_bleu(
        [split_compounds(line) for line in tokenized],
        [split_compounds(line) for line in tokenized_references],
    )


def format_multi_bleu(score):
    """The summary line multi-bleu.perl prints, from a `BLEUScore`, with the Perl's arithmetic."""
    if score.ref_len == 0:
        return "BLEU = 0, 0/0/0/0 (BP=0, ratio=0, hyp_len=0, ref_len=0)"
    precisions = [correct / total if total else 0.0 for correct, total in zip(score.counts, score.totals)]
    if score.sys_len >= score.ref_len:
        brevity_penalty = 1.0
    elif score.sys_len == 0:
        brevity_penalty = 0.0
    else:
        brevity_penalty = math.exp(1 - score.ref_len / score.sys_len)
    # multi-bleu.perl's my_log: log(0) is -9999999999, so any empty order gives BLEU 0.
    log_sum = sum(math.log(p) if p else -9999999999 for p in precisions)
    bleu = brevity_penalty * math.exp(log_sum / 4)
    return (
        "BLEU = {:.2f}, {:.1f}/{:.1f}/{:.1f}/{:.1f} (BP={:.3f}, ratio={:.3f}, hyp_len={:d}, ref_len={:d})".format(
            100 * bleu,
            *(100 * p for p in precisions),
            brevity_penalty,
            score.sys_len / score.ref_len,
            score.sys_len,
            score.ref_len,
        )
    )


def _sacre_bleu_metric():
    return sacrebleu.BLEU()  # 13a tokenisation, mixed case, exp smoothing: the sacreBLEU defaults.


def sacre_bleu(hypotheses, raw_references):
    """Standard detokenised sacreBLEU (13a, case-sensitive) of hypotheses against raw references."""
    hypotheses = _as_lines(hypotheses, "hypotheses")
    raw_references = _as_lines(raw_references, "raw_references")
    if len(hypotheses) != len(raw_references):
        raise ValueError(
            "`hypotheses` and `raw_references` must have one line per sentence each. "
            f"Received: {len(hypotheses)} and {len(raw_references)} lines."
        )
    return _sacre_bleu_metric().corpus_score(hypotheses, [raw_references])


def sacre_bleu_signature():
    """sacreBLEU's signature string for `sacre_bleu` (one reference)."""
    metric = _sacre_bleu_metric()
    metric.corpus_score(["a"], [["a"]])  # the signature needs the number of references
    return str(metric.get_signature())


def detokenize(tokenized_lines, lang="de"):
    """Moses-detokenised (and unescaped) lines: an approximation of a raw reference."""
    tokenized_lines = _as_lines(tokenized_lines, "tokenized_lines")
    detokenizer = MosesDetokenizer(lang=lang)
    return [detokenizer.detokenize(line.split()) for line in tokenized_lines]


# --- command line ---------------------------------------------------------------------------


class _CommandLineError(Exception):
    """A one-line problem with the command line or its files."""


def _define_flags():
    # A private FlagValues: importing this module defines no global flags, so a decoder script
    # may import it next to its own --reference-like flags.
    flag_values = flags.FlagValues()
    flags.DEFINE_string("decodes", None, "Detokenised decodes, one sentence per line.", flag_values=flag_values)
    flags.DEFINE_string(
        "reference",
        None,
        f"Moses-tokenised reference ({REFERENCE_BASENAME}). Default: ${REFERENCE_ENV_VAR}, else {DEFAULT_REFERENCE}.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "raw_reference",
        None,
        "Untokenised reference for sacreBLEU (e.g. `sacrebleu -t wmt14 -l en-de --echo ref`). Without it, "
        "sacreBLEU is computed against the detokenised --reference and marked approximate.",
        flag_values=flag_values,
    )
    return flag_values


def _read_lines(path, flag_name):
    """Lines split on '\\n' only, as Perl reads them (str.splitlines would also split on U+2028...)."""
    if not os.path.isfile(path):
        raise _CommandLineError(f"--{flag_name} file not found: {path}")
    with open(path, "rb") as file:
        data = file.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _CommandLineError(
            f"--{flag_name} is not UTF-8 text ({error.reason} at byte {error.start}): {path}"
        ) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _resolve_reference(reference):
    if reference:
        return reference
    from_env = os.environ.get(REFERENCE_ENV_VAR)
    if from_env:
        if not os.path.isfile(from_env):
            raise _CommandLineError(f"${REFERENCE_ENV_VAR} names a missing file: {from_env}")
        return from_env
    if os.path.isfile(DEFAULT_REFERENCE):
        return DEFAULT_REFERENCE
    raise _CommandLineError(
        f"no reference: pass --reference=FILE, set ${REFERENCE_ENV_VAR}, or put the Moses-tokenised "
        f"{REFERENCE_BASENAME} at {DEFAULT_REFERENCE}"
    )


def _check_same_length(decodes, decodes_path, reference, reference_path, flag_name):
    if len(decodes) != len(reference):
        raise _CommandLineError(
            f"--decodes has {len(decodes)} lines ({decodes_path}) but --{flag_name} has {len(reference)} "
            f"({reference_path}); they must align line by line"
        )


def _score(flag_values):
    # Every file is read and checked before anything is printed.
    decodes = _read_lines(flag_values.decodes, "decodes")
    if not decodes:
        raise _CommandLineError(f"--decodes is empty: {flag_values.decodes}")
    reference_path = _resolve_reference(flag_values.reference)
    reference = _read_lines(reference_path, "reference")
    _check_same_length(decodes, flag_values.decodes, reference, reference_path, "reference")
    if flag_values.raw_reference:
        raw_reference = _read_lines(flag_values.raw_reference, "raw_reference")
        _check_same_length(decodes, flag_values.decodes, raw_reference, flag_values.raw_reference, "raw_reference")
        note = f"reference {flag_values.raw_reference}"
    else:
        raw_reference = detokenize(reference)
        note = f"APPROXIMATE: reference detokenised from {reference_path}; pass --raw_reference for the standard score"

    print(format_multi_bleu(moses_bleu(decodes, reference)))
    print(f"sacreBLEU: {sacre_bleu(decodes, raw_reference)} [{sacre_bleu_signature()}] ({note})")


def main(argv):
    """Prints Moses BLEU and sacreBLEU of --decodes; returns the exit status (2: usage, 1: bad files)."""
    flag_values = _define_flags()
    try:
        extra = flag_values(argv)[1:]
    except flags.Error as error:
        print(f"bleu: {error}", file=sys.stderr)
        return 2
    if extra:
        print(f"bleu: unexpected arguments {extra}; use --decodes=FILE [--reference=FILE]", file=sys.stderr)
        return 2
    if not flag_values.decodes:
        print("bleu: --decodes=FILE is required (detokenised decodes, one sentence per line)", file=sys.stderr)
        return 2
    try:
        _score(flag_values)
    except _CommandLineError as error:
        print(f"bleu: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
