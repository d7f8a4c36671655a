//! Test support shared by the unit tests of the sidecar module: a naive
//! model of a sidecar's content and its strategies, checks of a reader
//! against the model, and an independent writer of crafted files that
//! follows `docs/format.md` rather than the encoder's code.

mod checks;
mod craft;
mod model;

pub(crate) use checks::*;
pub(crate) use craft::*;
pub(crate) use model::*;

// What most tests use besides the module's own items.
pub(crate) use roaring::RoaringBitmap;
pub(crate) use std::net::IpAddr;
