//! Request bodies and gRPC messages, decompressed completely or refused, never cut short.
//!
//! | encoding  | framing                                                            |
//! |-----------|--------------------------------------------------------------------|
//! | gzip      | every member of a multi-member body (RFC 1952), like Go's reader   |
//! | deflate   | a zlib stream (RFC 1950), as HTTP defines `deflate`                |
//! | zstd      | every frame of a multi-frame body                                  |
//! | snappy    | the block format, or the framing format (what the Go collector's   |
//! |           | gRPC `snappy` compressor writes) when the body starts with its     |
//! |           | stream identifier                                                  |
//! | identity  | the body as it is (also an empty name)                             |
//!
//! The output is bounded while decoding (snappy: by the lengths the format declares before
//! anything is decoded), so a small body that expands to gigabytes never takes more than
//! `limit + 1` bytes of memory.

use std::fmt;
use std::io::Read;

/// The encodings [`decompress`] knows, in the order refusals name them.
pub const ENCODINGS: &[&str] = &["gzip", "deflate", "zstd", "snappy", "identity"];

const SNAPPY_STREAM_ID: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// Why a body cannot be decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecompressError {
    /// An encoding this receiver does not know (HTTP 415).
    Unsupported(String),
    /// A truncated or corrupt body, or bytes after its end (HTTP 400).
    Corrupt(String),
    /// The decoded body exceeds the limit (HTTP 413).
    TooLarge(usize),
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecompressError::Unsupported(name) => write!(
                f,
                "unsupported Content-Encoding {name:?} (supported: {})",
                ENCODINGS.join(", ")
            ),
            DecompressError::Corrupt(m) => f.write_str(m),
            DecompressError::TooLarge(limit) => {
                write!(f, "decompressed body exceeds the limit of {limit} bytes")
            }
        }
    }
}

/// A known encoding, parsed once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Zstd,
    Snappy,
}

impl Encoding {
    /// The encoding a `Content-Encoding` / `grpc-encoding` value names (case and spaces ignored).
    pub fn parse(name: &str) -> Result<Encoding, DecompressError> {
        let lower = name.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "" | "identity" => Encoding::Identity,
            "gzip" | "x-gzip" => Encoding::Gzip,
            "deflate" | "zlib" => Encoding::Deflate,
            "zstd" => Encoding::Zstd,
            "snappy" | "x-snappy-framed" => Encoding::Snappy,
            _ => return Err(DecompressError::Unsupported(name.to_string())),
        })
    }
}

/// The decoded body for an encoding name; at most `limit` bytes.
pub fn decompress(body: &[u8], encoding: &str, limit: usize) -> Result<Vec<u8>, DecompressError> {
    decode(body, Encoding::parse(encoding)?, limit)
}

/// The decoded body; at most `limit` bytes. (Identity copies: callers keep the input otherwise.)
pub fn decode(body: &[u8], encoding: Encoding, limit: usize) -> Result<Vec<u8>, DecompressError> {
    let out = match encoding {
        Encoding::Identity => body.to_vec(),
        Encoding::Gzip => gzip(body, limit)?,
        Encoding::Deflate => deflate(body, limit)?,
        Encoding::Zstd => zstd(body, limit)?,
        Encoding::Snappy => snappy(body, limit)?,
    };
    if out.len() > limit {
        return Err(DecompressError::TooLarge(limit));
    }
    Ok(out)
}

fn corrupt(what: &str, err: impl fmt::Display) -> DecompressError {
    DecompressError::Corrupt(format!("cannot decompress {what} body: {err}"))
}

/// Read at most `limit + 1` bytes: one more than allowed tells a bomb from a body at the limit.
fn bounded(mut reader: impl Read, limit: usize, what: &str) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let cap = (limit as u64).saturating_add(1);
    match (&mut reader).take(cap).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Err(DecompressError::TooLarge(limit)),
        Ok(_) => Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(DecompressError::Corrupt(
            format!("truncated {what} body: it ends inside a compressed stream"),
        )),
        Err(e) => Err(corrupt(what, e)),
    }
}

