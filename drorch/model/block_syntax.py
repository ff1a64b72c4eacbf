"""The plain YAML subset the fast block reader (block_reader.py) takes, as patterns:
which characters a text may hold, plain and quoted scalars, keys, list dashes, and the
steps through a flow collection on one line. Anything these do not match is left to
libyaml."""

from __future__ import annotations

import re

# Printable ASCII and newlines: a text with anything else (tabs, CR, NUL, other controls,
# non-ASCII) is left to libyaml. (Checked by deleting these bytes from the text: a tenth
# of what a regex search for the others costs.)
USUAL = bytes([10, *range(0x20, 0x7F)])
# A plain scalar: a conservative part of YAML's plain style. It starts with a letter,
# a digit or one of `_ . / ~ (` (or `-` before a letter, digit or dot), goes on with
# those and `) + $ ^ = ; @ % & * ! | < > -`, with a `:` only before a letter, a digit or
# one of `/ . _ @ -`, and single spaces between words. Never `,[]{}#?'"` nor `: `.
FIRST = r"(?:[A-Za-z0-9_./~(]|-(?=[A-Za-z0-9.]))"
CHARS = r"[A-Za-z0-9_./~()+$^=;@%&*!|<>-]"
# (Possessive: what may follow a plain scalar, `:` then a space, a space then not one of
# its characters, or its end, can never follow a shorter match, so backtracking into it
# finds nothing; and the regex engine is faster without the backtracking points.)
WORD_REST = rf"{CHARS}*+(?::[A-Za-z0-9/._@-]{CHARS}*+)*+"
PLAIN_TEXT = rf"{FIRST}{WORD_REST}(?: {CHARS}{WORD_REST})*+"
PLAIN = re.compile(PLAIN_TEXT)
KEY = re.compile(rf"({PLAIN_TEXT}):(?: +|$)")
SINGLE = re.compile(r"'([^'\n]*)'")
DOUBLE = re.compile(r'"([^"\\\n]*)"')
DASH = re.compile(r"- +(?=[^ #-])")
# The next step through a flow collection, after any spaces: in a mapping, an entry (its
# plain key, `: `, and a scalar or an opening bracket) or the closing `}`; in a list, an
# item or the closing `]`. Every entry or item but a collection's first comes after a
# comma. A trailing comma, a missing one or a lone key matches nothing (the reader then
# gives up). Groups: the key (mappings only), then the value as plain, single-quoted,
# double-quoted or an opening bracket, then the closing bracket.
VALUE = rf"(?:({PLAIN_TEXT})|'([^'\n]*)'|\"([^\"\\\n]*)\"|([\[{{]))"
MAP_FIRST = re.compile(rf" *(?:({PLAIN_TEXT}): +{VALUE}|(}}))")
MAP_NEXT = re.compile(rf" *(?:, *({PLAIN_TEXT}): +{VALUE}|(}}))")
LIST_FIRST = re.compile(rf" *(?:{VALUE}|(\]))")
LIST_NEXT = re.compile(rf" *(?:, *{VALUE}|(\]))")
LINE_END = re.compile(r"(?: +#.*| *)$")  # after a value: spaces, then a comment or nothing
