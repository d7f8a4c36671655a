//! Tests of the mapped sidecar: sections checked on first use, lookups
//! by blocks, advice, rebuilds and older layouts.

use super::*;

#[test]
fn advised_ranges_close_together_are_asked_for_in_one_call() {
    assert_eq!(merge_ranges(Vec::new(), 16), Vec::new());
    assert_eq!(
        merge_ranges(vec![(100, 110), (0, 10), (20, 30), (25, 28), (60, 70)], 10),
        vec![(0, 30), (60, 70), (100, 110)]
    );
    // Exactly `gap` apart joins; one byte more does not.
    assert_eq!(merge_ranges(vec![(0, 10), (20, 30)], 10), vec![(0, 30)]);
    assert_eq!(
        merge_ranges(vec![(0, 10), (21, 30)], 10),
        vec![(0, 10), (21, 30)]
    );
}
use crate::Store;

/// A closed store in `dir` of `events` generated events (workload
/// `seed`) appended in batches of `batch`, every segment sealed; its
/// sealed segments.
fn sealed_store(
    dir: &Path,
    segment_size: u64,
    seed: u64,
    events: u64,
    batch: usize,
) -> Vec<crate::image::SealedSegmentInfo> {
    let store = crate::image::workload_store(dir, segment_size, seed, events, batch);
    let sealed = crate::image::sealed_segments(&store);
    store.close().unwrap();
    sealed
}

/// A store of sealed segments whose columns span several blocks.
fn blocked_store(dir: &Path) -> Vec<crate::image::SealedSegmentInfo> {
    sealed_store(dir, 1 << 20, 11, 8_000, 500)
}

/// The first segment of a [`blocked_store`] in `dir`: its file, its
/// checked image, its identity and its sidecar's bytes.
fn first_blocked(
    dir: &Path,
) -> (
    crate::image::SealedSegmentInfo,
    crate::image::SealedImage,
    SegmentIdentity,
    Vec<u8>,
) {
    let seg = blocked_store(dir).swap_remove(0);
    let bytes = std::fs::read(&seg.path).unwrap();
    let image = crate::image::check_sealed(&seg.name, &bytes).unwrap();
    let id = identity(&image.header, &image.footer);
    let sidecar = std::fs::read(seg.path.with_extension("idx")).unwrap();
    (seg, image, id, sidecar)
}

