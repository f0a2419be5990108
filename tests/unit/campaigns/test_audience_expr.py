from __future__ import annotations

import pytest

from lifelink.domain.audience_expr import ExprError, parse


@pytest.mark.parametrize(
    ("expr", "tier", "tags", "expected"),
    [
        ("tier:gold", "gold", set(), True),
        ("tier:gold", "silver", {"gold"}, False),
        ("tag:vip", None, {"vip", "x"}, True),
        ("tag:vip", None, set(), False),
        ("not tag:silent", None, set(), True),
        ("not tag:silent", None, {"silent"}, False),
        ("tier:gold or tag:vip", "silver", {"vip"}, True),
        ("tier:gold and tag:vip", "gold", set(), False),
        # and binds tighter than or
        ("tier:gold or tag:a and tag:b", "silver", {"a"}, False),
        ("tier:gold or tag:a and tag:b", "gold", set(), True),
        ("(tier:gold or tag:a) and tag:b", "gold", set(), False),
        ("tier:gold or (tag:high_value and not tag:silent)", None, {"high_value"}, True),
        ("tier:gold or (tag:high_value and not tag:silent)", None, {"high_value", "silent"}, False),
        ("not not tag:a", None, {"a"}, True),
        ("TAG:a AND NOT tier:x", "y", {"a"}, True),
    ],
)
def test_matches(expr: str, tier: str | None, tags: set[str], expected: bool) -> None:
    assert parse(expr).matches(tier, tags) is expected


@pytest.mark.parametrize(
    ("expr", "position", "words"),
    [
        ("tier:gold or", 13, "ends too early"),
        ("(tag:a", 7, "missing ')'"),
        ("tag:a)", 6, "closes no '('"),
        ("level:x", 1, "unknown field 'level'"),
        ("tag:", 1, "needs a name"),
        ("tag:a tag:b", 7, "expected and, or"),
        ("tag:a & tag:b", 7, "unexpected character '&'"),
        ("tier:gold andd tag:x", 11, "unexpected word 'andd'"),
        ("   ", 1, "empty expression"),
        ("and tag:a", 1, "unexpected 'and'"),
    ],
)
def test_syntax_errors_name_the_position(expr: str, position: int, words: str) -> None:
    with pytest.raises(ExprError) as caught:
        parse(expr)
    assert caught.value.position == position
    assert words in str(caught.value)
    assert f"character {position}" in str(caught.value)
    assert isinstance(caught.value, ValueError)
