"""Parsed HTTP requests."""

from dataclasses import dataclass, field


@dataclass
class Request:
    method: str
    path: str
    headers: dict = field(default_factory=dict)
    body: bytes = b""

    @property
    def content_type(self):
        return self.headers.get("content-type", "application/octet-stream")