#[test]
fn a_request_id_search_checks_only_the_hashed_blocks_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, image, id, sidecar) = first_blocked(dir.path());
    let reader = IndexReader::parse(&sidecar).unwrap();
    let field = IndexField::RequestId;
    let blocks = reader.hashed_block_count(field);
    assert!(blocks >= 6, "{blocks} blocks of request ids");
    let whole = reader.section_for(SectionKind::Hashed, field.id()).unwrap();
    let at = reader.section(whole).unwrap().offset as usize;
    let index = reader.hashed(field).unwrap();
    // Request ids of the segment, each with the blocks holding its key.
    let store = Store::open_read_only(dir.path()).unwrap();
    let ids: Vec<String> = store
        .scan(..image.header.first_seq + image.offsets.len() as u64)
        .filter_map(|r| r.unwrap().event.request_id)
        .collect();
    drop(store);
    assert!(ids.len() > 100);
    let key_block = |term: &str| {
        let key = sealog_format::index::term_key(term.as_bytes());
        let mut blocks = Vec::new();
        reader
            .hashed_candidates_checked(field, term.as_bytes(), &mut |b| {
                blocks.push(b);
                Ok(())
            })
            .unwrap();
        (key, blocks)
    };
    // Damage one block of keys that some id's lookup reads and others'
    // do not.
    let (_, first) = key_block(&ids[0]);
    let bad = *first.last().unwrap();
    assert!(bad > 0);
    let spared = ids
        .iter()
        .find(|i| !key_block(i).1.contains(&bad))
        .expect("an id whose lookup avoids the damaged block");
    let mut damaged = sidecar.clone();
    damaged[at + bad as usize * 4096 + 8] ^= 0x04;
    let s = Sidecar::open("x.idx".into(), Mapped::from_vec(damaged), &id).unwrap();
    let got = s.exact(ExactField::RequestId, spared.as_bytes()).unwrap();
    assert_eq!(got, index.candidates(spared.as_bytes()));
    assert!(!got.is_empty());
    assert!(
        s.checked[whole].get().is_none(),
        "the whole hashed index was checked"
    );
    let err = s
        .exact(ExactField::RequestId, ids[0].as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "block #{bad} of the hashed index of field request_id"
        )),
        "{err}"
    );
    // A store reading that sidecar answers as before (from the records
    // of the damaged segment), and verification names the file.
    let query = crate::query::Query {
        request_id: Some(ids[0].clone()),
        limit: 100,
        ..crate::query::Query::default()
    };
    let want = Store::open_read_only(dir.path())
        .unwrap()
        .query(&query)
        .unwrap()
        .records;
    assert!(!want.is_empty());
    let mut on_disk = sidecar.clone();
    on_disk[at + bad as usize * 4096 + 8] ^= 0x04;
    std::fs::write(seg.path.with_extension("idx"), &on_disk).unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(store.query(&query).unwrap().records, want);
    drop(store);
    let Err(crate::Error::Corruption(c)) = crate::verify_dir(dir.path()) else {
        panic!("a damaged hashed block verified");
    };
    assert!(
        c.to_string().contains(&seg.name.replace(".seg", ".idx")),
        "{c}"
    );

    // Damaged block checksums: the whole index is checked instead, and
    // answers.
    let crcs = reader
        .section(reader.hashed_blocks_section(field).unwrap())
        .unwrap();
    let mut damaged = sidecar.clone();
    damaged[crcs.offset as usize + 8 + 4 * 2] ^= 0x01;
    let s = Sidecar::open("x.idx".into(), Mapped::from_vec(damaged), &id).unwrap();
    let got = s.exact(ExactField::RequestId, ids[0].as_bytes()).unwrap();
    assert_eq!(got, index.candidates(ids[0].as_bytes()));
    assert!(s.checked[whole].get().is_some_and(Result::is_ok));
}

#[test]
fn an_actor_lookup_checks_only_the_dictionary_blocks_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, _, id, sidecar) = first_blocked(dir.path());
    let reader = IndexReader::parse(&sidecar).unwrap();
    let field = IndexField::Actor;
    let blocks = reader.dict_block_count(field);
    assert!(blocks >= 4, "{blocks} blocks of actors");
    let whole = reader
        .section_for(SectionKind::TermDict, field.id())
        .unwrap();
    let at = reader.section(whole).unwrap().offset as usize;
    let dict = reader.field(field).unwrap();
    let read_by = |term: &[u8]| {
        let mut read = Vec::new();
        reader
            .dict_term_checked(field, term, &mut |b| {
                read.push(b);
                Ok(())
            })
            .unwrap();
        read
    };
    // Damage the last block one actor's lookup reads (its bitmap's, or
    // its entry's), which another actor's lookup does not read.
    let first = dict.iter().next().unwrap();
    let bad = *read_by(first.term).last().unwrap();
    assert!(bad > 0);
    let spared = dict
        .iter()
        .find(|e| !read_by(e.term).contains(&bad))
        .expect("an actor whose lookup avoids the damaged block");
    let mut damaged = sidecar.clone();
    damaged[at + bad as usize * 4096 + 9] ^= 0x04;
    let s = Sidecar::open("x.idx".into(), Mapped::from_vec(damaged.clone()), &id).unwrap();
    let lookup = |term: &[u8]| s.dict(DictField::Actor, &TermSelect::Exact(term));
    assert_eq!(
        lookup(spared.term).unwrap(),
        dict.bitmap(spared.index).unwrap()
    );
    assert!(
        s.checked[whole].get().is_none(),
        "the whole dictionary was checked"
    );
    let err = lookup(first.term).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "block #{bad} of the term dictionary of field actor"
        )),
        "{err}"
    );
    // A store reading that sidecar answers as before (from the records
    // of the damaged segment), and verification names the file.
    let actor = String::from_utf8(first.term.to_vec()).unwrap();
    let (id_part, kind) = actor.split_once('\0').unwrap();
    let query = crate::query::Query {
        actor: Some(crate::query::ActorFilter::parse(&format!(
            "{kind}:{id_part}"
        ))),
        limit: 10_000,
        ..crate::query::Query::default()
    };
    let want = Store::open_read_only(dir.path())
        .unwrap()
        .query(&query)
        .unwrap()
        .records;
    assert!(!want.is_empty());
    std::fs::write(seg.path.with_extension("idx"), &damaged).unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(store.query(&query).unwrap().records, want);
    assert!(store.stats().index_rebuilds > 0);
    drop(store);
    let Err(crate::Error::Corruption(c)) = crate::verify_dir(dir.path()) else {
        panic!("a damaged dictionary block verified");
    };
    assert!(
        c.to_string().contains(&seg.name.replace(".seg", ".idx")),
        "{c}"
    );
}

