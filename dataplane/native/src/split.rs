//! The wire splitter: one OTLP export request in, one request per backend out.
//!
//! A line-by-line port of `dataplane/routing/_wire_split.py` (see docs/routing.md): it
//! walks the envelope (request, resource groups, scope groups), reads only the routing
//! key of each item and copies item bytes verbatim, writing new length prefixes for the
//! resource and scope frames. It validates what the Python wire path validates, in the
//! same order, so both raise the same error class for the same input, and it writes the
//! same bytes.
//!
//! Buffers live in the [`Splitter`] and are reused from request to request: after the
//! first few requests a split allocates only the output parts it hands back.

use crate::keys::{merge_resource, resource_key, Value};
use crate::ring::Table;
use crate::wire::{
    fields_into, find_len_field, malformed, put_varint, read_tag, read_varint, skip_field,
    varint_len, Error, Field, Result,
};

const LOG_TRACE_ID_TAG: u64 = (9 << 3) | 2;
const SPAN_TRACE_ID_TAG: u64 = (1 << 3) | 2;
const METRIC_NAME_TAG: u64 = (1 << 3) | 2;

/// The signal of the requests a splitter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub fn parse(name: &str) -> Option<Signal> {
        match name {
            "traces" => Some(Signal::Traces),
            "logs" => Some(Signal::Logs),
            "metrics" => Some(Signal::Metrics),
            _ => None,
        }
    }
}

/// The routing keys the wire path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// traces and logs: per item.
    TraceId,
    /// metrics: per metric.
    Metric,
    /// all signals: per resource group.
    Service,
    /// all signals: per resource group.
    Resource,
}

impl Key {
    /// The key for a signal, if the wire path serves it (else the decode path must).
    pub fn parse(signal: Signal, name: &str) -> Option<Key> {
        match (signal, name) {
            (Signal::Traces | Signal::Logs, "traceID") => Some(Key::TraceId),
            (Signal::Metrics, "metric") => Some(Key::Metric),
            (_, "service") => Some(Key::Service),
            (_, "resource") => Some(Key::Resource),
            _ => None,
        }
    }
}

/// One request, split. Parts are indexed by backend; an empty part means "nothing for it".
#[derive(Debug, Default)]
pub struct Split {
    pub parts: Vec<Vec<u8>>,
    pub counts: Vec<u64>,
    pub items: u64,
    pub missing_keys: u64,
}

impl Split {
    /// (backend, bytes, items) for every backend that gets a request.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &[u8], u64)> {
        self.parts
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(|(i, p)| (i, p.as_slice(), self.counts[i]))
    }
}

/// A run of consecutive items of one scope group that go to the same backend.
#[derive(Clone, Copy)]
struct Run {
    backend: u32,
    start: usize,
    end: usize,
}

/// Splits requests of one signal by one key. Not thread-safe: one per thread.
pub struct Splitter {
    signal: Signal,
    key: Key,
    rng: u64,
    // Reused buffers.
    group_fields: Vec<Field>,
    scope_fields: Vec<Field>,
    item_fields: Vec<Field>,
    unknown: Vec<(usize, usize)>,
    res_head: Vec<(usize, usize)>,
    res_tail: Vec<(usize, usize)>,
    scope_head: Vec<(usize, usize)>,
    scope_tail: Vec<(usize, usize)>,
    runs: Vec<Run>,
    run_len: Vec<usize>,
    scope_touched: Vec<u32>,
    res_scratch: Vec<Vec<u8>>,
    res_touched: Vec<u32>,
    attrs: Vec<(String, Value)>,
    key_buf: Vec<u8>,
}

