"""SWORD Bible corpus: tiny zText modules written in the real on-disk format, read back, cleaned and aligned."""

import os

import pytest

from state_of_sparsity.sparse_transformer import bible

REAL_SWORD_PATH = "/usr/share/sword"


ENGLISH = {
    ("Gen", 1, 1): 'In the <w lemma="strong:H7225">beginning</w> God created the heaven.<note placement="foot">'
                   '<reference type="annotateRef">1.1 </reference>Heb. a note</note> ',
    ("Gen", 1, 2): ' \u00b6 And the \\nd <w lemma="strong:H3068">LORD</w></divineName> saw it. '
                   '<div eID="g1" type="x-p"/>',
    ("Gen", 1, 3): '<title canonical="true" type="psalm">A <w>Psalm</w>.</title> <l level="1" sID="x"/>Sing &amp; '
                   'praise\u2019s <transChange type="added">it was</transChange> good.',
    ("Gen", 2, 1): "Thus the heavens were finished.",
    ("Gen", 2, 2): "And on the seventh day God ended his work.",
    # Chapter 3: the target numbers these verses differently (3:3 empty there).
    ("Gen", 3, 1): "Now the serpent was more subtil than any beast.",
    ("Gen", 3, 2): "And the woman said unto the serpent.",
    ("Gen", 3, 3): "But of the fruit of the tree.",
    ("Gen", 4, 1): "And Adam knew Eve his wife.",
    # Chapter 5: verse lengths out of step with the target (a shifted chapter with no empty slot).
    ("Gen", 5, 1): "This is the book of the generations of Adam, in the day God created man.",
    ("Gen", 5, 2): "Male and female.",
    ("Gen", 5, 3): "And Adam lived an hundred and thirty years, and begat a son in his own likeness.",
    ("Gen", 5, 4): "And the days of Adam.",
    ("Gen", 6, 1): "And it came to pass, when men began to multiply.",
    ("Gen", 6, 2): "Only in the source.",
    ("Matt", 1, 1): "The book of the generation of Jesus Christ.",
}
SPANISH = {
    ("Gen", 1, 1): '<w lemma="strong:H7225">EN el principio</w> <w>crió</w> Dios los cielos.',
    ("Gen", 1, 2): "Y vió <w>Jehová</w> que era bueno.",
    ("Gen", 1, 3): "Salmo. Cantad y alabad; era <transChange type=\"added\">enviada</transChange><w>por</w> bueno.",
    ("Gen", 2, 1): "Y fueron acabados los cielos.",
    ("Gen", 2, 2): "Y acabó Dios en el día séptimo su obra.",
    ("Gen", 3, 1): "EMPERO la serpiente era astuta, más que todos los animales.",
    ("Gen", 3, 2): "Y la mujer respondió á la serpiente: Del fruto de los árboles del huerto comemos.",
    ("Gen", 3, 3): "   ",
    ("Gen", 4, 1): "Y la mujer dijo.",
    ("Gen", 5, 1): "Varón y hembra.",
    ("Gen", 5, 2): "Este es el libro de las generaciones de Adam. El día en que crió Dios al hombre.",
    ("Gen", 5, 3): "Y los días de Adam.",
    ("Gen", 5, 4): "Y vivió Adam ciento y treinta años, y engendró un hijo á su semejanza, conforme á su imagen.",
    ("Gen", 6, 1): "Y acaeció que, cuando comenzaron los hombres á multiplicarse.",
    ("Gen", 6, 3): "Solo en el destino.",
    ("Matt", 1, 1): "Libro de la generación de Jesucristo.",
}


@pytest.fixture(scope="module")
def sword_dir(tmp_path_factory, write_ztext_module):
    path = str(tmp_path_factory.mktemp("sword"))
    write_ztext_module(path, "TestEN", ENGLISH)
    write_ztext_module(path, "TestES", SPANISH)
    write_ztext_module(path, "TestLuther", {("Gen", 1, 1): "Am Anfang."}, versification="Luther")
    return path


def test_module_is_read_back_in_canonical_order_with_markup_cleaned(sword_dir):
    verses = bible.read_module_verses(sword_dir, "TestEN")
    assert len(verses) == 31102  # every verse slot of the KJV versification
    written = [key for key, text in verses.items() if text]
    assert written == sorted(ENGLISH, key=list(verses).index)
    assert written[0] == ("Gen", 1, 1) and written[-1] == ("Matt", 1, 1)
    assert verses[("Gen", 1, 1)] == "In the beginning God created the heaven."
    assert verses[("Gen", 1, 2)] == "And the LORD saw it."
    assert verses[("Gen", 1, 3)] == "A Psalm. Sing & praise\u2019s it was good."
    assert verses[("Gen", 1, 4)] == "" and verses[("Exod", 1, 1)] == ""


def test_clean_verse_keeps_words_and_drops_markup():
    assert bible.clean_verse('<w a="1">Word</w>s, <note n="1">a <hi>note</hi></note>end. ') == "Words, end."
    # Added-words tags glued to the next word get a space; other tags close up.
    assert bible.clean_verse('enviada</transChange><w x="y">por</w>.') == "enviada por."
    assert bible.clean_verse('<transChange type="added">is</transChange>, a') == "is, a"
    assert bible.clean_verse(" \u00b6 Then \\+nd* the \\nd  <w>LORD</w>  &lt;x&gt;\n") == "Then the LORD <x>"
    assert bible.clean_verse("<milestone/>  ") == ""


