"""Grafana Alloy configs (``*.alloy``): read as the collector config they describe.

A tier 1 built with Alloy's ``otelcol.exporter.loadbalancing`` is configured in
Alloy's own syntax. Such a file is read as it is and turned into the collector
config it stands for, which is then validated like any other (so every rule of
``_collector`` applies: ``otelcol.processor.batch`` is ignored with a warning,
``otelcol.processor.memory_limiter`` sets the memory budget, a debug/logging
exporter beside the load balancer is ignored, anything that changes data is
refused)::

    otelcol.receiver.otlp "default" {            ->  receivers: {otlp/default: {protocols: ...}}
      grpc { endpoint = "0.0.0.0:9411" }
      output { traces = [otelcol.exporter.loadbalancing.default.input] }
    }                                            ->  service.pipelines.traces/0: the path
    otelcol.exporter.loadbalancing "default" {       from receiver through processors to exporter
      resolver { kubernetes { service = "x" } }  ->  resolver.k8s (Alloy calls it kubernetes)
      protocol { otlp { client { tls { insecure = true } } } }   ->  client's keys under otlp
    }

Alloy's own defaults are kept where they differ from the collector's: the dns
resolver's ``port`` is ``"4317"``. Size strings (``limit = "1500MiB"``,
``max_recv_msg_size = "4MiB"``) become the collector's MiB numbers.

Supported syntax: blocks with and without labels, attributes, strings, numbers,
booleans, ``null``, lists, objects, references (``a.b.c.input``), comments, and
``env("NAME")`` / ``sys.env("NAME")``. A syntax error names its line.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ._errors import ConfigError
from ._units import parse_size

log = logging.getLogger("ringleader.config")

_TOKEN = re.compile(
    r"""(?P<ws>\s+)|(?P<comment>//[^\n]*|/\*.*?\*/)|(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<raw>`[^`]*`)
    |(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[{}\[\]=,().])""",
    re.DOTALL | re.VERBOSE,
)


@dataclass(frozen=True)
class Ref:
    """A reference to another component's export, e.g. ``otelcol.exporter.loadbalancing.default.input``."""

    name: str


@dataclass
class Block:
    name: str
    label: str | None
    line: int
    attrs: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)

    def child(self, name: str) -> Block | None:
        return next((b for b in self.blocks if b.name == name), None)


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.tokens: list[tuple[str, str, int]] = []
        pos, line = 0, 1
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                self._fail(line, f"unexpected character {text[pos]!r}")
            kind = match.lastgroup or ""
            value = match.group()
            if kind not in ("ws", "comment"):
                self.tokens.append((kind, value, line))
            line += value.count("\n")
            pos = match.end()
        self.i = 0

    def _fail(self, line: int, message: str) -> NoReturn:
        raise ConfigError("", f"{self.source}: invalid Alloy syntax at line {line}: {message}")

    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        index = self.i + offset
        return self.tokens[index] if index < len(self.tokens) else ("eof", "", self.tokens[-1][2] if self.tokens else 1)

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            self._fail(token[2], f"expected {value or kind}, found {token[1] or 'the end'!r}")
        self.i += 1
        return token

    def name(self) -> str:
        parts = [self.take(kind="ident")[1]]
        while self.peek()[1] == "." and self.peek(1)[0] == "ident":
            self.i += 1
            parts.append(self.take(kind="ident")[1])
        return ".".join(parts)

    def body(self, end: str | None) -> Block:
        block = Block("", None, self.peek()[2])
        while True:
            kind, value, line = self.peek()
            if (end is None and kind == "eof") or (end is not None and value == end):
                return block
            name = self.name()
            if self.peek()[1] == "=":
                self.i += 1
                block.attrs[name] = self.expr()
                continue
            label = None
            if self.peek()[0] == "string":
                label = _unquote(self.take()[1])
            self.take("{")
            child = self.body("}")
            self.take("}")
            child.name, child.label, child.line = name, label, line
            block.blocks.append(child)

    def expr(self) -> Any:
        kind, value, line = self.peek()
        if kind in ("string", "raw"):
            self.i += 1
            return _unquote(value) if kind == "string" else value[1:-1]
        if kind == "number":
            self.i += 1
            return float(value) if any(c in value for c in ".eE") else int(value)
        if value == "[":
            self.i += 1
            items = []
            while self.peek()[1] != "]":
                items.append(self.expr())
                if self.peek()[1] != "]":
                    self.take(",")
            self.take("]")
            return items
        if value == "{":
            self.i += 1
            obj: dict[str, Any] = {}
            while self.peek()[1] != "}":
                key = _unquote(self.take()[1]) if self.peek()[0] == "string" else self.take(kind="ident")[1]
                self.take("=")
                obj[key] = self.expr()
                if self.peek()[1] != "}":
                    self.take(",")
            self.take("}")
            return obj
        if kind == "ident":
            name = self.name()
            if name in ("true", "false"):
                return name == "true"
            if name == "null":
                return None
            if self.peek()[1] == "(":
                self.i += 1
                args = []
                while self.peek()[1] != ")":
                    args.append(self.expr())
                    if self.peek()[1] != ")":
                        self.take(",")
                self.take(")")
                if name in ("env", "sys.env") and len(args) == 1 and isinstance(args[0], str):
                    return os.environ.get(args[0], "")
                self._fail(line, f"function {name}() is not supported (env and sys.env are)")
            return Ref(name)
        self._fail(line, f"unexpected {value or 'end of file'!r}")


def _unquote(text: str) -> str:
    escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), text[1:-1])


