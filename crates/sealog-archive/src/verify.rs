//! Verifying an archive alone: with only the bucket and (ideally) the
//! log's public key.
//!
//! The manifests must be numbered 1, 2, … without a gap, each naming the
//! one before by SHA-256; every object a manifest lists must exist with its
//! size and SHA-256; the segments must follow each other from seq 0 with
//! no gap (numbering, seqs, chain values, recorded times) and each must
//! pass the engine's sealed-segment checks; each sidecar must be exactly
//! the index of its segment, each tree piece exactly the recomputed hashes;
//! each manifest's root and chain head must be the recomputed ones; its
//! checkpoint must be signed by the key and proven consistent with the
//! archived prefix and with the previous manifest's checkpoint; Parquet
//! copies of a segment must hold its records, value for value, one file
//! per event date. The first
//! problem, in log order, is returned naming the object.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sealog_format::Hash;
use sealog_format::checkpoint::Checkpoint;
use sealog_format::note::VerifierKey;

use crate::error::{ArchiveError, Result};
use crate::layout::{self, ObjectKind};
use crate::manifest::{Manifest, ObjectEntry, parse_hash, sha256_hex};
use crate::target::Target;

/// What to check beyond the archive itself.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// The log's public key: check every checkpoint's signature. Without
    /// it the archive is checked for consistency only, which proves
    /// nothing against someone who can rewrite the whole bucket.
    pub public_key: Option<VerifierKey>,
    /// Signed checkpoints kept elsewhere: each must be a root of the
    /// archived log (one that covers more records than the archive holds
    /// means newer rounds are missing).
    pub checkpoints: Vec<String>,
}

/// What a successful verification covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveReport {
    /// Manifests (rounds) checked.
    pub rounds: u64,
    /// Segments checked.
    pub segments: u64,
    /// Records archived (the newest manifest's tree size).
    pub records: u64,
    /// Bytes of objects read.
    pub bytes: u64,
    /// Objects checked (manifests included).
    pub objects: u64,
    /// The store id (hex).
    pub store_id: Option<String>,
    /// The log's origin.
    pub origin: Option<String>,
    /// RFC 9162 root of the archived records.
    pub root: Hash,
    /// Chain value after the last archived record.
    pub chain_head: Hash,
    /// The newest manifest's checkpoint size.
    pub newest_checkpoint: Option<u64>,
    /// Whether checkpoint signatures were checked.
    pub checkpoints_authenticated: bool,
    /// Checkpoints given by the caller that were checked.
    pub given_checkpoints: u64,
    /// Segments whose Parquet copies were checked against their records.
    pub parquet_segments: u64,
    /// Objects in the archive that no manifest lists (uploads of a round
    /// that has not finished, or objects someone else put there).
    pub unlisted: Vec<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// Receives every verified object, in log order (for a restore).
pub trait Sink {
    /// A verified segment, sidecar or tree piece.
    fn object(&mut self, name: &str, bytes: &[u8]) -> Result<()>;
    /// A verified checkpoint.
    fn checkpoint(&mut self, size: u64, text: &str) -> Result<()>;
}

/// The Merkle tree of the archived log, built leaf by leaf; completed
/// nodes of heights 8, 16, … are compared with the archived tree pieces.
struct Stream {
    size: u64,
    stack: Vec<(u32, Hash)>,
    /// Per level k ≥ 1: the archived entries not yet matched, with the
    /// piece each came from.
    expected: Vec<VecDeque<(String, u64, Hash)>>,
    /// Per level: the index the next archived piece must start at.
    next_piece: Vec<u64>,
}

impl Stream {
    fn push(&mut self, leaf: Hash, manifest: &str) -> Result<()> {
        let mut node = (0u32, leaf);
        while let Some(&(h, left)) = self.stack.last() {
            if h != node.0 {
                break;
            }
            self.stack.pop();
            node = (h + 1, sealog_format::merkle::node_hash(&left, &node.1));
            if node.0.is_multiple_of(8) {
                let k = (node.0 / 8) as usize;
                let index = ((self.size + 1) >> node.0) - 1;
                let Some(queue) = self.expected.get_mut(k) else {
                    continue;
                };
                match queue.pop_front() {
                    Some((piece, i, hash)) if i == index => {
                        if hash != node.1 {
                            return Err(ArchiveError::tampered(
                                piece,
                                format!("holds a wrong hash for tree level {k} entry {index}"),
                            ));
                        }
                    }
                    Some((piece, i, _)) => {
                        return Err(ArchiveError::tampered(
                            piece,
                            format!("holds level {k} entry {i} where entry {index} was due"),
                        ));
                    }
                    None => {
                        return Err(ArchiveError::tampered(
                            manifest,
                            format!(
                                "lists no tree piece with level {k} entry {index}, which its \
                                 segments complete"
                            ),
                        ));
                    }
                }
            }
        }
        self.stack.push(node);
        self.size += 1;
        Ok(())
    }

    fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, last)) = iter.next() else {
            return sealog_format::merkle::empty_root();
        };
        iter.fold(last, |acc, (_, left)| {
            sealog_format::merkle::node_hash(left, &acc)
        })
    }
}

/// A checkpoint given by the caller.
struct Given {
    label: String,
    body: Checkpoint,
}

fn open_checkpoint(
    text: &str,
    key: Option<&VerifierKey>,
) -> std::result::Result<Checkpoint, String> {
    match key {
        Some(key) => sealog_format::checkpoint::open(text, key).map_err(|e| e.to_string()),
        None => {
            let note = sealog_format::note::Note::parse(text).map_err(|e| e.to_string())?;
            Checkpoint::parse(note.text()).map_err(|e| e.to_string())
        }
    }
}

fn hashes(proof: &[String], manifest: &str) -> Result<Vec<Hash>> {
    proof
        .iter()
        .map(|h| {
            parse_hash(h).ok_or_else(|| {
                ArchiveError::tampered(manifest, format!("holds a malformed proof hash `{h}`"))
            })
        })
        .collect()
}

/// Verifies the archive at `target`. With a `sink`, every verified object
/// is handed to it in log order.
pub async fn verify(
    target: &Target,
    options: &VerifyOptions,
    mut sink: Option<&mut dyn Sink>,
) -> Result<ArchiveReport> {
    let started = Instant::now();
    let all = target.list("").await?;
    let mut report = ArchiveReport {
        rounds: 0,
        segments: 0,
        records: 0,
        bytes: 0,
        objects: 0,
        store_id: None,
        origin: None,
        root: sealog_format::merkle::empty_root(),
        chain_head: [0; 32],
        newest_checkpoint: None,
        checkpoints_authenticated: options.public_key.is_some(),
        given_checkpoints: 0,
        parquet_segments: 0,
        unlisted: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut given = Vec::new();
    for (i, text) in options.checkpoints.iter().enumerate() {
        let label = format!("given checkpoint #{}", i + 1);
        let body = open_checkpoint(text, options.public_key.as_ref())
            .map_err(|e| ArchiveError::tampered(label.clone(), format!("does not verify: {e}")))?;
        given.push(Given { label, body });
    }
    given.sort_by_key(|g| g.body.size);
    let mut given = given.into_iter().peekable();

    let manifests: Vec<(u64, String)> = all
        .iter()
        .filter_map(|(n, _)| match layout::parse(n) {
            Some(ObjectKind::Manifest(r)) => Some((r, n.clone())),
            _ => None,
        })
        .collect();
    if manifests.is_empty() {
        if all.is_empty() {
            return Err(ArchiveError::config(
                format!("there is no archive at {} (no object at all)", target.url()),
                "check the URL: its prefix must be the one `sealog archive --to` was given",
            ));
        }
        return Err(ArchiveError::tampered(
            layout::manifest(1),
            format!(
                "is missing (deleted?): the archive holds {} object(s) but no manifest",
                all.len()
            ),
        ));
    }
    for (i, (round, _)) in manifests.iter().enumerate() {
        let want = i as u64 + 1;
        if *round != want {
            return Err(ArchiveError::tampered(
                layout::manifest(want),
                format!(
                    "is missing (deleted?): manifests must be numbered 1, 2, … without a gap, \
                     and the next one found is round {round}"
                ),
            ));
        }
    }
    let sizes: HashMap<&str, u64> = all.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    // name → the manifest that listed it, with its entry.
    let mut listed: BTreeMap<String, (String, ObjectEntry)> = BTreeMap::new();
    let mut stream = Stream {
        size: 0,
        stack: Vec::new(),
        expected: (0..layout::LEVELS).map(|_| VecDeque::new()).collect(),
        next_piece: vec![0; layout::LEVELS],
    };
    let mut chain: Option<Hash> = None;
    let mut store_id: Option<[u8; 16]> = None;
    let mut next_segment_no = 0u64;
    let mut last_recorded = i64::MIN;
    // (name, sha256, tree_size, checkpoint size, checkpoint root)
    let mut previous: Option<(String, String, u64, u64, Hash)> = None;
    let mut origin: Option<String> = None;

    // Checkpoints of size 0 given by the caller.
    while let Some(g) = given.next_if(|g| g.body.size == 0) {
        if g.body.root != sealog_format::merkle::empty_root() {
            return Err(ArchiveError::tampered(
                g.label,
                "is not the root of the empty log",
            ));
        }
        report.given_checkpoints += 1;
    }

    for (round, mname) in &manifests {
        let mname = mname.as_str();
        let bytes = target.get(mname).await?.ok_or_else(|| {
            ArchiveError::tampered(mname, "was listed, then could not be found (deleted?)")
        })?;
        report.bytes += bytes.len() as u64;
        report.objects += 1;
        let m =
            Manifest::parse(&bytes).map_err(|e| ArchiveError::tampered(mname, e.to_string()))?;
        let sha = sha256_hex(&bytes);
        if m.round != *round {
            return Err(ArchiveError::tampered(
                mname,
                format!(
                    "says it is round {}: manifests were renamed, replaced or reordered",
                    m.round
                ),
            ));
        }
        match (&previous, &m.previous) {
            (None, None) => {}
            (Some((pname, psha, ..)), Some(p)) if &p.name == pname && &p.sha256 == psha => {}
            (Some((pname, ..)), Some(_)) => {
                return Err(ArchiveError::tampered(
                    pname.clone(),
                    format!(
                        "is not the manifest {mname} names as the one before it (SHA-256 \
                         differs): it was altered or replaced"
                    ),
                ));
            }
            (None, Some(_)) => {
                return Err(ArchiveError::tampered(
                    mname,
                    "names a previous manifest but is round 1",
                ));
            }
            (Some(_), None) => {
                return Err(ArchiveError::tampered(
                    mname,
                    "names no previous manifest but is not round 1",
                ));
            }
        }
        let id = hex::decode(&m.store_id)
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .ok_or_else(|| ArchiveError::tampered(mname, "has a malformed store_id"))?;
        match store_id {
            None => {
                store_id = Some(id);
                chain = Some(sealog_format::chain::genesis(&id));
            }
            Some(s) if s != id => {
                return Err(ArchiveError::tampered(
                    mname,
                    "names another store than the manifests before it",
                ));
            }
            Some(_) => {}
        }
        match &origin {
            None => origin = Some(m.origin.clone()),
            Some(o) if *o != m.origin => {
                return Err(ArchiveError::tampered(
                    mname,
                    format!("names origin `{}`, the manifests before it `{o}`", m.origin),
                ));
            }
            Some(_) => {}
        }
        if m.from_size != stream.size {
            return Err(ArchiveError::tampered(
                mname,
                format!(
                    "continues from {} records, but the rounds before it archived {}",
                    m.from_size, stream.size
                ),
            ));
        }
        // What this manifest lists.
        let mut entries: HashMap<String, ObjectEntry> = HashMap::new();
        let mut segments = Vec::new();
        let mut pieces: Vec<(usize, u64, ObjectEntry)> = Vec::new();
        // Parquet copies by their segment's first seq.
        let mut parquet: HashMap<u64, Vec<(u32, ObjectEntry)>> = HashMap::new();
        for o in &m.objects {
            if let Some((by, _)) = listed.get(&o.name) {
                return Err(ArchiveError::tampered(
                    mname,
                    format!("lists `{}`, which {by} already listed", o.name),
                ));
            }
            match layout::parse(&o.name) {
                Some(ObjectKind::Segment(s)) => segments.push((s, o.clone())),
                Some(ObjectKind::TreePiece(k, first)) if k > 0 => {
                    pieces.push((k, first, o.clone()))
                }
                Some(ObjectKind::Parquet(first, date)) => {
                    parquet.entry(first).or_default().push((date, o.clone()))
                }
                Some(
                    ObjectKind::Sidecar(_) | ObjectKind::TreePiece(..) | ObjectKind::Checkpoint(_),
                ) => {}
                _ => {
                    return Err(ArchiveError::tampered(
                        mname,
                        format!("lists `{}`, which is not an archive object name", o.name),
                    ));
                }
            }
            listed.insert(o.name.clone(), (mname.to_owned(), o.clone()));
            entries.insert(o.name.clone(), o.clone());
        }
        let mut used: std::collections::HashSet<String> = std::collections::HashSet::new();
        // Level pieces first (small): they queue the hashes the segments
        // must complete.
        pieces.sort_by_key(|(k, first, _)| (*k, *first));
        for (k, first, entry) in &pieces {
            let data = fetch_checked(target, entry, mname, &sizes).await?;
            report.bytes += data.len() as u64;
            report.objects += 1;
            let next = stream.next_piece.get(*k).copied().unwrap_or(0);
            if *first != next {
                return Err(ArchiveError::tampered(
                    &entry.name,
                    format!("starts at level {k} entry {first}; entry {next} was due"),
                ));
            }
            if data.len() % 32 != 0 || data.is_empty() {
                return Err(ArchiveError::tampered(
                    &entry.name,
                    "is not a whole number of 32-byte hashes",
                ));
            }
            for (i, h) in data.chunks_exact(32).enumerate() {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(h);
                if let Some(q) = stream.expected.get_mut(*k) {
                    q.push_back((entry.name.clone(), first + i as u64, hash));
                }
            }
            if let Some(n) = stream.next_piece.get_mut(*k) {
                *n = first + (data.len() / 32) as u64;
            }
            if let Some(s) = sink.as_deref_mut() {
                s.object(&entry.name, &data)?;
            }
            used.insert(entry.name.clone());
        }
        segments.sort_by_key(|(s, _)| *s);
        for (first_seq, entry) in &segments {
            if *first_seq != stream.size {
                return Err(ArchiveError::tampered(
                    &entry.name,
                    format!(
                        "starts at seq {first_seq}, but the archive's records end at {}: a \
                         segment before it is missing, or it is out of place",
                        stream.size
                    ),
                ));
            }
            let data = fetch_checked(target, entry, mname, &sizes).await?;
            report.bytes += data.len() as u64;
            report.objects += 1;
            // A segment archived compressed is checked through its image,
            // decoded once (and kept as archived: a restore writes it so).
            let plain = sealog::image::uncompressed(&entry.name, &data)
                .map_err(|e| ArchiveError::tampered(&entry.name, e.to_string()))?;
            let image = sealog::image::check_sealed(&entry.name, &plain)
                .map_err(|e| ArchiveError::tampered(&entry.name, e.to_string()))?;
            let h = &image.header;
            if h.first_seq != *first_seq {
                return Err(ArchiveError::tampered(
                    &entry.name,
                    format!(
                        "holds the segment starting at seq {} (renamed?)",
                        h.first_seq
                    ),
                ));
            }
            if Some(h.store_id) != store_id {
                return Err(ArchiveError::tampered(
                    &entry.name,
                    "belongs to another store (store id in its header)",
                ));
            }
            if h.segment_no != next_segment_no {
                return Err(ArchiveError::tampered(
                    &entry.name,
                    format!(
                        "is segment number {}, segment {next_segment_no} was due",
                        h.segment_no
                    ),
                ));
            }
            if Some(h.chain_in) != chain {
                return Err(ArchiveError::tampered(
                    &entry.name,
                    "does not continue the hash chain of the segment before it",
                ));
            }
            if image.footer.min_recorded_at.as_nanos() < last_recorded {
                return Err(ArchiveError::tampered(
                    &entry.name,
                    "was recorded before the segment that precedes it",
                ));
            }
            // Its sidecar and leaves, listed by the same manifest.
            let side_name = layout::sidecar(*first_seq);
            let side = entries.get(&side_name).ok_or_else(|| {
                ArchiveError::tampered(mname, format!("does not list `{side_name}`"))
            })?;
            let side_bytes = fetch_checked(target, side, mname, &sizes).await?;
            // In the archived copy's layout: archived before column block
            // checksums existed, it has none.
            let expected =
                sealog::image::sidecar_like(&entry.name, &plain, &image, Some(&side_bytes))
                    .map_err(|e| ArchiveError::tampered(&entry.name, e.to_string()))?;
            if side_bytes[..] != expected[..] {
                return Err(ArchiveError::tampered(
                    &side_name,
                    "is not the index of its segment (it differs from the one rebuilt from \
                     the segment's records)",
                ));
            }
            let leaves_name = layout::tree_piece(0, *first_seq);
            let leaves = entries.get(&leaves_name).ok_or_else(|| {
                ArchiveError::tampered(mname, format!("does not list `{leaves_name}`"))
            })?;
            let leaf_bytes = fetch_checked(target, leaves, mname, &sizes).await?;
            let computed: Vec<u8> = image.leaves.iter().flatten().copied().collect();
            if leaf_bytes[..] != computed[..] {
                return Err(ArchiveError::tampered(
                    &leaves_name,
                    "does not hold the leaf hashes of its segment's records",
                ));
            }
            report.bytes += (side_bytes.len() + leaf_bytes.len()) as u64;
            report.objects += 2;
            if let Some(files) = parquet.remove(first_seq) {
                let mut fetched = Vec::with_capacity(files.len());
                for (date, file) in files {
                    let bytes = fetch_checked(target, &file, mname, &sizes).await?;
                    report.bytes += bytes.len() as u64;
                    report.objects += 1;
                    used.insert(file.name.clone());
                    fetched.push((file.name, date, bytes));
                }
                crate::parquet::check_segment(&entry.name, &plain, &image, mname, fetched)?;
                report.parquet_segments += 1;
            }
            for leaf in &image.leaves {
                stream.push(*leaf, mname)?;
                while let Some(g) = given.next_if(|g| g.body.size == stream.size) {
                    if g.body.root != stream.root() {
                        return Err(ArchiveError::tampered(
                            g.label,
                            format!(
                                "commits to another log than the archive's at {} records \
                                 (the archive was rewritten)",
                                stream.size
                            ),
                        ));
                    }
                    report.given_checkpoints += 1;
                }
            }
            if let Some(s) = sink.as_deref_mut() {
                s.object(&entry.name, &data)?;
                s.object(&side_name, &side_bytes)?;
                s.object(&leaves_name, &leaf_bytes)?;
            }
            used.insert(entry.name.clone());
            used.insert(side_name);
            used.insert(leaves_name);
            chain = Some(image.footer.chain_head);
            last_recorded = image.footer.max_recorded_at.as_nanos();
            next_segment_no += 1;
            report.segments += 1;
        }
        if stream.size != m.tree_size {
            return Err(ArchiveError::tampered(
                mname,
                format!(
                    "says the archive holds {} records, but its segments end at {}",
                    m.tree_size, stream.size
                ),
            ));
        }
        for (k, q) in stream.expected.iter().enumerate() {
            if let Some((piece, i, _)) = q.front() {
                return Err(ArchiveError::tampered(
                    piece.clone(),
                    format!("holds level {k} entry {i}, which no archived record completes"),
                ));
            }
        }
        let root = stream.root();
        if parse_hash(&m.root) != Some(root) {
            return Err(ArchiveError::tampered(
                mname,
                "records a root that is not the root of the archived records",
            ));
        }
        if parse_hash(&m.chain_head) != chain {
            return Err(ArchiveError::tampered(
                mname,
                "records a chain head that is not the archived records'",
            ));
        }
        // The checkpoint.
        let cp = &m.checkpoint;
        if cp.name != layout::checkpoint(cp.size) {
            return Err(ArchiveError::tampered(
                mname,
                format!("names checkpoint object `{}` for size {}", cp.name, cp.size),
            ));
        }
        let cp_entry = match entries.get(&cp.name) {
            Some(e) => {
                used.insert(cp.name.clone());
                e.clone()
            }
            None => match listed.get(&cp.name) {
                Some((_, e)) => e.clone(),
                None => {
                    return Err(ArchiveError::tampered(
                        mname,
                        format!(
                            "relies on checkpoint `{}`, which no manifest lists",
                            cp.name
                        ),
                    ));
                }
            },
        };
        if cp_entry.sha256 != cp.sha256 {
            return Err(ArchiveError::tampered(
                mname,
                format!(
                    "records another SHA-256 for `{}` than the manifest that listed it",
                    cp.name
                ),
            ));
        }
        let cp_bytes = fetch_checked(target, &cp_entry, mname, &sizes).await?;
        if cp_bytes[..] != *cp.text.as_bytes() {
            return Err(ArchiveError::tampered(
                &cp.name,
                "differs from the checkpoint text in the manifest",
            ));
        }
        report.bytes += cp_bytes.len() as u64;
        report.objects += 1;
        let body = open_checkpoint(&cp.text, options.public_key.as_ref()).map_err(|e| {
            ArchiveError::tampered(&cp.name, format!("is not a valid signed checkpoint: {e}"))
        })?;
        if body.size != cp.size || body.origin != m.origin {
            return Err(ArchiveError::tampered(
                mname,
                "records a checkpoint size or origin that its checkpoint does not have",
            ));
        }
        if body.size == m.tree_size
            && let Some(signed_chain) = sealog::checkpoint::chain_head_of(&body)
            && Some(signed_chain) != chain
        {
            return Err(ArchiveError::tampered(
                &cp.name,
                "signs a chain value that is not the archived records'",
            ));
        }
        let proof = hashes(&m.checkpoint_proof, mname)?;
        sealog_format::merkle::verify_consistency(
            m.tree_size,
            body.size,
            &root,
            &body.root,
            &proof,
        )
        .map_err(|e| {
            ArchiveError::tampered(
                mname,
                format!(
                    "its records are not proven a prefix of its checkpoint ({} → {} \
                         records): {e}",
                    m.tree_size, body.size
                ),
            )
        })?;
        if let Some((_, _, _, psize, proot)) = &previous {
            let proof = hashes(&m.previous_checkpoint_proof, mname)?;
            sealog_format::merkle::verify_consistency(*psize, body.size, proot, &body.root, &proof)
                .map_err(|e| {
                    ArchiveError::tampered(
                        mname,
                        format!(
                            "its checkpoint is not proven consistent with the previous \
                             manifest's ({psize} → {} records): the log forked or was \
                             rewritten: {e}",
                            body.size
                        ),
                    )
                })?;
        } else if !m.previous_checkpoint_proof.is_empty() {
            return Err(ArchiveError::tampered(
                mname,
                "round 1 carries a previous-checkpoint proof",
            ));
        }
        if let Some(s) = sink.as_deref_mut() {
            s.checkpoint(body.size, &cp.text)?;
        }
        for o in &m.objects {
            if !used.contains(&o.name) {
                return Err(ArchiveError::tampered(
                    mname,
                    format!(
                        "lists `{}`, which does not belong to the round's segments",
                        o.name
                    ),
                ));
            }
        }
        previous = Some((mname.to_owned(), sha, m.tree_size, body.size, body.root));
        report.rounds += 1;
        report.records = m.tree_size;
        report.newest_checkpoint = Some(body.size);
    }
    if let Some(g) = given.next() {
        return Err(ArchiveError::tampered(
            g.label,
            format!(
                "covers {} records, but the archive holds only {}: newer rounds were deleted, \
                 or are not archived yet",
                g.body.size, stream.size
            ),
        ));
    }
    report.unlisted = all
        .iter()
        .filter(|(n, _)| !matches!(layout::parse(n), Some(ObjectKind::Manifest(_))))
        .filter(|(n, _)| !listed.contains_key(n))
        .map(|(n, _)| n.clone())
        .collect();
    report.store_id = store_id.map(hex::encode);
    report.origin = origin;
    report.root = stream.root();
    report.chain_head = chain.unwrap_or([0; 32]);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Downloads a listed object and checks its size and SHA-256.
async fn fetch_checked(
    target: &Target,
    entry: &ObjectEntry,
    manifest: &str,
    sizes: &HashMap<&str, u64>,
) -> Result<Bytes> {
    let missing = || {
        ArchiveError::tampered(
            &entry.name,
            format!("is missing (deleted?); {manifest} lists it"),
        )
    };
    if !sizes.contains_key(entry.name.as_str()) {
        return Err(missing());
    }
    let data = target.get(&entry.name).await?.ok_or_else(missing)?;
    if data.len() as u64 != entry.size {
        return Err(ArchiveError::tampered(
            &entry.name,
            format!(
                "has {} bytes; {manifest} recorded {} (altered or replaced)",
                data.len(),
                entry.size
            ),
        ));
    }
    if sha256_hex(&data) != entry.sha256 {
        return Err(ArchiveError::tampered(
            &entry.name,
            format!("does not match the SHA-256 {manifest} recorded (altered or replaced)"),
        ));
    }
    Ok(data)
}
