from ledger.invoice import total


def test_total_sums_lines():
    assert total([(2, 1.5), (1, 4.0)]) == 7.0
