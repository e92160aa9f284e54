"""Request bodies, decompressed as the collector's OTLP receivers do (natively).

The receivers decode bodies in the native extension (``dataplane/native``,
``src/server/decompress.rs``) without the interpreter lock; this module is its
Python face, for tools and tests. The ``Content-Encoding`` (HTTP) or
``grpc-encoding`` (gRPC) value names the encoding:

==========  ============================================================
encoding    framing
==========  ============================================================
gzip        every member of a multi-member body (RFC 1952), like Go's
            ``gzip.Reader`` (also ``x-gzip``)
deflate     a zlib stream (RFC 1950), as HTTP defines ``deflate``
            (also ``zlib``)
zstd        every frame of a multi-frame body
snappy      the block format the collector's HTTP exporter sends, or the
            framing format (stream identifier ``\\xff\\x06\\0\\0sNaPpY``)
            its gRPC exporter sends (also ``x-snappy-framed``)
identity    the body as it is (also an absent or empty header)
==========  ============================================================

A body is decoded completely or refused, never cut short::

    >>> decompress(gzip.compress(b"a") + gzip.compress(b"b"), "gzip", limit=100)
    b'ab'

- :class:`UnsupportedEncodingError` (HTTP 415): any other encoding;
- :class:`CorruptBodyError` (HTTP 400): a truncated or corrupt body, or bytes
  after the last member/frame;
- :class:`BodyTooLargeError` (HTTP 413): the decoded body would exceed
  ``limit``. The check happens while decoding (or, for snappy, from the lengths
  the format declares before anything is decoded), so a small body that
  expands to gigabytes (a "zip bomb") never takes more than ``limit`` bytes of
  memory.
"""

from __future__ import annotations

from . import _native

__all__ = [
    "ENCODINGS",
    "BodyTooLargeError",
    "CorruptBodyError",
    "DecompressError",
    "UnsupportedEncodingError",
    "decompress",
]

ENCODINGS = ("gzip", "deflate", "zstd", "snappy", "identity")


class DecompressError(Exception):
    """A body that cannot be decompressed; subclasses say why."""


class UnsupportedEncodingError(DecompressError):
    """An encoding this receiver does not know (HTTP 415)."""


class CorruptBodyError(DecompressError):
    """A truncated or corrupt body (HTTP 400)."""


class BodyTooLargeError(DecompressError):
    """The decompressed body exceeds the limit (HTTP 413)."""


_ERRORS: dict[str, type[DecompressError]] = {
    "unsupported": UnsupportedEncodingError,
    "corrupt": CorruptBodyError,
    "too_large": BodyTooLargeError,
}


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The decoded body for an encoding name (case and spaces ignored), at most ``limit`` bytes."""
    try:
        return _native.decompress(body, encoding, limit)
    except _native.DecompressFailure as exc:
        kind, message = exc.args
        raise _ERRORS[kind](message) from None
