//! The export size limit: cut a part into requests its backend will take.
//!
//! A port of `dataplane/size_limit.py` that writes the same bytes. A tier-2 collector
//! refuses gRPC messages over 4 MiB, so a part larger than `max_bytes` (serialized,
//! uncompressed) is cut at item boundaries: resource groups, their scope groups and their
//! items (spans, log records, metrics, and a metric's data points) are packed greedily,
//! and every piece keeps its resource, scope and metric headers, so each chunk is a
//! complete, valid request of at most `max_bytes` bytes.
//!
//! - [`fit`] returns the chunks with their item counts ([`count_items`], Python's
//!   `dataplane.routing.count_items`: spans, log records, metric data points);
//! - [`check`] only says whether every item can fit.
//!
//! Nothing is walked unless the part is over the limit, and then only the frames that
//! are over their share of it: a span or a scope group that fits is copied as it is.
//! Chunks are planned as ropes of input ranges and new frame prefixes and copied out once.
//! A single item that cannot fit with its headers is [`TooLarge`] (Python's
//! `ItemTooLargeError`, same text); bad framing on the way down is
//! [`FitError::Malformed`]. Both come out in the order Python raises them, so the two
//! implementations refuse the same inputs with the same class.

use std::fmt;

use crate::split::Signal;
use crate::wire::{fields_into, put_varint, varint_len, Error, Field};

pub use crate::split::count_items;

/// Repeated fields to cut along, from the request down: ResourceX (1), ScopeX (2), items (2);
/// 0 descends into a Metric's data points.
const ENVELOPE: &[u64] = &[0x0A, 0x12, 0x12];
const METRICS: &[u64] = &[0x0A, 0x12, 0x12, 0];
/// Metric.data: gauge (5), sum (7), histogram (9), exponential_histogram (10), summary (11).
const METRIC_DATA_TAGS: [u64; 5] = [0x2A, 0x3A, 0x4A, 0x52, 0x5A];
const DATA_POINTS: &[u64] = &[0x0A];
/// A one-byte tag and a length varint of at most 5 bytes.
const FRAME_MAX: i64 = 6;

/// A single item is larger than the export size limit: no backend would take it.
/// The message is the text of Python's `ItemTooLargeError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge(pub String);

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TooLarge {}

/// Why a part could not be cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FitError {
    /// An item can never fit under the limit (Python: `ItemTooLargeError`).
    TooLarge(TooLarge),
    /// The bytes are not well-formed protobuf (Python: `MalformedError`).
    Malformed(String),
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FitError::TooLarge(e) => write!(f, "too large: {e}"),
            FitError::Malformed(m) => write!(f, "malformed: {m}"),
        }
    }
}

impl std::error::Error for FitError {}

impl From<Error> for FitError {
    fn from(e: Error) -> FitError {
        match e {
            Error::Malformed(m) => FitError::Malformed(m),
            // Reading frames never judges OTLP's rules; kept total for the type's sake.
            Error::Invalid { message, .. } => FitError::Malformed(message),
        }
    }
}

type FitResult<T> = std::result::Result<T, FitError>;

/// `data` in requests of at most `max_bytes` bytes, each with its item count.
///
/// A part that fits is returned whole (one copy) with its count. A count is Python's:
/// 0 for a chunk whose items are malformed inside (the cut copies what fits unread).
pub fn fit(signal: Signal, data: &[u8], max_bytes: usize) -> FitResult<Vec<(Vec<u8>, u64)>> {
    if data.len() <= max_bytes {
        return Ok(vec![(
            data.to_vec(),
            count_items(signal, data).unwrap_or(0),
        )]);
    }
    let chunks = cut(data, 0, data.len(), levels(signal), limit(max_bytes), true)?;
    Ok(chunks
        .iter()
        .map(|rope| {
            let chunk = rope.to_vec(data);
            let items = count_items(signal, &chunk).unwrap_or(0);
            (chunk, items)
        })
        .collect())
}

