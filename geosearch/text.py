"""Text search: the folding and the words both sides of a ``q`` are compared on.

A space matches ``q`` when every term of ``q`` is a prefix of a word of its name, address
or city. Both sides are folded the same way: Unicode NFKD, combining marks removed, then
case folding ("Café" -> "cafe", "München" -> "munchen", "Straße" -> "strasse"); words are
the maximal runs of ``\\w`` (letters, digits and the underscore, in any script).

A space's words are computed once per dataset (a snapshot column, a PostGIS ``tsvector``:
:func:`geosearch.features.search_words`); a query's terms with :func:`query_terms`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

MAX_Q_CHARS = 200
MAX_Q_TERMS = 10
_WORD = re.compile(r"\w+")
TEXT_FIELDS = ("name", "address", "city")


def fold(text: str) -> str:
    """NFKD, without combining marks, case-folded.

    >>> fold("Café MÜNCHEN Straße")
    'cafe munchen strasse'
    """
    decomposed = unicodedata.normalize("NFKD", text)
    if not decomposed.isascii():
        decomposed = "".join(c for c in decomposed if not unicodedata.combining(c))
    return decomposed.casefold()


def words(text: str) -> list[str]:
    """The folded words of ``text``, in order.

    >>> words("Work-Club #3, Zürich")
    ['work', 'club', '3', 'zurich']
    """
    return _WORD.findall(fold(text))


def query_terms(q: str) -> tuple[str, ...]:
    """The distinct terms of a ``q``: a ValueError saying what is allowed when it has more
    than 200 characters or more than 10 words (repeated ones counted); no terms (no letter
    or digit in ``q``) matches every space.

    >>> query_terms("  Café  de la CAFE ")
    ('cafe', 'de', 'la')
    """
    if len(q) > MAX_Q_CHARS:
        raise ValueError(f"{len(q)} characters; at most {MAX_Q_CHARS} are allowed")
    found = words(q)
    if len(found) > MAX_Q_TERMS:
        raise ValueError(f"{len(found)} words; at most {MAX_Q_TERMS} words are allowed")
    return tuple(dict.fromkeys(found))


def prefix_bounds(term: str) -> tuple[str, str]:
    """The words ``term`` is a prefix of are those ``>= low`` and ``< high`` (code point
    order, which is also the byte order of UTF-8).

    >>> prefix_bounds("caf")
    ('caf', 'cag')
    """
    return term, term[:-1] + chr(ord(term[-1]) + 1)


def tsquery(terms: Iterable[str]) -> str:
    """PostgreSQL ``tsquery`` text: every term as a prefix (``'caf':* & 'mun':*``).

    Terms are runs of ``\\w``: they hold no quote, backslash or space to escape."""
    return " & ".join(f"'{t}':*" for t in terms)

