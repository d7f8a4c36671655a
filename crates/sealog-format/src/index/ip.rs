//! IP indexes (kind 5): each record's address, IPv4 and IPv6 apart, each
//! sorted by address, for exact and CIDR queries.
//!
//! An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is stored, and looked
//! up, as the IPv4 address `a.b.c.d`; IPv6 queries also read the IPv4
//! entries whose mapped form is in their range. Results are exact.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use roaring::RoaringBitmap;

use super::bitmap::ordinal_set;
use super::bytes::{Cursor, fit_u32, to_u64, u32_at};
use super::error::IndexError;
use super::field::IndexField;
use super::layout::{
    IP_COUNT6_AT, IP_HEADER_LEN, IP_V4_ENTRY_LEN, IP_V4_LEN, IP_V6_ENTRY_LEN, IP_V6_LEN,
    ORDINAL_LEN,
};

/// IPv6 addresses `::ffff:0:0/96` (IPv4-mapped) are stored as IPv4: the
/// first and last such address as `u128`.
const MAPPED_V4_FIRST: u128 = 0xffff_0000_0000;
const MAPPED_V4_LAST: u128 = 0xffff_ffff_ffff;

/// `addr` as an IP index stores it: an IPv4-mapped IPv6 address becomes
/// IPv4, everything else is unchanged.
fn canonical_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The addresses of one field while building, IPv4-mapped IPv6 addresses
/// already turned into IPv4.
#[derive(Debug, Clone, Default)]
pub(super) struct IpPostings {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u32)>,
}

impl IpPostings {
    /// Records that the record `ordinal` has the address `addr`.
    pub(super) fn add(&mut self, addr: IpAddr, ordinal: u32) {
        match canonical_ip(addr) {
            IpAddr::V4(v4) => self.v4.push((v4.to_bits(), ordinal)),
            IpAddr::V6(v6) => self.v6.push((v6.to_bits(), ordinal)),
        }
    }

    /// Appends an IP index section holding these addresses (sorted,
    /// deduplicated) to `out`.
    /// The length of the section [`IpPostings::encode`] appends, at most
    /// (exactly, when no (address, ordinal) pair was added twice).
    pub(super) fn len_at_most(&self) -> usize {
        IP_HEADER_LEN + self.v4.len() * IP_V4_ENTRY_LEN + self.v6.len() * IP_V6_ENTRY_LEN
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) -> Result<(), IndexError> {
        let postings = self;
        let mut v4 = postings.v4.clone();
        v4.sort_unstable();
        v4.dedup();
        let mut v6 = postings.v6.clone();
        v6.sort_unstable();
        v6.dedup();
        let count4 = fit_u32("IPv4 entry count", v4.len())?;
        let count6 = fit_u32("IPv6 entry count", v6.len())?;
        out.reserve(IP_HEADER_LEN + v4.len() * IP_V4_ENTRY_LEN + v6.len() * IP_V6_ENTRY_LEN);
        out.extend_from_slice(&count4.to_le_bytes());
        out.extend_from_slice(&count6.to_le_bytes());
        for (addr, _) in &v4 {
            out.extend_from_slice(&addr.to_le_bytes());
        }
        for (_, ordinal) in &v4 {
            out.extend_from_slice(&ordinal.to_le_bytes());
        }
        for (addr, _) in &v6 {
            // Network byte order: bytewise order is numeric order.
            out.extend_from_slice(&addr.to_be_bytes());
        }
        for (_, ordinal) in &v6 {
            out.extend_from_slice(&ordinal.to_le_bytes());
        }
        Ok(())
    }
}

