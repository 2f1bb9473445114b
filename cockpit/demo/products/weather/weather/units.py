def c_to_k(celsius: float) -> float:
    return celsius + 273.15
