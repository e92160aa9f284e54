//! Resource-level routing keys (`service`, `resource`), built exactly as `_keys.py` builds them.
//!
//! The `Resource` message is decoded with the protobuf runtime's rules (singular fields:
//! last wins; a oneof case replaces another, the same message case merges; repeated
//! fields append; unknown fields, groups included, are skipped; strings must be UTF-8;
//! nesting is limited) and attribute values are rendered as upstream renders them.

use crate::wire::{add_len, malformed, read_varint, Result, I32, I64, LEN, VARINT};

/// Nesting allowed below a `Resource`, as the protobuf runtime's recursion limit of 100
/// counts it (tests/test_native_split.py checks the boundary against the runtime).
pub const MAX_DEPTH: u32 = 100;

/// A decoded `AnyValue` (None: no case set).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    None,
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Array(Vec<Value>),
    KvList(Vec<(String, Value)>),
    Bytes(Vec<u8>),
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Iterate the fields of `data[pos..end]`, calling `f(field, wire type, payload or value)`.
    fn walk(
        &self,
        mut pos: usize,
        end: usize,
        depth: u32,
        mut f: impl FnMut(u64, u64, Payload<'a>) -> Result<()>,
    ) -> Result<()> {
        let data = self.data;
        while pos < end {
            let (tag, p) = read_varint(data, pos, end)?;
            pos = p;
            if tag >> 32 != 0 || tag >> 3 == 0 {
                return malformed("invalid tag");
            }
            let (field, wt) = (tag >> 3, tag & 7);
            match wt {
                VARINT => {
                    let (v, p) = read_varint(data, pos, end)?;
                    pos = p;
                    f(field, wt, Payload::Varint(v))?;
                }
                I64 => {
                    if end - pos < 8 {
                        return malformed("truncated fixed64");
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&data[pos..pos + 8]);
                    pos += 8;
                    f(field, wt, Payload::Fixed64(u64::from_le_bytes(b)))?;
                }
                I32 => {
                    if end - pos < 4 {
                        return malformed("truncated fixed32");
                    }
                    pos += 4;
                    f(field, wt, Payload::Other)?;
                }
                LEN => {
                    let (length, p) = read_varint(data, pos, end)?;
                    let stop = add_len(p, length);
                    if stop > end {
                        return malformed("field overruns its message");
                    }
                    pos = stop;
                    f(field, wt, Payload::Bytes(p, stop))?;
                }
                3 => {
                    pos = self.skip_group(field, pos, end, depth + 1)?;
                    f(field, wt, Payload::Other)?;
                }
                _ => return malformed("unexpected wire type"),
            }
        }
        Ok(())
    }

    /// Skip an unknown group up to its matching end tag.
    fn skip_group(&self, field: u64, mut pos: usize, end: usize, depth: u32) -> Result<usize> {
        if depth > MAX_DEPTH {
            return malformed("nesting too deep");
        }
        let data = self.data;
        loop {
            if pos >= end {
                return malformed("unterminated group");
            }
            let (tag, p) = read_varint(data, pos, end)?;
            pos = p;
            if tag >> 32 != 0 || tag >> 3 == 0 {
                return malformed("invalid tag");
            }
            match tag & 7 {
                4 if tag >> 3 == field => return Ok(pos),
                4 => return malformed("mismatched end group"),
                3 => pos = self.skip_group(tag >> 3, pos, end, depth + 1)?,
                wt => pos = crate::wire::skip_field(data, wt, pos, end)?,
            }
        }
    }

    fn string(&self, start: usize, stop: usize) -> Result<String> {
        match std::str::from_utf8(&self.data[start..stop]) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => malformed("string is not valid UTF-8"),
        }
    }

    /// Merge a `KeyValue` message into `kv`.
    fn key_value(
        &self,
        start: usize,
        stop: usize,
        depth: u32,
        kv: &mut (String, Value),
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return malformed("nesting too deep");
        }
        self.walk(start, stop, depth, |field, wt, payload| {
            match (field, wt, payload) {
                (1, LEN, Payload::Bytes(s, e)) => kv.0 = self.string(s, e)?,
                (2, LEN, Payload::Bytes(s, e)) => self.any_value(s, e, depth + 1, &mut kv.1)?,
                _ => {}
            }
            Ok(())
        })
    }

    /// Merge an `AnyValue` message into `value`.
    fn any_value(&self, start: usize, stop: usize, depth: u32, value: &mut Value) -> Result<()> {
        if depth > MAX_DEPTH {
            return malformed("nesting too deep");
        }
        self.walk(start, stop, depth, |field, wt, payload| {
            match (field, wt, payload) {
                (1, LEN, Payload::Bytes(s, e)) => *value = Value::Str(self.string(s, e)?),
                (2, VARINT, Payload::Varint(v)) => *value = Value::Bool(v != 0),
                (3, VARINT, Payload::Varint(v)) => *value = Value::Int(v as i64),
                (4, I64, Payload::Fixed64(v)) => *value = Value::Double(f64::from_bits(v)),
                (5, LEN, Payload::Bytes(s, e)) => {
                    if !matches!(value, Value::Array(_)) {
                        *value = Value::Array(Vec::new());
                    }
                    if let Value::Array(items) = value {
                        self.walk(s, e, depth + 1, |f, w, p| {
                            if let (1, LEN, Payload::Bytes(s, e)) = (f, w, p) {
                                let mut item = Value::None;
                                self.any_value(s, e, depth + 2, &mut item)?;
                                items.push(item);
                            }
                            Ok(())
                        })?;
                    }
                }
                (6, LEN, Payload::Bytes(s, e)) => {
                    if !matches!(value, Value::KvList(_)) {
                        *value = Value::KvList(Vec::new());
                    }
                    if let Value::KvList(items) = value {
                        self.key_values(s, e, depth + 1, items)?;
                    }
                }
                (7, LEN, Payload::Bytes(s, e)) => *value = Value::Bytes(self.data[s..e].to_vec()),
                _ => {}
            }
            Ok(())
        })
    }

    /// Append the `KeyValue`s of a message whose field 1 is `repeated KeyValue`.
    fn key_values(
        &self,
        start: usize,
        stop: usize,
        depth: u32,
        out: &mut Vec<(String, Value)>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return malformed("nesting too deep");
        }
        self.walk(start, stop, depth, |field, wt, payload| {
            if let (1, LEN, Payload::Bytes(s, e)) = (field, wt, payload) {
                let mut kv = (String::new(), Value::None);
                self.key_value(s, e, depth + 1, &mut kv)?;
                out.push(kv);
            }
            Ok(())
        })
    }

    /// `EntityRef` (Resource field 3): only validated (its strings must be UTF-8).
    fn entity_ref(&self, start: usize, stop: usize, depth: u32) -> Result<()> {
        if depth > MAX_DEPTH {
            return malformed("nesting too deep");
        }
        self.walk(start, stop, depth, |field, wt, payload| {
            if let (1..=4, LEN, Payload::Bytes(s, e)) = (field, wt, payload) {
                self.string(s, e)?;
            }
            Ok(())
        })
    }
}

