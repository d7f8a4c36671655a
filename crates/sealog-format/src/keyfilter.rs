//! Key filters (`key-filters`): for each sealed segment, a split-block
//! Bloom filter of the exact-match keys its index sidecar holds, all in one
//! file, so that a lookup of a rare value (a request id, one actor) learns
//! which segments cannot hold it without opening their sidecars.
//!
//! A filter answers "absent" or "perhaps": a key it never took may still
//! find its bits set (about 1% of the time at the 10 bits per key sealog
//! writes), never the other way round. The file is derived data: every
//! entry names the segment it was built for (the identity a sidecar
//! records, footer CRC included), every 4 KiB page of filter bits has a
//! CRC, and a reader that finds an entry damaged, missing, or for another
//! segment looks in the segment's sidecar, as it would without the file.
//!
//! The byte layout is in `docs/format.md`, "Key filters".

use crate::index::{IndexError, IndexField, IndexReader, SegmentIdentity, term_key};
use crate::le::{array_at, part, put, u32_at, u64_at};

/// Magic at the start of the file.
pub const FILE_MAGIC: [u8; 8] = *b"SLOGKEYF";
/// The file format version this crate writes and reads.
pub const FILE_VERSION: u16 = 1;
/// Length of the file header.
pub const FILE_HEADER_LEN: usize = 64;
/// Magic at the start of each entry.
pub const ENTRY_MAGIC: [u8; 4] = *b"KFEN";
/// Length of an entry's fixed header (before its page CRCs).
pub const ENTRY_HEADER_LEN: usize = 96;
/// Bytes in a block: eight 32-bit words, one bit set in each per key.
pub const BLOCK_LEN: usize = 32;
/// Blocks under one page CRC (4,096 bytes).
pub const BLOCKS_PER_PAGE: u32 = 128;
/// Filter bits written per key.
pub const BITS_PER_KEY: u64 = 10;
/// The most blocks an entry may have (a 4 GiB filter): more is damage.
pub const MAX_BLOCKS: u32 = 1 << 27;

/// The odd multipliers that pick a block's eight bits (those of Apache
/// Parquet's split-block Bloom filter).
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

const CRC_AT: usize = 92;

/// What is wrong with a key-filter file or entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFilterError {
    /// Fewer bytes than the header or entry needs.
    #[error("{needed} bytes are needed, {found} are there")]
    Short {
        /// Bytes the next step needs from the start of the header or entry.
        needed: u64,
        /// Bytes there were.
        found: u64,
    },
    /// A header field does not hold what it must.
    #[error("{0}")]
    Malformed(String),
    /// A CRC does not match.
    #[error("{what}: stored CRC {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// What the CRC covers.
        what: String,
        /// The CRC in the file.
        stored: u32,
        /// The CRC of the bytes found.
        computed: u32,
    },
}

