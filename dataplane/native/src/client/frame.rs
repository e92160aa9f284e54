//! gRPC message framing and compression, with buffers reused across calls.
//!
//! A gRPC message on the wire is a 5-byte prefix (a compressed flag and a big-endian
//! length) followed by the message, compressed with the call's `grpc-encoding` when the
//! flag is 1. We compress ourselves, so every codec the collector speaks and any level
//! can be used: `gzip`, `deflate` (zlib format, as gRPC's deflate), `zstd` and `snappy`
//! (the framed format, as the collector's gRPC codec). Frames are built in pooled
//! buffers: glibc maps ~100 KB allocations afresh each time, and the page faults would
//! cost as much as the compression.

use std::io::{Read, Write};
use std::sync::Mutex;

use bytes::Bytes;

/// The message codec of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Deflate,
    Zstd,
    Snappy,
}

impl Compression {
    pub fn parse(name: &str) -> Option<Compression> {
        Some(match name {
            "" | "none" | "identity" => Compression::None,
            "gzip" => Compression::Gzip,
            "deflate" => Compression::Deflate,
            "zstd" => Compression::Zstd,
            "snappy" => Compression::Snappy,
            _ => return None,
        })
    }

    /// The `grpc-encoding` name; `None` for uncompressed.
    pub fn encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Deflate => Some("deflate"),
            Compression::Zstd => Some("zstd"),
            Compression::Snappy => Some("snappy"),
        }
    }

    /// Checks `level` as the collector's configcompression does: gzip/deflate take -1 or 0
    /// (the default, 6) or 1..=9, zstd any level (clamped to 1..=22; 0 is the default, 3),
    /// the others only 0 (unset). Returns the level to use.
    pub fn check_level(self, level: i32) -> Result<i32, String> {
        match self {
            Compression::Gzip | Compression::Deflate => match level {
                -1 | 0 => Ok(6),
                1..=9 => Ok(level),
                -2 => Err("HuffmanOnly (-2) is not supported; use 1 (fastest) to 9".into()),
                _ => Err(format!(
                    "{level} is not a {} level: use -1 or 0..9",
                    self.name()
                )),
            },
            Compression::Zstd => Ok(if level == 0 { 3 } else { level.clamp(1, 22) }),
            Compression::None | Compression::Snappy if level == 0 => Ok(0),
            _ => Err(format!("{} takes no level (got {level})", self.name())),
        }
    }

    pub fn name(self) -> &'static str {
        self.encoding().unwrap_or("none")
    }
}

const POOL_MAX_BUFFERS: usize = 64;
const POOL_MAX_CAPACITY: usize = 16 << 20;
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer from the pool; it goes back when dropped (also when it is the owner of a `Bytes`).
pub struct PooledBuf(Vec<u8>);

impl PooledBuf {
    pub fn take() -> PooledBuf {
        let buf = POOL
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        PooledBuf(buf)
    }

    pub fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Freeze into `Bytes` without copying; the buffer returns to the pool when the last
    /// reference is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        if buf.capacity() == 0 || buf.capacity() > POOL_MAX_CAPACITY {
            return;
        }
        buf.clear();
        if let Ok(mut pool) = POOL.lock() {
            if pool.len() < POOL_MAX_BUFFERS {
                pool.push(buf);
            }
        }
    }
}

/// Builds the framed (5-byte prefixed) request message for `message` in a pooled buffer.
pub fn encode(message: &[u8], codec: Compression, level: i32) -> std::io::Result<Bytes> {
    let mut out = PooledBuf::take();
    let buf = out.vec();
    buf.extend_from_slice(&[0; 5]);
    match codec {
        Compression::None => buf.extend_from_slice(message),
        Compression::Gzip => {
            let mut enc =
                flate2::write::GzEncoder::new(&mut *buf, flate2::Compression::new(level as u32));
            enc.write_all(message)?;
            enc.finish()?;
        }
        Compression::Deflate => {
            let mut enc =
                flate2::write::ZlibEncoder::new(&mut *buf, flate2::Compression::new(level as u32));
            enc.write_all(message)?;
            enc.finish()?;
        }
        Compression::Zstd => {
            zstd::stream::copy_encode(message, &mut *buf, level)?;
        }
        Compression::Snappy => {
            let mut enc = snap::write::FrameEncoder::new(&mut *buf);
            enc.write_all(message)?;
            enc.flush()?;
        }
    }
    let len = u32::try_from(buf.len() - 5)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "message over 4 GiB"))?;
    buf[0] = u8::from(codec != Compression::None);
    buf[1..5].copy_from_slice(&len.to_be_bytes());
    Ok(out.freeze())
}

