"""CSV cells that are safe to open in a spreadsheet, and read back exactly as they were.

Names come from the public subscribe form, so an export may hold `=cmd|' /C calc'!A0`: Excel,
LibreOffice and Google Sheets run a cell that starts with `=`, `+`, `-` or `@` (or a tab or
carriage return before one) as a formula. Our export writes such a cell with a `'` in front,
which every spreadsheet shows as text, and importing our own export takes it off again.

The rule, which keeps the round trip lossless for every string:

- export: a cell whose first character is one of `FORMULA_STARTS` or is `'` itself gets one
  `'` in front (`=x` -> `'=x`, `'x` -> `''x`, `-x@example.org` -> `'-x@example.org`);
- import: a cell whose first character is `'` and whose second is one of those takes the first
  off (`'=x` -> `=x`, `''x` -> `'x`); every other cell is read as it is (`'x` stays `'x`).

An exported cell starts with `'` only if it was escaped, so the two are exact inverses;
and an export written before this rule reads back unchanged unless a cell began with
`'=`, `'+`, `'-`, `'@` or `''`. Addresses are cells like any other: `=`, `+`, `-` and `'` are
legal at the start of a local part (RFC 5322 atext), `@` and control characters are not.
"""

from __future__ import annotations

ESCAPE = "'"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED_STARTS = (*FORMULA_STARTS, ESCAPE)


def neutralize_cell(value: str) -> str:
    """`value` as our export writes it: `'` in front when a spreadsheet would read a formula, or when it starts with `'`."""
    return ESCAPE + value if value[:1] in _ESCAPED_STARTS else value


def restore_cell(cell: str) -> str:
    """A cell of our export as the value it was written from (the inverse of `neutralize_cell`)."""
    return cell[1:] if cell[:1] == ESCAPE and cell[1:2] in _ESCAPED_STARTS else cell
