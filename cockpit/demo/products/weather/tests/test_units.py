from weather.units import c_to_k


def test_freezing_point_in_kelvin():
    assert c_to_k(0) == 273.15


def test_absolute_zero():
    assert c_to_k(-273.15) == 0
