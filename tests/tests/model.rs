//! The store against a model: a `Vec` of events and a chain recomputed from
//! the stored bytes. Random batches, random reopen and roll points, random
//! segment sizes; reading back must equal the model, the chain head must
//! equal the model's, and verification must pass.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use proptest::prelude::*;
use sealog::format::{chain, merkle};
use sealog::{Durability, Error, Store};
use sealog_tests::{event, small_options};

#[derive(Clone, Debug)]
enum Step {
    /// A batch of `n` events starting at generator index `first`.
    Batch { first: u64, n: u64, buffered: bool },
    /// Close and reopen the store.
    Reopen { close: bool },
    /// Seal the active segment now.
    Roll,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u64..10_000, 1u64..40, any::<bool>())
            .prop_map(|(first, n, buffered)| Step::Batch { first, n, buffered }),
        1 => any::<bool>().prop_map(|close| Step::Reopen { close }),
        1 => Just(Step::Roll),
    ]
}

fn check(store: &Store, model: &[sealog::Event]) -> Result<(), TestCaseError> {
    prop_assert_eq!(store.len(), model.len() as u64);
    let mut expected_chain = chain::genesis(&store.store_id());
    for (seq, want) in model.iter().enumerate() {
        let bytes = store.get_raw(seq as u64).unwrap().unwrap();
        let record = store.get(seq as u64).unwrap().unwrap();
        prop_assert_eq!(record.seq, seq as u64);
        prop_assert_eq!(&record.event, want);
        expected_chain = chain::link(&expected_chain, &merkle::leaf_hash(&bytes));
    }
    prop_assert_eq!(store.head().chain_head, expected_chain);
    let report = store.verify().unwrap();
    prop_assert_eq!(report.records, model.len() as u64);
    prop_assert_eq!(report.chain_head, expected_chain);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_a_vec_of_events(
        segment_size in prop_oneof![Just(4u64 << 10), Just(8 << 10), Just(20 << 10), Just(64 << 10)],
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = || small_options(segment_size);
        let mut store = Store::open(dir.path(), options()).unwrap();
        let mut model: Vec<sealog::Event> = Vec::new();
        for step in steps {
            match step {
                Step::Batch { first, n, buffered } => {
                    let batch: Vec<_> = (first..first + n).map(event).collect();
                    let durability = if buffered { Durability::Buffered } else { Durability::Group };
                    match store.append_batch_with(batch.clone(), durability) {
                        Ok(receipts) => {
                            prop_assert_eq!(receipts.len() as u64, n);
                            prop_assert_eq!(receipts[0].seq, model.len() as u64);
                            model.extend(batch);
                        }
                        // A batch larger than a segment is refused whole.
                        Err(Error::BatchTooLarge { .. }) => {}
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                }
                Step::Reopen { close } => {
                    if close {
                        store.close().unwrap();
                    } else {
                        drop(store);
                    }
                    store = Store::open(dir.path(), options()).unwrap();
                    prop_assert!(store.recovery_report().is_clean(), "{:?}", store.recovery_report());
                    check(&store, &model)?;
                }
                Step::Roll => {
                    store.roll().unwrap();
                }
            }
        }
        store.wait_sealed().unwrap();
        check(&store, &model)?;
        store.close().unwrap();
        let reopened = Store::open(dir.path(), options()).unwrap();
        check(&reopened, &model)?;
    }
}
