"""Domain errors: a refusal is a normal outcome, recorded and shown, never a crash."""


class Refused(Exception):
    """An action the domain will not allow (illegal transition, self-approval, missing gate...)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