impl Splitter {
    /// A splitter; `seed` seeds the generator that picks a random backend for log
    /// records without a trace ID (splitmix64, see [`Splitter::next_random`]).
    pub fn new(signal: Signal, key: Key, seed: u64) -> Splitter {
        Splitter {
            signal,
            key,
            rng: seed,
            group_fields: Vec::new(),
            scope_fields: Vec::new(),
            item_fields: Vec::new(),
            unknown: Vec::new(),
            res_head: Vec::new(),
            res_tail: Vec::new(),
            scope_head: Vec::new(),
            scope_tail: Vec::new(),
            runs: Vec::new(),
            run_len: Vec::new(),
            scope_touched: Vec::new(),
            res_scratch: Vec::new(),
            res_touched: Vec::new(),
            attrs: Vec::new(),
            key_buf: Vec::new(),
        }
    }

    /// The next 64 random bits: splitmix64.
    pub fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Split `data` by `table` into `out` (whose buffers are cleared and reused).
    /// On error `out` holds garbage and nothing of it may be forwarded.
    pub fn split_into(&mut self, data: &[u8], table: &Table, out: &mut Split) -> Result<()> {
        let backends = table.backends();
        out.parts.resize_with(backends, Vec::new);
        out.parts.iter_mut().for_each(Vec::clear);
        out.counts.clear();
        out.counts.resize(backends, 0);
        out.items = 0;
        out.missing_keys = 0;
        self.res_scratch.resize_with(backends, Vec::new);
        self.res_scratch.iter_mut().for_each(Vec::clear);
        self.run_len.clear();
        self.run_len.resize(backends, 0);
        self.unknown.clear();
        let by_resource = matches!(self.key, Key::Service | Key::Resource);
        let end = data.len();
        let mut pos = 0;
        while pos < end {
            let field_start = pos;
            let mut tag = u64::from(data[pos]);
            let (length, start) = if tag == 0x0A {
                read_varint(data, pos + 1, end)?
            } else {
                if tag < 0x80 {
                    pos += 1;
                    if tag >> 3 == 0 {
                        return malformed("field number 0");
                    }
                } else {
                    (tag, pos) = read_tag(data, pos, end)?;
                }
                if tag != 0x0A {
                    pos = skip_field(data, tag & 7, pos, end)?;
                    self.unknown.push((field_start, pos));
                    continue;
                }
                read_varint(data, pos, end)?
            };
            let stop = crate::wire::add_len(start, length);
            if stop > end {
                return malformed("resource group overruns the request");
            }
            if by_resource {
                self.route_resource_group(data, start, stop, field_start, table, out)?;
            } else {
                self.split_resource_group(data, start, stop, table, out)?;
            }
            pos = stop;
        }
        if !self.unknown.is_empty() {
            for part in out.parts.iter_mut().filter(|p| !p.is_empty()) {
                for &(s, e) in &self.unknown {
                    part.extend_from_slice(&data[s..e]);
                }
            }
        }
        out.items = out.counts.iter().sum();
        Ok(())
    }

    // -- resource-level keys: the whole group goes to one backend ---------------------------

    fn route_resource_group(
        &mut self,
        data: &[u8],
        start: usize,
        stop: usize,
        field_start: usize,
        table: &Table,
        out: &mut Split,
    ) -> Result<()> {
        let mut group_fields = std::mem::take(&mut self.group_fields);
        let mut scope_fields = std::mem::take(&mut self.scope_fields);
        self.attrs.clear();
        let result = (|| {
            fields_into(data, start, stop, &mut group_fields)?;
            let mut items = 0u64;
            for f in &group_fields {
                if f.tag == 0x0A {
                    merge_resource(data, f.payload, f.end, &mut self.attrs)?;
                } else if f.tag == 0x12 {
                    fields_into(data, f.payload, f.end, &mut scope_fields)?;
                    for item in scope_fields.iter().filter(|i| i.tag == 0x12) {
                        items += count_item(
                            self.signal,
                            data,
                            item.payload,
                            item.end,
                            &mut self.item_fields,
                        )?;
                    }
                }
            }
            Ok(items)
        })();
        self.group_fields = group_fields;
        self.scope_fields = scope_fields;
        let items = result?;
        if items == 0 {
            return Ok(());
        }
        let traces = self.signal == Signal::Traces;
        let missing = resource_key(
            traces,
            self.key == Key::Service,
            &self.attrs,
            &mut self.key_buf,
        );
        let idx = table.lookup(&self.key_buf) as usize;
        out.parts[idx].extend_from_slice(&data[field_start..stop]);
        out.counts[idx] += items;
        if missing {
            out.missing_keys += items;
        }
        Ok(())
    }

