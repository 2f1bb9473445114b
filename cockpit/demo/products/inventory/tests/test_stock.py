from inventory.stock import count_items


def test_counts_all_kinds():
    assert count_items({"bolts": 3, "nuts": 4}) == 7