/// Fails exactly when [`fit`] would (`SizeLimit.check`), without writing any chunk.
pub fn check(signal: Signal, data: &[u8], max_bytes: usize) -> FitResult<()> {
    if data.len() > max_bytes {
        cut(data, 0, data.len(), levels(signal), limit(max_bytes), false)?;
    }
    Ok(())
}

fn levels(signal: Signal) -> &'static [u64] {
    match signal {
        Signal::Traces | Signal::Logs => ENVELOPE,
        Signal::Metrics => METRICS,
    }
}

/// Budgets go negative on the way down (as Python's ints do); a limit beyond i64 is no limit.
fn limit(max_bytes: usize) -> i64 {
    i64::try_from(max_bytes).unwrap_or(i64::MAX)
}

fn too_large<T>(message: String) -> FitResult<T> {
    Err(FitError::TooLarge(TooLarge(message)))
}

/// A chunk under construction: ranges of the input and new frame prefixes, copied out once
/// at the end. Adjacent ranges merge, so a run of items that keep their own frames (the
/// canonical encoding) is one range however many items it holds.
#[derive(Clone, Default)]
struct Rope {
    segs: Vec<Seg>,
    len: usize,
}

#[derive(Clone, Copy)]
enum Seg {
    Src(usize, usize),
    /// A LEN field's prefix: its tag (one byte: every tag cut along is) and this length.
    Frame(u8, usize),
}

impl Rope {
    fn push_src(&mut self, start: usize, end: usize) {
        if start == end {
            return;
        }
        self.len += end - start;
        if let Some(Seg::Src(_, last)) = self.segs.last_mut() {
            if *last == start {
                *last = end;
                return;
            }
        }
        self.segs.push(Seg::Src(start, end));
    }

    fn append(&mut self, other: &Rope) {
        for &seg in &other.segs {
            match seg {
                Seg::Src(s, e) => self.push_src(s, e),
                Seg::Frame(_, n) => {
                    self.segs.push(seg);
                    self.len += 1 + varint_len(n as u64);
                }
            }
        }
    }

    /// `frame(f's tag, len(piece)) + piece` for a piece of the child field `f`; `piece`
    /// None is f's whole payload. A whole child whose prefix on the wire is already the
    /// canonical one (a one-byte tag, a shortest varint: then the bytes are the same) is
    /// copied with its prefix as it stands.
    fn push_framed(&mut self, f: &Field, piece: Option<&Rope>) {
        let piece_len = piece.map_or(f.end - f.payload, |p| p.len);
        let prefix = 1 + varint_len(piece_len as u64);
        if piece.is_none() && f.payload - f.start == prefix {
            self.push_src(f.start, f.end);
            return;
        }
        self.segs.push(Seg::Frame(f.tag as u8, piece_len));
        self.len += prefix;
        match piece {
            None => self.push_src(f.payload, f.end),
            Some(p) => self.append(p),
        }
    }

    fn to_vec(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for seg in &self.segs {
            match *seg {
                Seg::Src(s, e) => out.extend_from_slice(&data[s..e]),
                Seg::Frame(tag, n) => {
                    out.push(tag);
                    put_varint(&mut out, n as u64);
                }
            }
        }
        out
    }
}