/// The first message of a response body (gRPC unary responses have one), decompressed with
/// the response's `grpc-encoding`. An empty body is an empty message. At most `limit` bytes
/// are produced.
pub fn decode_response(
    body: &[u8],
    encoding: Option<&str>,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    if body.len() < 5 {
        return Err(format!("truncated response frame ({} bytes)", body.len()));
    }
    let flag = body[0];
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let msg = body.get(5..5 + len).ok_or_else(|| {
        format!(
            "response frame declares {len} bytes, has {}",
            body.len() - 5
        )
    })?;
    match flag {
        0 => Ok(msg.to_vec()),
        1 => {
            let name = encoding.unwrap_or("identity");
            let codec = Compression::parse(name)
                .filter(|c| *c != Compression::None)
                .ok_or_else(|| format!("compressed response with grpc-encoding {name:?}"))?;
            decompress(msg, codec, limit)
        }
        other => Err(format!("response frame flag {other}")),
    }
}

fn decompress(data: &[u8], codec: Compression, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let cap = limit as u64 + 1;
    let read = match codec {
        Compression::Gzip => flate2::read::MultiGzDecoder::new(data)
            .take(cap)
            .read_to_end(&mut out),
        Compression::Deflate => flate2::read::ZlibDecoder::new(data)
            .take(cap)
            .read_to_end(&mut out),
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(data).and_then(|d| d.take(cap).read_to_end(&mut out))
        }
        Compression::Snappy => snap::read::FrameDecoder::new(data)
            .take(cap)
            .read_to_end(&mut out),
        Compression::None => unreachable!("filtered by the caller"),
    };
    read.map_err(|e| format!("cannot decompress the response: {e}"))?;
    if out.len() > limit {
        return Err(format!("response message over {limit} bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips_through_a_frame() {
        let data = payload();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Deflate,
            Compression::Zstd,
            Compression::Snappy,
        ] {
            let level = codec.check_level(0).unwrap();
            let frame = encode(&data, codec, level).unwrap();
            assert_eq!(frame[0], u8::from(codec != Compression::None));
            let len = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
            assert_eq!(len, frame.len() - 5);
            let back = decode_response(&frame, codec.encoding(), 1 << 20).unwrap();
            assert_eq!(back, data, "{codec:?}");
        }
    }

    #[test]
    fn levels_are_checked_as_upstream_does() {
        assert_eq!(Compression::Gzip.check_level(-1), Ok(6));
        assert_eq!(Compression::Gzip.check_level(0), Ok(6));
        assert_eq!(Compression::Gzip.check_level(1), Ok(1));
        assert!(Compression::Gzip.check_level(10).is_err());
        assert!(Compression::Deflate.check_level(-2).is_err());
        assert_eq!(Compression::Zstd.check_level(0), Ok(3));
        assert_eq!(Compression::Zstd.check_level(99), Ok(22));
        assert!(Compression::Snappy.check_level(1).is_err());
        assert_eq!(Compression::None.check_level(0), Ok(0));
    }

    #[test]
    fn bad_response_frames_are_errors_not_panics() {
        assert_eq!(decode_response(b"", None, 10).unwrap(), b"");
        assert!(decode_response(b"\0\0\0", None, 10).is_err());
        assert!(decode_response(b"\0\0\0\0\x09abc", None, 10).is_err());
        assert!(decode_response(b"\x01\0\0\0\x03abc", None, 10).is_err());
        assert!(decode_response(b"\x01\0\0\0\x03abc", Some("gzip"), 10).is_err());
        assert!(decode_response(b"\x02\0\0\0\x00", None, 10).is_err());
        let big = encode(&[7u8; 1000], Compression::Gzip, 6).unwrap();
        assert!(decode_response(&big, Some("gzip"), 999).is_err());
        assert_eq!(decode_response(b"\0\0\0\0\x02ok", None, 10).unwrap(), b"ok");
    }
}
