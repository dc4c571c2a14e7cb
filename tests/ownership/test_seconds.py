"""The one check of 'a number of seconds' every layer uses: what it accepts, what it refuses,
and that each refusal names the field (and the limit when that is what was crossed)."""

from __future__ import annotations

import math

import pytest

from leasegate.ownership import check_seconds, to_ms


@pytest.mark.parametrize("value", [True, False, "30", None, [1], 1j])
def test_not_a_number_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match=f"ttl must be a number of seconds, not "
                                        f"{type(value).__name__}"):
        check_seconds("ttl", value)
    with pytest.raises(TypeError, match="ttl must be a number of seconds"):
        to_ms("ttl", value)


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.001, math.nan, -math.inf])
def test_not_positive_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match=r"until must be > 0 seconds, got "):
        check_seconds("until", value)
    with pytest.raises(ValueError, match=r"until must be > 0 seconds, got "):
        to_ms("until", value)


@pytest.mark.parametrize("value", [-1, -0.001, math.nan])
def test_not_positive_but_zero_allowed(value: float) -> None:
    assert check_seconds("since", 0, positive=False) == 0.0
    assert to_ms("since", 0, positive=False) == 0
    with pytest.raises(ValueError, match=r"since must be >= 0 seconds, got "):
        check_seconds("since", value, positive=False)


def test_over_the_limit_names_the_field_and_the_limit() -> None:
    assert check_seconds("ttl", 60, 60.0) == 60.0
    with pytest.raises(ValueError, match=r"^ttl is 60\.5 s; the configured maximum is 60\.0 s$"):
        check_seconds("ttl", 60.5, 60.0)
    with pytest.raises(ValueError, match="the configured maximum is 3600"):
        to_ms("ttl", math.inf, 3600.0)


def test_values_accepted() -> None:
    assert check_seconds("ttl", 30) == 30.0
    assert isinstance(check_seconds("ttl", 30), float)
    assert check_seconds("retention", math.inf) == math.inf  # no limit given: none applies
    assert to_ms("ttl", 30) == 30_000
    assert to_ms("ttl", 0.0015) == 2          # rounded
    assert to_ms("ttl", 0.0001) == 1          # a positive duration is never 0 ms
    assert to_ms("ttl", 10**15) == 10**18     # an int stays exact