    // -- item-level keys -----------------------------------------------------------------------

    fn split_resource_group(
        &mut self,
        data: &[u8],
        start: usize,
        stop: usize,
        table: &Table,
        out: &mut Split,
    ) -> Result<()> {
        let mut group_fields = std::mem::take(&mut self.group_fields);
        let result = fields_into(data, start, stop, &mut group_fields).and_then(|()| {
            self.res_head.clear();
            self.res_tail.clear();
            self.res_touched.clear();
            for f in &group_fields {
                if f.tag == 0x12 {
                    self.split_scope_group(data, f.payload, f.end, table, out)?;
                } else if f.tag == 0x0A {
                    self.res_head.push((f.start, f.end));
                } else {
                    self.res_tail.push((f.start, f.end));
                }
            }
            Ok(())
        });
        self.group_fields = group_fields;
        result?;
        let head_len: usize = self.res_head.iter().map(|(s, e)| e - s).sum();
        let tail_len: usize = self.res_tail.iter().map(|(s, e)| e - s).sum();
        for &b in &self.res_touched {
            let b = b as usize;
            let scratch = &mut self.res_scratch[b];
            let part = &mut out.parts[b];
            let body = head_len + tail_len + scratch.len();
            part.reserve(1 + varint_len(body as u64) + body);
            part.push(0x0A);
            put_varint(part, body as u64);
            for &(s, e) in &self.res_head {
                part.extend_from_slice(&data[s..e]);
            }
            part.extend_from_slice(scratch);
            for &(s, e) in &self.res_tail {
                part.extend_from_slice(&data[s..e]);
            }
            scratch.clear();
        }
        Ok(())
    }

