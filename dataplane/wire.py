"""Reading and writing the protobuf wire format, just enough to split OTLP requests.

OTLP export requests share one shape for all three signals::

    Export*ServiceRequest { 1: repeated Resource* }
    Resource*             { 1: Resource, 2: repeated Scope*, 3: schema_url }
    Scope*                { 1: InstrumentationScope, 2: repeated item, 3: schema_url }

where an *item* is a Span, a LogRecord or a Metric. The data plane routes items
without decoding them: it walks these frames, reads the one field of the item that
carries the routing key, and copies item bytes verbatim into per-backend requests,
rebuilding only the enclosing resource and scope frames. Nothing here allocates
per item beyond the key bytes.

Every read is bounds-checked; malformed input raises :class:`MalformedError`
(the receiver answers INVALID_ARGUMENT / HTTP 400) and never anything else.
"""

from __future__ import annotations

# Wire types.
VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5

# Tags (field << 3 | wire type) of the shared OTLP envelope.
TAG_RESOURCE_GROUP = 0x0A  # request field 1 (LEN)
TAG_RESOURCE = 0x0A  # resource group field 1 (LEN)
TAG_SCOPE_GROUP = 0x12  # resource group field 2 (LEN)
TAG_SCOPE = 0x0A  # scope group field 1 (LEN)
TAG_ITEM = 0x12  # scope group field 2 (LEN)


class MalformedError(ValueError):
    """The bytes are not a well-formed protobuf message of the expected shape."""


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; returns (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise MalformedError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise MalformedError("varint too long")


def read_tag(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode a tag at ``pos``; returns (tag, next position).

    Callers read one-byte tags inline (the common case) and come here for the rest.
    Like the protobuf runtime, this refuses field number 0 and tags beyond 32 bits;
    a padded (non-canonical) encoding is accepted and yields the same tag.
    """
    tag, pos = read_varint(data, pos, end)
    if tag >> 32 or tag >> 3 == 0:
        raise MalformedError(f"invalid tag {tag}")
    return tag, pos


def skip_field(data: bytes, wire_type: int, pos: int, end: int) -> int:
    """Skip the value of a field whose tag was just read; returns the next position."""
    if wire_type == VARINT:
        _, pos = read_varint(data, pos, end)
        return pos
    if wire_type == LEN:
        length, pos = read_varint(data, pos, end)
        pos += length
    elif wire_type == I64:
        pos += 8
    elif wire_type == I32:
        pos += 4
    else:
        # Groups are deprecated and never used by OTLP; treating them as malformed keeps the
        # splitter simple and safe.
        raise MalformedError(f"unsupported wire type {wire_type}")
    if pos > end:
        raise MalformedError("field overruns its message")
    return pos


def encode_varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frame(tag: int, payload_len: int) -> bytes:
    """Tag and length prefix of a LEN field whose payload is ``payload_len`` bytes."""
    if payload_len < 0x80:
        return bytes((tag, payload_len))
    return bytes((tag,)) + encode_varint(payload_len)


def find_len_field(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int] | None:
    """Locate the last LEN field with ``tag`` in the message ``data[pos:end]``.

    Returns (payload start, payload end) or None when absent. Protobuf says the last
    occurrence of a non-repeated field wins, so the scan does not stop early.
    Validates the framing of every field it passes.
    """
    found: tuple[int, int] | None = None
    while pos < end:
        t = data[pos]
        if t < 0x80:
            pos += 1
        else:
            t, pos = read_tag(data, pos, end)
        wt = t & 7
        if wt == LEN:
            if t == LEN:
                raise MalformedError("field number 0")
            b = data[pos] if pos < end else 0x80
            if b < 0x80 and pos < end:
                length = b
                pos += 1
            else:
                length, pos = read_varint(data, pos, end)
            stop = pos + length
            if stop > end:
                raise MalformedError("field overruns its message")
            if t == tag:
                found = (pos, stop)
            pos = stop
        else:
            if t >> 3 == 0:
                raise MalformedError("field number 0")
            pos = skip_field(data, wt, pos, end)
    return found


def iter_len_fields(data: bytes, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """Split a message into its fields: a list of (tag, field start, payload start, end).

    ``field start`` includes the tag, so ``data[field_start:end]`` is the field's raw
    bytes, ready to be copied into another message. Non-LEN fields are reported with
    payload start == end.
    """
    fields: list[tuple[int, int, int, int]] = []
    while pos < end:
        start = pos
        t = data[pos]
        if t < 0x80:
            pos += 1
        else:
            t, pos = read_tag(data, pos, end)
        if t >> 3 == 0:
            raise MalformedError("field number 0")
        wt = t & 7
        if wt == LEN:
            length, pos = read_varint(data, pos, end)
            stop = pos + length
            if stop > end:
                raise MalformedError("field overruns its message")
            fields.append((t, start, pos, stop))
            pos = stop
        else:
            pos = skip_field(data, wt, pos, end)
            fields.append((t, start, pos, pos))
    return fields
