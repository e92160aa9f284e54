"""``${env:NAME}`` / ``${NAME}`` expansion in string values (``$$`` is a literal ``$``).

As in the collector, a value that is exactly one reference also has a typed
reading, so ``port: ${env:PORT}`` is an integer.
"""

from __future__ import annotations

import os
import re

import yaml

from ._errors import ConfigError, join
from ._yaml import Loader

_ENV_REF = re.compile(r"\$\$|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Expanded(str):
    """A string that was exactly one ``${...}`` reference.

    Like the collector, such a value also has a typed reading (the variable's text
    parsed as YAML), so ``port: ${env:PORT}`` is an integer while
    ``hostname: ${env:HOST}`` stays a string even if HOST is ``1234``.
    """

    typed: object

    def __new__(cls, text: str, typed: object) -> Expanded:
        obj = super().__new__(cls, text)
        obj.typed = typed
        return obj


def _expand_ref(body: str, path: str) -> str:
    if body.startswith("env:"):
        name, _, default = body[4:].partition(":-")
        has_default = ":-" in body[4:]
    elif ":" in body:
        scheme = body.split(":", 1)[0]
        raise ConfigError(path, f"unsupported config provider {scheme!r} in ${{{body}}} (only env is supported)")
    else:
        name, has_default, default = body, False, ""
    if not _ENV_NAME.match(name):
        raise ConfigError(path, f"invalid environment variable name {name!r} in ${{{body}}}")
    value = os.environ.get(name)
    if value is None or (has_default and value == ""):
        return default
    return value


def _expand_string(text: str, path: str) -> str:
    if "$" not in text:
        return text
    match = _ENV_REF.fullmatch(text)
    if match and match.group(0) != "$$":
        value = _expand_ref(match.group(1), path)
        try:
            typed: object = yaml.load(value, Loader=Loader) if value else value
        except (yaml.YAMLError, ConfigError):
            typed = value
        if isinstance(typed, (dict, list)) or typed is None:
            typed = value
        return Expanded(value, typed)

    def replace(m: re.Match[str]) -> str:
        return "$" if m.group(0) == "$$" else _expand_ref(m.group(1), path)

    return _ENV_REF.sub(replace, text)


def expand(node: object, path: str) -> object:
    if isinstance(node, str):
        return _expand_string(node, path)
    if isinstance(node, list):
        return [expand(item, f"{path}[{i}]") for i, item in enumerate(node)]
    if isinstance(node, dict):
        return {key: expand(value, join(path, str(key))) for key, value in node.items()}
    return node