/// The IP index of one field, read in place: (address, ordinal) pairs
/// sorted by address, IPv4 and IPv6 apart, for exact and CIDR queries.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are stored, and looked
/// up, as the IPv4 address `a.b.c.d`: this index does not tell the two
/// apart. So `10.0.0.0/8` matches a record from `::ffff:10.1.2.3`, and
/// `::ffff:10.0.0.0/104` matches one from `10.1.2.3`.
///
/// Results are exact (no candidates to confirm). Counts are numbers of
/// (address, ordinal) pairs: the number of records found, or more if a
/// record has several addresses in the field.
#[derive(Debug, Clone, Copy)]
pub struct IpIndex<'a> {
    field: IndexField,
    record_count: u64,
    v4: &'a [[u8; IP_V4_LEN]],
    v4_ordinals: &'a [[u8; ORDINAL_LEN]],
    v6: &'a [[u8; IP_V6_LEN]],
    v6_ordinals: &'a [[u8; ORDINAL_LEN]],
}

/// The arrays of an IP index section.
struct IpParts<'a> {
    v4: &'a [[u8; IP_V4_LEN]],
    v4_ordinals: &'a [[u8; ORDINAL_LEN]],
    v6: &'a [[u8; IP_V6_LEN]],
    v6_ordinals: &'a [[u8; ORDINAL_LEN]],
}

