//! Labels for source addresses: a user-supplied map from networks (CIDR)
//! to labels such as a country code or an AS number, read from a CSV file
//! with the header `network,label`.
//!
//! A lookup returns the label of the most specific network holding the
//! address (longest prefix), so `10.0.0.0/8,corp` and `10.9.0.0/16,lab`
//! label `10.9.1.1` as `lab`. IPv4-mapped IPv6 addresses count as IPv4.
//! The map keeps one hash table per prefix length in use, so a lookup
//! costs at most one probe per distinct prefix length in the file.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;

use sealog::query::{IpFilter, IpRange, canonical};

use crate::error::{Error, Result};

/// Networks and their labels (see the module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelMap {
    v4: HashMap<(u8, u32), String>,
    v6: HashMap<(u8, u128), String>,
    v4_prefixes: Vec<u8>,
    v6_prefixes: Vec<u8>,
    len: usize,
}

impl LabelMap {
    /// Reads a label file: a header line `network,label`, then one network
    /// (`203.0.113.0/24`, `2001:db8::/32`, or an address alone) and its
    /// label per line. A network given twice is an error naming both lines.
    pub fn load(path: &Path) -> Result<LabelMap> {
        let bad = |line: Option<u64>, message: String| Error::Labels {
            file: path.to_path_buf(),
            line,
            message,
        };
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            op: "read the label file",
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .from_reader(file);
        let headers = reader
            .headers()
            .map_err(|e| bad(Some(1), format!("cannot read the header line: {e}")))?;
        if headers.len() != 2
            || headers.get(0) != Some("network")
            || headers.get(1) != Some("label")
        {
            return Err(bad(
                Some(1),
                format!(
                    "the header line is `{}`, not `network,label`",
                    headers.iter().collect::<Vec<_>>().join(",")
                ),
            ));
        }
        let mut map = LabelMap::default();
        let mut first_line: HashMap<(bool, u8, u128), u64> = HashMap::new();
        for row in reader.records() {
            let row = row.map_err(|e| {
                let line = e.position().map(|p| p.line());
                bad(line, e.to_string())
            })?;
            let line = row.position().map_or(0, |p| p.line());
            let (Some(network), Some(label), 2) = (row.get(0), row.get(1), row.len()) else {
                return Err(bad(
                    Some(line),
                    format!("expected 2 fields, `network,label`; found {}", row.len()),
                ));
            };
            if label.is_empty() || label.len() > 128 || label.chars().any(char::is_control) {
                return Err(bad(
                    Some(line),
                    format!(
                        "the label of `{network}` is empty, longer than 128 bytes or holds control characters"
                    ),
                ));
            }
            let filter = IpFilter::parse(network).map_err(|e| bad(Some(line), e.to_string()))?;
            let key = match filter.range() {
                IpRange::V4(lo, hi) => (false, (32 - (hi - lo).count_ones()) as u8, u128::from(lo)),
                IpRange::V6(lo, hi) => (true, (128 - (hi - lo).count_ones()) as u8, lo),
            };
            if let Some(earlier) = first_line.insert(key, line) {
                return Err(bad(
                    Some(line),
                    format!("the network `{network}` is already labelled on line {earlier}"),
                ));
            }
            map.insert(key, label.to_owned());
        }
        map.finish();
        Ok(map)
    }

    fn insert(&mut self, (v6, prefix, network): (bool, u8, u128), label: String) {
        if v6 {
            self.v6.insert((prefix, network), label);
        } else {
            // The key came from an IPv4 range, so it fits in 32 bits.
            self.v4
                .insert((prefix, u32::try_from(network).unwrap_or(u32::MAX)), label);
        }
        self.len += 1;
    }

    /// Lists the prefix lengths in use, longest first, once every network
    /// is in (recomputing them per line would be quadratic in the file).
    fn finish(&mut self) {
        let longest_first = |keys: &mut dyn Iterator<Item = u8>| {
            let set: BTreeSet<u8> = keys.collect();
            set.into_iter().rev().collect::<Vec<u8>>()
        };
        self.v4_prefixes = longest_first(&mut self.v4.keys().map(|k| k.0));
        self.v6_prefixes = longest_first(&mut self.v6.keys().map(|k| k.0));
    }

    /// The label of the most specific network holding `ip`, if any.
    pub fn lookup(&self, ip: IpAddr) -> Option<&str> {
        match canonical(ip) {
            IpAddr::V4(v4) => {
                let n = u32::from(v4);
                self.v4_prefixes.iter().find_map(|&p| {
                    let mask = if p == 0 {
                        0
                    } else {
                        u32::MAX << (32 - u32::from(p))
                    };
                    self.v4.get(&(p, n & mask)).map(String::as_str)
                })
            }
            IpAddr::V6(v6) => {
                let n = u128::from(v6);
                self.v6_prefixes.iter().find_map(|&p| {
                    let mask = if p == 0 {
                        0
                    } else {
                        u128::MAX << (128 - u32::from(p))
                    };
                    self.v6.get(&(p, n & mask)).map(String::as_str)
                })
            }
        }
    }

    /// How many networks the map holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the map holds no network.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.csv");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_most_specific_network_labels_an_address() {
        let (_d, path) = write(
            "network,label\n# corporate\n10.0.0.0/8,corp\n10.9.0.0/16,lab\n\
             2001:db8::/32,AS64500\n198.51.100.7,single\n",
        );
        let map = LabelMap::load(&path).unwrap();
        assert_eq!(map.len(), 4);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(map.lookup(ip("10.9.1.1")), Some("lab"));
        assert_eq!(map.lookup(ip("10.8.1.1")), Some("corp"));
        assert_eq!(map.lookup(ip("::ffff:10.9.1.1")), Some("lab"));
        assert_eq!(map.lookup(ip("2001:db8:1::5")), Some("AS64500"));
        assert_eq!(map.lookup(ip("198.51.100.7")), Some("single"));
        assert_eq!(map.lookup(ip("198.51.100.8")), None);
        assert_eq!(map.lookup(ip("11.0.0.1")), None);
    }

    #[test]
    fn a_bad_label_file_is_refused_naming_the_line() {
        for (text, line, needle) in [
            ("net,label\n10.0.0.0/8,x\n", 1, "header"),
            ("network,label\n10.0.0.0/8,x\n10.0.0.0/33,y\n", 3, "prefix"),
            ("network,label\n10.0.0.0/8,x\n10.0.0.0/8,y\n", 3, "line 2"),
            ("network,label\n10.0.0.0/8,\n", 2, "empty"),
        ] {
            let (_d, path) = write(text);
            let err = LabelMap::load(&path).unwrap_err();
            match &err {
                Error::Labels {
                    line: Some(l),
                    message,
                    ..
                } => {
                    assert_eq!(*l, line, "{text}: {err}");
                    assert!(message.contains(needle), "{text}: {err}");
                }
                other => panic!("{text}: {other}"),
            }
        }
    }
}
