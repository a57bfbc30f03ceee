//! Merging, outside any database: a record's stored document and its changes not applied yet
//! become a new document and projection ([`merge`]), which is then reviewed against the
//! campaign's template ([`review`]) and indexed for search ([`index`]). The storage reads the
//! inputs and writes the outcome; everything decided in between is here.

pub mod index;
pub mod review;

use automerge::{Change, ChangeHash};
use fieldsync_protocol::{Projection, RecordHeader, record};

/// What merging a record's pending changes gave.
#[derive(Debug)]
pub enum Merge {
    /// The record is merged: store the document and the projection.
    Merged {
        /// The new document: Automerge's saved bytes, or a new record's change chunks in
        /// dependency order (both load with `record::load_doc`).
        doc: Vec<u8>,
        /// The pending changes now in the document (the rest wait for their dependencies).
        applied: Vec<[u8; 32]>,
        /// The projection of the new document.
        projection: Box<Projection>,
        /// What is wrong with the record though it merged (changes waiting, a header the
        /// document contradicts).
        problem: Option<String>,
    },
    /// The record cannot be merged: store the problem (and the document, when there is one to
    /// keep: what merged so far).
    Failed {
        /// Why.
        problem: String,
        /// The document to keep, when changes did apply.
        doc: Option<Vec<u8>>,
        /// The pending changes now in that document.
        applied: Vec<[u8; 32]>,
    },
}

/// One record's inputs to [`merge`]: its stored header, document and unapplied changes.
#[derive(Debug)]
pub struct Input {
    /// The record's stored header.
    pub header: RecordHeader,
    /// Its stored document (`None`: not merged before).
    pub doc: Option<Vec<u8>>,
    /// Its unapplied changes, in log order.
    pub pending: Vec<Vec<u8>>,
}

/// [`merge`] for many records at once, spread over the machine's cores (records are
/// independent); the outcomes are in the order of `inputs`.
pub fn merge_many(inputs: &[Input]) -> Vec<Merge> {
    let one = |i: &Input| merge(&i.header, i.doc.as_deref(), &i.pending);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(inputs.len().div_ceil(8))
        .max(1);
    if threads == 1 {
        return inputs.iter().map(one).collect();
    }
    let per_thread = inputs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || chunk.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a merging thread panicked"))
            .collect()
    })
}

/// Applies `pending` (the record's unapplied changes, in log order) to its stored document `doc`
/// (`None`: not merged before) and projects the result. `header` is the record's stored header,
/// which the document must agree with.
pub fn merge(header: &RecordHeader, doc: Option<&[u8]>, pending: &[Vec<u8>]) -> Merge {
    let failed = |problem: String| Merge::Failed {
        problem,
        doc: None,
        applied: Vec::new(),
    };
    let is_new = doc.is_none();
    let mut doc = match doc {
        Some(b) => match record::load_doc(b) {
            Ok(d) => d,
            Err(e) => return failed(format!("stored document does not load: {e}")),
        },
        None => record::new_doc(),
    };
    if is_new {
        // A record that arrives exactly as it was created (most of a campaign's records): read
        // and checked from its bytes, with neither Automerge's parsing nor a document; its
        // document is its change chunks, genesis first (protocol::fresh).
        let bytes: Vec<&[u8]> = pending.iter().map(Vec::as_slice).collect();
        if let Some((fieldsync_protocol::fresh::Fresh { projection, doc }, checked)) =
            fieldsync_protocol::fresh::read_new_bytes(header, &bytes)
        {
            return Merge::Merged {
                doc,
                applied: checked.iter().map(|c| c.hash.0).collect(),
                projection: Box::new(projection),
                problem: None,
            };
        }
    }
    let mut decoded: Vec<(ChangeHash, Change)> = Vec::with_capacity(pending.len());
    for bytes in pending {
        // Every stored change was checked on the way in; a failure here is corruption.
        match Change::try_from(bytes.as_slice()) {
            Ok(c) => decoded.push((c.hash(), c)),
            Err(e) => return failed(format!("a stored change does not decode: {e}")),
        }
    }
    if let Err(e) = doc.apply_changes(decoded.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>()) {
        return failed(format!("changes do not apply: {e}"));
    }
    let mut applied = Vec::with_capacity(decoded.len());
    let mut waiting = 0;
    for (hash, _) in &decoded {
        if doc.get_change_meta_by_hash(hash).is_some() {
            applied.push(hash.0);
        } else {
            waiting += 1;
        }
    }
    let projection = match record::project(&doc) {
        Ok(p) => p,
        Err(e) => {
            let problem = if waiting > 0 {
                format!("waiting for {waiting} changes' dependencies ({e})")
            } else {
                e.to_string()
            };
            // Keep what merged so far.
            return Merge::Failed {
                problem,
                doc: Some(doc.save()),
                applied,
            };
        }
    };
    let problem = if projection.header != *header {
        Some(format!(
            "the document's header {:?} differs from the one its changes were pushed with",
            projection.header
        ))
    } else if waiting > 0 {
        Some(format!("{waiting} changes wait for changes they depend on"))
    } else {
        None
    };
    Merge::Merged {
        doc: doc.save(),
        applied,
        projection: Box::new(projection),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::ActorId;
    use fieldsync_protocol::{FieldValue, creation};

    fn header(n: u128) -> RecordHeader {
        RecordHeader {
            id: uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + n),
            kind: "interview".into(),
            campaign: uuid::Uuid::from_u128(0x2026),
            scope: "350102001".into(),
        }
    }

    /// A record as created on a device: its changes' bytes and the projection they give.
    fn created(n: u128) -> (Vec<Vec<u8>>, Projection) {
        let fields = [
            ("interviewee", FieldValue::Str(format!("第{n}位村民"))),
            (
                "notes",
                FieldValue::Text("班子团结，集体经济收入偏低。".repeat(3)),
            ),
        ];
        let c = creation::create(&header(n), &ActorId::random(), 7, &fields).unwrap();
        let bytes = c.changes().map(|c| c.raw_bytes().to_vec()).collect();
        (bytes, c.projection)
    }

    #[test]
    fn many_records_merge_on_every_core_and_come_back_in_order() {
        let mut inputs = Vec::new();
        let mut want = Vec::new();
        for n in 0..40 {
            let (pending, projection) = created(n);
            inputs.push(Input {
                header: header(n),
                doc: None,
                pending,
            });
            want.push(projection);
        }
        // One record whose stored header its changes contradict fails alone.
        inputs[17].header = header(1000);
        let outcomes = merge_many(&inputs);
        assert_eq!(outcomes.len(), inputs.len());
        for (n, (outcome, want)) in outcomes.iter().zip(&want).enumerate() {
            match outcome {
                Merge::Merged {
                    doc,
                    projection,
                    applied,
                    problem: None,
                } if n != 17 => {
                    assert_eq!(**projection, *want, "record {n}");
                    assert_eq!(applied.len(), 2);
                    // The stored document loads and projects the same.
                    let loaded = record::load_doc(doc).unwrap();
                    assert_eq!(record::project(&loaded).unwrap(), *want);
                }
                Merge::Merged { problem, .. } if n == 17 => {
                    assert!(
                        problem.as_deref().unwrap_or("").contains("header"),
                        "{problem:?}"
                    );
                }
                other => panic!("record {n}: {other:?}"),
            }
        }
    }
}
