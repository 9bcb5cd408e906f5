"""Example flows for the demo and the tests' end-to-end runs."""

from __future__ import annotations


def hello(name: str = "world", times: int = 1) -> str:
    """Greet someone, ``times`` times."""
    message = " ".join([f"Hello, {name}!"] * times)
    print(message)
    return message
