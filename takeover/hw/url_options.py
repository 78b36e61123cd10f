"""One strict reader of a robot URL's query options, for every scheme.

    opts = UrlOptions(url, accepted=("seed", "fast"), scheme="sim://")
    fast = opts.flag("fast", False)           # 1/true/yes/on or 0/false/no/off, else one line
    seed = opts.integer("seed", 0)
    opts.check_unknown()                      # an option the scheme does not take is named

Every value is checked the same way whatever the scheme: `images=maybe`, `cbor=maybe` and
`fast=on` mean the same thing (or fail with the same line) on serial, rosbridge and sim. The
last value of a repeated key wins (urllib's habit). Errors are `UsageError`s, one line that names
the URL, the key and what would be accepted.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterable

from takeover.errors import UsageError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


class UrlOptions:
    """The query of `url`, read option by option with a type; `accepted` names what the scheme
    takes (the rest are errors at `check_unknown`, or `others()` for a scheme that passes them
    on, as pyserial URLs do)."""

    def __init__(self, url: str, accepted: Iterable[str], scheme: str) -> None:
        self.url = url
        self.accepted = tuple(accepted)
        self.scheme = scheme
        self.pairs = urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query,
                                            keep_blank_values=True)
        self.values = {k: v for k, v in self.pairs if k in self.accepted}

    def _error(self, key: str, why: str) -> UsageError:
        return UsageError(f"robot URL {self.url!r}: {key}={self.values[key]!r} {why}")

    def has(self, key: str) -> bool:
        return key in self.values

    def others(self) -> list[tuple[str, str]]:
        """The options this scheme does not take itself, in order (for a pass-through)."""
        return [(k, v) for k, v in self.pairs if k not in self.accepted]

    def check_unknown(self) -> None:
        unknown = self.others()
        if unknown:
            raise UsageError(f"robot URL {self.url!r}: unknown option {unknown[0][0]!r}; "
                             f"{self.scheme} accepts {', '.join(sorted(self.accepted))}")

    def text(self, key: str, default: str) -> str:
        return self.values.get(key, default)

    def flag(self, key: str, default: bool) -> bool:
        if key not in self.values:
            return default
        word = self.values[key].strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise self._error(key, "is not a yes/no value (use 1 or 0)")

    def number(self, key: str, default: float, positive: bool = True) -> float:
        if key not in self.values:
            return default
        try:
            value = float(self.values[key])
        except ValueError:
            raise self._error(key, "is not a number") from None
        if not math.isfinite(value) or (positive and value <= 0):
            raise self._error(key, "must be a positive number")
        return value

    def integer(self, key: str, default: int, low: int | None = None, high: int | None = None
                ) -> int:
        if key not in self.values:
            return default
        try:
            value = int(self.values[key])
        except ValueError:
            raise self._error(key, "is not an integer") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise self._error(key, f"must be between {low} and {high}")
        return value

    def choice(self, key: str, choices: Iterable[str], default: str) -> str:
        options = tuple(choices)
        if key not in self.values:
            return default
        value = self.values[key]
        if value not in options:
            raise self._error(key, f"is not one of them; use {' or '.join(options)}")
        return value
