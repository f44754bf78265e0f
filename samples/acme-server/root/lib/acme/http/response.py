"""HTTP responses."""

from dataclasses import dataclass, field


@dataclass
class Response:
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b""

    def with_header(self, name, value):
        self.headers[name.lower()] = value
        return self