#[test]
fn a_term_the_filter_lacks_is_answered_without_its_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, id, sidecar) = first_blocked(dir.path());
    let reader = IndexReader::parse(&sidecar).unwrap();
    let field = IndexField::Actor;
    let filter_at = reader.term_filter_section(field).expect("a term filter");
    let dict_at = reader
        .section_for(SectionKind::TermDict, field.id())
        .unwrap();
    let dict = reader.field(field).unwrap();
    let present = dict.iter().nth(3).unwrap();
    let absent = b"nobody\0user";
    assert!(dict.find(absent).is_none());
    let lookup = |s: &Sidecar, term: &[u8]| s.dict(DictField::Actor, &TermSelect::Exact(term));

    // A term the filter may hold goes to the dictionary: the filter's
    // answer is not trusted, so it is not checked.
    let s = Sidecar::open("x.idx".into(), Mapped::from_vec(sidecar.clone()), &id).unwrap();
    assert!(!lookup(&s, present.term).unwrap().is_empty());
    assert!(
        s.checked[filter_at].get().is_none(),
        "the filter was checked"
    );

    // An absence is trusted once the filter is checked.
    let s = Sidecar::open("x.idx".into(), Mapped::from_vec(sidecar.clone()), &id).unwrap();
    assert!(lookup(&s, absent).unwrap().is_empty());
    assert!(s.checked[filter_at].get().is_some());
    assert!(
        s.checked[dict_at].get().is_none(),
        "the dictionary was checked"
    );
    let want = dict.bitmap(present.index).unwrap();
    assert_eq!(lookup(&s, present.term).unwrap(), want);
    // Found through the dictionary's block checksums: the blocks it
    // read were checked, not the whole dictionary.
    let blocks_at = reader.dict_blocks_section(field).expect("block checksums");
    assert!(s.checked[blocks_at].get().is_some());
    assert!(s.checked[dict_at].get().is_none());
    // A prefix reads the whole dictionary, and checks it.
    let prefix = &present.term[..3];
    let by_prefix = s
        .dict(DictField::Actor, &TermSelect::Prefix(prefix))
        .unwrap();
    assert!(by_prefix.is_superset(&want));
    assert!(s.checked[dict_at].get().is_some());

    // A damaged filter: the dictionary answers, as without a filter.
    let section = reader.section(filter_at).unwrap();
    let mut damaged = sidecar.clone();
    damaged[section.offset as usize + section.len as usize / 2] ^= 0x08;
    let s = Sidecar::open("x.idx".into(), Mapped::from_vec(damaged), &id).unwrap();
    assert!(lookup(&s, absent).unwrap().is_empty());
    assert!(s.checked[blocks_at].get().is_some());
    assert_eq!(lookup(&s, present.term).unwrap(), want);

    // Damage that drops a present term's hash makes the filter say it is
    // absent: the check refuses that, and the dictionary finds the term.
    let hash = sealog_format::index::filter_hash(present.term);
    let hashes = section.offset as usize + 8..(section.offset + section.len) as usize;
    let at = hashes.start
        + sidecar[hashes.clone()]
            .chunks_exact(4)
            .position(|h| u32::from_le_bytes(h.try_into().unwrap()) == hash)
            .expect("the present term's hash")
            * 4;
    let mut damaged = sidecar.clone();
    damaged[at..at + 4].copy_from_slice(&(hash ^ 1).to_le_bytes());
    let damaged_reader = IndexReader::open(&damaged).unwrap();
    assert!(
        !damaged_reader
            .term_filter(field)
            .unwrap()
            .may_contain(present.term),
        "the damaged filter lacks the term"
    );
    let s = Sidecar::open("x.idx".into(), Mapped::from_vec(damaged), &id).unwrap();
    assert_eq!(lookup(&s, present.term).unwrap(), want);
    assert!(
        s.checked[filter_at].get().is_some_and(Result::is_err),
        "the filter's absence was not checked"
    );
}