impl<'a> IpIndex<'a> {
    /// Splits an IP index section, checking only that its header adds up
    /// to its length.
    fn split(data: &'a [u8]) -> Result<IpParts<'a>, String> {
        let Some((header, rest)) = data.split_first_chunk::<IP_HEADER_LEN>() else {
            return Err(format!(
                "the section is {} bytes, shorter than its {IP_HEADER_LEN}-byte header",
                data.len()
            ));
        };
        let count4 = u32_at(header, 0);
        let count6 = u32_at(header, IP_COUNT6_AT);
        let expected = to_u64(IP_HEADER_LEN)
            + u64::from(count4) * to_u64(IP_V4_ENTRY_LEN)
            + u64::from(count6) * to_u64(IP_V6_ENTRY_LEN);
        if expected != to_u64(data.len()) {
            return Err(format!(
                "the section is {} bytes, but {count4} IPv4 and {count6} IPv6 entries need \
                 {expected}",
                data.len()
            ));
        }
        let (count4, count6) = (count4 as usize, count6 as usize);
        let mut cursor = Cursor::new(rest);
        let (Some(v4), Some(v4_ordinals), Some(v6), Some(v6_ordinals)) = (
            cursor.take(count4 * IP_V4_LEN),
            cursor.take(count4 * ORDINAL_LEN),
            cursor.take(count6 * IP_V6_LEN),
            cursor.take(count6 * ORDINAL_LEN),
        ) else {
            return Err("the section is shorter than its header says".to_owned());
        };
        Ok(IpParts {
            v4: v4.as_chunks().0,
            v4_ordinals: v4_ordinals.as_chunks().0,
            v6: v6.as_chunks().0,
            v6_ordinals: v6_ordinals.as_chunks().0,
        })
    }

    /// A view of an IP index section, without checking it. If the header
    /// does not add up to the section's length, the view is empty.
    pub(super) fn view(data: &'a [u8], field: IndexField, record_count: u64) -> Self {
        let parts = Self::split(data).unwrap_or(IpParts {
            v4: &[],
            v4_ordinals: &[],
            v6: &[],
            v6_ordinals: &[],
        });
        IpIndex {
            field,
            record_count,
            v4: parts.v4,
            v4_ordinals: parts.v4_ordinals,
            v6: parts.v6,
            v6_ordinals: parts.v6_ordinals,
        }
    }

    /// Checks an IP index section (whose CRC has been checked).
    pub(super) fn check(
        data: &'a [u8],
        field: IndexField,
        record_count: u64,
    ) -> Result<(), IndexError> {
        let bad = |reason: String| IndexError::BadIpIndex { field, reason };
        let parts = Self::split(data).map_err(bad)?;
        let out_of_range = |family: &str, i: usize, ordinal: u32| {
            bad(format!(
                "{family} entry #{i} has ordinal {ordinal}, but the segment has {record_count} \
                 records"
            ))
        };
        let unsorted = |family: &str, i: usize| {
            bad(format!(
                "{family} entry #{i} does not sort strictly after entry #{} (entries must be \
                 unique and sorted by address, then ordinal)",
                i.saturating_sub(1)
            ))
        };
        let mut previous: Option<(u32, u32)> = None;
        for (i, (addr, ordinal)) in parts.v4.iter().zip(parts.v4_ordinals).enumerate() {
            let entry = (u32::from_le_bytes(*addr), u32::from_le_bytes(*ordinal));
            if previous.is_some_and(|prev| entry <= prev) {
                return Err(unsorted("IPv4", i));
            }
            previous = Some(entry);
            if u64::from(entry.1) >= record_count {
                return Err(out_of_range("IPv4", i, entry.1));
            }
        }
        let mut previous: Option<(u128, u32)> = None;
        for (i, (addr, ordinal)) in parts.v6.iter().zip(parts.v6_ordinals).enumerate() {
            let entry = (u128::from_be_bytes(*addr), u32::from_le_bytes(*ordinal));
            if previous.is_some_and(|prev| entry <= prev) {
                return Err(unsorted("IPv6", i));
            }
            previous = Some(entry);
            if (MAPPED_V4_FIRST..=MAPPED_V4_LAST).contains(&entry.0) {
                return Err(bad(format!(
                    "IPv6 entry #{i} is the IPv4-mapped address {}, which must be stored as \
                     IPv4",
                    Ipv6Addr::from_bits(entry.0)
                )));
            }
            if u64::from(entry.1) >= record_count {
                return Err(out_of_range("IPv6", i, entry.1));
            }
        }
        Ok(())
    }

    /// The field this index covers.
    pub fn field(&self) -> IndexField {
        self.field
    }

    /// Number of (address, ordinal) entries, IPv4 and IPv6.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether no record has the field.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of IPv4 entries (including IPv4-mapped IPv6 addresses).
    pub fn len_v4(&self) -> usize {
        self.v4.len()
    }

    /// Number of IPv6 entries (other than IPv4-mapped ones).
    pub fn len_v6(&self) -> usize {
        self.v6.len()
    }

    /// The address of IPv6 entry `index` (in address order).
    #[inline]
    pub fn v6_at(&self, index: usize) -> Option<Ipv6Addr> {
        self.v6
            .get(index)
            .map(|a| Ipv6Addr::from(u128::from_be_bytes(*a)))
    }

    /// Positions of the IPv4 entries with `lo <= address <= hi`.
    fn positions_v4(&self, lo: u32, hi: u32) -> Range<usize> {
        if lo > hi {
            return 0..0;
        }
        let start = self.v4.partition_point(|a| u32::from_le_bytes(*a) < lo);
        let tail = self.v4.get(start..).unwrap_or_default();
        start..start + tail.partition_point(|a| u32::from_le_bytes(*a) <= hi)
    }

    /// Positions of the IPv6 entries with `lo <= address <= hi`.
    fn positions_v6(&self, lo: u128, hi: u128) -> Range<usize> {
        if lo > hi {
            return 0..0;
        }
        let start = self.v6.partition_point(|a| u128::from_be_bytes(*a) < lo);
        let tail = self.v6.get(start..).unwrap_or_default();
        start..start + tail.partition_point(|a| u128::from_be_bytes(*a) <= hi)
    }

    /// The IPv4 range that `lo..=hi` covers through IPv4-mapped addresses.
    fn mapped_part(lo: u128, hi: u128) -> Option<(u32, u32)> {
        let lo = lo.max(MAPPED_V4_FIRST);
        let hi = hi.min(MAPPED_V4_LAST);
        if lo > hi {
            return None;
        }
        // Both are within the mapped /96, so their low 32 bits are the
        // IPv4 addresses.
        Some((
            u32::try_from(lo - MAPPED_V4_FIRST).unwrap_or(u32::MAX),
            u32::try_from(hi - MAPPED_V4_FIRST).unwrap_or(u32::MAX),
        ))
    }

    /// Every IPv4 entry as `(address, ordinal)`, in address order (IPv4-mapped
    /// IPv6 addresses are stored as IPv4): what grouping by address walks.
    ///
    /// Unchecked: in a section that
    /// [`IndexReader::check_section`](super::IndexReader::check_section) has not
    /// passed, an ordinal may be past the segment.
    pub fn entries_v4(&self) -> impl Iterator<Item = (Ipv4Addr, u32)> + 'a {
        self.v4.iter().zip(self.v4_ordinals).map(|(a, o)| {
            (
                Ipv4Addr::from(u32::from_le_bytes(*a)),
                u32::from_le_bytes(*o),
            )
        })
    }

