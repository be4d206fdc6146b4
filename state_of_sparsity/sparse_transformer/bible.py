"""Verse-aligned sentence pairs from two SWORD Bible modules (default: KJV English, Reina-Valera 1909 Spanish)."""

import functools
import hashlib
import html
import math
import os
import re
import statistics

DEFAULT_SWORD_PATH = "/usr/share/sword"
DEFAULT_SOURCE_MODULE = "engKJV2006eb"
DEFAULT_TARGET_MODULE = "spaRV1909eb"
INSTALL_HINT = "apt-get install sword-text-kjv sword-text-sparv"

# OSIS cleaning, applied in this order (see `clean_verse`):
# footnotes go with their content: they are translators' notes, not verse text.
_NOTE = re.compile(r"<note\b[^>]*(?<!/)>.*?</note>", re.DOTALL)
# Runs of adjacent tags. Most close up ("tear</w>s" is one word), but the
# RV1909 writes added words as "enviada</transChange><w>por" with no space.
_TAG_RUN = re.compile(r"(?:<[^>]*>)+")
# The KJV module carries debris of its USFM source (`\nd `, `\+nd*`).
_USFM_MARKER = re.compile(r"\\\+?[a-z]+\d*\*?")
_PILCROW = "\u00b6"
_WHITESPACE = re.compile(r"\s+")
# A chapter whose verse lengths disagree this much (mean |log length ratio -
# corpus median|) is misnumbered; aligned KJV/RV1909 chapters stay below 0.22.
MAX_LENGTH_RATIO_DEVIATION = 0.3


def _tag_run_replacement(match):
    """"" for a run of tags, " " where an added-words tag sits between two words."""
    text, start, end = match.string, match.start(), match.end()
    between_words = 0 < start and end < len(text) and text[start - 1].isalnum() and text[end].isalnum()
    return " " if between_words and "transChange" in match.group(0) else ""


def clean_verse(text):
    """Plain verse text from a module's OSIS markup.

    Removes footnotes with their content, and every other tag keeping its
    content: words, divine names, added words, and titles, since the KJV's
    Psalm superscriptions, Psalm 119 letters and epistle subscriptions are
    tagged titles but plain verse text in the RV1909. Also removes USFM
    leftovers such as `\\nd`, the pilcrow paragraph marks and XML character
    entities, collapses whitespace and strips the ends.
    """
    text = _NOTE.sub("", text)
    text = _TAG_RUN.sub(_tag_run_replacement, text)
    text = _USFM_MARKER.sub(" ", text)
    text = html.unescape(text.replace(_PILCROW, " "))
    return _WHITESPACE.sub(" ", text).strip()


def _open_modules(sword_path):
    """pysword's module table of a SWORD directory; a clear error when it is not one."""
    conf_dir = os.path.join(sword_path, "mods.d")
    if not os.path.isdir(conf_dir):
        raise FileNotFoundError(
            f"No SWORD module directory at {sword_path!r} (expected {conf_dir!r} with .conf files). "
            f"Install the Bibles with `{INSTALL_HINT}` or pass sword_path. Received: sword_path={sword_path!r}"
        )
    from pysword.modules import SwordModules  # imported lazily: only this corpus needs it

    modules = SwordModules(sword_path)
    return modules, modules.parse_modules()


def _module_versification(confs, name):
    return confs[name].get("versification", "KJV").lower()


def read_module_verses(sword_path, module):
    """{(book, chapter, verse): cleaned text} of one module, in canonical order.

    Keys use OSIS book names ("Gen", "Matt", ...). Verses the module leaves
    empty map to "".
    """
    modules, confs = _open_modules(sword_path)
    return _read_verses(modules, confs, sword_path, module)


def _check_installed(confs, sword_path, module):
    if module not in confs:
        raise FileNotFoundError(
            f"SWORD module {module!r} is not installed under {sword_path!r} "
            f"(found: {sorted(confs)}). Install it with `{INSTALL_HINT}`. Received: module={module!r}"
        )


def _read_verses(modules, confs, sword_path, module):
    _check_installed(confs, sword_path, module)
    try:
        bible = modules.get_bible_from_module(module)
    except OSError as error:
        raise FileNotFoundError(
            f"SWORD module {module!r} under {sword_path!r} has no readable text files ({error}). "
            f"Reinstall it with `{INSTALL_HINT}`."
        ) from None
    # pysword decompresses a verse's whole block (a book, for these modules) on
    # every verse it reads: reading a Bible takes minutes. Verses are read in
    # order, so remembering the last block makes it seconds.
    if callable(getattr(bible, "_decompressed_text", None)):
        bible._decompressed_text = functools.lru_cache(maxsize=2)(bible._decompressed_text)
    verses = {}
    for books in bible.get_structure().get_books().values():
        for book in books:
            for chapter, num_verses in enumerate(book.chapter_lengths, start=1):
                texts = list(bible.get_iter(books=book.osis_name, chapters=chapter, clean=False))
                if len(texts) != num_verses:
                    raise ValueError(
                        f"SWORD module {module!r} gave {len(texts)} verses for {book.osis_name} {chapter}, "
                        f"its versification says {num_verses}."
                    )
                for verse, text in enumerate(texts, start=1):
                    verses[(book.osis_name, chapter, verse)] = clean_verse(text)
    return verses


