"""Typed lengths (decimal comma, units) and the calibration flag."""

from __future__ import annotations

import pytest

from napari_cardioseg.core.errors import CardiosegError
from napari_cardioseg.core.units import CALIBRATED_KEY, is_calibrated, parse_length


@pytest.mark.parametrize("text,value", [
    ("0.1", 0.1), ("0,1", 0.1), (" 0,1 ", 0.1), (".5", 0.5), (",5", 0.5), ("2", 2.0), ("2.", 2.0),
    ("1e-2", 0.01), ("1,5E-1", 0.15), ("+0.2", 0.2), ("0.1 µm", 0.1), ("0,1µm", 0.1), ("0.1 μm", 0.1),
    ("0.1um", 0.1), ("8 nm", 0.008), ("8NM", 0.008), ("0.0393", 0.0393),
])
def test_lengths_parse(text, value):
    assert parse_length(text) == pytest.approx(value, rel=1e-15)


@pytest.mark.parametrize("text,message", [
    ("0", "Z step must be a positive, finite length, got '0'"),
    ("-0,1", "Z step must be a positive, finite length, got '-0,1'"),
    ("0 nm", "Z step must be a positive, finite length"),
    ("1e999", "Z step must be a positive, finite length, got '1e999'"),
    ("1e-400", "Z step must be a positive, finite length"),  # underflows to 0
    ("nan", "Z step: 'nan' is not a length"),
    ("inf", "Z step: 'inf' is not a length"),
    ("", "Z step: '' is not a length"),
    ("abc", "Z step: 'abc' is not a length"),
    ("0.1 mm", "Z step: '0.1 mm' is not a length"),
    ("1,000.5", "not both"),
    ("0,1,2", "is not a length"),
    ("0.1 0.1", "is not a length"),
    ("1_000", "is not a length"),
    ("(0.0, 1.0, 0.01)", "is not a length"),
])
def test_bad_lengths_name_the_field(text, message):
    with pytest.raises(CardiosegError, match=message.replace("(", r"\(")):
        parse_length(text, "Z step")


def test_calibration_flag_wins_over_the_scale():
    assert is_calibrated({CALIBRATED_KEY: True}, (1.0, 1.0))  # a real 1 µm pixel
    assert not is_calibrated({CALIBRATED_KEY: False}, (0.5, 0.5))
    assert is_calibrated({}, (1.0, 0.1)) and not is_calibrated({}, (1.0, 1.0))