fn gzip(body: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    if body.is_empty() {
        return Err(DecompressError::Corrupt("empty gzip body".into()));
    }
    bounded(flate2::read::MultiGzDecoder::new(body), limit, "gzip")
}

fn deflate(body: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    // Driven by hand: a reader would take a cut zlib stream for a short one.
    let truncated = || {
        DecompressError::Corrupt(
            "truncated deflate body: it ends inside a compressed stream".into(),
        )
    };
    let mut inflate = flate2::Decompress::new(true);
    let mut out: Vec<u8> = Vec::with_capacity(body.len().saturating_mul(4).max(64).min(limit + 1));
    loop {
        if out.len() == out.capacity() {
            if out.len() > limit {
                return Err(DecompressError::TooLarge(limit));
            }
            out.reserve_exact(out.len().max(64 * 1024).min(limit + 1 - out.len()));
        }
        let (used, made) = (inflate.total_in() as usize, out.len());
        let status = inflate
            .decompress_vec(&body[used..], &mut out, flate2::FlushDecompress::None)
            .map_err(|e| corrupt("deflate", e))?;
        if status == flate2::Status::StreamEnd {
            break;
        }
        let progress = inflate.total_in() as usize != used || out.len() != made;
        if !progress && out.len() < out.capacity() {
            return Err(truncated());
        }
    }
    if out.len() > limit {
        return Err(DecompressError::TooLarge(limit));
    }
    let used = inflate.total_in() as usize;
    if used < body.len() {
        return Err(DecompressError::Corrupt(format!(
            "{} unexpected byte(s) after the end of the deflate stream",
            body.len() - used
        )));
    }
    Ok(out)
}

fn zstd(body: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let decoder = zstd::stream::read::Decoder::with_buffer(body).map_err(|e| corrupt("zstd", e))?;
    bounded(decoder, limit, "zstd")
}

fn uvarint(data: &[u8]) -> Result<usize, DecompressError> {
    let mut value: u64 = 0;
    for (i, byte) in data.iter().take(5).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value as usize);
        }
    }
    Err(DecompressError::Corrupt(
        "cannot decompress snappy body: bad length preamble".into(),
    ))
}

fn snappy(body: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    if body.is_empty() {
        // A framed stream with nothing written is empty (Go's writer and cramjam write no header).
        return Ok(Vec::new());
    }
    if body.starts_with(SNAPPY_STREAM_ID) {
        if snappy_framed_length(body)? > limit {
            return Err(DecompressError::TooLarge(limit));
        }
        return bounded(snap::read::FrameDecoder::new(body), limit, "snappy");
    }
    if uvarint(body)? > limit {
        return Err(DecompressError::TooLarge(limit));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| corrupt("snappy", e))
}

