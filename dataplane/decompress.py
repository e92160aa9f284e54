"""HTTP request bodies, decompressed as the collector's OTLP/HTTP receiver does.

The ``Content-Encoding`` header names the encoding; the ones OTLP clients use
are all accepted, with the same framing the collector accepts:

==========  ============================================================  ===========
encoding    framing                                                       library
==========  ============================================================  ===========
gzip        every member of a multi-member body (RFC 1952), like Go's     zlib
            ``gzip.Reader``
deflate     a zlib stream (RFC 1950), as HTTP defines ``deflate``         zlib
zstd        every frame of a multi-frame body                             zstandard
snappy      the block format the collector's exporters send, or the      cramjam
            framing format (stream identifier ``\\xff\\x06\\0\\0sNaPpY``)
identity    the body as it is (also an absent or empty header)            --
==========  ============================================================  ===========

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

import zlib

import cramjam
import zstandard

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


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The decoded body for a ``Content-Encoding`` value (case and spaces ignored)."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return body
    decoder = _DECODERS.get(name)
    if decoder is None:
        raise UnsupportedEncodingError(f"unsupported Content-Encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
    out = decoder(body, limit)
    if len(out) > limit:
        raise _too_large(limit)
    return out


def _too_large(limit: int) -> BodyTooLargeError:
    return BodyTooLargeError(f"decompressed body exceeds the limit of {limit} bytes")


def _zlib_members(body: bytes, limit: int, wbits: int, what: str, multi: bool) -> bytes:
    out = bytearray()
    rest = body
    while True:
        stream = zlib.decompressobj(wbits)
        try:
            # max_length is at least 1 here (0 would mean "no limit").
            out += stream.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise CorruptBodyError(f"cannot decompress {what} body: {exc}") from None
        if len(out) > limit or stream.unconsumed_tail:
            raise _too_large(limit)
        if not stream.eof:
            raise CorruptBodyError(f"truncated {what} body: it ends inside a compressed stream")
        rest = stream.unused_data
        if not rest:
            return bytes(out)
        if not multi:
            raise CorruptBodyError(f"{len(rest)} unexpected byte(s) after the end of the {what} stream")


def _gzip(body: bytes, limit: int) -> bytes:
    return _zlib_members(body, limit, 16 + zlib.MAX_WBITS, "gzip", multi=True)


def _deflate(body: bytes, limit: int) -> bytes:
    return _zlib_members(body, limit, zlib.MAX_WBITS, "deflate", multi=False)


def _zstd(body: bytes, limit: int) -> bytes:
    dctx = zstandard.ZstdDecompressor()
    try:
        # First a bounded read across every frame: a bomb stops at limit + 1 bytes...
        with dctx.stream_reader(body, read_across_frames=True) as reader:
            if len(reader.read(limit + 1)) > limit:
                raise _too_large(limit)
        # ...then, knowing the output is small, decode frame by frame to catch a truncated
        # last frame (the stream reader ends quietly there) and trailing bytes.
        out = bytearray()
        rest = body
        while rest:
            frame = dctx.decompressobj()
            out += frame.decompress(rest)
            if not frame.eof:
                raise CorruptBodyError("truncated zstd body: it ends inside a frame")
            rest = frame.unused_data
    except zstandard.ZstdError as exc:
        raise CorruptBodyError(f"cannot decompress zstd body: {exc}") from None
    return bytes(out)


_SNAPPY_STREAM_ID = b"\xff\x06\x00\x00sNaPpY"


def _snappy(body: bytes, limit: int) -> bytes:
    framed = body.startswith(_SNAPPY_STREAM_ID)
    declared = _snappy_framed_length(body) if framed else _snappy_block_length(body)
    if declared > limit:
        raise _too_large(limit)
    try:
        out = cramjam.snappy.decompress(body) if framed else cramjam.snappy.decompress_raw(body)
    except cramjam.DecompressionError as exc:
        raise CorruptBodyError(f"cannot decompress snappy body: {exc}") from None
    return bytes(out)


def _uvarint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 35:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise CorruptBodyError("cannot decompress snappy body: bad length preamble")


def _snappy_block_length(body: bytes) -> int:
    """The decoded length a snappy block declares in its preamble."""
    return _uvarint(body, 0, len(body))[0]


def _snappy_framed_length(body: bytes) -> int:
    """The decoded length of a snappy framed stream: the sum its chunks declare."""
    total = 0
    pos = 0
    end = len(body)
    while pos < end:
        if end - pos < 4:
            raise CorruptBodyError("truncated snappy body: it ends inside a chunk header")
        kind = body[pos]
        size = int.from_bytes(body[pos + 1 : pos + 4], "little")
        start = pos + 4
        pos = start + size
        if pos > end:
            raise CorruptBodyError("truncated snappy body: it ends inside a chunk")
        if kind == 0x00:  # compressed data: 4-byte checksum, then a snappy block
            total += _uvarint(body, start + 4, pos)[0]
        elif kind == 0x01:  # uncompressed data: 4-byte checksum, then the bytes
            total += size - 4
    return total


_DECODERS = {"gzip": _gzip, "x-gzip": _gzip, "deflate": _deflate, "zstd": _zstd, "snappy": _snappy}
