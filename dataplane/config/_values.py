"""Typed access to one value of the file and its key path.

:class:`Val` checks a value's type and range and raises :class:`ConfigError`
naming the key; :class:`Map` is a block whose unread keys are errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NoReturn, cast

from ..hostport import split_host_port, valid_port
from ._env import Expanded
from ._errors import ConfigError, join
from ._units import DURATION_EXAMPLE, parse_duration, parse_size


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


class Val:
    """One value from the file and its key path; the accessors check its type."""

    def __init__(self, path: str, raw: object) -> None:
        self.path = path
        self.raw = raw

    def fail(self, message: str) -> NoReturn:
        raise ConfigError(self.path, message)

    def _typed(self) -> object:
        return self.raw.typed if isinstance(self.raw, Expanded) else self.raw

    def _got(self) -> str:
        value = self._typed()
        shown = f" {value!r}" if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
        return f"got {type_name(value)}{shown}"

    @property
    def is_null(self) -> bool:
        return self.raw is None

    def string(self, *, non_empty: bool = False) -> str:
        if not isinstance(self.raw, str):
            self.fail(f"expected a string, got {type_name(self.raw)}")
        if non_empty and not self.raw.strip():
            self.fail("must not be empty")
        return str(self.raw)

    def boolean(self) -> bool:
        value = self._typed()
        if not isinstance(value, bool):
            self.fail(f"expected a boolean (true or false), {self._got()}")
        return value

    def integer(self, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._typed()
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"expected an integer, {self._got()}")
        self._check_range(value, minimum, maximum)
        return value

    def number(self, *, minimum: float | None = None, maximum: float | None = None, above: float | None = None
               ) -> float:  # fmt: skip
        value = self._typed()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(f"expected a number, {self._got()}")
        if above is not None and value <= above:
            self.fail(f"must be greater than {above:g}, got {value:g}")
        self._check_range(value, minimum, maximum)
        return float(value)

    def _check_range(self, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            self.fail(f"must be between {minimum:g} and {maximum:g}, got {value:g}")
        if minimum is not None and value < minimum:
            self.fail(f"must be at least {minimum:g}, got {value:g}")
        if maximum is not None and value > maximum:
            self.fail(f"must be at most {maximum:g}, got {value:g}")

    def port(self) -> int:
        return self.integer(minimum=1, maximum=65535)

    def duration(self, *, positive: bool = False) -> float:
        value = self._typed()
        if isinstance(value, int) and not isinstance(value, bool) and value == 0:
            seconds = 0.0  # a bare 0 is unambiguous; any other number is (nanoseconds in Go)
        elif isinstance(self.raw, str):
            parsed = parse_duration(self.raw)
            if parsed is None:
                self.fail(f"invalid duration {self.raw!r}: expected {DURATION_EXAMPLE}")
            seconds = parsed
        else:
            self.fail(f"expected {DURATION_EXAMPLE}, {self._got()}")
        if seconds < 0:
            self.fail(f"must not be negative, got {self.raw!r}")
        if positive and seconds == 0:
            self.fail(f"must be greater than zero, got {self.raw!r}")
        return seconds

    def size(self, *, positive: bool = False) -> int:
        value = self._typed()
        if isinstance(value, int) and not isinstance(value, bool):
            size = value
        elif isinstance(self.raw, str):
            parsed = parse_size(self.raw)
            if parsed is None:
                self.fail(f'invalid size {self.raw!r}: expected bytes or a size such as "512KiB", "20MiB", "4MB"')
            size = parsed
        else:
            self.fail(f'expected a size (bytes, or a string such as "20MiB"), {self._got()}')
        if size < 0 or (positive and size == 0):
            self.fail(f"must be {'greater than zero' if positive else 'at least 0'}, got {self.raw!r}")
        return size

    def choice(self, options: Iterable[str]) -> str:
        allowed = tuple(options)
        value = self.string()
        if value not in allowed:
            self.fail(f"invalid value {value!r}; valid values: {', '.join(allowed)}")
        return value

    def hostport(self, *, allow_empty: bool = False) -> str:
        value = self.string()
        if allow_empty and value == "":
            return value
        parts = split_host_port(value)
        if parts is None or not valid_port(parts[1]):
            self.fail(f'expected "host:port" with a port between 1 and 65535, got {value!r}')
        return value

    def items(self) -> list[Val]:
        value = self._typed()
        if not isinstance(value, list):
            self.fail(f"expected a list, {self._got()}")
        return [Val(f"{self.path}[{i}]", item) for i, item in enumerate(value)]

    def mapping(self) -> Map:
        """The value as a block; null (``key:`` with nothing after it) is an empty block."""
        if self.raw is None:
            return Map(self.path, {})
        if not isinstance(self.raw, dict):
            self.fail(f"expected a mapping, got {type_name(self.raw)}")
        return Map(self.path, cast("dict[object, object]", self.raw))


class Map:
    """A block of keys. Reading a key marks it known; :meth:`done` rejects the rest."""

    def __init__(self, path: str, data: Mapping[object, object]) -> None:
        self.path = path
        self.data = {str(key): value for key, value in data.items()}
        self._known: list[str] = []

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def names(self) -> list[str]:
        return list(self.data)

    def child(self, key: str) -> Val:
        return Val(join(self.path, key), self.data.get(key))

    def get(self, key: str) -> Val | None:
        self._known.append(key)
        return self.child(key) if key in self.data else None

    def require(self, key: str, what: str = "") -> Val:
        value = self.get(key)
        if value is None:
            raise ConfigError(join(self.path, key), f"required{what}")
        return value

    def done(self, unsupported: Mapping[str, str] | None = None) -> None:
        for key in self.data:
            if key in self._known:
                continue
            if unsupported and key in unsupported:
                raise ConfigError(join(self.path, key), unsupported[key])
            valid = ", ".join(dict.fromkeys(self._known)) or "none"
            raise ConfigError(join(self.path, key), f"unknown key (valid keys here: {valid})")