    /// Every IPv6 entry as `(address, ordinal)`, in address order; unchecked
    /// like [`entries_v4`](Self::entries_v4).
    pub fn entries_v6(&self) -> impl Iterator<Item = (Ipv6Addr, u32)> + 'a {
        self.v6.iter().zip(self.v6_ordinals).map(|(a, o)| {
            (
                Ipv6Addr::from(u128::from_be_bytes(*a)),
                u32::from_le_bytes(*o),
            )
        })
    }

    /// The records with an IPv4 address `lo <= a <= hi`, as numbers
    /// (`10.0.0.1` is `0x0a00_0001`; see [`Ipv4Addr::to_bits`](std::net::Ipv4Addr::to_bits)).
    pub fn range_v4(&self, lo: u32, hi: u32) -> RoaringBitmap {
        let range = self.positions_v4(lo, hi);
        let ordinals = self.v4_ordinals.get(range).unwrap_or_default();
        ordinal_set(&[ordinals], self.record_count)
    }

    /// Number of IPv4 entries with `lo <= address <= hi`.
    pub fn count_v4(&self, lo: u32, hi: u32) -> u64 {
        to_u64(self.positions_v4(lo, hi).len())
    }

    /// The records with an IPv6 address `lo <= a <= hi`, as numbers (see
    /// [`Ipv6Addr::to_bits`]), including the records with an IPv4 address
    /// whose IPv4-mapped form is in that range.
    pub fn range_v6(&self, lo: u128, hi: u128) -> RoaringBitmap {
        let range = self.positions_v6(lo, hi);
        let v6 = self.v6_ordinals.get(range).unwrap_or_default();
        let v4 = match Self::mapped_part(lo, hi) {
            Some((lo, hi)) => self
                .v4_ordinals
                .get(self.positions_v4(lo, hi))
                .unwrap_or_default(),
            None => &[],
        };
        ordinal_set(&[v6, v4], self.record_count)
    }

    /// Number of entries [`range_v6`](Self::range_v6) looks at.
    pub fn count_v6(&self, lo: u128, hi: u128) -> u64 {
        let v4 = Self::mapped_part(lo, hi).map_or(0, |(lo, hi)| self.count_v4(lo, hi));
        to_u64(self.positions_v6(lo, hi).len()) + v4
    }

    /// The records with the address `addr` (an IPv4-mapped IPv6 address is
    /// the same as its IPv4 address).
    pub fn exact(&self, addr: IpAddr) -> RoaringBitmap {
        match canonical_ip(addr) {
            IpAddr::V4(v4) => self.range_v4(v4.to_bits(), v4.to_bits()),
            IpAddr::V6(v6) => self.range_v6(v6.to_bits(), v6.to_bits()),
        }
    }

    /// Number of entries with the address `addr`.
    pub fn exact_count(&self, addr: IpAddr) -> u64 {
        match canonical_ip(addr) {
            IpAddr::V4(v4) => self.count_v4(v4.to_bits(), v4.to_bits()),
            IpAddr::V6(v6) => self.count_v6(v6.to_bits(), v6.to_bits()),
        }
    }

    /// The records with an address in the CIDR block `addr/prefix_len`:
    /// those whose first `prefix_len` bits equal `addr`'s (the other bits
    /// of `addr` are ignored).
    ///
    /// Fails if `prefix_len` is longer than 32 for IPv4 or 128 for IPv6. An
    /// IPv6 block covers IPv4 addresses through their IPv4-mapped form:
    /// `::ffff:10.0.0.0/104` is `10.0.0.0/8`, and `::/0` is everything.
    pub fn cidr(&self, addr: IpAddr, prefix_len: u8) -> Result<RoaringBitmap, IndexError> {
        Ok(match cidr_bounds(addr, prefix_len)? {
            IpBounds::V4(lo, hi) => self.range_v4(lo, hi),
            IpBounds::V6(lo, hi) => self.range_v6(lo, hi),
        })
    }

    /// Number of entries [`cidr`](Self::cidr) looks at.
    pub fn cidr_count(&self, addr: IpAddr, prefix_len: u8) -> Result<u64, IndexError> {
        Ok(match cidr_bounds(addr, prefix_len)? {
            IpBounds::V4(lo, hi) => self.count_v4(lo, hi),
            IpBounds::V6(lo, hi) => self.count_v6(lo, hi),
        })
    }
}

