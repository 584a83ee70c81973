"""One preprocessing function per modality, shared by the gateway and by training."""


class InvalidInput(ValueError):
    """Input the models cannot use (not audio, no face, too long…): the gateway answers it with a 4xx."""

    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
