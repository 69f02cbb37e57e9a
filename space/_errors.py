from __future__ import annotations

from typing import Any


def _printable(text: str) -> str:
    """``text`` with control characters escaped, so a message stays on one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


class SpecError(ValueError):
    """A spec field broke one of its rules.

    The message states the rule, then the value received, e.g.
    ``ParticleSpec.temporal_kernel must be one of (1, 3, 5, 7), but got 4.``
    ``field`` is the dotted field name, so a config loader can prefix the file
    and section it came from without parsing the message.
    """

    def __init__(self, field: str, rule: str, value: Any) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(f"{_printable(field)} {rule}, but got {value!r}.")

    def relocated(self, field: str) -> SpecError:
        """The same error, reported under another field name (e.g. a YAML path)."""
        return SpecError(field, self.rule, self.value)