/// Message bodies of at most `budget` bytes holding every item of `data[start..end]`
/// (`_cut`). With `emit` false only the errors are computed and nothing is returned.
fn cut(
    data: &[u8],
    start: usize,
    end: usize,
    levels: &[u64],
    budget: i64,
    emit: bool,
) -> FitResult<Vec<Rope>> {
    let size = (end - start) as i64;
    if size <= budget {
        let mut whole = Rope::default();
        if emit {
            whole.push_src(start, end);
        }
        return Ok(vec![whole]);
    }
    let Some((&tag, below)) = levels.split_first() else {
        return too_large(format!(
            "an item of {size} bytes exceeds the export size limit of {budget} bytes"
        ));
    };
    let mut fields = Vec::new();
    fields_into(data, start, end, &mut fields)?;
    if tag == 0 {
        return cut_metric(data, &fields, budget, emit);
    }
    let header = header_of(&fields, |f| f.tag != tag);
    let child_budget = budget - header.len as i64 - FRAME_MAX;
    if child_budget <= 0 {
        return too_large(format!(
            "a header of {} bytes leaves no room under the limit of {budget} bytes",
            header.len
        ));
    }
    let mut out = Vec::new();
    let mut current = header.clone();
    let mut has_child = false;
    for f in fields.iter().filter(|f| f.tag == tag) {
        // A child that fits is one piece, itself (what `_cut` answers first), read no further.
        let pieces = if ((f.end - f.payload) as i64) <= child_budget {
            None
        } else {
            Some(cut(data, f.payload, f.end, below, child_budget, emit)?)
        };
        if !emit {
            continue;
        }
        let mut add = |piece: Option<&Rope>| {
            let piece_len = piece.map_or(f.end - f.payload, |p| p.len);
            let encoded = 1 + varint_len(piece_len as u64) + piece_len;
            if has_child && (current.len + encoded) as i64 > budget {
                out.push(std::mem::replace(&mut current, header.clone()));
            }
            current.push_framed(f, piece);
            has_child = true;
        };
        match &pieces {
            None => add(None),
            Some(pieces) => pieces.iter().for_each(|p| add(Some(p))),
        }
    }
    if has_child {
        out.push(current);
    }
    Ok(out)
}

/// A Metric over its budget: its first data field cut along the data points, every piece
/// under the metric's other fields (`_cut_metric`).
fn cut_metric(data: &[u8], fields: &[Field], budget: i64, emit: bool) -> FitResult<Vec<Rope>> {
    let is_data = |f: &Field| METRIC_DATA_TAGS.contains(&f.tag);
    let header = header_of(fields, |f| !is_data(f));
    let Some(body) = fields.iter().find(|f| is_data(f)) else {
        return too_large(format!(
            "a metric without data points exceeds the export size limit of {budget} bytes"
        ));
    };
    let child_budget = budget - header.len as i64 - FRAME_MAX;
    let whole = ((body.end - body.payload) as i64) <= child_budget;
    let pieces = if whole {
        Vec::new()
    } else {
        cut(
            data,
            body.payload,
            body.end,
            DATA_POINTS,
            child_budget,
            emit,
        )?
    };
    if !emit {
        return Ok(Vec::new());
    }
    let chunk = |piece: Option<&Rope>| {
        let mut chunk = header.clone();
        chunk.push_framed(body, piece);
        chunk
    };
    if whole {
        return Ok(vec![chunk(None)]);
    }
    Ok(pieces.iter().map(|p| chunk(Some(p))).collect())
}

