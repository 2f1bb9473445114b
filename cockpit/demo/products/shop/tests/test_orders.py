from shop.orders import sample_orders


def test_sample_orders_have_positive_totals():
    assert all(o.total > 0 for o in sample_orders())
