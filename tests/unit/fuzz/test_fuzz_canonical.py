"""Property tests of canonical_string against ALIPAY.md's rule, written out here as a plain reference.

ALIPAY.md: "every parameter but `sign`, empty values dropped, keys sorted by ASCII, `k=v` joined with `&`,
raw values (not URL-encoded)". The callback families widen the excluded set (``sign_type`` too).
"""

from __future__ import annotations

import random
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from lifelink.alipay.signing import canonical_string

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=300)

# Keys in Alipay's parameters are ASCII; "sign"/"sign_type" and near-misses are drawn often on purpose.
KEYS = st.one_of(
    st.sampled_from(["sign", "sign_type", "Sign", "sign_", "signs", "app_id", "biz_content", "charset", "a", "A", "_"]),
    st.text(alphabet=string.ascii_letters + string.digits + "_.-", min_size=1, max_size=12),
)
# Values: empty and None (to be dropped), whitespace (kept: only empty is "empty"), separators, non-ASCII.
VALUES = st.one_of(
    st.none(),
    st.just(""),
    st.sampled_from([" ", "0", "&", "=", "a=b&c=d", "%20", "+", "早鸟券", "null"]),
    st.text(max_size=16),
)
EXCLUDES = st.sampled_from([("sign",), ("sign", "sign_type"), (), ("app_id", "sign")])


def reference(params: dict[str, str | None], exclude: tuple[str, ...]) -> str:
    """ALIPAY.md's rule, step by step."""
    kept = {}
    for key, value in params.items():
        if key in exclude:
            continue
        if value is None or value == "":
            continue
        kept[key] = value
    ordered = sorted(kept, key=lambda k: k.encode("ascii"))  # "sorted by ASCII": byte order of the key
    pieces = []
    for key in ordered:
        pieces.append(key + "=" + kept[key])
    return "&".join(pieces)


@FUZZ
@given(params=st.dictionaries(KEYS, VALUES, max_size=12), exclude=EXCLUDES)
def test_canonical_string_equals_the_documented_rule(params: dict[str, str | None], exclude: tuple[str, ...]) -> None:
    assert canonical_string(params, exclude) == reference(params, exclude)


@FUZZ
@given(params=st.dictionaries(KEYS, VALUES, max_size=12))
def test_default_exclusion_is_sign_only(params: dict[str, str | None]) -> None:
    assert canonical_string(params) == reference(params, ("sign",))


@FUZZ
@given(params=st.dictionaries(KEYS, VALUES, max_size=12), exclude=EXCLUDES, seed=st.integers(0, 2**32 - 1))
def test_canonical_string_is_stable_under_dict_ordering(
    params: dict[str, str | None], exclude: tuple[str, ...], seed: int
) -> None:
    items = list(params.items())
    random.Random(seed).shuffle(items)
    assert canonical_string(dict(items), exclude) == canonical_string(params, exclude)
    assert canonical_string(dict(reversed(items)), exclude) == canonical_string(params, exclude)


# Values without the separators, so the string can be split back into its pairs.
PLAIN_VALUES = st.one_of(st.none(), st.just(""), st.text(alphabet=st.characters(exclude_characters="&="), max_size=12))


@FUZZ
@given(params=st.dictionaries(KEYS, PLAIN_VALUES, max_size=12), exclude=EXCLUDES)
def test_canonical_string_is_sorted_skips_empty_and_excluded(
    params: dict[str, str | None], exclude: tuple[str, ...]
) -> None:
    text = canonical_string(params, exclude)
    pairs = [piece.split("=", 1) for piece in text.split("&")] if text else []
    keys = [key for key, _ in pairs]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert not set(keys) & set(exclude)
    assert all(value != "" for _, value in pairs)
    # Every non-empty, non-excluded parameter is there with its raw value, and nothing else.
    expected = {k: v for k, v in params.items() if k not in exclude and v}
    assert dict((k, v) for k, v in pairs) == expected


@FUZZ
@given(params=st.dictionaries(KEYS, VALUES, max_size=12), signature=st.text(max_size=20))
def test_sign_never_changes_the_string(params: dict[str, str | None], signature: str) -> None:
    without = {k: v for k, v in params.items() if k != "sign"}
    assert canonical_string({**without, "sign": signature}) == canonical_string(without)
    # ...while sign_type is signed under the default rule when it has a value.
    with_type = canonical_string({**without, "sign_type": "RSA2"})
    assert "sign_type=RSA2" in with_type.split("&")