# ------------------------------------------------------------------------ translation
def _plain(block: Block) -> dict[str, Any]:
    """A block as collector data: attributes, and nested blocks as mappings."""
    out: dict[str, Any] = dict(block.attrs)
    for child in block.blocks:
        out[child.name] = _plain(child)
    return out


def _mib(value: Any) -> Any:
    size = parse_size(value) if isinstance(value, str) else None
    return size / (1 << 20) if size is not None else value


_KINDS = {"receiver": "receivers", "processor": "processors", "exporter": "exporters", "auth": "extensions",
          "extension": "extensions", "connector": "connectors"}  # fmt: skip
_EXPORTER_TYPES = {"logging": "debug"}  # Alloy's logging exporter is the collector's debug exporter


def _component_id(block: Block) -> tuple[str, str]:
    """``otelcol.exporter.loadbalancing "default"`` -> ("exporters", "loadbalancing/default")."""
    parts = block.name.split(".")
    if len(parts) < 3 or parts[0] != "otelcol" or parts[1] not in _KINDS or block.label is None:
        raise ConfigError(
            f'{block.name} "{block.label}"' if block.label else block.name,
            "not supported in a Ringleader config (only otelcol.* components are read)",
        )
    kind = _KINDS[parts[1]]
    kind_type = "_".join(parts[2:])
    kind_type = _EXPORTER_TYPES.get(kind_type, kind_type) if kind == "exporters" else kind_type
    return kind, f"{kind_type}/{block.label}"


def _translate(block: Block, kind: str, type_name: str) -> dict[str, Any]:
    body = {name: value for name, value in _plain(block).items() if name != "output"}
    if kind == "receivers" and type_name == "otlp":
        protocols = {name: body.pop(name) for name in ("grpc", "http") if name in body}
        if "max_recv_msg_size" in protocols.get("grpc", {}):
            protocols["grpc"]["max_recv_msg_size_mib"] = _mib(protocols["grpc"].pop("max_recv_msg_size"))
        body["protocols"] = protocols
    elif kind == "exporters" and type_name == "loadbalancing":
        resolver = body.get("resolver", {})
        if "kubernetes" in resolver:
            resolver["k8s"] = resolver.pop("kubernetes")
        if "dns" in resolver:
            resolver["dns"].setdefault("port", "4317")  # Alloy's default; upstream's is ""
        otlp = body.get("protocol", {}).get("otlp")
        if otlp is not None:
            otlp.update(otlp.pop("client", {}))
            for alloy_name, collector_name in (("queue", "sending_queue"), ("retry", "retry_on_failure")):
                if alloy_name in otlp:
                    otlp[collector_name] = otlp.pop(alloy_name)
        if body.pop("debug_metrics", None) is not None:
            log.warning("debug_metrics of %s is ignored: Ringleader's metrics are fixed", type_name)
    elif kind == "processors" and type_name == "memory_limiter":
        for alloy_name, collector_name in (("limit", "limit_mib"), ("spike_limit", "spike_limit_mib")):
            if alloy_name in body:
                body[collector_name] = int(_mib(body.pop(alloy_name)))
    elif kind == "processors" and type_name == "batch":
        body = {}  # ignored anyway; its Alloy-only arguments need no translation
    return body


def alloy_to_collector(text: str, source: str = "<alloy>") -> dict[str, Any]:
    """The collector config an Alloy config describes (see the module docs)."""
    root = _Parser(text, source).body(None)
    data: dict[str, Any] = {}
    ids: dict[str, tuple[str, str]] = {}  # "otelcol.processor.batch.default" -> (kind, id)
    outputs: dict[str, dict[str, list[Ref]]] = {}
    for block in root.blocks:
        if block.name == "logging" and block.label is None:
            level = block.attrs.get("level")
            if isinstance(level, str):
                data.setdefault("telemetry", {})["log_level"] = level
            continue
        kind, component_id = _component_id(block)
        type_name = component_id.split("/", 1)[0]
        data.setdefault(kind, {})[component_id] = _translate(block, kind, type_name)
        ids[f"{block.name}.{block.label}"] = (kind, component_id)
        output = block.child("output")
        if output is not None:
            outputs[f"{block.name}.{block.label}"] = {
                signal: [r for r in refs if isinstance(r, Ref)]
                for signal, refs in output.attrs.items()
                if isinstance(refs, list)
            }
    pipelines: dict[str, dict[str, list[str]]] = {}
    for name, (kind, receiver_id) in ids.items():
        if kind != "receivers":
            continue
        for signal, refs in outputs.get(name, {}).items():
            for chain, exporter_id in _paths(refs, signal, ids, outputs, []):
                pipeline_id = f"{signal}/{len(pipelines)}"
                pipelines[pipeline_id] = {"receivers": [receiver_id], "processors": chain, "exporters": [exporter_id]}
    if pipelines:
        data["service"] = {"pipelines": pipelines}
    return data


def _paths(
    refs: list[Ref],
    signal: str,
    ids: dict[str, tuple[str, str]],
    outputs: dict[str, dict[str, list[Ref]]],
    chain: list[str],
) -> list[tuple[list[str], str]]:
    """(processors, exporter) for every path from ``refs`` to an exporter."""
    found: list[tuple[list[str], str]] = []
    for ref in refs:
        target = ref.name.removesuffix(".input")
        if target not in ids:
            raise ConfigError(f"output.{signal}", f"{ref.name} does not name a component of this file")
        kind, component_id = ids[target]
        if kind == "processors":
            if component_id in chain:
                raise ConfigError(f"output.{signal}", f"{ref.name} makes a loop")
            found += _paths(outputs.get(target, {}).get(signal, []), signal, ids, outputs, [*chain, component_id])
        else:
            found.append((chain, component_id))
    return found