/// `bytes` written to a file in `dir`, synced, and opened as the sidecar
/// of `id` through a map of it; and the file.
fn sidecar_file(dir: &Path, bytes: &[u8], id: &SegmentIdentity) -> (Sidecar, std::fs::File) {
    let path = dir.join("mapped.idx");
    std::fs::write(&path, bytes).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    file.sync_all().unwrap();
    let s = Sidecar::open("mapped.idx".into(), Mapped::map(&file).unwrap(), id).unwrap();
    (s, file)
}

/// An actor the sidecar's actor dictionary holds (its fourth term).
fn actor_in_dictionary(reader: &IndexReader<'_>) -> Vec<u8> {
    let dict = reader.field(IndexField::Actor).unwrap();
    dict.iter().nth(3).unwrap().term.to_vec()
}

#[test]
fn a_dictionary_its_filter_in_memory_rules_out_is_not_asked_for() {
    use crate::search::SectionUse;
    let dir = tempfile::tempdir().unwrap();
    let (_, _, id, sidecar) = first_blocked(dir.path());
    let reader = IndexReader::parse(&sidecar).unwrap();
    let field = IndexField::Actor;
    let range = |at: usize| {
        let s = reader.section(at).unwrap();
        (s.offset, s.offset + s.len)
    };
    let filter = range(reader.term_filter_section(field).unwrap());
    let dict = range(
        reader
            .section_for(SectionKind::TermDict, field.id())
            .unwrap(),
    );
    // Exact terms are looked up a few blocks at a time: their block
    // checksums are what is asked for, not the whole dictionary.
    let blocks = range(
        reader
            .dict_blocks_section(field)
            .expect("dictionary blocks"),
    );
    let present = actor_in_dictionary(&reader);
    let absent = b"nobody\0user".to_vec();
    let asked = |terms: Option<Vec<Vec<u8>>>| {
        // Owned bytes are in memory: the filter is at hand.
        let s = Sidecar::open("x.idx".into(), Mapped::from_vec(sidecar.clone()), &id).unwrap();
        let whole = terms.is_none();
        let (ranges, _) = s.advice_ranges(&[SectionUse::Dict(DictField::Actor, terms)]);
        assert!(!ranges.contains(&(if whole { blocks } else { dict })));
        let wanted = if whole { dict } else { blocks };
        (ranges.contains(&filter), ranges.contains(&wanted))
    };
    // Ruled out: neither the dictionary nor the filter (in memory).
    assert_eq!(asked(Some(vec![absent.clone()])), (false, false));
    // One term it may hold is enough to ask for the dictionary.
    assert_eq!(
        asked(Some(vec![absent.clone(), present.clone()])),
        (false, true)
    );
    assert_eq!(asked(Some(vec![present.clone()])), (false, true));
    // A prefix: the filter cannot rule it out and is not read.
    assert_eq!(asked(None), (false, true));

    // A damaged filter rules nothing out.
    let section = reader
        .section(reader.term_filter_section(field).unwrap())
        .unwrap();
    let mut damaged = sidecar.clone();
    damaged[section.offset as usize + section.len as usize / 2] ^= 0x08;
    let s = Sidecar::open("x.idx".into(), Mapped::from_vec(damaged), &id).unwrap();
    let (ranges, _) = s.advice_ranges(&[SectionUse::Dict(DictField::Actor, Some(vec![absent]))]);
    assert!(ranges.contains(&blocks), "{ranges:?}");
}

