"""Component IDs (``type`` or ``type/name``) as the collector names them."""

from __future__ import annotations

import re

from ._errors import ConfigError
from ._values import Val

_COMPONENT_ID = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(?:/(.+))?$")


def component_type(value: Val, key: str) -> str:
    match = _COMPONENT_ID.match(key)
    if not match or key.endswith("/"):
        raise ConfigError(value.path, f'invalid component ID {key!r}: expected "type" or "type/name"')
    return match.group(1)
