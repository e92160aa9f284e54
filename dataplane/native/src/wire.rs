//! Reading the protobuf wire format, exactly as `dataplane/wire.py` reads it.
//!
//! Every read is bounds-checked and returns [`Error::Malformed`] instead of panicking;
//! lengths are added with saturation, so no offset can wrap.

use std::fmt;

/// Wire types.
pub const VARINT: u64 = 0;
pub const I64: u64 = 1;
pub const LEN: u64 = 2;
pub const I32: u64 = 5;

/// Why a request was refused: the two error classes of `dataplane.routing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not well-formed protobuf of the expected shape (Python: `MalformedError`).
    Malformed(String),
    /// Well-formed but violates OTLP (Python: `InvalidRequestError(reason, message)`).
    Invalid {
        reason: &'static str,
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(m) => write!(f, "malformed: {m}"),
            Error::Invalid { reason, message } => write!(f, "invalid ({reason}): {message}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

#[cold]
pub fn malformed<T>(message: &str) -> Result<T> {
    Err(Error::Malformed(message.to_owned()))
}

/// Decode a varint at `pos`; returns (value, next position).
///
/// A 10-byte varint whose value does not fit 64 bits saturates to `u64::MAX`: Python
/// keeps the big integer, and every caller treats both as "too large" the same way.
#[inline]
pub fn read_varint(data: &[u8], mut pos: usize, end: usize) -> Result<(u64, usize)> {
    let mut result: u64 = 0;
    let mut shift = 0u32;
    loop {
        if pos >= end {
            return malformed("truncated varint");
        }
        let b = data[pos];
        pos += 1;
        let bits = u64::from(b & 0x7F);
        if shift == 63 && bits > 1 {
            result = u64::MAX; // the tenth byte: only its lowest bit fits
        } else {
            result |= bits << shift;
        }
        if b < 0x80 {
            return Ok((result, pos));
        }
        shift += 7;
        if shift >= 64 {
            return malformed("varint too long");
        }
    }
}

/// Decode a multi-byte tag: refuses field number 0 and tags beyond 32 bits.
#[inline]
pub fn read_tag(data: &[u8], pos: usize, end: usize) -> Result<(u64, usize)> {
    let (tag, pos) = read_varint(data, pos, end)?;
    if tag >> 32 != 0 || tag >> 3 == 0 {
        return malformed("invalid tag");
    }
    Ok((tag, pos))
}

/// `pos + length`, saturating (a length near 2**64 must not wrap around).
#[inline]
pub fn add_len(pos: usize, length: u64) -> usize {
    pos.saturating_add(usize::try_from(length).unwrap_or(usize::MAX))
}

/// Skip the value of a field whose tag was just read; returns the next position.
#[inline]
pub fn skip_field(data: &[u8], wire_type: u64, pos: usize, end: usize) -> Result<usize> {
    let next = match wire_type {
        VARINT => return Ok(read_varint(data, pos, end)?.1),
        LEN => {
            let (length, p) = read_varint(data, pos, end)?;
            add_len(p, length)
        }
        I64 => pos.saturating_add(8),
        I32 => pos.saturating_add(4),
        _ => return malformed("unsupported wire type"),
    };
    if next > end {
        return malformed("field overruns its message");
    }
    Ok(next)
}

/// Read a tag the way the splitter's walkers do: one byte inline, else [`read_tag`].
#[inline]
fn next_tag(data: &[u8], pos: usize, end: usize) -> Result<(u64, usize)> {
    let t = data[pos];
    if t < 0x80 {
        Ok((u64::from(t), pos + 1))
    } else {
        read_tag(data, pos, end)
    }
}

/// Locate the last LEN field with `tag` in the message `data[pos..end]`: (payload start, end).
///
/// The last occurrence of a singular field wins, so the scan does not stop early; the
/// framing of every field passed is validated.
pub fn find_len_field(
    data: &[u8],
    mut pos: usize,
    end: usize,
    tag: u64,
) -> Result<Option<(usize, usize)>> {
    let mut found = None;
    while pos < end {
        let (t, p) = next_tag(data, pos, end)?;
        pos = p;
        let wt = t & 7;
        if wt == LEN {
            if t == LEN {
                return malformed("field number 0");
            }
            let (length, p) = if pos < end && data[pos] < 0x80 {
                (u64::from(data[pos]), pos + 1)
            } else {
                read_varint(data, pos, end)?
            };
            let stop = add_len(p, length);
            if stop > end {
                return malformed("field overruns its message");
            }
            if t == tag {
                found = Some((p, stop));
            }
            pos = stop;
        } else {
            if t >> 3 == 0 {
                return malformed("field number 0");
            }
            pos = skip_field(data, wt, pos, end)?;
        }
    }
    Ok(found)
}

/// One field of a message: tag, field start (tag included), payload start, end.
/// Non-LEN fields have payload start == end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub tag: u64,
    pub start: usize,
    pub payload: usize,
    pub end: usize,
}

/// Split a message into its fields, validating all of them before any is used
/// (as `iter_len_fields` does, so errors are raised in the same order as in Python).
pub fn fields_into(data: &[u8], mut pos: usize, end: usize, out: &mut Vec<Field>) -> Result<()> {
    out.clear();
    while pos < end {
        let start = pos;
        let (t, p) = next_tag(data, pos, end)?;
        pos = p;
        if t >> 3 == 0 {
            return malformed("field number 0");
        }
        let wt = t & 7;
        if wt == LEN {
            let (length, p) = read_varint(data, pos, end)?;
            let stop = add_len(p, length);
            if stop > end {
                return malformed("field overruns its message");
            }
            out.push(Field {
                tag: t,
                start,
                payload: p,
                end: stop,
            });
            pos = stop;
        } else {
            pos = skip_field(data, wt, pos, end)?;
            out.push(Field {
                tag: t,
                start,
                payload: pos,
                end: pos,
            });
        }
    }
    Ok(())
}

/// Append a varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Bytes a varint takes.
#[inline]
pub fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_truncation() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v));
            assert_eq!(read_varint(&buf, 0, buf.len()).unwrap(), (v, buf.len()));
            assert!(read_varint(&buf, 0, buf.len() - 1).is_err());
        }
    }

    #[test]
    fn an_eleven_byte_varint_is_refused_and_a_huge_one_saturates() {
        let eleven = [0xFFu8; 10];
        assert!(read_varint(&eleven, 0, 10).is_err());
        let mut huge = [0xFFu8; 10];
        huge[9] = 0x7F;
        assert_eq!(read_varint(&huge, 0, 10).unwrap().0, u64::MAX);
    }

    #[test]
    fn tags_of_field_zero_or_beyond_32_bits_are_refused() {
        assert!(read_tag(&[0x80, 0x00], 0, 2).is_err());
        assert!(read_tag(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 0, 6).is_err());
        assert_eq!(read_tag(&[0x8A, 0x00], 0, 2).unwrap(), (0x0A, 2));
    }

    #[test]
    fn a_length_near_two_to_the_64_overruns_instead_of_wrapping() {
        let data = [
            0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
        ];
        let mut fields = Vec::new();
        assert!(fields_into(&data, 0, data.len(), &mut fields).is_err());
        assert!(find_len_field(&data, 0, data.len(), 0x0A).is_err());
    }

    #[test]
    fn the_last_occurrence_of_a_field_wins() {
        let data = [0x0A, 0x01, b'a', 0x10, 0x05, 0x0A, 0x02, b'b', b'c'];
        assert_eq!(
            find_len_field(&data, 0, data.len(), 0x0A).unwrap(),
            Some((7, 9))
        );
    }
}