#[test]
fn a_cold_dictionary_is_asked_for_its_directory_as_its_filter_sizes_it() {
    use crate::search::SectionUse;
    let dir = tempfile::tempdir().unwrap();
    let (_, _, id, sidecar) = first_blocked(dir.path());
    let reader = IndexReader::parse(&sidecar).unwrap();
    // Actions: few terms, each with a large bitmap.
    let field = IndexField::Action;
    let dict = reader
        .section(
            reader
                .section_for(SectionKind::TermDict, field.id())
                .unwrap(),
        )
        .unwrap();
    let (start, directory_end) = reader.dict_directory(field).unwrap();
    assert_eq!(start, dict.offset);
    let terms = reader.field(field).unwrap().len() as u64;
    let sized = 16 + 44 * terms;
    assert!(directory_end - start <= sized && sized < dict.len.min(DIRECTORY_ASKED));
    // The sidecar's map, its pages dropped from the page cache: the
    // dictionary is not in memory, and its directory is what is asked for.
    let (s, file) = sidecar_file(dir.path(), &sidecar, &id);
    s.map.evict(&file);
    assert!(
        !s.map
            .resident_sampled(dict.offset, dict.len, RESIDENT_SAMPLES)
    );
    let term = reader
        .field(field)
        .unwrap()
        .iter()
        .nth(1)
        .unwrap()
        .term
        .to_vec();
    let uses = [SectionUse::Dict(DictField::Action, Some(vec![term]))];
    let (ranges, lookups) = s.advice_ranges(&uses);
    // The directory, as the filter sizes it (a 20-byte entry and 24 heap
    // bytes for each term it holds), not the fixed 64 KiB (or the whole
    // dictionary) a sidecar without filters gets.
    assert!(
        ranges.contains(&(dict.offset, dict.offset + sized)),
        "{ranges:?}: {terms} terms from {}",
        dict.offset
    );
    // Its lookups are due once the ranges are asked for, not before: a
    // lookup that read the directory before it was asked for would fault
    // it in with the kernel's read-around of the pages about it.
    let bit = field_bit(field);
    let state = || s.lookups.load(Ordering::Relaxed);
    assert_eq!(lookups, bit);
    assert_eq!(state(), bit, "pending, not due");
    // A lookup asked for while the directory's advice is being given (by
    // the other core): wanted, and asked for by that advice once given.
    s.advise_lookups(&uses);
    assert_eq!(state(), bit | bit << LOOKUP_WANTED);
    s.advise_sections(&uses);
    assert_eq!(state(), 0, "asked for by the sections' advice");
    // In the usual order: due once asked for, then asked for.
    s.map.evict(&file);
    s.advise_sections(&uses);
    assert_eq!(state(), bit | bit << LOOKUP_DUE);
    s.advise_lookups(&uses);
    assert_eq!(state(), 0);
    // Nothing pending: nothing is marked.
    s.advise_lookups(&uses);
    assert_eq!(state(), 0);
    // A second advice of the same sections finishing after the lookups
    // were asked for (on another thread): no "due" is left behind.
    assert_eq!(s.publish_due(bit), 0);
    assert_eq!(state(), 0);
}

