"""What counts as a number written in text, for the API and the admin alike: ids, counts and
limits are ASCII digits and nothing else (``^[0-9]+$``: no sign, no space, no other script's
digits), and ids stop at what SQLite and PostgreSQL store.

Python's ``int()`` reads much more ("١٢", "１２", " +12 ", "1_2"), and so does every parser that
leans on it (Django's URL ``int`` converter does not, DRF's ``IntegerField`` and Django's model
fields do); this module is what the API's query fields, its pagination and the admin's ids check
first."""

from __future__ import annotations

import re

from django import forms

#: The largest id SQLite and PostgreSQL store (a signed 64-bit integer); larger ones name no row.
MAX_ID = 2**63 - 1

#: An id, count or limit as text, as the OpenAPI schema states it (ECMA-262 regex).
DIGITS_PATTERN = "^[0-9]+$"

#: Longer digit strings are refused before ``int()`` reads them (DRF's own bound for numbers);
#: Python refuses past 4300 digits with a ValueError of its own.
MAX_DIGITS = 1000

_DIGITS = re.compile("[0-9]+")


def digits_read(text: object) -> int | None:
    """``text`` as a non-negative integer when it is a ``str`` of 1 to :data:`MAX_DIGITS` ASCII
    digits (``^[0-9]+$``), else ``None``. Leading zeros are allowed ("007" is 7)."""
    if not isinstance(text, str) or len(text) > MAX_DIGITS or not _DIGITS.fullmatch(text):
        return None
    return int(text)


def id_read(text: object) -> int | None:
    """``text`` as a row id: ASCII digits (:func:`digits_read`) naming 1 to :data:`MAX_ID`;
    ``None`` for anything else, which names no row."""
    value = digits_read(text)
    return value if value is not None and 1 <= value <= MAX_ID else None


class AsciiIntegerField(forms.IntegerField):
    """Django's form ``IntegerField`` for numbers written in ASCII digits only, with an
    optional leading minus (``^-?[0-9]+$`` once spaces around it are stripped): Django's reads
    any script's digits through ``int()`` ("٣" is 3). Anything else is refused with the
    field's "Enter a whole number." message."""

    def to_python(self, value):
        if isinstance(value, str) and value.strip() and not _SIGNED.fullmatch(value.strip()):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


_SIGNED = re.compile("-?[0-9]+")