/// The decoded length of a snappy framed stream: the sum its chunks declare.
fn snappy_framed_length(body: &[u8]) -> Result<usize, DecompressError> {
    let mut total = 0usize;
    let mut pos = 0usize;
    while pos < body.len() {
        if body.len() - pos < 4 {
            return Err(DecompressError::Corrupt(
                "truncated snappy body: it ends inside a chunk header".into(),
            ));
        }
        let kind = body[pos];
        let size = usize::from(body[pos + 1])
            | usize::from(body[pos + 2]) << 8
            | usize::from(body[pos + 3]) << 16;
        let start = pos + 4;
        pos = start + size;
        if pos > body.len() {
            return Err(DecompressError::Corrupt(
                "truncated snappy body: it ends inside a chunk".into(),
            ));
        }
        let chunk = &body[start..pos];
        match kind {
            0x00 if chunk.len() >= 4 => total = total.saturating_add(uvarint(&chunk[4..])?),
            0x01 if chunk.len() >= 4 => total = total.saturating_add(chunk.len() - 4),
            0x00 | 0x01 => {
                return Err(DecompressError::Corrupt(
                    "cannot decompress snappy body: a chunk shorter than its checksum".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LIMIT: usize = 64 * 1024;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }
    fn zl(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }
    fn zs(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).unwrap()
    }
    fn sn_block(data: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(data).unwrap()
    }
    fn sn_framed(data: &[u8]) -> Vec<u8> {
        let mut e = snap::write::FrameEncoder::new(Vec::new());
        e.write_all(data).unwrap();
        e.into_inner().unwrap()
    }
    fn sample() -> Vec<u8> {
        (0..8000u32).map(|i| (i * 7919 % 251) as u8).collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        assert_eq!(decompress(&gz(&data), "gzip", LIMIT).unwrap(), data);
        assert_eq!(decompress(&zl(&data), "deflate", LIMIT).unwrap(), data);
        assert_eq!(decompress(&zs(&data), "zstd", LIMIT).unwrap(), data);
        assert_eq!(decompress(&sn_block(&data), "snappy", LIMIT).unwrap(), data);
        assert_eq!(
            decompress(&sn_framed(&data), "snappy", LIMIT).unwrap(),
            data
        );
        assert_eq!(decompress(&data, " Identity ", LIMIT).unwrap(), data);
        assert_eq!(decompress(&sn_framed(b""), "snappy", LIMIT).unwrap(), b"");
    }

    #[test]
    fn multi_member_gzip_and_multi_frame_zstd_are_decoded_whole() {
        let body = [gz(b"first,"), gz(b"second")].concat();
        assert_eq!(decompress(&body, "gzip", LIMIT).unwrap(), b"first,second");
        let body = [zs(b"first,"), zs(b"second")].concat();
        assert_eq!(decompress(&body, "zstd", LIMIT).unwrap(), b"first,second");
    }

    #[test]
    fn truncated_or_trailing_bytes_are_corrupt() {
        let a = vec![b'a'; 1000];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("gzip", gz(&a)[..gz(&a).len() - 8].to_vec()),
            ("gzip", gz(&a)[..gz(&a).len() - 20].to_vec()),
            ("gzip", [gz(b"a"), b"garbage".to_vec()].concat()),
            ("deflate", zl(&a)[..zl(&a).len() - 2].to_vec()),
            ("deflate", [zl(b"a"), b"garbage".to_vec()].concat()),
            ("zstd", zs(&sample())[..zs(&sample()).len() - 5].to_vec()),
            ("zstd", [zs(b"a"), b"garbage".to_vec()].concat()),
            ("snappy", sn_block(&a)[..sn_block(&a).len() - 3].to_vec()),
            ("snappy", sn_framed(&a)[..sn_framed(&a).len() - 3].to_vec()),
            ("snappy", b"\xff\xff\xff\xff\xff\xff".to_vec()),
        ];
        for (enc, body) in cases {
            let got = decompress(&body, enc, LIMIT);
            assert!(
                matches!(got, Err(DecompressError::Corrupt(_))),
                "{enc}: {got:?}"
            );
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 8 * LIMIT];
        for (enc, body) in [
            ("gzip", gz(&zeros)),
            ("deflate", zl(&zeros)),
            ("zstd", zs(&zeros)),
            ("snappy", sn_block(&zeros)),
            ("snappy", sn_framed(&zeros)),
            ("identity", zeros.clone()),
        ] {
            assert_eq!(
                decompress(&body, enc, LIMIT),
                Err(DecompressError::TooLarge(LIMIT)),
                "{enc}"
            );
        }
        // Exactly at the limit is fine.
        let at = vec![1u8; LIMIT];
        assert_eq!(decompress(&gz(&at), "gzip", LIMIT).unwrap().len(), LIMIT);
    }

    #[test]
    fn unknown_encodings_name_the_supported_ones() {
        let err = decompress(b"x", "br", LIMIT).unwrap_err();
        assert!(err
            .to_string()
            .contains("gzip, deflate, zstd, snappy, identity"));
    }
}