def test_aligned_verses_skip_empty_and_renumbered_chapters(sword_dir):
    pairs = bible.read_aligned_verses(sword_dir, "TestEN", "TestES")
    assert pairs == [
        ("Gen 1:1", "In the beginning God created the heaven.", "EN el principio crió Dios los cielos."),
        ("Gen 1:2", "And the LORD saw it.", "Y vió Jehová que era bueno."),
        ("Gen 1:3", "A Psalm. Sing & praise\u2019s it was good.", "Salmo. Cantad y alabad; era enviada por bueno."),
        ("Gen 2:1", "Thus the heavens were finished.", "Y fueron acabados los cielos."),
        ("Gen 2:2", "And on the seventh day God ended his work.", "Y acabó Dios en el día séptimo su obra."),
        # Dropped: Gen 3 (3:3 empty on one side) and the chapter after it, Gen 4;
        # Gen 5 (lengths out of step); Gen 6 (6:2 and 6:3 each on one side only).
        ("Matt 1:1", "The book of the generation of Jesus Christ.", "Libro de la generación de Jesucristo."),
    ]


def test_displaced_chapter_rule_does_not_cross_books():
    source = {("Gen", 50, 1): "a", ("Gen", 50, 2): "b", ("Exod", 1, 1): "c"}
    target = {("Gen", 50, 1): "x", ("Gen", 50, 2): "", ("Exod", 1, 1): "z"}
    assert bible._displaced_chapters(source, target) == {("Gen", 50)}


def test_mismatched_chapters_flags_only_out_of_step_lengths():
    source, target = {}, {}
    for chapter in (1, 2, 3):
        for verse, length in enumerate((10, 80, 20, 60), start=1):
            source[("Gen", chapter, verse)] = "s" * length
            # chapter 2 is shifted by one verse on the target side
            shifted = (80, 20, 60, 10)[verse - 1] if chapter == 2 else length
            target[("Gen", chapter, verse)] = "t" * shifted
    assert bible._mismatched_chapters(source, target) == {("Gen", 2)}


def test_modules_of_different_versification_are_refused(sword_dir):
    with pytest.raises(ValueError, match=r"same versification.*'TestLuther' \(luther\)"):
        bible.read_aligned_verses(sword_dir, "TestEN", "TestLuther")


def test_missing_directory_and_module_name_the_install_command(tmp_path, sword_dir):
    with pytest.raises(FileNotFoundError, match=r"No SWORD module directory.*apt-get install sword-text-kjv"):
        bible.read_aligned_verses(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"'spaRV1909eb' is not installed.*TestEN.*apt-get install"):
        bible.read_aligned_verses(sword_dir, "TestEN", "spaRV1909eb")


def _synthetic_pairs(count):
    return [(f"Book {i // 30 + 1}:{i % 30 + 1}", f"s{i}", f"t{i}") for i in range(count)]


def test_split_is_a_deterministic_partition_by_reference():
    pairs = _synthetic_pairs(20000)
    train, dev, test = bible.split(pairs, dev_fraction=0.1, test_fraction=0.05, seed=3)
    assert (train, dev, test) == bible.split(pairs, dev_fraction=0.1, test_fraction=0.05, seed=3)
    assert sorted(train + dev + test) == sorted(pairs)
    train_set = set(train)
    assert train == [p for p in pairs if p in train_set]  # input order kept
    assert abs(len(dev) / len(pairs) - 0.1) < 0.01 and abs(len(test) / len(pairs) - 0.05) < 0.01
    # A verse's assignment does not depend on the other verses present.
    subset = pairs[::7]
    sub_train, sub_dev, sub_test = bible.split(subset, dev_fraction=0.1, test_fraction=0.05, seed=3)
    assert set(sub_dev) == set(dev) & set(subset) and set(sub_test) == set(test) & set(subset)
    # ... but does depend on the seed.
    assert bible.split(pairs, 0.1, 0.05, seed=4)[2] != test


@pytest.mark.parametrize("dev, test, pattern", [
    (-0.1, 0.1, r"`dev_fraction` must be in \[0, 1\). Received: dev_fraction=-0.1"),
    (0.1, 1.0, r"`test_fraction` must be in \[0, 1\). Received: test_fraction=1.0"),
    (0.5, 0.5, r"below 1 to leave training data"),
])
def test_split_rejects_bad_fractions(dev, test, pattern):
    with pytest.raises(ValueError, match=pattern):
        bible.split(_synthetic_pairs(3), dev_fraction=dev, test_fraction=test)


@pytest.mark.skipif(
    not os.path.exists(os.path.join(REAL_SWORD_PATH, "mods.d", "engKJV2006eb.conf"))
    or not os.path.exists(os.path.join(REAL_SWORD_PATH, "mods.d", "spaRV1909eb.conf")),
    reason="needs `apt-get install sword-text-kjv sword-text-sparv`",
)
def test_installed_kjv_and_reina_valera_align_into_thirty_thousand_pairs():
    pairs = bible.read_aligned_verses()
    assert 30000 <= len(pairs) <= 31102
    assert pairs[0] == ("Gen 1:1", "In the beginning God created the heaven and the earth.",
                        "EN el principio crió Dios los cielos y la tierra.")
    assert pairs[-1][0] == "Rev 22:21"
    assert not any(c in source + target for _, source, target in pairs for c in "<>\\\u00b6")
    references = {reference for reference, _, _ in pairs}
    assert "Num 13:1" not in references and "1Chr 21:16" not in references  # renumbered in the RV1909
