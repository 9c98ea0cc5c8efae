"""Errors a user can cause while getting data: they carry a message meant to be printed as is."""


class DataError(Exception):
    """Missing, malformed or unverifiable data; the message says where we looked and what to do."""


class UnknownDatasetError(DataError, KeyError):
    def __init__(self, name: str, known: list[str], what: str = "dataset"):
        super().__init__(name)
        self.name, self.known, self.what = name, known, what

    def __str__(self) -> str:
        return f"unknown {self.what} {self.name!r}; known: {', '.join(self.known)}"