#[test]
fn a_section_asked_for_and_found_in_memory_is_not_asked_for_again() {
    use crate::search::SectionUse;
    let dir = tempfile::tempdir().unwrap();
    let (_, _, id, sidecar) = first_blocked(dir.path());
    let reader = IndexReader::parse(&sidecar).unwrap();
    let field = IndexField::Actor;
    let blocks = reader
        .section(reader.dict_blocks_section(field).unwrap())
        .unwrap();
    let blocks = (blocks.offset, blocks.offset + blocks.len);
    let present = actor_in_dictionary(&reader);
    let uses = [SectionUse::Dict(DictField::Actor, Some(vec![present]))];
    // Owned bytes are in memory: asked for the first time, then found
    // there, and not looked at again while unchecked (a search that plans
    // this segment ahead, query after query, but never reads it).
    let s = Sidecar::open("x.idx".into(), Mapped::from_vec(sidecar.clone()), &id).unwrap();
    assert!(s.advice_ranges(&uses).0.contains(&blocks));
    for _ in 0..3 {
        assert!(!s.advice_ranges(&uses).0.contains(&blocks));
    }
    assert!(s.unchecked(reader.dict_blocks_section(field).unwrap()));
    // A file's map not in memory the second time is asked for again: a
    // map of the file, its pages dropped from the page cache.
    let (s, file) = sidecar_file(dir.path(), &sidecar, &id);
    assert!(s.advice_ranges(&uses).0.contains(&blocks));
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    let dropped = !s.map.resident(blocks.0, blocks.1 - blocks.0);
    assert_eq!(s.advice_ranges(&uses).0.contains(&blocks), dropped);
}

#[test]
fn a_read_checks_only_the_column_blocks_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let (_, image, id, sidecar) = first_blocked(dir.path());
    let reader = IndexReader::parse(&sidecar).unwrap();
    let blocks = reader.column_block_count(SectionKind::Offsets);
    assert!(blocks >= 3, "{blocks} blocks of offsets");
    let offsets_at = reader.section(reader.column_sections()[0]).unwrap().offset as usize;

    // Damage the offsets column's third block (4-byte offsets: ordinals
    // 2,048 to 3,071).
    let mut damaged = sidecar.clone();
    damaged[offsets_at + 2 * 4096 + 17] ^= 0x20;
    let s = Sidecar::open("x.idx".into(), Mapped::from_vec(damaged), &id).unwrap();
    assert_eq!(s.offsets(&[5]).unwrap(), [image.offsets[5]]);
    assert_eq!(s.offsets(&[1_030]).unwrap(), [image.offsets[1_030]]);
    assert!(s.block_done(OFFSETS, 0) && s.block_done(OFFSETS, 1));
    assert!(!s.block_done(OFFSETS, 2));
    assert!(
        s.checked[reader.column_sections()[0]].get().is_none(),
        "the whole column was checked"
    );
    let err = s.offset(2_050).unwrap_err().to_string();
    assert!(err.contains("block #2 of the offsets column"), "{err}");
    // The event times are a column of their own, and intact.
    assert_eq!(
        s.event_time(2_050).unwrap(),
        Some(reader.event_time(2_050).unwrap())
    );
    assert!(s.block_done(EVENT_TIMES, 2_050 * 8 / 4096));
    // A set needing most blocks checks the whole column at once.
    let all: RoaringBitmap = (0..u32::try_from(image.offsets.len()).unwrap()).collect();
    assert_eq!(s.event_times(&all).unwrap().len(), image.offsets.len());
    assert!(s.checked[reader.column_sections()[1]].get().is_some());
}

