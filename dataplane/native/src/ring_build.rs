//! Building ring tables: the native port of `dataplane/ring.py`'s builders.
//!
//! `dataplane/ring.py` documents the algorithms and keeps the Python implementations as
//! the reference; tests/test_ring_build.py proves these builders write the same cells.
//! A build runs without the interpreter lock (a ringleader ring for 300 backends takes a
//! few milliseconds here against most of a second in Python), so the data plane builds
//! rings on a thread instead of a helper process.

use sha3::digest::{ExtendableOutput, Update, XofReader};
use sha3::Shake128;

use crate::ring::{crc32_update, RINGLEADER_CELLS};

const HASH_SPACE: i64 = 1 << 32;
const POINTS_PER_BACKEND: usize = 2048;
const CELL_SHIFT: u32 = 12;
const CAP_FACTOR: f64 = 1.02;
const POINT_DOMAIN: &[u8] = b"ringleader/v1\x00";
const UPSTREAM_PROBE_LIMIT: u32 = 10;

/// The endpoint's 2048 points: little-endian u32s from SHAKE-128(domain + endpoint).
fn points(endpoint: &str) -> Vec<u32> {
    let mut shake = Shake128::default();
    shake.update(POINT_DOMAIN);
    shake.update(endpoint.as_bytes());
    let mut raw = vec![0u8; 4 * POINTS_PER_BACKEND];
    shake.finalize_xof().read(&mut raw);
    raw.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The ringleader ring's 2**20 cells for `endpoints` (sorted, unique, as `build_ring` passes them).
pub fn ringleader(endpoints: &[String]) -> Vec<u32> {
    let n = endpoints.len();
    assert!(n > 0, "a ring needs at least one endpoint");
    let gen: Vec<Vec<u32>> = endpoints.iter().map(|e| points(e)).collect();
    // (position, rank): equal positions fall back to endpoint order.
    let mut packed: Vec<(u32, u32)> = Vec::with_capacity(n * POINTS_PER_BACKEND);
    for (rank, pts) in gen.iter().enumerate() {
        packed.extend(pts.iter().map(|&p| (p, rank as u32)));
    }
    packed.sort_unstable();
    let last = i64::from(packed[packed.len() - 1].0);
    // Region of point j starts halfway from point j-1 (a tie goes to the later point);
    // point 0's predecessor is the last point, one circle back.
    let mut starts: Vec<i64> = Vec::with_capacity(packed.len());
    let mut prev = last - HASH_SPACE;
    for &(p, _) in &packed {
        let p = i64::from(p);
        starts.push((prev + p + 1) >> 1);
        prev = p;
    }
    // owner_wrapped[0] is the last point, whose region wraps past 2**32.
    let mut owner_wrapped: Vec<u32> = Vec::with_capacity(packed.len() + 1);
    owner_wrapped.push(packed[packed.len() - 1].1);
    owner_wrapped.extend(packed.iter().map(|&(_, r)| r));
    let mut cells = Vec::with_capacity(RINGLEADER_CELLS);
    let mut region = 0usize; // bisect_right(starts, x), x ascending
    for c in 0..RINGLEADER_CELLS {
        let x = (c as i64) << CELL_SHIFT;
        while region < starts.len() && starts[region] <= x {
            region += 1;
        }
        cells.push(owner_wrapped[region]);
    }
    apply_cap(&mut cells, &gen, n);
    cells
}

/// Trim every backend to CAP_FACTOR x the average share (see `_apply_cap` in ring.py).
fn apply_cap(cells: &mut [u32], gen: &[Vec<u32>], n: usize) {
    let size = cells.len();
    let last = size - 1;
    let cap = (CAP_FACTOR * size as f64 / n as f64) as i64;
    let mut counts = vec![0i64; n];
    for &c in cells.iter() {
        counts[c as usize] += 1;
    }
    for b in 0..n {
        let bu = b as u32;
        let mut excess = counts[b] - cap;
        while excess > 0 {
            let mut progress = false;
            for &p in &gen[b] {
                if excess <= 0 {
                    break;
                }
                let mut c = (p >> CELL_SHIFT) as usize;
                if cells[c] != bu {
                    c = (c + 1) & last;
                    if cells[c] != bu {
                        continue;
                    }
                }
                let mut steps = 0;
                while cells[(c + 1) & last] == bu && steps < size {
                    c = (c + 1) & last;
                    steps += 1;
                }
                let neighbour = cells[(c + 1) & last];
                if neighbour == bu || counts[neighbour as usize] >= cap {
                    continue;
                }
                if c == (p >> CELL_SHIFT) as usize {
                    continue;
                }
                cells[c] = neighbour;
                counts[neighbour as usize] += 1;
                counts[b] -= 1;
                excess -= 1;
                progress = true;
            }
            if !progress {
                break;
            }
        }
    }
}

/// How an upstream release names and places its points (`UpstreamVariant` in ring.py).
#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    pub max_positions: u32,
    pub weight: u32,
    /// true: a 4-byte little-endian suffix; false: one byte.
    pub uint32_suffix: bool,
    pub placement: Placement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Skip,
    Probe,
    SortedProbe,
}

