"""Verbs of this area (filled in by its module's owner)."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """No verbs yet."""