#[derive(Clone, Copy)]
enum Payload<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(usize, usize),
    Other,
    #[allow(dead_code)]
    Phantom(&'a ()),
}

/// Merge one serialized `Resource` into `attrs` (its attributes, in order).
pub fn merge_resource(
    data: &[u8],
    start: usize,
    stop: usize,
    attrs: &mut Vec<(String, Value)>,
) -> Result<()> {
    let r = Reader { data };
    r.walk(start, stop, 0, |field, wt, payload| {
        match (field, wt, payload) {
            (1, LEN, Payload::Bytes(s, e)) => {
                let mut kv = (String::new(), Value::None);
                r.key_value(s, e, 1, &mut kv)?;
                attrs.push(kv);
            }
            (3, LEN, Payload::Bytes(s, e)) => r.entity_ref(s, e, 1)?,
            _ => {}
        }
        Ok(())
    })
}

/// `service.name` of a resource: the last one; None when absent.
pub fn service_name(attrs: &[(String, Value)]) -> Option<String> {
    let mut found = None;
    for (k, v) in attrs {
        if k == "service.name" {
            found = Some(match v {
                Value::Str(s) => s.clone(),
                other => render(other),
            });
        }
    }
    found
}

/// The routing key of a resource group for `service`/`resource`: (key bytes, missing).
pub fn resource_key(
    traces: bool,
    by_service: bool,
    attrs: &[(String, Value)],
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    if by_service {
        let name = service_name(attrs);
        if traces {
            out.extend_from_slice(b"service.name=");
        }
        out.extend_from_slice(name.as_deref().unwrap_or("").as_bytes());
        if traces {
            out.push(b'|');
        }
        return name.is_none();
    }
    out.extend_from_slice(b"resource/");
    out.extend_from_slice(attributes_key(attrs).as_bytes());
    false
}

