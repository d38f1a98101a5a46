"""Id patterns: the one matcher behind `per`, `dpv`, pub/sub and `watch` (protocol.md §3).

Rules:

* ``*`` matches any sequence of characters, the empty one and ``/`` included.
* Every other character is literal and case-sensitive (``?``, ``[``, ``.``, ``%``,
  ``_`` and ``\\`` too).
* A pattern without ``*`` is an exact id.

Matching is linear in the length of the id: the pattern is split at its stars into
literal pieces; the first piece must start the id, the last must end it, and the
middle pieces are found left to right, each as early as possible. Taking the
earliest place for each piece is always safe (it leaves the most room for the
rest), so the matcher never backtracks.

Patterns are also classified so that indexes can avoid scanning:

======== ===================== ============================================
kind     example               how an index finds what it matches
======== ===================== ============================================
exact    ``car/1``             dict lookup on the id
prefix   ``car/*``             walk the id's prefixes / a range of sorted ids
all      ``*``                 everything
other    ``car/*/front``       a short list, checked one by one
======== ===================== ============================================
"""

from __future__ import annotations

from enum import Enum
from functools import lru_cache
from typing import Generic, TypeVar

T = TypeVar("T")


class PatternKind(Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    ALL = "all"
    OTHER = "other"


class IdPattern:
    """A compiled id pattern. Equal patterns have equal text."""

    __slots__ = ("_pieces", "kind", "prefix", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        pieces = text.split("*")
        self._pieces = tuple(pieces)
        self.prefix = pieces[0]
        if len(pieces) == 1:
            self.kind = PatternKind.EXACT
        elif all(piece == "" for piece in pieces):
            self.kind = PatternKind.ALL
        elif all(piece == "" for piece in pieces[1:]):
            self.kind = PatternKind.PREFIX
        else:
            self.kind = PatternKind.OTHER

    def matches(self, value: str) -> bool:
        kind = self.kind
        if kind is PatternKind.EXACT:
            return value == self.text
        if kind is PatternKind.PREFIX:
            return value.startswith(self.prefix)
        if kind is PatternKind.ALL:
            return True
        pieces = self._pieces
        first, last = pieces[0], pieces[-1]
        if len(value) < len(first) + len(last):
            return False
        if not value.startswith(first) or not value.endswith(last):
            return False
        position = len(first)
        end = len(value) - len(last)
        for piece in pieces[1:-1]:
            if not piece:
                continue
            found = value.find(piece, position, end)
            if found < 0:
                return False
            position = found + len(piece)
        return True

    @property
    def matches_everything(self) -> bool:
        return self.kind is PatternKind.ALL

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdPattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"IdPattern({self.text!r})"


@lru_cache(maxsize=1024)
def compile_pattern(text: str) -> IdPattern:
    """The shared, cached way to turn pattern text into an `IdPattern`.

    The cache pays off for the patterns many tokens share; it is kept small because
    clients choose patterns: a 1024-character pattern of many short pieces holds about
    25 KB, and 65536 of them (a former size) were a gigabyte one client could fill.
    """
    return IdPattern(text)


def matches(pattern: str, value: str) -> bool:
    return compile_pattern(pattern).matches(value)


class PatternIndex(Generic[T]):
    """Maps patterns to values and finds, for an id, every (pattern, value) that matches.

    Exact patterns live in a dict, prefix patterns in a dict keyed by prefix (an id
    walks only the prefix lengths in use), the rest in a short list. Finding the
    matches of an id never scans the exact or prefix entries.
    """

    __slots__ = ("_exact", "_other", "_prefix", "_prefix_lengths")

    def __init__(self) -> None:
        self._exact: dict[str, dict[tuple[str, T], None]] = {}
        self._prefix: dict[str, dict[tuple[str, T], None]] = {}
        self._prefix_lengths: dict[int, int] = {}
        self._other: dict[IdPattern, dict[tuple[str, T], None]] = {}

    def add(self, pattern: IdPattern, value: T) -> None:
        entry = (pattern.text, value)
        kind = pattern.kind
        if kind is PatternKind.EXACT:
            self._exact.setdefault(pattern.text, {})[entry] = None
        elif kind is PatternKind.PREFIX or kind is PatternKind.ALL:
            bucket = self._prefix.get(pattern.prefix)
            if bucket is None:
                bucket = self._prefix[pattern.prefix] = {}
                length = len(pattern.prefix)
                self._prefix_lengths[length] = self._prefix_lengths.get(length, 0) + 1
            bucket[entry] = None
        else:
            self._other.setdefault(pattern, {})[entry] = None

    def remove(self, pattern: IdPattern, value: T) -> None:
        entry = (pattern.text, value)
        kind = pattern.kind
        if kind is PatternKind.EXACT:
            _discard(self._exact, pattern.text, entry)
        elif kind is PatternKind.PREFIX or kind is PatternKind.ALL:
            if _discard(self._prefix, pattern.prefix, entry):
                length = len(pattern.prefix)
                remaining = self._prefix_lengths[length] - 1
                if remaining:
                    self._prefix_lengths[length] = remaining
                else:
                    del self._prefix_lengths[length]
        else:
            _discard(self._other, pattern, entry)

    def match(self, value: str) -> list[tuple[str, T]]:
        """Every (pattern text, value) whose pattern matches `value`, in a fresh list."""
        found: list[tuple[str, T]] = []
        bucket = self._exact.get(value)
        if bucket:
            found.extend(bucket)
        if self._prefix_lengths:
            size = len(value)
            for length in self._prefix_lengths:
                if length <= size:
                    bucket = self._prefix.get(value[:length])
                    if bucket:
                        found.extend(bucket)
        for pattern, entries in self._other.items():
            if pattern.matches(value):
                found.extend(entries)
        return found

    def __bool__(self) -> bool:
        return bool(self._exact or self._prefix or self._other)


K = TypeVar("K")
E = TypeVar("E")


def _discard(table: dict[K, dict[E, None]], key: K, entry: E) -> bool:
    """Remove `entry` under `key`; True when the key's bucket became empty and was dropped."""
    bucket = table.get(key)
    if bucket is None or entry not in bucket:
        return False
    del bucket[entry]
    if not bucket:
        del table[key]
        return True
    return False
