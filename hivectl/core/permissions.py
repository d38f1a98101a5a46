"""What a token may do (`per`) and what it keeps online (`dpv`): protocol.md §2.1, §7, §8.

Both claims are maps from a realm pattern to id patterns, matched with the one id-pattern
matcher of `hivectl.core.patterns` (realm ids are matched with the same rules as object ids).

``per`` -- ``{realmPattern: {idPattern: letters}}``, letters from ``CRUD``:

* An object action on ``(realm, id)`` is allowed when *some* entry whose realm pattern
  matches the realm and whose id pattern matches the id carries the letter. Entries only
  ever add rights; nothing subtracts.
* A realm action needs the letter on an id pattern that matches *every* id (``*``, ``**``)
  in a matching realm pattern: rights over the whole realm, not over some of its objects.
* "Any right in a realm" (realm ``lis``, pub/sub ``sub``) is a matching realm pattern with
  at least one non-empty letters string (or the one letter asked about).
* A token without ``per`` may do everything (Hivekit's behaviour); a server that requires
  permissions treats it as `Permissions.nothing()` instead. An empty letters string is
  valid and grants nothing.

``dpv`` -- ``{realmPattern: [idPattern, ...]}``: the connection provides data for (keeps
``connected``) every object matched by one of the pairs.

Malformed claims are refused as a whole with a `ClaimError` whose text is what the client
sees (``claim per is invalid: realm "x": letters must be from CRUD, got "CX"``): a token
with a half-understood permission set must not authenticate.

Permission checks sit on every request and every fan-out push, so `Permissions` compiles
its patterns once and keeps, per realm seen, the id patterns that apply there grouped by
letter (a bounded cache: realm ids come from clients).

The CLI writes the same claims as flags: ``REALM:PATTERN=LETTERS`` (``--per``) and
``REALM:PATTERN`` (``--dpv``). The realm ends at the first ``:`` (realm ids rarely contain
one, object ids often do) and the letters start after the last ``=``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from hivectl.core.patterns import IdPattern, PatternKind, compile_pattern

LETTERS = "CRUD"
_LETTER_SET = frozenset(LETTERS)
_VIEW_CACHE_SIZE = 1024

GRANT_FORM = "REALM:PATTERN=LETTERS (e.g. london:deliveryRiders/*=CRU)"
PROVIDER_FORM = "REALM:PATTERN (e.g. london:deliveryRiders/johndoe-123)"

PerClaim = dict[str, dict[str, str]]
DpvClaim = dict[str, list[str]]


class ClaimError(ValueError):
    """A claim of a token is malformed; ``str()`` is the text sent to the client."""

    def __init__(self, claim: str, reason: str) -> None:
        super().__init__(f"claim {claim} is invalid: {reason}")
        self.claim = claim
        self.reason = reason


def canonical_letters(letters: Iterable[str]) -> str:
    """The letters in ``CRUD`` order, each once."""
    present = set(letters)
    return "".join(letter for letter in LETTERS if letter in present)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _check_letters(letters: str) -> str | None:
    """None when `letters` are valid, else the reason."""
    if _LETTER_SET.issuperset(letters):
        return None
    return f"letters must be from CRUD, got {_quote(letters)}"


@dataclass(frozen=True, slots=True)
class _RealmView:
    """The rights of one token in one realm, arranged for quick checks."""

    whole_realm: frozenset[str]  # letters on a pattern matching every id
    letters: frozenset[str]  # every letter granted somewhere in the realm
    exact: Mapping[str, frozenset[str]]  # letter -> exact ids
    patterns: Mapping[str, tuple[IdPattern, ...]]  # letter -> the other id patterns

    @classmethod
    def build(cls, grants: Iterable[tuple[IdPattern, str]]) -> _RealmView:
        whole: set[str] = set()
        granted: set[str] = set()
        exact: dict[str, set[str]] = {letter: set() for letter in LETTERS}
        patterns: dict[str, list[IdPattern]] = {letter: [] for letter in LETTERS}
        for pattern, letters in grants:
            granted.update(letters)
            for letter in letters:
                if pattern.matches_everything:
                    whole.add(letter)
                elif pattern.kind is PatternKind.EXACT:
                    exact[letter].add(pattern.text)
                else:
                    patterns[letter].append(pattern)
        return cls(
            whole_realm=frozenset(whole),
            letters=frozenset(granted),
            exact={letter: frozenset(ids) for letter, ids in exact.items()},
            patterns={letter: tuple(dict.fromkeys(found)) for letter, found in patterns.items()},
        )

    def allows(self, letter: str, object_id: str) -> bool:
        if letter in self.whole_realm:
            return True
        if object_id in self.exact.get(letter, ()):
            return True
        return any(pattern.matches(object_id) for pattern in self.patterns.get(letter, ()))


_NO_RIGHTS = _RealmView.build(())


class Permissions:
    """A parsed ``per`` claim. Build with `parse`, `unrestricted` or `nothing`."""

    __slots__ = ("_entries", "_unrestricted", "_views")

    def __init__(
        self,
        entries: Iterable[tuple[str, Iterable[tuple[str, str]]]],
        *,
        unrestricted: bool = False,
    ) -> None:
        """`entries`: (realm pattern, [(id pattern, letters)]) already validated."""
        self._unrestricted = unrestricted
        self._entries = tuple(
            (compile_pattern(realm), _compile_grants(grants)) for realm, grants in entries
        )
        self._views: dict[str, _RealmView] = {}

    @classmethod
    def parse(cls, claim: object) -> Permissions:
        """Validate a ``per`` claim (decoded JSON); raise `ClaimError` when malformed."""
        if not isinstance(claim, Mapping):
            raise ClaimError("per", f"expected an object, got {_json_type(claim)}")
        return cls((realm, _parse_grants(realm, grants)) for realm, grants in claim.items())

    @classmethod
    def unrestricted(cls) -> Permissions:
        """A token without ``per``: every action everywhere (one shared instance: a
        `Permissions` never changes, its views are only a cache)."""
        return _UNRESTRICTED if cls is Permissions else cls((), unrestricted=True)

    @classmethod
    def nothing(cls) -> Permissions:
        """No action anywhere (a token without ``per`` when permissions are required; every
        session before it authenticates): one shared instance, like `unrestricted`."""
        return _NOTHING if cls is Permissions else cls(())

    @property
    def is_unrestricted(self) -> bool:
        return self._unrestricted

    def allows(self, letter: str, realm: str, object_id: str) -> bool:
        """May the token do `letter` on object `object_id` of `realm`?"""
        return self._unrestricted or self._view(realm).allows(letter, object_id)

    def allows_realm(self, letter: str, realm: str) -> bool:
        """Does the token hold `letter` over the whole realm (an id pattern matching all)?"""
        return self._unrestricted or letter in self._view(realm).whole_realm

    def has_any(self, realm: str, letter: str | None = None) -> bool:
        """Does the token hold any letter (or `letter`) on anything in `realm`?"""
        if self._unrestricted:
            return True
        letters = self._view(realm).letters
        return bool(letters) if letter is None else letter in letters

    def to_claim(self) -> PerClaim | None:
        """The claim, letters in ``CRUD`` order; None for an unrestricted token (no ``per``)."""
        if self._unrestricted:
            return None
        claim: PerClaim = {}
        for realm, grants in self._entries:
            claim.setdefault(realm.text, {}).update(
                (pattern.text, letters) for pattern, letters in grants
            )
        return claim

    def _view(self, realm: str) -> _RealmView:
        view = self._views.get(realm)
        if view is None:
            view = self._build_view(realm)
            if len(self._views) >= _VIEW_CACHE_SIZE:
                del self._views[next(iter(self._views))]
            self._views[realm] = view
        return view

    def _build_view(self, realm: str) -> _RealmView:
        matching = [grants for pattern, grants in self._entries if pattern.matches(realm)]
        if not matching:
            return _NO_RIGHTS
        return _RealmView.build(grant for grants in matching for grant in grants)

    def _key(self) -> tuple[bool, frozenset[tuple[str, str, str]]]:
        grants = frozenset(
            (realm.text, pattern.text, letters)
            for realm, realm_grants in self._entries
            for pattern, letters in realm_grants
        )
        return self._unrestricted, grants

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Permissions) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        if self._unrestricted:
            return "Permissions.unrestricted()"
        return f"Permissions.parse({self.to_claim()!r})"


_UNRESTRICTED = Permissions((), unrestricted=True)
_NOTHING = Permissions(())


def _compile_grants(grants: Iterable[tuple[str, str]]) -> tuple[tuple[IdPattern, str], ...]:
    return tuple((compile_pattern(text), canonical_letters(letters)) for text, letters in grants)


def _parse_grants(realm: object, grants: object) -> list[tuple[str, str]]:
    if not isinstance(realm, str):
        raise ClaimError("per", f"realm patterns must be strings, got {_json_type(realm)}")
    where = f"realm {_quote(realm)}"
    if not isinstance(grants, Mapping):
        raise ClaimError("per", f"{where}: expected an object, got {_json_type(grants)}")
    parsed: list[tuple[str, str]] = []
    for pattern, letters in grants.items():
        if not isinstance(pattern, str):
            found = _json_type(pattern)
            raise ClaimError("per", f"{where}: id patterns must be strings, got {found}")
        if not isinstance(letters, str):
            found = _json_type(letters)
            raise ClaimError("per", f"{where}: letters must be a string, got {found}")
        problem = _check_letters(letters)
        if problem is not None:
            raise ClaimError("per", f"{where}: {problem}")
        parsed.append((pattern, letters))
    return parsed


class ProviderPatterns:
    """A parsed ``dpv`` claim: the (realm pattern, id pattern) pairs a connection provides."""

    __slots__ = ("_compiled", "entries")

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        """`entries`: (realm pattern, id pattern) pairs; duplicates are dropped, order kept."""
        self.entries: tuple[tuple[str, str], ...] = tuple(dict.fromkeys(entries))
        grouped: dict[str, list[IdPattern]] = {}
        for realm, pattern in self.entries:
            grouped.setdefault(realm, []).append(compile_pattern(pattern))
        self._compiled = tuple(
            (compile_pattern(realm), tuple(patterns)) for realm, patterns in grouped.items()
        )

    @classmethod
    def parse(cls, claim: object) -> ProviderPatterns:
        """Validate a ``dpv`` claim (decoded JSON); raise `ClaimError` when malformed."""
        if not isinstance(claim, Mapping):
            raise ClaimError("dpv", f"expected an object, got {_json_type(claim)}")
        return cls(_provider_entries(claim))

    @classmethod
    def empty(cls) -> ProviderPatterns:
        """No pattern (one shared instance: a `ProviderPatterns` never changes)."""
        return _NO_PATTERNS if cls is ProviderPatterns else cls(())

    def covers(self, realm: str, object_id: str) -> bool:
        """Does this connection provide data for object `object_id` of `realm`?"""
        return any(
            realm_pattern.matches(realm) and any(p.matches(object_id) for p in patterns)
            for realm_pattern, patterns in self._compiled
        )

    def to_claim(self) -> DpvClaim:
        claim: DpvClaim = {}
        for realm, pattern in self.entries:
            claim.setdefault(realm, []).append(pattern)
        return claim

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProviderPatterns) and set(self.entries) == set(other.entries)

    def __hash__(self) -> int:
        return hash(frozenset(self.entries))

    def __repr__(self) -> str:
        return f"ProviderPatterns.parse({self.to_claim()!r})"


_NO_PATTERNS = ProviderPatterns(())


def _provider_entries(claim: Mapping[object, object]) -> Iterator[tuple[str, str]]:
    for realm, patterns in claim.items():
        if not isinstance(realm, str):
            raise ClaimError("dpv", f"realm patterns must be strings, got {_json_type(realm)}")
        where = f"realm {_quote(realm)}"
        if not isinstance(patterns, list):
            raise ClaimError("dpv", f"{where}: expected an array, got {_json_type(patterns)}")
        for pattern in patterns:
            if not isinstance(pattern, str):
                raise ClaimError(
                    "dpv", f"{where}: id patterns must be strings, got {_json_type(pattern)}"
                )
            yield realm, pattern


def parse_grant(text: str) -> tuple[str, str, str]:
    """``REALM:PATTERN=LETTERS`` -> (realm, pattern, letters in CRUD order)."""
    realm, colon, rest = text.partition(":")
    pattern, equals, letters = rest.rpartition("=")
    if not (colon and equals and realm and pattern):
        raise ValueError(f"expected {GRANT_FORM}, got {text!r}")
    problem = _check_letters(letters)
    if problem is not None:
        raise ValueError(f"{problem} in {text!r}; expected {GRANT_FORM}")
    return realm, pattern, canonical_letters(letters)


def parse_provider_flag(text: str) -> tuple[str, str]:
    """``REALM:PATTERN`` -> (realm, pattern)."""
    realm, colon, pattern = text.partition(":")
    if not (colon and realm and pattern):
        raise ValueError(f"expected {PROVIDER_FORM}, got {text!r}")
    return realm, pattern


def per_claim_from_grants(grants: Iterable[str]) -> PerClaim:
    """Merge ``--per`` flags into a ``per`` claim; letters for the same pair are united."""
    claim: PerClaim = {}
    for text in grants:
        realm, pattern, letters = parse_grant(text)
        patterns = claim.setdefault(realm, {})
        patterns[pattern] = canonical_letters(patterns.get(pattern, "") + letters)
    return claim


def dpv_claim_from_flags(flags: Iterable[str]) -> DpvClaim:
    """Merge ``--dpv`` flags into a ``dpv`` claim (flag order, duplicates dropped)."""
    return ProviderPatterns(parse_provider_flag(text) for text in flags).to_claim()
