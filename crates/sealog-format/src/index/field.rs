//! The fields of an audit record that a sidecar can index, named by the
//! ids stored in the file, and [`PerField`], which keeps one value per
//! field this version knows.
//!
//! A field id is the same in every section kind: the `field` of a section
//! table entry. Ids this version does not know are skipped, so that later
//! versions can index new fields without changing the format version.

use std::fmt;

/// A field of an audit record that sidecars index.
///
/// The discriminant is the field id stored in the file. Readers skip
/// sections of ids they do not know, so new fields can be added later.
///
/// Any field can have a section of any index kind; sealog indexes `actor`,
/// `action`, `resource_type`, `outcome` and `tenant` with term dictionaries,
/// `request_id` and `resource_id` with hashed indexes, and `source_ip` with
/// an IP index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
#[repr(u16)]
pub enum IndexField {
    /// Who acted.
    Actor = 1,
    /// What was done.
    Action = 2,
    /// What it was done to.
    Resource = 3,
    /// The type of that resource.
    ResourceType = 4,
    /// How it ended (success, denied, error, ...).
    Outcome = 5,
    /// The tenant the record belongs to.
    Tenant = 6,
    /// The client's IP address.
    SourceIp = 7,
    /// The request id that produced the record.
    RequestId = 8,
    /// The id of the resource, without its type.
    ResourceId = 9,
}

impl IndexField {
    /// Every field this version knows, in id order.
    pub const ALL: &'static [IndexField] = &[
        IndexField::Actor,
        IndexField::Action,
        IndexField::Resource,
        IndexField::ResourceType,
        IndexField::Outcome,
        IndexField::Tenant,
        IndexField::SourceIp,
        IndexField::RequestId,
        IndexField::ResourceId,
    ];

    /// The field id stored in the file.
    pub const fn id(self) -> u16 {
        self as u16
    }

    /// The field with id `id`, or `None` for an id this version does not know.
    pub const fn from_u16(id: u16) -> Option<IndexField> {
        Some(match id {
            1 => IndexField::Actor,
            2 => IndexField::Action,
            3 => IndexField::Resource,
            4 => IndexField::ResourceType,
            5 => IndexField::Outcome,
            6 => IndexField::Tenant,
            7 => IndexField::SourceIp,
            8 => IndexField::RequestId,
            9 => IndexField::ResourceId,
            _ => return None,
        })
    }

    /// The field's name, in snake case (`"resource_type"`).
    pub const fn name(self) -> &'static str {
        match self {
            IndexField::Actor => "actor",
            IndexField::Action => "action",
            IndexField::Resource => "resource",
            IndexField::ResourceType => "resource_type",
            IndexField::Outcome => "outcome",
            IndexField::Tenant => "tenant",
            IndexField::SourceIp => "source_ip",
            IndexField::RequestId => "request_id",
            IndexField::ResourceId => "resource_id",
        }
    }

    /// Position of the field in per-field arrays (`id - 1`).
    fn slot(self) -> usize {
        usize::from(self.id()).saturating_sub(1)
    }
}

impl fmt::Display for IndexField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of fields this version knows (ids `1..=KNOWN_FIELDS`).
pub(super) const KNOWN_FIELDS: usize = IndexField::ALL.len();

/// One optional value per field this version knows, such as the bytes of
/// each field's section of one index kind.
///
/// Fields with ids this version does not know have no place: their
/// sections are skipped.
#[derive(Debug, Clone, Copy)]
pub(super) struct PerField<T>([Option<T>; KNOWN_FIELDS]);

impl<T: Copy> PerField<T> {
    /// No value for any field.
    pub(super) const fn new() -> Self {
        PerField([None; KNOWN_FIELDS])
    }

    /// Sets the value of `field`, replacing any earlier one; does nothing
    /// for an unknown field (`None`).
    pub(super) fn set(&mut self, field: Option<IndexField>, value: T) {
        if let Some(slot) = field.and_then(|field| self.0.get_mut(field.slot())) {
            *slot = Some(value);
        }
    }

    /// The value of `field`, if one was set.
    pub(super) fn get(&self, field: IndexField) -> Option<T> {
        self.0.get(field.slot()).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_ids() {
        for (i, &field) in IndexField::ALL.iter().enumerate() {
            assert_eq!(field.id() as usize, i + 1);
            assert_eq!(IndexField::from_u16(field.id()), Some(field));
        }
        assert_eq!(IndexField::ALL.len(), KNOWN_FIELDS);
        assert_eq!(IndexField::from_u16(0), None);
        assert_eq!(IndexField::from_u16(9), Some(IndexField::ResourceId));
        assert_eq!(IndexField::from_u16(10), None);
        assert_eq!(IndexField::ResourceId.name(), "resource_id");
        assert_eq!(IndexField::ResourceType.name(), "resource_type");
        assert_eq!(IndexField::SourceIp.to_string(), "source_ip");
    }

    #[test]
    fn per_field_keeps_one_value_per_known_field_and_skips_unknown_ones() {
        let mut map = PerField::new();
        for &field in IndexField::ALL {
            assert_eq!(map.get(field), None);
        }
        for &field in IndexField::ALL {
            map.set(Some(field), field.id() * 10);
        }
        map.set(IndexField::from_u16(40), 7);
        map.set(Some(IndexField::Tenant), 1);
        for &field in IndexField::ALL {
            let want = if field == IndexField::Tenant {
                1
            } else {
                field.id() * 10
            };
            assert_eq!(map.get(field), Some(want), "{field}");
        }
    }
}
