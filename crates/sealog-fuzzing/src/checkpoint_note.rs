//! `checkpoint_note`: signed notes, checkpoints, and key texts.
//!
//! The input is parsed as a signed note ([`Note::from_bytes`]), its text as
//! a checkpoint, and the whole as a checkpoint signed by the fixed fuzz key
//! ([`crate::fuzz_key`]); every line is also parsed as a verifier key and
//! as a signing key. Properties:
//!
//! - a note that parses prints to a text that parses to the same note;
//! - a checkpoint that parses prints to a text that parses to the same
//!   checkpoint, and signing it with the fuzz key then opening it with the
//!   fuzz key's verifier gives it back;
//! - a key that parses prints to a text that parses to the same key;
//! - a note that verifies under the fuzz key opens as a checkpoint only if
//!   its text parses as one.

use sealog_format::checkpoint::{self, Checkpoint};
use sealog_format::note::{self, Note, SigningKey, VerifierKey};

/// The target body.
pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let key = crate::fuzz_key();
    let verifier = key.verifier();
    if let Ok(parsed) = Note::from_bytes(data) {
        let again = Note::parse(&parsed.to_text());
        assert_eq!(
            again.as_ref().ok(),
            Some(&parsed),
            "a note changes when printed"
        );
        let verified = note::open(&parsed, std::slice::from_ref(&verifier));
        if let Ok(body) = Checkpoint::parse(parsed.text()) {
            checkpoint_round_trip(&body, &key, &verifier);
        }
        if let Ok(text) = std::str::from_utf8(data) {
            let opened = checkpoint::open(text, &verifier);
            if let Ok(opened) = &opened {
                assert!(
                    verified.is_ok(),
                    "a checkpoint opens but its note does not verify"
                );
                assert_eq!(Checkpoint::parse(parsed.text()).as_ref().ok(), Some(opened));
            }
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(body) = Checkpoint::parse(text) {
        checkpoint_round_trip(&body, &key, &verifier);
    }
    for line in text.lines().take(16) {
        if let Ok(k) = VerifierKey::parse(line) {
            let again = VerifierKey::parse(&k.to_text());
            assert_eq!(again.ok(), Some(k), "a verifier key changes when printed");
        }
        if let Ok(k) = SigningKey::parse(line) {
            let again = SigningKey::parse(&k.to_text());
            assert_eq!(
                again.ok().map(|a| a.verifier()),
                Some(k.verifier()),
                "a signing key changes when printed"
            );
        }
    }
}

fn checkpoint_round_trip(body: &Checkpoint, key: &SigningKey, verifier: &VerifierKey) {
    let printed = body.to_text();
    assert_eq!(
        Checkpoint::parse(&printed).ok().as_ref(),
        Some(body),
        "a checkpoint changes when printed"
    );
    let mut ours = body.clone();
    ours.origin = key.name().to_owned();
    if let Ok(signed) = checkpoint::sign(&ours, key) {
        match checkpoint::open(&signed, verifier) {
            Ok(opened) => assert_eq!(opened, ours, "a signed checkpoint opens differently"),
            Err(e) => panic!("a checkpoint we signed does not open: {e}"),
        }
    }
}
