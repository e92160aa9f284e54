"""The one exception a bad configuration raises, and the key paths it names."""

from __future__ import annotations


class ConfigError(Exception):
    """An invalid configuration: ``key_path`` names the offending key ("" for the whole file)."""

    def __init__(self, key_path: str, message: str) -> None:
        # One line, always: the CLI prints str(error) as is.
        self.key_path = key_path
        self.message = " ".join(message.split())
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.key_path:
            return f"config error at {self.key_path}: {self.message}"
        return f"config error: {self.message}"


def join(path: str, key: str) -> str:
    """The key path of ``key`` inside the block at ``path`` (``""`` is the top level)."""
    return f"{path}.{key}" if path else key