/// The first and last address of a CIDR block.
enum IpBounds {
    V4(u32, u32),
    V6(u128, u128),
}

fn cidr_bounds(addr: IpAddr, prefix_len: u8) -> Result<IpBounds, IndexError> {
    match addr {
        IpAddr::V4(v4) => {
            if prefix_len > 32 {
                return Err(IndexError::BadPrefixLength {
                    prefix_len,
                    family: "IPv4",
                    max: 32,
                });
            }
            // `checked_shr` is `None` for a shift of 32 (prefix /0).
            let host = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
            let lo = v4.to_bits() & !host;
            Ok(IpBounds::V4(lo, lo | host))
        }
        IpAddr::V6(v6) => {
            if prefix_len > 128 {
                return Err(IndexError::BadPrefixLength {
                    prefix_len,
                    family: "IPv6",
                    max: 128,
                });
            }
            let host = u128::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
            let lo = v6.to_bits() & !host;
            Ok(IpBounds::V6(lo, lo | host))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::testing::*;
    use crate::index::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    #[test]
    fn cidr_bounds_are_the_first_and_last_address_of_the_block() {
        let v4 = |addr: &str, prefix| match cidr_bounds(addr.parse().unwrap(), prefix) {
            Ok(IpBounds::V4(lo, hi)) => (Ipv4Addr::from(lo), Ipv4Addr::from(hi)),
            _ => panic!("{addr}/{prefix} is not an IPv4 block"),
        };
        let a = Ipv4Addr::new;
        assert_eq!(v4("10.1.2.3", 0), (a(0, 0, 0, 0), a(255, 255, 255, 255)));
        assert_eq!(v4("10.1.2.3", 8), (a(10, 0, 0, 0), a(10, 255, 255, 255)));
        assert_eq!(v4("10.1.2.3", 31), (a(10, 1, 2, 2), a(10, 1, 2, 3)));
        assert_eq!(v4("10.1.2.3", 32), (a(10, 1, 2, 3), a(10, 1, 2, 3)));
        let v6 = |addr: &str, prefix| match cidr_bounds(addr.parse().unwrap(), prefix) {
            Ok(IpBounds::V6(lo, hi)) => (lo, hi),
            _ => panic!("{addr}/{prefix} is not an IPv6 block"),
        };
        assert_eq!(v6("2001:db8::1", 0), (0, u128::MAX));
        assert_eq!(
            v6("2001:db8::1", 128),
            (0x2001_0db8 << 96 | 1, 0x2001_0db8 << 96 | 1)
        );
        assert_eq!(
            v6("2001:db8::1", 32),
            (0x2001_0db8 << 96, 0x2001_0db8 << 96 | (u128::MAX >> 32))
        );
        assert!(matches!(
            cidr_bounds("10.0.0.0".parse().unwrap(), 33),
            Err(IndexError::BadPrefixLength { max: 32, .. })
        ));
        assert!(matches!(
            cidr_bounds("::".parse().unwrap(), 129),
            Err(IndexError::BadPrefixLength { max: 128, .. })
        ));
    }

    #[test]
    fn ip_postings_store_mapped_addresses_as_ipv4() {
        let mut postings = IpPostings::default();
        postings.add("10.0.0.1".parse().unwrap(), 0);
        postings.add("::ffff:10.0.0.2".parse().unwrap(), 1);
        postings.add("::10.0.0.3".parse().unwrap(), 2);
        assert_eq!(postings.v4, [(0x0a00_0001, 0), (0x0a00_0002, 1)]);
        assert_eq!(postings.v6, [(0x0a00_0003, 2)]);
        assert_eq!(
            canonical_ip("::ffff:1.2.3.4".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4))
        );
    }

    #[test]
    fn ip_entries_list_every_address_with_its_ordinal_in_address_order() {
        let a = Ipv4Addr::new;
        let v4s = [(a(9, 0, 0, 1), 3), (a(10, 0, 0, 0), 1), (a(10, 0, 0, 0), 2)];
        let v6s = [(Ipv6Addr::from(1u128), 0)];
        let bytes = file_with(4, KIND_IP, IndexField::SourceIp, raw_ip(&v4s, &v6s));
        let r = IndexReader::parse(&bytes).unwrap();
        let ip = r.ip(IndexField::SourceIp).unwrap();
        assert_eq!(ip.entries_v4().collect::<Vec<_>>(), v4s);
        assert_eq!(ip.entries_v6().collect::<Vec<_>>(), v6s);
    }

    #[test]
    fn ip_index_rules() {
        let a = Ipv4Addr::new;
        let check = |v4s: &[(Ipv4Addr, u32)], v6s: &[(Ipv6Addr, u32)]| {
            let bytes = file_with(4, KIND_IP, IndexField::SourceIp, raw_ip(v4s, v6s));
            let r = IndexReader::open(&bytes).unwrap();
            exercise_unchecked(&r);
            let checked = r.check_section(2);
            assert_eq!(checked.is_ok(), IndexReader::parse(&bytes).is_ok());
            checked
        };
        let six = |bits: u128| Ipv6Addr::from(bits);
        check(
            &[
                (a(9, 255, 255, 255), 3),
                (a(10, 0, 0, 0), 1),
                (a(10, 0, 0, 0), 2),
            ],
            &[(six(1), 0), (six(0x2001 << 112), 0)],
        )
        .unwrap();
        let refused = |v4s: &[(Ipv4Addr, u32)], v6s: &[(Ipv6Addr, u32)]| {
            assert!(matches!(
                check(v4s, v6s),
                Err(IndexError::BadIpIndex { .. })
            ));
        };
        // Sorted by the address as a number, not by its stored bytes.
        refused(&[(a(10, 0, 0, 0), 0), (a(9, 255, 255, 255), 0)], &[]);
        refused(&[(a(10, 0, 0, 0), 1), (a(10, 0, 0, 0), 1)], &[]);
        refused(&[(a(10, 0, 0, 0), 4)], &[]);
        refused(&[], &[(six(2), 0), (six(1), 0)]);
        refused(&[], &[(six(1), 0), (six(1 << 120), 4)]);
        // IPv4-mapped addresses belong in the IPv4 array.
        refused(&[], &[(a(10, 0, 0, 1).to_ipv6_mapped(), 0)]);
        refused(&[], &[(six(0xffff_ffff_ffff), 0)]);
        check(
            &[],
            &[(six(0xfffe_ffff_ffff), 0), (six(0x1_0000_0000_0000), 1)],
        )
        .unwrap();
        let mut longer = raw_ip(&[(a(1, 2, 3, 4), 0)], &[]);
        longer.push(0);
        let mut more = raw_ip(&[(a(1, 2, 3, 4), 0)], &[]);
        more[4] = 1;
        for data in [longer, more, vec![0; 7]] {
            let bytes = file_with(4, KIND_IP, IndexField::SourceIp, data);
            let r = IndexReader::open(&bytes).unwrap();
            assert!(matches!(
                r.check_section(2),
                Err(IndexError::BadIpIndex { .. })
            ));
            exercise_unchecked(&r);
        }
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let mut m = Model::new(vec![0; 4]);
        let mapped = |a, b, c, d| IpAddr::V6(Ipv4Addr::new(a, b, c, d).to_ipv6_mapped());
        m.add_ip(IndexField::SourceIp, mapped(10, 1, 2, 3), 0);
        m.add_ip(IndexField::SourceIp, v4(10, 1, 2, 3), 1);
        m.add_ip(IndexField::SourceIp, v4(192, 168, 0, 1), 2);
        m.add_ip(IndexField::SourceIp, v6(0x2001_0db8 << 96 | 5), 3);
        let bytes = m.encode();
        let r = IndexReader::parse(&bytes).unwrap();
        let ip = r.ip(IndexField::SourceIp).unwrap();
        assert_eq!((ip.len_v4(), ip.len_v6()), (3, 1));
        let list = |b: RoaringBitmap| b.iter().collect::<Vec<_>>();
        assert_eq!(list(ip.cidr(v4(10, 0, 0, 0), 8).unwrap()), [0, 1]);
        assert_eq!(list(ip.exact(v4(10, 1, 2, 3))), [0, 1]);
        assert_eq!(list(ip.exact(mapped(10, 1, 2, 3))), [0, 1]);
        assert_eq!(list(ip.cidr(mapped(10, 0, 0, 0), 104).unwrap()), [0, 1]);
        assert_eq!(list(ip.cidr(mapped(0, 0, 0, 0), 96).unwrap()), [0, 1, 2]);
        assert_eq!(list(ip.cidr(v6(0), 0).unwrap()), [0, 1, 2, 3]);
        assert_eq!(list(ip.cidr(v4(0, 0, 0, 0), 0).unwrap()), [0, 1, 2]);
        assert_eq!(list(ip.cidr(v6(0x2001_0db8 << 96), 32).unwrap()), [3]);
        assert_eq!(list(ip.cidr(v6(0x2001_0db8 << 96 | 5), 128).unwrap()), [3]);
        assert_eq!(list(ip.cidr(v4(192, 168, 0, 1), 32).unwrap()), [2]);
        assert_eq!(
            list(ip.cidr(v4(192, 168, 0, 2), 32).unwrap()),
            Vec::<u32>::new()
        );
        assert_eq!(ip.cidr_count(v4(10, 0, 0, 0), 8).unwrap(), 2);
        assert_eq!(ip.exact_count(mapped(192, 168, 0, 1)), 1);
        // Host bits of the query address are ignored.
        assert_eq!(list(ip.cidr(v4(10, 99, 99, 99), 8).unwrap()), [0, 1]);
        assert!(matches!(
            ip.cidr(v4(10, 0, 0, 0), 33),
            Err(IndexError::BadPrefixLength {
                prefix_len: 33,
                max: 32,
                ..
            })
        ));
        let err = ip.cidr(v6(0), 129).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CIDR prefix /129 is too long for IPv6: the longest is /128"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn ip_queries_match_a_naive_model(
            entries in proptest::collection::vec((ip_strategy(), 0u32..64), 0..200),
            queries in proptest::collection::vec((ip_strategy(), 0u8..=130), 1..40),
        ) {
            let mut m = Model::new(vec![0; 64]);
            m.ips.entry(IndexField::SourceIp).or_default();
            for &(addr, o) in &entries {
                m.add_ip(IndexField::SourceIp, addr, o);
            }
            let bytes = m.encode();
            let r = IndexReader::parse(&bytes).unwrap();
            let ip = r.ip(IndexField::SourceIp).unwrap();
            let pairs = m.ip_pairs(IndexField::SourceIp);
            for &(addr, prefix) in &queries {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if prefix > max {
                    let too_long = matches!(
                        ip.cidr(addr, prefix),
                        Err(IndexError::BadPrefixLength { .. })
                    );
                    prop_assert!(too_long);
                    continue;
                }
                let (want, count) = naive_cidr(&pairs, addr, prefix);
                prop_assert_eq!(ip.cidr(addr, prefix).unwrap(), want);
                prop_assert_eq!(ip.cidr_count(addr, prefix).unwrap(), count);
            }
            let probes: Vec<IpAddr> = queries.iter().map(|&(a, _)| a).collect();
            check_ip_queries(&ip, &pairs, &probes);
        }
    }
}
