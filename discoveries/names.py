"""Matching system, planet and moon names as people type them: pure functions, no database.

A member types "oculi" for the Control Room's "Oculi", pastes a name with a zero-width space in
it, or sends "Ésa Prime" decomposed (NFD, as macOS keyboards and some clipboards do). Each of
these is the same name to a person. :func:`name_key` folds a name to the key such names share;
:func:`names_matching` finds the names a typed one means (its exact spelling first, then its
key), :func:`names_nearest` the names closest to one that matched nothing, and
:func:`names_ambiguity` says, in one sentence, that two names of the Control Room fold alike and
so neither can be chosen.

Which characters show nothing is :mod:`discoveries.rules`' knowledge (:func:`text_blank`,
:data:`~discoveries.rules.BIDI_CONTROL`): the same characters a submission may not consist of
are the ones a name's key leaves out.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from discoveries.rules import BIDI_CONTROL, text_blank

T = TypeVar("T")

#: How alike two keys must be (difflib's ratio, 0 to 1) for one to be offered for the other:
#: difflib's own default, which takes one or two typos in a short name.
NEAREST_CUTOFF = 0.6


def _shows_nothing(char: str) -> bool:
    # Whitespace is kept (collapsed later); every other character that draws nothing, the
    # bidirectional controls included (which rules refuses in text, but a Control Room name
    # may hold), is left out.
    return not char.isspace() and (text_blank(char) or BIDI_CONTROL.match(char) is not None)


def _visible(text: str) -> str:
    return "".join(char for char in text if not _shows_nothing(char))


def name_key(text: str) -> str:
    """The key under which name ``text`` is matched: two names with equal keys are the same
    name to a person.

    The key is ``text`` without the characters that show nothing (zero-width spaces and
    joiners, the byte order mark, direction marks, bidirectional embeddings, overrides and
    isolates, the soft hyphen, variation selectors, Hangul fillers, tags…: the characters
    :func:`discoveries.rules.text_blank` calls blank, and the bidirectional controls), in
    Unicode's NFKC form (composed accents, fullwidth letters as ASCII, ligatures spelled out),
    case-folded (``"ß"`` and ``"ss"`` alike), every run of whitespace made one space, and no
    space at either end. Returns ``""`` for a name of nothing visible.
    """
    folded = unicodedata.normalize("NFKC", _visible(text)).casefold()
    # Case folding can leave text that is not NFKC any more (Unicode's NFKC_Casefold does the
    # same again); the second pass can also bring out a filler NFKC maps to another.
    folded = _visible(unicodedata.normalize("NFKC", folded))
    return " ".join(folded.split())


def names_matching(
    name: str, candidates: Iterable[T], *, spelling: Callable[[T], str] | None = None
) -> list[T]:
    """The ``candidates`` that ``name`` means, in their order.

    ``spelling`` gives each candidate's name (the candidate itself when omitted). The
    candidates spelled exactly as ``name`` (surrounding spaces aside) are returned when there
    are any; otherwise those whose :func:`name_key` equals ``name``'s. A ``name`` of nothing
    visible means none. More than one result is an ambiguity for the caller to refuse (see
    :func:`names_ambiguity`): the Control Room holds two names a person cannot tell apart.
    """
    spelled = spelling or (lambda candidate: candidate)
    pool = list(candidates)
    typed = name.strip()
    exact = [candidate for candidate in pool if spelled(candidate).strip() == typed]
    if exact:
        return exact
    key = name_key(name)
    if not key:
        return []
    return [candidate for candidate in pool if name_key(spelled(candidate)) == key]


def names_nearest(name: str, candidates: Iterable[str], *, limit: int = 3) -> list[str]:
    """Up to ``limit`` of ``candidates`` closest to ``name``, closest first, as the candidates
    spell them; for telling someone whose ``name`` matched nothing what they may have meant.

    Keys (:func:`name_key`) are compared with :func:`difflib.get_close_matches`, keeping those
    at least :data:`NEAREST_CUTOFF` alike; candidates sharing a key come together, each
    spelling once. Empty when nothing is close, or when ``name`` shows nothing.
    """
    key = name_key(name)
    if not key or limit < 1:
        return []
    spellings: dict[str, list[str]] = {}
    for candidate in candidates:
        candidate_key = name_key(candidate)
        if candidate_key:
            spellings.setdefault(candidate_key, [])
            if candidate not in spellings[candidate_key]:
                spellings[candidate_key].append(candidate)
    nearest: list[str] = []
    for close in difflib.get_close_matches(key, spellings, n=limit, cutoff=NEAREST_CUTOFF):
        nearest.extend(spellings[close])
    return nearest[:limit]


_COUNTS = {2: "two", 3: "three", 4: "four", 5: "five"}


def _quoted(name: str) -> str:
    # repr escapes what Python cannot print; a variation selector or a Hangul filler it prints.
    return "".join(
        (f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        if _shows_nothing(char)
        else char
        for char in repr(name)
    )


def names_listed(names: Sequence[str], *, notes: Sequence[str] | None = None) -> str:
    """``names`` quoted (as :func:`repr` quotes them, and every character that shows nothing
    written as its escape, so that two names told apart only by one can be read apart) and
    joined as a sentence lists them: ``'A'``, ``'A' and 'B'``, ``'A', 'B' and 'C'``; each
    followed by its note in brackets when ``notes`` (one per name) is given."""
    quoted = [_quoted(name) for name in names]
    if notes is not None:
        quoted = [f"{text} ({note})" for text, note in zip(quoted, notes, strict=True)]
    if len(quoted) < 2:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def names_ambiguity(
    what: str, typed: str, names: Sequence[str], *, notes: Sequence[str] | None = None
) -> str:
    """One sentence saying that ``names`` (two or more) of the Control Room all match
    ``typed``, so none was chosen, and what to do: ``what`` names them in the plural
    (``"systems"``, ``"planets of system 'Oculi'"``); ``notes`` tells alike names apart (see
    :func:`names_listed`). For example: "two planets of system 'Oculi' match 'terra':
    'Terra' and 'TERRA'; rename one in the Control Room"."""
    count = _COUNTS.get(len(names), str(len(names)))
    fix = "rename one" if len(names) == 2 else "rename all but one"
    listed = names_listed(names, notes=notes)
    return f"{count} {what} match {typed!r}: {listed}; {fix} in the Control Room"
