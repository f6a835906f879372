"""The interval argument type: which ends of an interval it accepts and the sentence it refuses with."""

import argparse
import functools
import math

from fixtures.errors import error_message

from diffusers_mdiffae.argtypes import finite_float, float_in

_refusal = functools.partial(error_message, error=argparse.ArgumentTypeError)


def test_closed_interval_accepts_both_ends_and_refuses_just_outside():
    parse = float_in(0.0, 1.0)
    assert (parse("0"), parse("0.5"), parse("1"), parse(" 1.0 ")) == (0.0, 0.5, 1.0, 1.0)
    assert _refusal(parse, "-0.001") == "must be in [0, 1], got -0.001"
    assert _refusal(parse, "1.001") == "must be in [0, 1], got 1.001"


def test_open_ends_refuse_exactly_the_end_value():
    low_open = float_in(0.0, 1.0, low_open=True)
    assert low_open("1") == 1.0 and low_open("1e-9") == 1e-9
    assert _refusal(low_open, "0") == "must be in (0, 1], got 0"
    high_open = float_in(0.0, 1.0, high_open=True)
    assert high_open("0") == 0.0 and high_open("0.999") == 0.999
    assert _refusal(high_open, "1") == "must be in [0, 1), got 1"
    both = float_in(-2.5, 2.5, low_open=True, high_open=True)
    assert both("-2.4") == -2.4
    assert _refusal(both, "-2.5") == "must be in (-2.5, 2.5), got -2.5"
    assert _refusal(both, "2.5") == "must be in (-2.5, 2.5), got 2.5"


def test_a_word_or_a_non_finite_number_is_refused_with_its_own_sentence():
    parse = float_in(0.0, 1.0)
    assert _refusal(parse, "half") == "expected a number, got 'half'"
    assert _refusal(parse, "") == "expected a number, got ''"
    for text in ["nan", "inf", "-inf"]:
        assert _refusal(parse, text) == f"must be a finite number, got {text}"
        assert _refusal(finite_float, text) == f"must be a finite number, got {text}"


def test_finite_float_takes_any_finite_number():
    assert finite_float("-1e300") == -1e300 and finite_float("7") == 7.0
    assert finite_float(str(math.pi)) == math.pi
