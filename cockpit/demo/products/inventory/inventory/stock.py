def count_items(stock: dict[str, int]) -> int:
    """How many items are in stock, all kinds together."""
    return sum(stock.values())
