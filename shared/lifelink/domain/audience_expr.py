"""Audience expressions: which followers a campaign's pushes go to, by member tier and profile tags.

Grammar (keywords are case-insensitive; names are letters, digits, ``_``, ``-`` and ``.``)::

    expr   := or
    or     := and ("or" and)*
    and    := not ("and" not)*
    not    := "not" not | atom
    atom   := "(" expr ")" | "tier:" NAME | "tag:" NAME

``parse("tier:gold or (tag:high_value and not tag:silent)").matches("gold", set())`` is True. A syntax error
raises :class:`ExprError` (a ValueError) naming the 1-based character position and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"\s*(?:(?P<paren>[()])|(?P<term>(?P<field>[A-Za-z_]+):(?P<name>[A-Za-z0-9_.\-]*))"
    r"|(?P<word>[A-Za-z_]+)|(?P<other>\S))"
)
FIELDS = ("tier", "tag")


class ExprError(ValueError):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at character {position})")
        self.position = position
        self.reason = message


@dataclass(frozen=True)
class Term:
    field: str  # "tier" | "tag"
    name: str

    def matches(self, tier: str | None, tags: set[str]) -> bool:
        return tier == self.name if self.field == "tier" else self.name in tags

    def __str__(self) -> str:
        return f"{self.field}:{self.name}"


@dataclass(frozen=True)
class Not:
    inner: Expr

    def matches(self, tier: str | None, tags: set[str]) -> bool:
        return not self.inner.matches(tier, tags)

    def __str__(self) -> str:
        return f"not {self.inner}"


@dataclass(frozen=True)
class And:
    parts: tuple[Expr, ...]

    def matches(self, tier: str | None, tags: set[str]) -> bool:
        return all(p.matches(tier, tags) for p in self.parts)

    def __str__(self) -> str:
        return "(" + " and ".join(str(p) for p in self.parts) + ")"


@dataclass(frozen=True)
class Or:
    parts: tuple[Expr, ...]

    def matches(self, tier: str | None, tags: set[str]) -> bool:
        return any(p.matches(tier, tags) for p in self.parts)

    def __str__(self) -> str:
        return "(" + " or ".join(str(p) for p in self.parts) + ")"


Expr = Term | Not | And | Or


@dataclass(frozen=True)
class _Tok:
    kind: str  # "(", ")", "term", "and", "or", "not", "end"
    pos: int  # 1-based
    text: str
    term: Term | None = None


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:  # only trailing whitespace left
            break
        start = m.start(m.lastgroup or 0) + 1
        if m.group("paren"):
            out.append(_Tok(m.group("paren"), start, m.group("paren")))
        elif m.group("term"):
            field, name = m.group("field").lower(), m.group("name")
            if field not in FIELDS:
                raise ExprError(f"unknown field {field!r}: use tier:NAME or tag:NAME", start)
            if not name:
                raise ExprError(f"{field}: needs a name, e.g. {field}:gold", start)
            out.append(_Tok("term", start, m.group("term"), Term(field, name)))
        elif m.group("word"):
            word = m.group("word").lower()
            if word not in ("and", "or", "not"):
                found = m.group("word")
                raise ExprError(f"unexpected word {found!r}: expected tier:NAME, tag:NAME, and, or, not", start)
            out.append(_Tok(word, start, m.group("word")))
        else:
            raise ExprError(f"unexpected character {m.group('other')!r}", start)
        i = m.end()
    out.append(_Tok("end", len(text.rstrip()) + 1, ""))
    return out


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self._toks = tokens
        self._i = 0

    def _peek(self) -> _Tok:
        return self._toks[self._i]

    def _take(self) -> _Tok:
        tok = self._toks[self._i]
        self._i += 1
        return tok

    def parse(self) -> Expr:
        expr = self._or()
        tok = self._peek()
        if tok.kind != "end":
            if tok.kind == ")":
                raise ExprError("unexpected ')': it closes no '('", tok.pos)
            raise ExprError(f"unexpected {tok.text!r}: expected and, or, or the end", tok.pos)
        return expr

    def _or(self) -> Expr:
        parts = [self._and()]
        while self._peek().kind == "or":
            self._take()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def _and(self) -> Expr:
        parts = [self._not()]
        while self._peek().kind == "and":
            self._take()
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def _not(self) -> Expr:
        if self._peek().kind == "not":
            self._take()
            return Not(self._not())
        return self._atom()

    def _atom(self) -> Expr:
        tok = self._take()
        if tok.kind == "term":
            assert tok.term is not None
            return tok.term
        if tok.kind == "(":
            inner = self._or()
            close = self._take()
            if close.kind != ")":
                raise ExprError(f"missing ')' for the '(' at character {tok.pos}", close.pos)
            return inner
        if tok.kind == "end":
            raise ExprError("expression ends too early: expected tier:NAME, tag:NAME, not or '('", tok.pos)
        raise ExprError(f"unexpected {tok.text!r}: expected tier:NAME, tag:NAME, not or '('", tok.pos)


def parse(text: str) -> Expr:
    """The expression in ``text``; :class:`ExprError` (a ValueError with ``position``) when it is malformed."""
    if not text.strip():
        raise ExprError("empty expression: expected tier:NAME or tag:NAME", 1)
    return _Parser(_tokens(text)).parse()


def matches_all(expr: Expr | None, tier: str | None, tags: set[str]) -> bool:
    """``expr`` None means every follower."""
    return True if expr is None else expr.matches(tier, tags)