/// The fields of a message that `keep` selects, as they stand on the wire, in order.
fn header_of(fields: &[Field], keep: impl Fn(&Field) -> bool) -> Rope {
    let mut header = Rope::default();
    for f in fields.iter().filter(|f| keep(f)) {
        header.push_src(f.start, f.end);
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_frame(out: &mut Vec<u8>, tag: u64, payload: &[u8]) {
        out.push(tag as u8);
        put_varint(out, payload.len() as u64);
        out.extend_from_slice(payload);
    }

    fn len_field(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_frame(&mut out, u64::from(tag), payload);
        out
    }

    /// A span of `n` bytes in all (tag 0x12 framed inside a scope group): its payload is a name.
    fn span(name_len: usize) -> Vec<u8> {
        len_field(0x2A, &vec![b's'; name_len])
    }

    /// A request of one resource (with a `resource` header) and one scope holding `spans`.
    fn request(resource: &[u8], spans: &[Vec<u8>]) -> Vec<u8> {
        let mut scope = len_field(0x0A, b"scope");
        for s in spans {
            scope.extend(len_field(0x12, s));
        }
        let mut group = len_field(0x0A, resource);
        group.extend(len_field(0x12, &scope));
        len_field(0x0A, &group)
    }

    fn spans_in(signal: Signal, chunks: &[(Vec<u8>, u64)]) -> u64 {
        chunks
            .iter()
            .map(|(c, _)| count_items(signal, c).unwrap())
            .sum()
    }

    #[test]
    fn a_part_that_fits_is_returned_whole_with_its_count() {
        let data = request(b"res", &[span(10), span(20)]);
        let chunks = fit(Signal::Traces, &data, data.len()).unwrap();
        assert_eq!(chunks, vec![(data.clone(), 2)]);
        assert_eq!(check(Signal::Traces, &data, data.len()), Ok(()));
    }

    #[test]
    fn a_part_over_the_limit_is_cut_into_valid_chunks_holding_every_span_once() {
        let spans: Vec<Vec<u8>> = (0..50).map(|i| span(30 + i)).collect();
        let data = request(b"resource attributes", &spans);
        let limit = 300;
        let chunks = fit(Signal::Traces, &data, limit).unwrap();
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        for (chunk, items) in &chunks {
            assert!(chunk.len() <= limit);
            assert_eq!(count_items(Signal::Traces, chunk), Ok(*items));
            assert!(*items > 0);
        }
        assert_eq!(spans_in(Signal::Traces, &chunks), 50);
        // The spans come out in order, byte for byte, each under the same resource and scope.
        let mut cut_spans = Vec::new();
        for (chunk, _) in &chunks {
            let mut groups = Vec::new();
            fields_into(chunk, 0, chunk.len(), &mut groups).unwrap();
            assert_eq!(groups.len(), 1);
            let mut group_fields = Vec::new();
            fields_into(chunk, groups[0].payload, groups[0].end, &mut group_fields).unwrap();
            assert_eq!(
                &chunk[group_fields[0].payload..group_fields[0].end],
                b"resource attributes"
            );
            let scope = group_fields[1];
            let mut items = Vec::new();
            fields_into(chunk, scope.payload, scope.end, &mut items).unwrap();
            assert_eq!(&chunk[items[0].payload..items[0].end], b"scope");
            cut_spans.extend(items[1..].iter().map(|f| chunk[f.payload..f.end].to_vec()));
        }
        assert_eq!(cut_spans, spans);
        assert_eq!(check(Signal::Traces, &data, limit), Ok(()));
    }

    #[test]
    fn a_single_span_over_the_limit_is_too_large_with_pythons_words() {
        let data = request(b"r", &[span(10), span(500)]);
        let expected = Err(FitError::TooLarge(TooLarge(
            // 200 - 6 (request) - 3 - 6 (resource) - 7 - 6 (scope) = 172 for the 503-byte span.
            "an item of 503 bytes exceeds the export size limit of 172 bytes".to_owned(),
        )));
        assert_eq!(fit(Signal::Traces, &data, 200), expected);
        assert_eq!(check(Signal::Traces, &data, 200), expected.map(|_| ()));
    }

    #[test]
    fn a_header_that_leaves_no_room_is_too_large() {
        let data = request(&[b'r'; 300], &[span(10), span(10)]);
        let Err(FitError::TooLarge(TooLarge(message))) = fit(Signal::Logs, &data, 200) else {
            panic!("expected TooLarge");
        };
        assert_eq!(
            message,
            "a header of 303 bytes leaves no room under the limit of 194 bytes"
        );
    }

    /// A metric (name + sum of `points` number points) in a request of one resource and scope.
    fn metric_request(points: usize) -> Vec<u8> {
        let mut sum = Vec::new();
        for i in 0..points {
            sum.extend(len_field(0x0A, &[0x31, i as u8, 0, 0, 0, 0, 0, 0, 0]));
        }
        sum.extend([0x10, 0x02]); // aggregation_temporality
        let mut metric = len_field(0x0A, b"requests");
        metric.extend(len_field(0x3A, &sum));
        let mut scope = len_field(0x0A, b"scope");
        scope.extend(len_field(0x12, &metric));
        let mut group = len_field(0x0A, b"res");
        group.extend(len_field(0x12, &scope));
        len_field(0x0A, &group)
    }

    #[test]
    fn a_metric_is_cut_along_its_data_points_keeping_its_name_and_temporality() {
        let data = metric_request(40);
        assert_eq!(count_items(Signal::Metrics, &data), Ok(40));
        let chunks = fit(Signal::Metrics, &data, 120).unwrap();
        assert!(chunks.len() >= 4);
        assert!(chunks.iter().all(|(c, n)| c.len() <= 120 && *n > 0));
        assert_eq!(chunks.iter().map(|(_, n)| n).sum::<u64>(), 40);
        for (chunk, _) in &chunks {
            assert!(chunk.windows(8).any(|w| w == b"requests"));
            // The sum's other fields lead each piece of it (Python joins the header first).
            assert!(chunk
                .windows(4)
                .any(|w| w[0] == 0x3A && w[2..] == [0x10, 0x02]));
        }
    }

    #[test]
    fn a_metric_without_data_points_over_the_limit_is_too_large() {
        let mut metric = len_field(0x0A, &[b'm'; 300]);
        metric.extend(len_field(0x12, b"description"));
        let mut scope = len_field(0x12, &metric);
        scope.extend(len_field(0x12, &metric));
        let group = len_field(0x12, &scope);
        let data = len_field(0x0A, &group);
        let Err(FitError::TooLarge(TooLarge(message))) = fit(Signal::Metrics, &data, 250) else {
            panic!("expected TooLarge");
        };
        assert!(message.starts_with("a metric without data points exceeds"));
    }

    #[test]
    fn bad_framing_over_the_limit_is_malformed_and_never_panics() {
        let data = request(b"r", &[span(100), span(100)]);
        for cut_at in 0..data.len() {
            for limit in [0, 1, 50, 120] {
                let truncated = &data[..cut_at];
                let _ = fit(Signal::Traces, truncated, limit);
                let _ = fit(Signal::Metrics, truncated, limit);
                assert_eq!(
                    check(Signal::Logs, truncated, limit).err(),
                    fit(Signal::Logs, truncated, limit).err()
                );
            }
        }
        // A resource group whose length runs past the end.
        let bad = [0x0A, 0x7F, 0x12, 0x00];
        assert!(matches!(
            fit(Signal::Traces, &bad, 2),
            Err(FitError::Malformed(_))
        ));
    }

    #[test]
    fn padded_frames_of_items_are_rewritten_canonically_and_canonical_ones_kept() {
        // A scope group of three 10-byte spans, the middle one framed with a padded length.
        let s = span(8);
        let mut scope = len_field(0x12, &s);
        scope.extend([0x12, 0x8A, 0x00]);
        scope.extend(&s);
        scope.extend(len_field(0x12, &s));
        let group = len_field(0x12, &scope);
        let data = len_field(0x0A, &group);
        // Budgets: 34 for the request, 28 for the resource group, 22 for the scope group,
        // whose three spans (12 bytes framed) go one per scope piece; two scope pieces
        // (14 bytes framed) share a resource group. `SizeLimit(34).fit` writes these bytes.
        let chunks = fit(Signal::Traces, &data, 34).unwrap();
        let scope_piece = len_field(0x12, &len_field(0x12, &s));
        let expected = vec![
            (
                len_field(0x0A, &[&scope_piece[..], &scope_piece].concat()),
                2,
            ),
            (len_field(0x0A, &scope_piece), 1),
        ];
        assert_eq!(chunks, expected);
    }

    #[test]
    fn counts_are_pythons_zero_for_a_malformed_request() {
        assert!(count_items(Signal::Traces, &[0x0A, 0x05]).is_err());
        let chunks = fit(Signal::Traces, &[0x0A, 0x05], 10).unwrap();
        assert_eq!(chunks, vec![(vec![0x0A, 0x05], 0)]);
    }
}
