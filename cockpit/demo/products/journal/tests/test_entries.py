import pytest

from journal.entries import new_entry


def test_new_entry_keeps_title_and_body():
    e = new_entry("  Monday ", "rain")
    assert (e.title, e.body) == ("Monday", "rain")


def test_an_entry_needs_a_title():
    with pytest.raises(ValueError):
        new_entry("   ")
