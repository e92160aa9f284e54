"""Grafana Alloy's ``otelcol.exporter.loadbalancing`` component, read into the collector's shape.

Alloy configures the same upstream exporter in its own syntax and with a
slightly different layout. :func:`parse_alloy` reads the subset of the syntax a
component block uses (blocks with optional labels, ``key = value`` attributes,
strings, numbers, booleans, lists, objects; references such as
``otelcol.exporter.x.y.input`` stay text; ``//``, ``/* */`` and ``#`` comments)
and returns the component's body as nested dicts; :func:`alloy_to_collector`
moves Alloy's layout to the collector's::

    alloy_to_collector(parse_alloy(text))
    # {"routing_key": "traceID", "resolver": {"k8s": {...}}, "protocol": {"otlp": {"tls": {...}}}}

:func:`ringleader_operator.convert.convert_alloy` chains the two with the
collector mapping.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["AlloyError", "alloy_to_collector", "parse_alloy"]


class AlloyError(ValueError):
    """Unreadable Alloy input: ``path`` is a line (``line 3``) or a block path."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AlloyError(path, f"expected a block, got {type(value).__name__}")
    return value


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punct>[{}\[\]=,:])
    """,
    re.VERBOSE | re.DOTALL,
)


class _Block(list[tuple[str, "str | None", Any]]):
    """A block's body (as opposed to a list value)."""


class _AlloyParser:
    """Blocks (``name "label" { ... }``), attributes (``key = value``), strings, numbers, booleans,
    lists and objects: the Alloy syntax a component block uses. References (``a.b.c``) stay text."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match:
                line = text.count("\n", 0, pos) + 1
                raise AlloyError(f"line {line}", f"unexpected character {text[pos]!r}")
            kind = match.lastgroup or ""
            if kind != "ws":
                self.tokens.append((kind, match.group(), text.count("\n", 0, pos) + 1))
            pos = match.end()
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else ("eof", "", -1)

    def take(self, kind: str, text: str | None = None) -> str:
        got = self.peek()
        if got[0] != kind or (text is not None and got[1] != text):
            raise AlloyError(f"line {got[2]}", f"expected {text or kind}, got {got[1] or 'end of input'!r}")
        self.pos += 1
        return got[1]

    def body(self, closing: str | None) -> _Block:
        """Items of a body: (name, label, value); a block's value is its own :class:`_Block`."""
        items = _Block()
        while True:
            kind, text, _ = self.peek()
            if closing is None and kind == "eof":
                return items
            if kind == "punct" and text == closing:
                self.pos += 1
                return items
            name = self.take("ident")
            if self.peek()[:2] == ("punct", "="):
                self.pos += 1
                items.append((name, None, self.value()))
                continue
            label = None
            if self.peek()[0] == "string":
                label = json.loads(self.take("string"))
            self.take("punct", "{")
            items.append((name, label, self.body("}")))

    def value(self) -> Any:
        kind, text, line = self.peek()
        if kind == "string":
            self.pos += 1
            return json.loads(text)
        if kind == "number":
            self.pos += 1
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "ident":
            self.pos += 1
            return {"true": True, "false": False, "null": None}.get(text, text)
        if (kind, text) == ("punct", "["):
            self.pos += 1
            items: list[Any] = []
            while self.peek()[1] != "]":
                items.append(self.value())
                if self.peek()[1] == ",":
                    self.pos += 1
            self.take("punct", "]")
            return items
        if (kind, text) == ("punct", "{"):
            self.pos += 1
            obj: dict[str, Any] = {}
            while self.peek()[1] != "}":
                key_kind, key, _ = self.peek()
                self.pos += 1
                if key_kind == "string":
                    key = json.loads(key)
                if self.peek()[1] not in ("=", ":"):
                    raise AlloyError(f"line {line}", "expected = in an object")
                self.pos += 1
                obj[key] = self.value()
                if self.peek()[1] == ",":
                    self.pos += 1
            self.take("punct", "}")
            return obj
        raise AlloyError(f"line {line}", f"unexpected {text or 'end of input'!r}")


def _as_dict(items: _Block, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, label, value in items:
        key = name if label is None else f"{name}/{label}"
        if key in out:
            raise AlloyError(f"{path}.{key}", "given twice")
        out[key] = _as_dict(value, f"{path}.{key}") if isinstance(value, _Block) else value
    return out


def parse_alloy(text: str, component: str = "otelcol.exporter.loadbalancing") -> dict[str, Any]:
    """The body of the first ``component`` block in an Alloy file, as nested dicts."""
    items = _AlloyParser(text).body(None)
    for name, _label, value in items:
        if name == component:
            return _as_dict(value, component)
    raise AlloyError("", f"no {component} block found")


_ALLOY_KEEPALIVE = {
    "ping_wait": "time",
    "ping_response_timeout": "timeout",
    "ping_without_stream": "permit_without_stream",
}


def alloy_to_collector(block: Mapping[str, Any]) -> dict[str, Any]:
    """Alloy's component arguments in the collector's shape (``kubernetes`` -> ``k8s``, ``client`` flattened,
    ``queue``/``retry`` -> ``sending_queue``/``retry_on_failure``); ``debug_metrics`` is dropped."""
    out: dict[str, Any] = {"routing_key": "traceID"}  # Alloy's documented default, for traces and logs alike
    for key, value in block.items():
        if key == "debug_metrics":
            continue
        if key == "resolver":
            out["resolver"] = {("k8s" if k == "kubernetes" else k): v for k, v in _mapping(value, key).items()}
        elif key == "protocol":
            otlp_in = _mapping(_mapping(value, key).get("otlp"), "protocol.otlp")
            otlp: dict[str, Any] = {}
            for okey, ovalue in otlp_in.items():
                if okey == "client":
                    for ckey, cvalue in _mapping(ovalue, "protocol.otlp.client").items():
                        if ckey == "keepalive":
                            keepalive = _mapping(cvalue, "protocol.otlp.client.keepalive")
                            otlp["keepalive"] = {_ALLOY_KEEPALIVE.get(k, k): v for k, v in keepalive.items()}
                        else:
                            otlp[ckey] = cvalue
                elif okey == "queue":
                    otlp["sending_queue"] = ovalue
                elif okey == "retry":
                    otlp["retry_on_failure"] = ovalue
                else:
                    otlp[okey] = ovalue
            out["protocol"] = {"otlp": otlp}
        else:
            out[key] = value
    return out