#[test]
fn damaged_block_checksums_or_blocks_never_change_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = blocked_store(dir.path());
    let query = crate::query::Query {
        outcome: Some(crate::Outcome::Success),
        limit: 10_000,
        ..crate::query::Query::default()
    };
    let want = Store::open_read_only(dir.path())
        .unwrap()
        .query(&query)
        .unwrap()
        .records;
    assert!(want.len() > 1_000);
    let path = sealed[0].path.with_extension("idx");
    let intact = std::fs::read(&path).unwrap();
    let reader = IndexReader::parse(&intact).unwrap();
    let offsets = reader.section(reader.column_sections()[0]).unwrap();
    let crcs = reader
        .section(reader.column_blocks_section(SectionKind::Offsets).unwrap())
        .unwrap();
    for (what, at) in [
        (
            "a checksum of the offsets' blocks",
            crcs.offset as usize + 8 + 4,
        ),
        (
            "the offsets column's second block",
            offsets.offset as usize + 4096 + 40,
        ),
    ] {
        let mut damaged = intact.clone();
        damaged[at] ^= 0x10;
        std::fs::write(&path, &damaged).unwrap();
        // A reader sees the damage where it reads, falls back to the
        // whole column or the records, and answers as before.
        let store = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(store.query(&query).unwrap().records, want, "{what}");
        // Verification names the file.
        let Err(crate::Error::Corruption(c)) = crate::verify_dir(dir.path()) else {
            panic!("{what}: verified");
        };
        assert!(
            c.to_string()
                .contains(&sealed[0].name.replace(".seg", ".idx")),
            "{c}"
        );
        drop(store);
    }
    std::fs::write(&path, &intact).unwrap();
    crate::verify_dir(dir.path()).unwrap();
}

#[test]
fn sidecars_in_older_layouts_are_read_and_verified_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = blocked_store(dir.path());
    assert!(sealed.len() >= 2);
    let query = crate::query::Query {
        outcome: Some(crate::Outcome::Denied),
        limit: 10_000,
        ..crate::query::Query::default()
    };
    let store = Store::open_read_only(dir.path()).unwrap();
    let before = store.query(&query).unwrap();
    // A request id of the first segment: found through its hashed index.
    let some = store.scan(..).nth(7).unwrap().unwrap();
    let by_id = crate::query::Query {
        request_id: some.event.request_id.clone(),
        limit: 10_000,
        ..crate::query::Query::default()
    };
    assert!(by_id.request_id.is_some());
    let before_by_id = store.query(&by_id).unwrap();
    assert!(!before_by_id.records.is_empty());
    drop(store);
    // Before dictionary block checksums (kinds 6, 7 and 8); before
    // term filters (kinds 6 and 7); with the columns' block checksums
    // only (kind 6, before hashed indexes had them); before any (kept
    // for what follows).
    for layout in [
        SidecarLayout {
            dict_blocks: false,
            ..SidecarLayout::CURRENT
        },
        SidecarLayout {
            term_filters: false,
            dict_blocks: false,
            ..SidecarLayout::CURRENT
        },
        SidecarLayout {
            column_blocks: true,
            ..SidecarLayout::ORIGINAL
        },
        SidecarLayout::ORIGINAL,
    ] {
        for seg in &sealed {
            let bytes = std::fs::read(&seg.path).unwrap();
            let old = encode_in_layout(&seg.name, &bytes, layout);
            assert_eq!(SidecarLayout::of(&old), layout);
            std::fs::write(seg.path.with_extension("idx"), old).unwrap();
        }
        let report = crate::verify_dir(dir.path()).unwrap();
        assert_eq!(report.sidecars_checked, sealed.len() as u64);
        let store = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(store.query(&query).unwrap().records, before.records);
        assert_eq!(store.query(&by_id).unwrap().records, before_by_id.records);
        assert_eq!(store.stats().index_rebuilds, 0);
        drop(store);
    }

    // An offset changed with the checksums fixed is still caught.
    let path = sealed[0].path.with_extension("idx");
    let mut old = std::fs::read(&path).unwrap();
    let at = IndexReader::parse(&old).unwrap().section(0).unwrap().offset as usize + 4 * 7;
    old[at] ^= 1;
    // Its section's CRC, the table's and the header's, fixed.
    let (section, count) = {
        let r = IndexReader::open(&old).unwrap();
        (r.section(0).unwrap(), r.section_count())
    };
    let (o, l) = (section.offset as usize, section.len as usize);
    let crc = crc32fast::hash(&old[o..o + l]);
    old[72 + 4..72 + 8].copy_from_slice(&crc.to_le_bytes());
    let table = crc32fast::hash(&old[72..72 + 24 * count]);
    old[64..68].copy_from_slice(&table.to_le_bytes());
    let header = crc32fast::hash(&old[..68]);
    old[68..72].copy_from_slice(&header.to_le_bytes());
    IndexReader::parse(&old).expect("the forged sidecar passes its own checks");
    let fixed = old;
    std::fs::write(&path, fixed).unwrap();
    let Err(crate::Error::Corruption(c)) = crate::verify_dir(dir.path()) else {
        panic!("an altered sidecar verified");
    };
    assert_eq!(c.location.offset, Some(at as u64), "{c}");
    assert!(c.to_string().contains("offsets column"), "{c}");
}

