"""Reading YAML documents safely, with one-line errors that start with the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: str | os.PathLike[str], *, what: str = "YAML file") -> Any:
    """The document in ``path``, parsed with PyYAML's safe loader (no Python object tags).

    Every failure is a ``ValueError`` whose one-line message starts with the
    path (and ``:line:column`` for syntax errors), names ``what`` was being
    read, and says what went wrong.
    """
    where = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{where}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{where}: cannot read {what} ({err})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark is not None else where
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ValueError(f"{at}: invalid YAML in {what}: {problem}") from None