    /// Route every item of one scope group; write a scope frame per backend into the
    /// backends' resource scratch buffers.
    fn split_scope_group(
        &mut self,
        data: &[u8],
        mut pos: usize,
        end: usize,
        table: &Table,
        out: &mut Split,
    ) -> Result<()> {
        self.scope_head.clear();
        self.scope_tail.clear();
        self.runs.clear();
        self.scope_touched.clear();
        let signal = self.signal;
        let mut run_idx: i64 = -1;
        let mut run_start = pos;
        let mut run_items = 0u64;
        let mut last_key = [0u8; 16];
        let mut last_idx: i64 = -1;
        while pos < end {
            let field_start = pos;
            let mut tag = u64::from(data[pos]);
            let (length, q) = if tag == 0x12 {
                if pos + 1 < end && data[pos + 1] < 0x80 {
                    (u64::from(data[pos + 1]), pos + 2)
                } else {
                    read_varint(data, pos + 1, end)?
                }
            } else {
                let q;
                if tag < 0x80 {
                    q = pos + 1;
                    if tag >> 3 == 0 {
                        return malformed("field number 0");
                    }
                } else {
                    (tag, q) = read_tag(data, pos, end)?;
                }
                if tag != 0x12 {
                    // Scope, schema_url or an unknown field: flush the run, keep the raw field.
                    if run_idx >= 0 && field_start > run_start {
                        self.push_run(run_idx as u32, run_start, field_start, run_items, out);
                    }
                    run_idx = -1;
                    run_items = 0;
                    pos = skip_field(data, tag & 7, q, end)?;
                    if tag == 0x0A {
                        self.scope_head.push((field_start, pos));
                    } else {
                        self.scope_tail.push((field_start, pos));
                    }
                    run_start = pos;
                    continue;
                }
                read_varint(data, q, end)?
            };
            let item_end = crate::wire::add_len(q, length);
            if item_end > end {
                return malformed("item overruns its scope group");
            }
            // --- the routing key of this item ------------------------------------------------
            let (idx, n) = match signal {
                Signal::Traces => {
                    let idx = if length >= 18 && data[q] == 0x0A && data[q + 1] == 0x10 {
                        if last_idx >= 0 && data[q + 2..q + 18] == last_key[..] {
                            last_idx as u32
                        } else {
                            last_key.copy_from_slice(&data[q + 2..q + 18]);
                            let idx = table.lookup(&last_key);
                            last_idx = i64::from(idx);
                            idx
                        }
                    } else {
                        let tid = match find_len_field(data, q, item_end, SPAN_TRACE_ID_TAG)? {
                            Some((s, e)) => &data[s..e],
                            None => &[][..],
                        };
                        if tid.is_empty() {
                            out.missing_keys += 1;
                            table.lookup(&[0u8; 16])
                        } else if tid.len() != 16 {
                            return Err(invalid_trace_id("span", tid.len()));
                        } else {
                            table.lookup(tid)
                        }
                    };
                    (idx, 1)
                }
                Signal::Logs => {
                    let tid = match find_len_field(data, q, item_end, LOG_TRACE_ID_TAG)? {
                        Some((s, e)) => &data[s..e],
                        None => &[][..],
                    };
                    let idx = if tid.is_empty() {
                        out.missing_keys += 1;
                        let r = self.next_random().to_le_bytes();
                        table.lookup(&r)
                    } else if tid.len() != 16 {
                        return Err(invalid_trace_id("log record", tid.len()));
                    } else {
                        let mut hex = [0u8; 32];
                        hex_into(tid, &mut hex);
                        table.lookup(&hex)
                    };
                    (idx, 1)
                }
                Signal::Metrics => {
                    let name = match find_len_field(data, q, item_end, METRIC_NAME_TAG)? {
                        Some((s, e)) => &data[s..e],
                        None => &[][..],
                    };
                    let idx = table.lookup(name);
                    (
                        idx,
                        count_metric_points(data, q, item_end, &mut self.scope_fields)?,
                    )
                }
            };
            // --- extend or flush the current run ---------------------------------------------
            if i64::from(idx) != run_idx {
                if run_idx >= 0 && field_start > run_start {
                    self.push_run(run_idx as u32, run_start, field_start, run_items, out);
                }
                run_idx = i64::from(idx);
                run_start = field_start;
                run_items = 0;
            }
            run_items += n;
            pos = item_end;
        }
        if run_idx >= 0 && end > run_start {
            self.push_run(run_idx as u32, run_start, end, run_items, out);
        }
        if self.runs.is_empty() {
            return Ok(());
        }
        let head_len: usize = self.scope_head.iter().map(|(s, e)| e - s).sum();
        let tail_len: usize = self.scope_tail.iter().map(|(s, e)| e - s).sum();
        for &b in &self.scope_touched {
            let bi = b as usize;
            let scratch = &mut self.res_scratch[bi];
            if scratch.is_empty() {
                self.res_touched.push(b);
            }
            let body = head_len + tail_len + self.run_len[bi];
            self.run_len[bi] = 0;
            scratch.reserve(1 + varint_len(body as u64) + body);
            scratch.push(0x12);
            put_varint(scratch, body as u64);
            for &(s, e) in &self.scope_head {
                scratch.extend_from_slice(&data[s..e]);
            }
            for run in self.runs.iter().filter(|r| r.backend == b) {
                scratch.extend_from_slice(&data[run.start..run.end]);
            }
            for &(s, e) in &self.scope_tail {
                scratch.extend_from_slice(&data[s..e]);
            }
        }
        Ok(())
    }

    #[inline]
    fn push_run(&mut self, backend: u32, start: usize, end: usize, items: u64, out: &mut Split) {
        let b = backend as usize;
        if self.run_len[b] == 0 {
            self.scope_touched.push(backend);
        }
        self.run_len[b] += end - start;
        self.runs.push(Run {
            backend,
            start,
            end,
        });
        out.counts[b] += items;
    }
}

