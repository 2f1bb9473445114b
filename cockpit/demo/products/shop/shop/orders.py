from dataclasses import dataclass


@dataclass(frozen=True)
class Order:
    id: int
    customer: str
    total: float


def sample_orders() -> list[Order]:
    return [Order(1, "Ada", 12.5), Order(2, "Linus", 7.0), Order(3, "Grace, Hopper", 30.25)]
