"""Prices as data: cost from usage, and a reservation that bounds any call."""

import pytest

from cockpit.domain.errors import Refused
from cockpit.domain.prices import Usage, default_prices


def test_cost_counts_every_kind_of_token():
    t = default_prices()
    p = t.price("claude-sonnet-4-5")
    u = Usage(input_tokens=1000, output_tokens=500, cache_creation_input_tokens=2000, cache_read_input_tokens=10000)
    expected = (1000 * 3 + 500 * 15 + 2000 * 3 * 1.25 + 10000 * 3 * 0.1) / 1e6
    assert t.cost("claude-sonnet-4-5", u) == pytest.approx(expected)
    assert p.read == pytest.approx(0.3)


def test_reservation_bounds_the_real_cost():
    t = default_prices()
    worst = Usage(input_tokens=0, cache_creation_input_tokens=5000, cache_creation_1h_input_tokens=5000,
                  output_tokens=1000)
    assert t.reservation("claude-opus-4-5", 5000, 1000) >= t.cost("claude-opus-4-5", worst)


def test_unknown_model_is_refused():
    with pytest.raises(Refused, match="no price for model"):
        default_prices().price("gpt-17")


def test_table_covers_the_models_the_sdk_knows():
    import typing

    from anthropic.types.model_param import ModelParam

    known = set(typing.get_args(typing.get_args(ModelParam)[0]))
    assert known <= set(default_prices().models), known - set(default_prices().models)
