"""The `r1kit` command."""

from r1kit.cli.main import main

__all__ = ["main"]
