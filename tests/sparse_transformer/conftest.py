"""Fixtures shared by the sparse_transformer tests: a writer of SWORD zText modules in the real on-disk format."""

import os
import struct
import zlib

import pytest
from pysword.canons import canons


def _verse_index(book_index, books, chapter, verse):
    """Index of a verse in a testament's .bzv file (SWORD layout).

    Index 0 is empty and 1 the testament heading; each book then takes one
    heading slot, and each chapter one heading slot before its verses.
    """
    index = 2
    for _, _, _, chapter_lengths in books[:book_index]:
        index += 1 + sum(chapter_lengths) + len(chapter_lengths)
    chapter_lengths = books[book_index][3]
    index += 1  # the book heading
    index += sum(chapter_lengths[: chapter - 1]) + (chapter - 1)  # earlier chapters with their headings
    return index + 1 + (verse - 1)  # this chapter's heading, then its verses


def write_ztext_module(sword_path, name, verses, versification="KJV"):
    """Writes a SWORD zText module (BOOK blocks, zlib) holding `verses` {(osis_book, chapter, verse): text}.

    Files: mods.d/<name>.conf and modules/texts/ztext/<name>/{ot,nt}.{bzs,bzv,bzz}:
    .bzz holds one zlib-compressed block per book; .bzs one (offset, size,
    uncompressed size) uint32 record per block; .bzv one (block, offset in
    block, length) uint32/uint32/uint16 record per verse slot, little endian.
    """
    data_path = os.path.join("modules", "texts", "ztext", name)
    os.makedirs(os.path.join(sword_path, "mods.d"), exist_ok=True)
    os.makedirs(os.path.join(sword_path, data_path), exist_ok=True)
    with open(os.path.join(sword_path, "mods.d", f"{name.lower()}.conf"), "w", encoding="utf-8") as f:
        f.write(
            f"[{name}]\nDataPath=./{data_path}/\nModDrv=zText\nSourceType=OSIS\nEncoding=UTF-8\n"
            f"CompressType=ZIP\nBlockType=BOOK\nVersification={versification}\nLang=xx\n"
        )
    for testament in ("ot", "nt"):
        books = canons["kjv"][testament]
        num_slots = _verse_index(len(books) - 1, books, len(books[-1][3]), books[-1][3][-1]) + 1
        records = [(0, 0, 0)] * num_slots
        blocks = []
        for book_index, (_, osis_name, _, _) in enumerate(books):
            block = b""
            for (book, chapter, verse), text in sorted(verses.items()):
                if book != osis_name:
                    continue
                encoded = text.encode("utf-8")
                records[_verse_index(book_index, books, chapter, verse)] = (len(blocks), len(block), len(encoded))
                block += encoded
            if block:
                blocks.append(block)
        base = os.path.join(sword_path, data_path, testament)
        with open(base + ".bzv", "wb") as f:
            f.writelines(struct.pack("<IIH", *record) for record in records)
        with open(base + ".bzs", "wb") as bzs, open(base + ".bzz", "wb") as bzz:
            offset = 0
            for block in blocks:
                compressed = zlib.compress(block)
                bzs.write(struct.pack("<III", offset, len(compressed), len(block)))
                bzz.write(compressed)
                offset += len(compressed)


@pytest.fixture(scope="session", name="write_ztext_module")
def write_ztext_module_fixture():
    """`write_ztext_module(sword_path, name, verses, versification="KJV")`."""
    return write_ztext_module