fn invalid_trace_id(what: &str, len: usize) -> Error {
    Error::Invalid {
        reason: "invalid_trace_id",
        message: format!("{what} trace_id has {len} bytes, expected 16"),
    }
}

fn hex_into(bytes: &[u8], out: &mut [u8; 32]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
}

/// Items in a request, as `dataplane.routing.count_items` counts them: spans, log records
/// and metric data points, with no check of trace IDs. Python returns 0 for a malformed
/// request; here that is the `Err` (callers wanting Python's number use `unwrap_or(0)`).
pub fn count_items(signal: Signal, data: &[u8]) -> Result<u64> {
    let (mut groups, mut scopes, mut items, mut scratch) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    fields_into(data, 0, data.len(), &mut groups)?;
    let mut total = 0u64;
    for group in groups.iter().filter(|f| f.tag == 0x0A) {
        fields_into(data, group.payload, group.end, &mut scopes)?;
        for scope in scopes.iter().filter(|f| f.tag == 0x12) {
            fields_into(data, scope.payload, scope.end, &mut items)?;
            for item in items.iter().filter(|f| f.tag == 0x12) {
                total += match signal {
                    Signal::Metrics => {
                        count_metric_points(data, item.payload, item.end, &mut scratch)?
                    }
                    Signal::Traces | Signal::Logs => 1,
                };
            }
        }
    }
    Ok(total)
}

/// Items of one item message, validating trace IDs (spans, logs) like `_items.py`.
fn count_item(
    signal: Signal,
    data: &[u8],
    pos: usize,
    end: usize,
    scratch: &mut Vec<Field>,
) -> Result<u64> {
    match signal {
        Signal::Traces => {
            if end - pos >= 18 && data[pos] == 0x0A && data[pos + 1] == 0x10 {
                return Ok(1);
            }
            if let Some((s, e)) = find_len_field(data, pos, end, SPAN_TRACE_ID_TAG)? {
                if e - s != 0 && e - s != 16 {
                    return Err(invalid_trace_id("span", e - s));
                }
            }
            Ok(1)
        }
        Signal::Logs => {
            if let Some((s, e)) = find_len_field(data, pos, end, LOG_TRACE_ID_TAG)? {
                if e - s != 0 && e - s != 16 {
                    return Err(invalid_trace_id("log record", e - s));
                }
            }
            Ok(1)
        }
        Signal::Metrics => count_metric_points(data, pos, end, scratch),
    }
}

/// Data points of one Metric: the data fields form a oneof (another kind replaces, the
/// same kind merges), as in `_items.count_metric_points`.
fn count_metric_points(
    data: &[u8],
    pos: usize,
    end: usize,
    scratch: &mut Vec<Field>,
) -> Result<u64> {
    fields_into(data, pos, end, scratch)?;
    let mut points = 0u64;
    let mut kind = u64::MAX;
    let mut i = 0;
    while i < scratch.len() {
        let f = scratch[i];
        i += 1;
        if matches!(f.tag, 0x2A | 0x3A | 0x4A | 0x52 | 0x5A) {
            if f.tag != kind {
                kind = f.tag;
                points = 0;
            }
            points += count_points(data, f.payload, f.end)?;
        }
    }
    Ok(points)
}

/// Fields with tag 0x0A (data points) in one data message; validates its framing first.
fn count_points(data: &[u8], mut pos: usize, end: usize) -> Result<u64> {
    // Validate the whole message before counting, like iter_len_fields.
    let mut n = 0u64;
    while pos < end {
        let t = u64::from(data[pos]);
        let (t, p) = if t < 0x80 {
            (t, pos + 1)
        } else {
            read_tag(data, pos, end)?
        };
        if t >> 3 == 0 {
            return malformed("field number 0");
        }
        pos = skip_field(data, t & 7, p, end)?;
        if t == 0x0A {
            n += 1;
        }
    }
    Ok(n)
}