/// A canonical string for a set of attributes: `key=value` sorted, joined by `|`.
pub fn attributes_key(attrs: &[(String, Value)]) -> String {
    let mut parts: Vec<String> = attrs
        .iter()
        .map(|(k, v)| format!("{k}={}", render(v)))
        .collect();
    parts.sort_unstable();
    parts.join("|")
}

/// Render an attribute value the way upstream builds attribute routing keys.
pub fn render(value: &Value) -> String {
    match value {
        Value::None => String::new(),
        Value::Str(s) => s.clone(),
        Value::Bool(b) => if *b { "true" } else { "false" }.to_owned(),
        Value::Int(i) => i.to_string(),
        Value::Double(x) => go_float(*x),
        Value::Bytes(b) => base64(b),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", inner.join(","))
        }
        Value::KvList(items) => {
            let mut pairs: Vec<(&str, String)> =
                items.iter().map(|(k, v)| (k.as_str(), render(v))).collect();
            pairs.sort_unstable();
            let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("{{{}}}", inner.join(","))
        }
    }
}

/// `strconv.FormatFloat(x, 'g', -1, 64)` as `_keys._go_float` renders it.
pub fn go_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0");
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, like Python's repr.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let dp = exp + 1;
    if !(-4..6).contains(&exp) {
        let (head, tail) = digits.split_at(1);
        let dot = if tail.is_empty() {
            String::new()
        } else {
            format!(".{tail}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{head}{dot}e{esign}{:02}", exp.abs());
    }
    let n = digits.len() as i64;
    if dp <= 0 {
        return format!("{sign}0.{}{digits}", "0".repeat((-dp) as usize));
    }
    if dp >= n {
        return format!("{sign}{digits}{}", "0".repeat((dp - n) as usize));
    }
    let (a, b) = digits.split_at(dp as usize);
    format!("{sign}{a}.{b}")
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_render_like_go() {
        let cases = [
            (1.0, "1"),
            (0.5, "0.5"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (-2.5e100, "-2.5e+100"),
            (-0.0, "-0"),
            (f64::INFINITY, "+Inf"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (x, want) in cases {
            assert_eq!(go_float(x), want, "{x}");
        }
    }

    #[test]
    fn base64_pads_like_python() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }

    #[test]
    fn maps_sort_and_arrays_keep_order() {
        let v = Value::KvList(vec![
            ("b".into(), Value::Int(2)),
            (
                "a".into(),
                Value::Array(vec![Value::Bool(true), Value::None]),
            ),
        ]);
        assert_eq!(render(&v), "{a:[true,],b:2}");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        // AnyValue{array_value{values{array_value{...}}}} 100_000 levels deep.
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..2000 {
            let mut arr = vec![0x0A];
            crate::wire::put_varint(&mut arr, inner.len() as u64);
            arr.extend_from_slice(&inner);
            let mut any = vec![0x2A];
            crate::wire::put_varint(&mut any, arr.len() as u64);
            any.extend_from_slice(&arr);
            inner = any;
        }
        let mut kv = vec![0x0A, 0x01, b'k', 0x12];
        crate::wire::put_varint(&mut kv, inner.len() as u64);
        kv.extend_from_slice(&inner);
        let mut res = vec![0x0A];
        crate::wire::put_varint(&mut res, kv.len() as u64);
        res.extend_from_slice(&kv);
        let mut attrs = Vec::new();
        assert!(merge_resource(&res, 0, res.len(), &mut attrs).is_err());
    }
}