impl Upstream {
    pub fn named(name: &str) -> Option<Upstream> {
        let (max_positions, weight, uint32_suffix, placement) = match name {
            "upstream" | "upstream-v0.161" => (131_071, 200, true, Placement::SortedProbe),
            "upstream-v0.152" => (36_000, 100, true, Placement::Probe),
            "upstream-v0.129" => (36_000, 100, false, Placement::Skip),
            _ => return None,
        };
        Some(Upstream {
            max_positions,
            weight,
            uint32_suffix,
            placement,
        })
    }

    /// The cells: `ordered` is the endpoint list as upstream sorts it (duplicates kept);
    /// cells hold indexes into `unique` (sorted, deduplicated).
    pub fn cells(&self, ordered: &[String], unique: &[String]) -> Vec<u32> {
        let modulus = self.max_positions;
        let mut candidates: Vec<(u32, u32, &str)> = Vec::new();
        for endpoint in ordered {
            let prefix = crc32_update(0, endpoint.as_bytes());
            for i in 0..self.weight {
                let h = if self.uint32_suffix {
                    crc32_update(prefix, &i.to_le_bytes())
                } else {
                    crc32_update(prefix, &[(i & 0xFF) as u8])
                };
                candidates.push((h % modulus, h, endpoint.as_str()));
            }
        }
        if self.placement == Placement::SortedProbe {
            candidates.sort_unstable();
        }
        // taken[pos] = endpoint index + 1 (0: free)
        let index = |e: &str| unique.binary_search_by(|u| u.as_str().cmp(e)).unwrap() as u32;
        let mut taken = vec![0u32; modulus as usize];
        for (pos, _, endpoint) in candidates {
            let mut pos = pos;
            if self.placement == Placement::Skip {
                if taken[pos as usize] == 0 {
                    taken[pos as usize] = index(endpoint) + 1;
                }
                continue;
            }
            let mut probed = 0;
            while taken[pos as usize] != 0 && probed < UPSTREAM_PROBE_LIMIT {
                pos = (pos + 1) % modulus;
                probed += 1;
            }
            if probed < UPSTREAM_PROBE_LIMIT {
                taken[pos as usize] = index(endpoint) + 1;
            }
        }
        // The owner of a position is the first item at or after it, wrapping to the first item.
        let first = taken.iter().copied().find(|&t| t != 0).expect("no points") - 1;
        let mut cells = vec![0u32; modulus as usize];
        let mut owner = first; // positions after the last item wrap to the first
        for pos in (0..modulus as usize).rev() {
            if taken[pos] != 0 {
                owner = taken[pos] - 1;
            }
            cells[pos] = owner;
        }
        cells
    }
}

/// Cells per backend index (the exact shares are these times the hash values per cell).
pub fn counts(cells: &[u32], backends: usize) -> Vec<u64> {
    let mut out = vec![0u64; backends];
    for &c in cells {
        if let Some(slot) = out.get_mut(c as usize) {
            *slot += 1;
        }
    }
    out
}

/// Cells as little-endian bytes of 2 bytes each when every index fits, else 4 (Python's
/// `array("H")` / `array("I")`), and that item size.
pub fn to_le_bytes(cells: &[u32], backends: usize) -> (Vec<u8>, usize) {
    if backends <= 0xFFFF {
        (
            cells
                .iter()
                .flat_map(|&c| (c as u16).to_le_bytes())
                .collect(),
            2,
        )
    } else {
        (cells.iter().flat_map(|&c| c.to_le_bytes()).collect(), 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n).map(|i| format!("10.0.0.{i}:4317")).collect();
        v.sort();
        v
    }

    #[test]
    fn a_ringleader_ring_stays_within_its_cap() {
        for n in [1, 3, 10, 50] {
            let cells = ringleader(&eps(n));
            assert_eq!(cells.len(), RINGLEADER_CELLS);
            let counts = counts(&cells, n);
            let cap = (CAP_FACTOR * RINGLEADER_CELLS as f64 / n as f64) as u64;
            assert!(counts
                .iter()
                .all(|&c| c <= cap.max(RINGLEADER_CELLS as u64 / n as u64)));
            assert_eq!(counts.iter().sum::<u64>(), RINGLEADER_CELLS as u64);
        }
    }

    #[test]
    fn every_upstream_variant_gives_every_endpoint_cells() {
        for name in ["upstream", "upstream-v0.152", "upstream-v0.129"] {
            let v = Upstream::named(name).unwrap();
            let e = eps(5);
            let cells = v.cells(&e, &e);
            assert_eq!(cells.len(), v.max_positions as usize);
            assert!(counts(&cells, 5).iter().all(|&c| c > 0));
        }
    }
}