/// The sidecar `encode_records` gives a sealed segment (through the
/// columnar in-memory index) is byte for byte the term-by-term one
/// and the one the sealer wrote.
#[test]
fn encode_records_equals_the_term_by_term_build_and_the_sealer() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = sealed_store(dir.path(), 256 * 1024, 7, 3_000, 250);
    assert!(sealed.len() >= 2, "{} sealed segments", sealed.len());
    for s in &sealed {
        let bytes = std::fs::read(&s.path).unwrap();
        let image = crate::image::check_sealed(&s.name, &bytes).unwrap();
        let columnar = crate::image::sidecar_of(&s.name, &bytes, &image).unwrap();
        let mut reference = RecordIndexer::new(identity(&image.header, &image.footer));
        for &offset in &image.offsets {
            let frame = match sealog_format::frame::read_frame(&bytes[offset as usize..]) {
                Ok(sealog_format::frame::FrameRead::Frame(f)) => f,
                _ => panic!("no frame at {offset} in {}", s.name),
            };
            let view = sealog_format::record::decode(frame.body).unwrap();
            reference.push(offset, &view).unwrap();
        }
        assert!(columnar == reference.encode().unwrap(), "{}", s.name);
        let written = std::fs::read(s.path.with_extension("idx")).unwrap();
        assert!(columnar == written, "{}", s.name);
    }
}

#[test]
fn the_blocks_asked_for_a_hashed_lookup_hold_the_keys_it_finds() {
    // Keys spread evenly, as FNV-1a 64 spreads terms: the page of a key's
    // position, and of its ordinal, is asked for in nearly every lookup.
    let count = 200_000u64;
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut keys: Vec<u64> = (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect();
    keys.sort_unstable();
    let (offset, len) = (1 << 20, 8 + 12 * count);
    let within = |ranges: &[(u64, u64)], at: u64| ranges.iter().any(|&(s, e)| s <= at && at < e);
    let mut found = 0;
    for i in (0..count).step_by(200) {
        let ranges = super::hashed_probe_ranges(offset, len, keys[i as usize]);
        assert!(
            ranges
                .iter()
                .all(|&(s, e)| offset <= s && s < e && e <= offset + len),
            "{ranges:?}"
        );
        // The header and the ends, which the search compares first.
        assert!(within(&ranges, offset) && within(&ranges, offset + 8 + 8 * (count - 1)));
        if within(&ranges, offset + 8 + 8 * i) && within(&ranges, offset + 8 + 8 * count + 4 * i) {
            found += 1;
        }
    }
    assert!(found >= 950, "{found} of 1000 keys in the pages asked for");
    // An empty or tiny index is asked for whole.
    assert_eq!(super::hashed_probe_ranges(64, 8, 42), [(64, 72)]);
}
