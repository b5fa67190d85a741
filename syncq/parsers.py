"""The one parser of the Control Room API's bodies (``parser_classes`` of its views; fit for
``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``, which is why it lives apart from
:mod:`syncq.api`: DRF imports that setting while ``rest_framework.views`` is still loading)."""

from __future__ import annotations

import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

#: A UTF-16 surrogate code point, which JSON's ``\\uXXXX`` escapes can name alone but no UTF-8
#: text can hold.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _holds_lone_surrogate(data: object) -> bool:
    """Whether a string anywhere in ``data`` (a decoded JSON value: keys too) holds a surrogate
    code point. Walks without recursion: ``data`` may be nested as deep as the decoder went."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


class JSONBodyParser(JSONParser):
    """DRF's JSON parser (``application/json`` only, so any other body is a 415), refusing with
    a 400 ``ParseError`` what it would let through to a 500:

    - JSON nested deeper than Python's decoder follows (``RecursionError``);
    - a lone surrogate escape (``"\\ud83d"``) in a key or a value: it decodes to a string no
      UTF-8 can carry, so an answer quoting it could not be written.

    DRF already refuses ``NaN`` and ``Infinity`` (``STRICT_JSON``) and integers past Python's
    4300 digits (a ``ValueError``) as parse errors."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc
        if _holds_lone_surrogate(data):
            raise ParseError("JSON parse error - a \\u escape names a lone surrogate")
        return data
