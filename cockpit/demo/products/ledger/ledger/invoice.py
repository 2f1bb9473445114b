def total(lines):
    """Sum of quantity * unit price over the invoice lines."""
    return sum(qty * price for qty, price in lines)