/// The key a filter stores for the term `term_key` (its FNV-1a 64 hash,
/// [`term_key`]) of index field `field`: the hash and the field id mixed
/// with MurmurHash3's 64-bit finaliser, so that every bit of the key
/// depends on every bit of both.
pub const fn filter_key(field: IndexField, term_key: u64) -> u64 {
    let mut h = term_key ^ (field.id() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The filter key of `term` in `field`.
pub const fn term_filter_key(field: IndexField, term: &[u8]) -> u64 {
    filter_key(field, term_key(term))
}

/// The file header for the store `store_id`.
pub fn encode_file_header(store_id: &[u8; 16]) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[0..8].copy_from_slice(&FILE_MAGIC);
    h[8..10].copy_from_slice(&FILE_VERSION.to_le_bytes());
    h[16..32].copy_from_slice(store_id);
    let crc = crc32fast::hash(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a file header (the file's first bytes) against the store's id.
pub fn check_file_header(bytes: &[u8], store_id: &[u8; 16]) -> Result<(), KeyFilterError> {
    let Some(h) = bytes.first_chunk::<FILE_HEADER_LEN>() else {
        return Err(KeyFilterError::Short {
            needed: FILE_HEADER_LEN as u64,
            found: bytes.len() as u64,
        });
    };
    if h[0..8] != FILE_MAGIC {
        return Err(KeyFilterError::Malformed(format!(
            "the file does not start with the magic SLOGKEYF (found {:02x?})",
            &h[0..8]
        )));
    }
    let stored = u32_at(h, 60);
    let computed = crc32fast::hash(&h[..60]);
    if stored != computed {
        return Err(KeyFilterError::Crc {
            what: "the file header".into(),
            stored,
            computed,
        });
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != FILE_VERSION {
        return Err(KeyFilterError::Malformed(format!(
            "version {version}; this build reads version {FILE_VERSION}"
        )));
    }
    if h[10..16].iter().chain(&h[32..60]).any(|&b| b != 0) {
        return Err(KeyFilterError::Malformed(
            "reserved header bytes are not zero".into(),
        ));
    }
    if h[16..32] != store_id[..] {
        return Err(KeyFilterError::Malformed(
            "the file belongs to another store (its store id differs)".into(),
        ));
    }
    Ok(())
}

/// The keys of one segment, collected before the filter is sized.
#[derive(Debug, Default, Clone)]
pub struct KeyFilterBuilder {
    keys: Vec<u64>,
    /// Bit `id` set for each field whose terms the filter holds.
    fields: u32,
}

impl KeyFilterBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `field` as covered: the filter then holds every term of it
    /// the segment has (none, if none is inserted). A reader asks the
    /// filter only about covered fields.
    pub fn cover(&mut self, field: IndexField) {
        self.fields |= field_bit(field);
    }

    /// Adds the term whose FNV-1a 64 hash is `term_key` in `field`, and
    /// covers `field`.
    pub fn insert_key(&mut self, field: IndexField, term_key: u64) {
        self.cover(field);
        self.keys.push(filter_key(field, term_key));
    }

    /// Adds `term` of `field`.
    pub fn insert_term(&mut self, field: IndexField, term: &[u8]) {
        self.insert_key(field, term_key(term));
    }

    /// The keys of a sidecar: every term of its term dictionaries and every
    /// key of its hashed indexes, each such field covered (a field the
    /// sidecar has no section for is not: a lookup in it scans the
    /// segment). `reader` must have been checked whole
    /// ([`IndexReader::parse`]), unless its bytes were just encoded: a
    /// damaged dictionary would give a filter that leaves out terms the
    /// segment has.
    pub fn from_sidecar(reader: &IndexReader<'_>) -> Result<Self, IndexError> {
        let mut builder = Self::new();
        for dict in reader.fields() {
            let field = dict.field();
            builder.cover(field);
            for i in 0..dict.len() {
                if let Some(term) = dict.term(i) {
                    builder.insert_term(field, term);
                }
            }
        }
        for hashed in reader.hashed_fields() {
            let field = hashed.field();
            builder.cover(field);
            // Sorted: a key several records have is adjacent to itself.
            let mut previous = None;
            for key in hashed.keys() {
                if previous != Some(key) {
                    builder.insert_key(field, key);
                }
                previous = Some(key);
            }
        }
        Ok(builder)
    }

    /// The entry for the segment `identity`: its header, page CRCs and
    /// filter blocks, sized for the number of keys inserted (a key
    /// inserted twice counts twice). The same keys, in any order, always
    /// give the same bytes.
    pub fn encode(self, identity: &SegmentIdentity) -> Vec<u8> {
        let keys = self.keys.len() as u64;
        let blocks = blocks_for(keys);
        let pages = pages_of(blocks);
        let filter_at = ENTRY_HEADER_LEN + 4 * pages as usize;
        let mut out = vec![0u8; filter_at + blocks as usize * BLOCK_LEN];
        for &key in &self.keys {
            let at = filter_at + block_of(key, blocks) as usize * BLOCK_LEN;
            if let Some(block) = out.get_mut(at..at + BLOCK_LEN) {
                set_bits(block, key);
            }
        }
        put(&mut out, 0, &ENTRY_MAGIC);
        put(&mut out, 4, &blocks.to_le_bytes());
        put(&mut out, 8, &keys.to_le_bytes());
        put(&mut out, 16, &identity.store_id);
        put(&mut out, 32, &identity.segment_no.to_le_bytes());
        put(&mut out, 40, &identity.first_seq.to_le_bytes());
        put(&mut out, 48, &identity.record_count.to_le_bytes());
        put(&mut out, 56, &identity.segment_footer_crc.to_le_bytes());
        put(&mut out, 60, &self.fields.to_le_bytes());
        for page in 0..pages {
            let (start, end) = page_range(page, blocks);
            let crc = crc32fast::hash(part(&out, filter_at + start..filter_at + end));
            put(
                &mut out,
                ENTRY_HEADER_LEN + 4 * page as usize,
                &crc.to_le_bytes(),
            );
        }
        let crc = head_crc(part(&out, 0..filter_at));
        put(&mut out, CRC_AT, &crc.to_le_bytes());
        out
    }
}

/// Blocks for `keys` keys: [`BITS_PER_KEY`] bits each, at least one
/// block.
pub fn blocks_for(keys: u64) -> u32 {
    let bits = keys.saturating_mul(BITS_PER_KEY);
    let blocks = bits.div_ceil(BLOCK_LEN as u64 * 8).max(1);
    u32::try_from(blocks).unwrap_or(MAX_BLOCKS).min(MAX_BLOCKS)
}

/// The bit of `field` in an entry's covered fields.
const fn field_bit(field: IndexField) -> u32 {
    1 << (field.id() % 32)
}

fn pages_of(blocks: u32) -> u32 {
    blocks.div_ceil(BLOCKS_PER_PAGE)
}

/// The byte range of page `page` within the filter blocks.
fn page_range(page: u32, blocks: u32) -> (usize, usize) {
    let first = page * BLOCKS_PER_PAGE;
    let end = (first + BLOCKS_PER_PAGE).min(blocks);
    (first as usize * BLOCK_LEN, end as usize * BLOCK_LEN)
}

/// The block of `key` among `blocks`: the high 32 bits scaled to the count.
fn block_of(key: u64, blocks: u32) -> u32 {
    (((key >> 32) * u64::from(blocks)) >> 32) as u32
}

/// The bit of word `i` that `key` sets.
fn bit_of(key: u64, salt: u32) -> u32 {
    1u32 << ((key as u32).wrapping_mul(salt) >> 27)
}

fn set_bits(block: &mut [u8], key: u64) {
    for (i, salt) in SALT.into_iter().enumerate() {
        let word = u32_at(block, 4 * i) | bit_of(key, salt);
        put(block, 4 * i, &word.to_le_bytes());
    }
}

/// The CRC of an entry's header and page CRCs, the CRC field itself left
/// out.
fn head_crc(head: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(part(head, 0..CRC_AT));
    h.update(head.get(ENTRY_HEADER_LEN..).unwrap_or_default());
    h.finalize()
}

/// An entry's header and page CRCs, checked; the filter blocks stay in the
/// file and are read a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHead {
    /// The segment the filter was built for.
    pub identity: SegmentIdentity,
    /// Filter blocks.
    pub blocks: u32,
    /// Keys the filter took.
    pub keys: u64,
    /// Bit `id` set for each index field whose terms the filter holds.
    pub fields: u32,
    page_crcs: Vec<u32>,
}

/// Where a key's block is: which page, the page's bytes within the entry,
/// and the block's place in the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The page of the key's block.
    pub page: u32,
    /// The page's first byte, from the start of the entry.
    pub offset: u64,
    /// The page's length in bytes (the last page may be short).
    pub len: usize,
    /// The block's first byte within the page.
    pub block_at: usize,
}

impl EntryHead {
    /// Reads an entry's head from `bytes`, the entry's first bytes. With
    /// too few to hold the head, the error says how many it needs
    /// ([`KeyFilterError::Short`]).
    pub fn parse(bytes: &[u8]) -> Result<EntryHead, KeyFilterError> {
        let Some(fixed) = bytes.first_chunk::<ENTRY_HEADER_LEN>() else {
            return Err(KeyFilterError::Short {
                needed: ENTRY_HEADER_LEN as u64,
                found: bytes.len() as u64,
            });
        };
        if fixed[0..4] != ENTRY_MAGIC {
            return Err(KeyFilterError::Malformed(format!(
                "the entry does not start with the magic KFEN (found {:02x?})",
                &fixed[0..4]
            )));
        }
        let blocks = u32_at(fixed, 4);
        if blocks == 0 || blocks > MAX_BLOCKS {
            return Err(KeyFilterError::Malformed(format!(
                "{blocks} filter blocks (1 to {MAX_BLOCKS} allowed)"
            )));
        }
        let pages = pages_of(blocks) as usize;
        let head_len = ENTRY_HEADER_LEN + 4 * pages;
        let Some(head) = bytes.get(..head_len) else {
            return Err(KeyFilterError::Short {
                needed: head_len as u64,
                found: bytes.len() as u64,
            });
        };
        let stored = u32_at(fixed, CRC_AT);
        let computed = head_crc(head);
        if stored != computed {
            return Err(KeyFilterError::Crc {
                what: "the entry's header and page CRCs".into(),
                stored,
                computed,
            });
        }
        if fixed[64..CRC_AT].iter().any(|&b| b != 0) {
            return Err(KeyFilterError::Malformed(
                "reserved entry bytes are not zero".into(),
            ));
        }
        let keys = u64_at(fixed, 8);
        if blocks_for(keys) != blocks {
            return Err(KeyFilterError::Malformed(format!(
                "{blocks} blocks for {keys} keys; {BITS_PER_KEY} bits per key make {}",
                blocks_for(keys)
            )));
        }
        let identity = SegmentIdentity {
            store_id: array_at(fixed, 16),
            segment_no: u64_at(fixed, 32),
            first_seq: u64_at(fixed, 40),
            record_count: u64_at(fixed, 48),
            segment_footer_crc: u32_at(fixed, 56),
        };
        let page_crcs = (0..pages)
            .map(|i| u32_at(head, ENTRY_HEADER_LEN + 4 * i))
            .collect();
        Ok(EntryHead {
            identity,
            blocks,
            keys,
            fields: u32_at(fixed, 60),
            page_crcs,
        })
    }

    /// Whether the filter holds every term of `field` the segment has.
    pub fn covers(&self, field: IndexField) -> bool {
        self.fields & field_bit(field) != 0
    }

    /// The head's length: the fixed header and the page CRCs.
    pub fn head_len(&self) -> u64 {
        (ENTRY_HEADER_LEN + 4 * self.page_crcs.len()) as u64
    }

    /// The whole entry's length, filter blocks included.
    pub fn len(&self) -> u64 {
        self.head_len() + u64::from(self.blocks) * BLOCK_LEN as u64
    }

    /// Whether the entry holds no blocks (never true of a parsed entry).
    pub fn is_empty(&self) -> bool {
        self.blocks == 0
    }

    /// Where `key`'s block is.
    pub fn probe(&self, key: u64) -> Probe {
        let block = block_of(key, self.blocks);
        let page = block / BLOCKS_PER_PAGE;
        let (start, end) = page_range(page, self.blocks);
        Probe {
            page,
            offset: self.head_len() + start as u64,
            len: end - start,
            block_at: (block % BLOCKS_PER_PAGE) as usize * BLOCK_LEN,
        }
    }

    /// Checks `bytes`, page `page` as read from the file, against its CRC.
    pub fn check_page(&self, page: u32, bytes: &[u8]) -> Result<(), KeyFilterError> {
        let Some(&stored) = self.page_crcs.get(page as usize) else {
            return Err(KeyFilterError::Malformed(format!(
                "page {page} of an entry of {} pages",
                self.page_crcs.len()
            )));
        };
        let computed = crc32fast::hash(bytes);
        if stored != computed {
            return Err(KeyFilterError::Crc {
                what: format!("filter page {page}"),
                stored,
                computed,
            });
        }
        Ok(())
    }

    /// Whether the filter may hold `key`, given `page`, the checked page
    /// [`EntryHead::probe`] named for it.
    pub fn page_may_hold(probe: &Probe, page: &[u8], key: u64) -> bool {
        let Some(block) = page.get(probe.block_at..probe.block_at + BLOCK_LEN) else {
            return true;
        };
        SALT.into_iter()
            .enumerate()
            .all(|(i, salt)| u32_at(block, 4 * i) & bit_of(key, salt) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn identity() -> SegmentIdentity {
        SegmentIdentity {
            store_id: [7; 16],
            segment_no: 3,
            first_seq: 4_096,
            record_count: 1_000,
            segment_footer_crc: 0xdead_beef,
        }
    }

    /// Whether the encoded entry `bytes` may hold `key`, read as a reader
    /// reads it.
    fn may_hold(bytes: &[u8], key: u64) -> bool {
        let head = EntryHead::parse(bytes).unwrap();
        let probe = head.probe(key);
        let page = &bytes[probe.offset as usize..probe.offset as usize + probe.len];
        head.check_page(probe.page, page).unwrap();
        EntryHead::page_may_hold(&probe, page, key)
    }

    #[test]
    fn the_key_of_a_term_is_fixed_by_the_format() {
        // docs/format.md, "Key filters", gives these values.
        assert_eq!(
            term_filter_key(IndexField::RequestId, b"a"),
            filter_key(IndexField::RequestId, 0xaf63_dc4c_8601_ec8c)
        );
        assert_eq!(
            term_filter_key(IndexField::RequestId, b"a"),
            0xa4a5_0ef6_71d6_6713
        );
        assert_eq!(
            term_filter_key(IndexField::Actor, b"a"),
            0xce2a_1542_9808_ee9a
        );
        let mut b = KeyFilterBuilder::new();
        b.insert_term(IndexField::RequestId, b"a");
        let bytes = b.encode(&identity());
        assert_eq!(bytes.len(), ENTRY_HEADER_LEN + 4 + BLOCK_LEN);
        let words: Vec<u32> = bytes[ENTRY_HEADER_LEN + 4..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(
            words,
            [
                0x0000_0020,
                0x0200_0000,
                0x4000_0000,
                0x0000_0001,
                0x0000_2000,
                0x0000_0001,
                0x1000_0000,
                0x2000_0000
            ]
        );
    }

    #[test]
    fn the_file_header_is_checked_against_the_store() {
        let h = encode_file_header(&[7; 16]);
        assert_eq!(check_file_header(&h, &[7; 16]), Ok(()));
        assert!(matches!(
            check_file_header(&h, &[8; 16]),
            Err(KeyFilterError::Malformed(m)) if m.contains("another store")
        ));
        assert!(matches!(
            check_file_header(&h[..63], &[7; 16]),
            Err(KeyFilterError::Short {
                needed: 64,
                found: 63
            })
        ));
        for at in 0..FILE_HEADER_LEN {
            let mut bad = h;
            bad[at] ^= 0x10;
            assert!(check_file_header(&bad, &[7; 16]).is_err(), "byte {at}");
        }
    }

    #[test]
    fn every_flipped_bit_of_an_entry_is_found() {
        let mut b = KeyFilterBuilder::new();
        for i in 0..40_000u64 {
            b.insert_key(IndexField::RequestId, i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        let bytes = b.encode(&identity());
        let head = EntryHead::parse(&bytes).unwrap();
        assert!(head.blocks > BLOCKS_PER_PAGE, "several pages");
        assert_eq!(head.len(), bytes.len() as u64);
        // A flip in the head fails the head; one in a page fails that page.
        for at in (0..bytes.len()).step_by(97) {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            let found = match EntryHead::parse(&bad) {
                Err(_) => true,
                Ok(h) if h != head => true,
                Ok(h) => (0..pages_of(h.blocks)).any(|page| {
                    let (s, e) = page_range(page, h.blocks);
                    let at = h.head_len() as usize;
                    h.check_page(page, &bad[at + s..at + e]).is_err()
                }),
            };
            assert!(found, "a flip at byte {at} went unnoticed");
        }
    }

    #[test]
    fn a_short_entry_says_how_much_it_needs() {
        let mut b = KeyFilterBuilder::new();
        for i in 0..100_000u64 {
            b.insert_key(IndexField::ResourceId, i);
        }
        let bytes = b.encode(&identity());
        let head = EntryHead::parse(&bytes).unwrap();
        assert_eq!(
            EntryHead::parse(&bytes[..50]),
            Err(KeyFilterError::Short {
                needed: 96,
                found: 50
            })
        );
        assert_eq!(
            EntryHead::parse(&bytes[..100]),
            Err(KeyFilterError::Short {
                needed: head.head_len(),
                found: 100
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any bytes parse to an error or a head whose probes stay inside
        /// the entry, never a panic.
        #[test]
        fn any_bytes_read_as_an_entry_or_an_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            key in any::<u64>(),
        ) {
            let _ = check_file_header(&bytes, &[0; 16]);
            if let Ok(head) = EntryHead::parse(&bytes) {
                let probe = head.probe(key);
                prop_assert!(probe.offset + probe.len as u64 <= head.len());
                let page = bytes.get(probe.offset as usize..).unwrap_or_default();
                let _ = head.check_page(probe.page, page);
                let _ = EntryHead::page_may_hold(&probe, page, key);
            }
        }

        /// No key the filter took is ever reported absent, and keys it did
        /// not take mostly are.
        #[test]
        fn a_filter_holds_every_key_it_took(
            keys in proptest::collection::vec(any::<u64>(), 0..3_000),
            others in proptest::collection::vec(any::<u64>(), 1_000),
        ) {
            let mut b = KeyFilterBuilder::new();
            for &k in &keys {
                b.insert_key(IndexField::RequestId, k);
            }
            let bytes = b.clone().encode(&identity());
            let mut reversed = KeyFilterBuilder::new();
            for &k in keys.iter().rev() {
                reversed.insert_key(IndexField::RequestId, k);
            }
            prop_assert_eq!(&bytes, &reversed.encode(&identity()), "in any order");
            let head = EntryHead::parse(&bytes).unwrap();
            prop_assert_eq!(head.identity, identity());
            prop_assert_eq!(head.covers(IndexField::RequestId), !keys.is_empty());
            prop_assert!(!head.covers(IndexField::Actor));
            for &k in &keys {
                prop_assert!(may_hold(&bytes, filter_key(IndexField::RequestId, k)));
            }
            if keys.len() >= 500 {
                let taken: std::collections::HashSet<u64> = keys.iter().copied().collect();
                let false_hits = others
                    .iter()
                    .filter(|k| !taken.contains(k))
                    .filter(|&&k| may_hold(&bytes, filter_key(IndexField::RequestId, k)))
                    .count();
                // About 1% expected; 5% would mean the filter is broken.
                prop_assert!(false_hits < 50, "{} false hits in 1000", false_hits);
            }
        }
    }
}
