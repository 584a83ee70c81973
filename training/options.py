"""Command-line options → a training config: each config keeps its own defaults; only options given on the command
line override them."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from typing import TypeVar

Config = TypeVar("Config")


def config_from_args(config: Config, args: argparse.Namespace, renames: dict[str, str] | None = None) -> Config:
    """``config`` with every CLI option that was given (not None) and names one of its fields (``renames``: option → field)."""
    renames = renames or {}
    names = {f.name for f in fields(config)}
    given = {renames.get(k, k): v for k, v in vars(args).items() if v is not None}
    return replace(config, **{k: v for k, v in given.items() if k in names})
