//! The ring table handed over by Python (`dataplane/ring.py`): which backend owns a key.
//!
//! Python builds the ring and flattens it into a table of cells; the native side only
//! hashes the key and indexes the table, so both sides route every key identically:
//!
//! - `ringleader`: 2**20 cells, owner = `cells[murmur3_32(key, seed 0) >> 12]`;
//! - `upstream*`: owner = `cells[crc32(key) % cells]`, with the cell count of the upstream release the
//!   ring reproduces: 131071 (`upstream`, `upstream-v0.161`) or 36000 (`upstream-v0.152`, `upstream-v0.129`).

/// How a table hashes keys into cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Ringleader,
    Upstream,
}

pub const RINGLEADER_CELLS: usize = 1 << 20;
/// The cell counts of upstream's rings: #49585 (v0.157+) and the releases before it.
pub const UPSTREAM_CELLS: [usize; 2] = [131_071, 36_000];

/// An immutable ring table: one backend index per cell.
#[derive(Debug, Clone)]
pub struct Table {
    hash: Hash,
    cells: Vec<u32>,
    backends: usize,
}

impl Table {
    /// A table from its cells; the cell count must be one the algorithm uses.
    pub fn new(hash: Hash, cells: Vec<u32>) -> Result<Table, String> {
        let fits = match hash {
            Hash::Ringleader => cells.len() == RINGLEADER_CELLS,
            Hash::Upstream => UPSTREAM_CELLS.contains(&cells.len()),
        };
        if !fits {
            let want = match hash {
                Hash::Ringleader => format!("{RINGLEADER_CELLS}"),
                Hash::Upstream => format!("{} or {}", UPSTREAM_CELLS[0], UPSTREAM_CELLS[1]),
            };
            return Err(format!(
                "a {hash:?} ring table has {want} cells, not {}",
                cells.len()
            ));
        }
        let backends = cells.iter().copied().max().map_or(0, |m| m as usize + 1);
        Ok(Table {
            hash,
            cells,
            backends,
        })
    }

    /// A table from little-endian cells of 2 or 4 bytes (Python's `array.tobytes()`).
    pub fn from_le_bytes(hash: Hash, raw: &[u8], itemsize: usize) -> Result<Table, String> {
        let cells = match itemsize {
            2 if raw.len() % 2 == 0 => raw
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            4 if raw.len() % 4 == 0 => raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            _ => {
                return Err(format!(
                    "ring cells must be 2 or 4 bytes each, got {itemsize} for {} bytes",
                    raw.len()
                ))
            }
        };
        Table::new(hash, cells)
    }

    /// The cells, one backend index each.
    pub fn cells(&self) -> &[u32] {
        &self.cells
    }

    /// One more than the largest backend index in the table.
    pub fn backends(&self) -> usize {
        self.backends
    }

    /// The owner of `key`: an index into the ring's endpoints.
    #[inline]
    pub fn lookup(&self, key: &[u8]) -> u32 {
        match self.hash {
            Hash::Ringleader => self.cells[(murmur3_32(key, 0) >> 12) as usize],
            Hash::Upstream => self.cells[(crc32(key) % self.cells.len() as u32) as usize],
        }
    }
}

/// MurmurHash3 x86 32-bit (what `mmh3.hash(key, seed, signed=False)` computes).
pub fn murmur3_32(key: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut blocks = key.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k ^= u32::from(*b) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= key.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (IEEE), what `zlib.crc32` computes.
pub fn crc32(key: &[u8]) -> u32 {
    crc32_update(0, key)
}

/// CRC-32 continued from `crc` (`zlib.crc32(data, crc)`).
pub fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for b in data {
        c = CRC_TABLE[((c ^ u32::from(*b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514E_28B7);
        assert_eq!(murmur3_32(b"foo", 0), 0xF6A5_C420);
        assert_eq!(murmur3_32(b"Hello, world!", 1234), 0xFAF6_CDB3);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2E4F_F723
        );
    }

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn a_table_of_the_wrong_size_is_refused() {
        assert!(Table::new(Hash::Upstream, vec![0; 10]).is_err());
        assert!(Table::from_le_bytes(Hash::Upstream, &[0; 3], 2).is_err());
        let t =
            Table::from_le_bytes(Hash::Upstream, &[1u8, 0].repeat(UPSTREAM_CELLS[1]), 2).unwrap();
        assert_eq!(t.backends(), 2);
        assert_eq!(t.lookup(b"anything"), 1);
    }
}