def _displaced_chapters(source, target):
    """Chapters whose verse numbers may not line up between the two modules.

    A verse slot that is empty in one module but not in the other marks a
    versification difference (e.g. the RV1909 numbers KJV Num 12:16 as 13:1
    and leaves 12:16 empty): the missing text went into a neighbouring verse
    of the same chapter or shifted the next chapter by one, so both are
    unreliable.
    """
    chapter_order = list(dict.fromkeys(key[:2] for key in source))
    position = {chapter: index for index, chapter in enumerate(chapter_order)}
    displaced = set()
    for key, source_text in source.items():
        if key in target and bool(source_text) != bool(target[key]):
            chapter = key[:2]
            displaced.add(chapter)
            following = position[chapter] + 1
            if following < len(chapter_order) and chapter_order[following][0] == chapter[0]:
                displaced.add(chapter_order[following])
    return displaced


def _mismatched_chapters(source, target, max_deviation=MAX_LENGTH_RATIO_DEVIATION):
    """Chapters whose verse lengths do not correspond between the two modules.

    A verse split at a different place (the RV1909 splits KJV 1 Chr 21:15 in
    two and merges 21:29-30) shifts the rest of the chapter without leaving a
    slot empty; the translations' length ratios then scatter far more than
    usual.
    """
    log_ratios = {
        key: math.log(len(target[key]) / len(text))
        for key, text in source.items() if text and target.get(key)
    }
    if not log_ratios:
        return set()
    median = statistics.median(log_ratios.values())
    deviations = {}
    for key, log_ratio in log_ratios.items():
        deviations.setdefault(key[:2], []).append(abs(log_ratio - median))
    return {chapter for chapter, values in deviations.items() if statistics.fmean(values) > max_deviation}


def read_aligned_verses(sword_path=DEFAULT_SWORD_PATH, source_module=DEFAULT_SOURCE_MODULE,
                        target_module=DEFAULT_TARGET_MODULE):
    """[(reference, source_text, target_text)] for every verse both modules hold.

    The Debian packages `sword-text-kjv` and `sword-text-sparv` install the
    King James Version and the Reina-Valera 1909 as SWORD zText modules under
    /usr/share/sword: a real parallel corpus that needs no download. Modules
    are read with `pysword` (PyPI) and cleaned with `clean_verse`.
    References read like "Gen 1:1" (OSIS book name). Verses are aligned by
    (book, chapter, verse), which is only meaningful when both modules declare
    the same versification (checked). Verses empty in either module are
    skipped, and so are whole chapters around a versification difference (see
    `_displaced_chapters` and `_mismatched_chapters`). With the default
    modules this gives ~30.5k pairs.

    Raises:
      FileNotFoundError: `sword_path` is not a SWORD directory or a module is
        not installed there (the message names the apt-get command).
      ValueError: the two modules use different versifications.
    """
    modules, confs = _open_modules(sword_path)
    for module in (source_module, target_module):
        _check_installed(confs, sword_path, module)
    source_scheme = _module_versification(confs, source_module)
    target_scheme = _module_versification(confs, target_module)
    if source_scheme != target_scheme:
        raise ValueError(
            "Verses can only be aligned by number between modules of the same versification. "
            f"Received: source_module={source_module!r} ({source_scheme}), "
            f"target_module={target_module!r} ({target_scheme})"
        )
    source = _read_verses(modules, confs, sword_path, source_module)
    target = _read_verses(modules, confs, sword_path, target_module)
    displaced = _displaced_chapters(source, target) | _mismatched_chapters(source, target)
    pairs = []
    for key, source_text in source.items():
        target_text = target.get(key, "")
        if source_text and target_text and key[:2] not in displaced:
            book, chapter, verse = key
            pairs.append((f"{book} {chapter}:{verse}", source_text, target_text))
    return pairs


def _unit_interval_hash(reference, seed):
    digest = hashlib.sha256(f"{seed}:{reference}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split(pairs, dev_fraction=0.02, test_fraction=0.02, seed=0):
    """(train, dev, test) lists of `pairs`, assigned by a hash of each pair's reference.

    The assignment of a verse depends only on its reference and `seed`, never
    on which other verses are present, so it stays the same when a module
    update adds, drops or edits verses. Each list keeps the input order.
    """
    for name, value in (("dev_fraction", dev_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value}")
    if dev_fraction + test_fraction >= 1.0:
        raise ValueError(
            "`dev_fraction + test_fraction` must be below 1 to leave training data. "
            f"Received: dev_fraction={dev_fraction}, test_fraction={test_fraction}"
        )
    train, dev, test = [], [], []
    for pair in pairs:
        u = _unit_interval_hash(pair[0], seed)
        if u < test_fraction:
            test.append(pair)
        elif u < test_fraction + dev_fraction:
            dev.append(pair)
        else:
            train.append(pair)
    return train, dev, test
