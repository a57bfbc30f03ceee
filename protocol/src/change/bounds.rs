//! Checks a change chunk's claimed lengths and counts against its real size before Automerge
//! decodes it, so a few hostile bytes cannot make the decoder allocate or loop on what is not there.
//!
//! Automerge 0.12 trusts two things it reads from a change: the length of each string in a
//! string column (it allocates that many bytes, up to 1 GB, before it finds the bytes missing),
//! and the repeat counts of run-length-encoded columns (a few bytes can claim 2^62 operations).
//! [`check`] walks the chunk's header and every column the way Automerge's decoders do, without
//! allocating, and refuses a string longer than what is left of its column or a column of more
//! than [`MAX_OPS`] items. It only refuses what Automerge would refuse or could not decode in
//! bounded memory and time; it does not check what the operations mean.

/// The most items one column of one change may hold: operations, or predecessors of them. A
/// field worker's change is a few hundred operations (a 500-character note is 500); pasting a
/// 100,000-character document is 100,000.
pub const MAX_OPS: u64 = 1 << 20;

/// Why a chunk was refused.
pub(super) type Refusal = String;

/// A cursor over bytes that never reads past their end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], Refusal> {
        let n = usize::try_from(n).ok().filter(|n| *n <= self.bytes.len());
        let n = n.ok_or_else(|| format!("{what} claims more bytes than the chunk holds"))?;
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn uleb(&mut self, what: &str) -> Result<u64, Refusal> {
        leb128::read::unsigned(&mut self.bytes).map_err(|_| format!("{what} is not a number"))
    }

    fn sleb(&mut self, what: &str) -> Result<i64, Refusal> {
        leb128::read::signed(&mut self.bytes).map_err(|_| format!("{what} is not a number"))
    }
}

/// Checks an uncompressed change chunk: magic and checksum (8 bytes, checked by the caller),
/// type (1 byte), length, body.
pub(super) fn check(chunk: &[u8]) -> Result<(), Refusal> {
    let mut r = Reader {
        bytes: chunk.get(9..).unwrap_or_default(),
    };
    let len = r.uleb("the chunk's length")?;
    let mut body = Reader {
        bytes: r.take(len, "the chunk's length")?,
    };
    let deps = body.uleb("the dependency count")?;
    body.take(deps.saturating_mul(32), "the dependency list")?;
    let actor = body.uleb("the actor's length")?;
    body.take(actor, "the actor")?;
    body.uleb("the sequence number")?;
    body.uleb("the start operation")?;
    body.sleb("the time")?;
    let message = body.uleb("the message's length")?;
    body.take(message, "the message")?;
    let others = body.uleb("the other actors' count")?;
    for _ in 0..others {
        let n = body.uleb("another actor's length")?;
        body.take(n, "another actor")?;
    }
    let columns = body.uleb("the column count")?;
    let mut specs = Vec::new();
    for _ in 0..columns {
        let spec = body.uleb("a column's kind")?;
        let n = body.uleb("a column's length")?;
        // Each column's two numbers were read from the body: no more columns than bytes.
        specs.push((spec, n));
    }
    for (spec, n) in specs {
        let data = body.take(n, "a column")?;
        column(spec, data)?;
    }
    Ok(())
}

/// Walks one column by its type (the low three bits of its spec).
fn column(spec: u64, data: &[u8]) -> Result<(), Refusal> {
    const BOOLEAN: u64 = 4;
    const STRING: u64 = 5;
    const VALUE: u64 = 7;
    let mut r = Reader { bytes: data };
    let mut items = 0u64;
    let mut count = |n: u64| {
        items = items.saturating_add(n);
        if items > MAX_OPS {
            Err(format!(
                "a column claims more than {MAX_OPS} operations in one change"
            ))
        } else {
            Ok(())
        }
    };
    match spec & 7 {
        VALUE => {}
        BOOLEAN => {
            while !r.done() {
                count(r.uleb("a boolean column")?)?;
            }
        }
        kind => {
            // Run-length encoded: a run of one value, a literal run, or a run of nulls.
            let value = |r: &mut Reader| -> Result<(), Refusal> {
                if kind == STRING {
                    let n = r.uleb("a string's length")?;
                    r.take(n, "a string in a column")?;
                } else if kind == 3 {
                    r.sleb("a number in a column")?;
                } else {
                    r.uleb("a number in a column")?;
                }
                Ok(())
            };
            while !r.done() {
                let run = r.sleb("a run's length")?;
                if run > 0 {
                    count(run as u64)?;
                    value(&mut r)?;
                } else if run < 0 {
                    let n = run.unsigned_abs();
                    count(n)?;
                    for _ in 0..n {
                        value(&mut r)?;
                    }
                } else {
                    count(r.uleb("a run of nulls")?)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FieldValue, RecordHeader, creation};
    use uuid::Uuid;

    fn uleb(out: &mut Vec<u8>, v: u64) {
        leb128::write::unsigned(out, v).unwrap();
    }
    fn sleb(out: &mut Vec<u8>, v: i64) {
        leb128::write::signed(out, v).unwrap();
    }

    /// A change chunk with one column of `spec` holding `data` (checksum left zero: `check`
    /// leaves it to its caller).
    fn chunk(spec: u64, data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        uleb(&mut body, 0); // no dependencies
        uleb(&mut body, 16);
        body.extend([7u8; 16]); // the actor
        uleb(&mut body, 1); // seq
        uleb(&mut body, 1); // start op
        sleb(&mut body, 1_700_000_000_000); // time
        uleb(&mut body, 0); // no message
        uleb(&mut body, 0); // no other actors
        uleb(&mut body, 1);
        uleb(&mut body, spec);
        uleb(&mut body, data.len() as u64);
        body.extend(data);
        let mut out = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1];
        uleb(&mut out, body.len() as u64);
        out.extend(body);
        out
    }

    #[test]
    fn real_changes_pass() {
        let header = RecordHeader {
            id: Uuid::from_u128(1),
            kind: "interview".into(),
            campaign: Uuid::from_u128(2),
            scope: "350102001".into(),
        };
        let note = "村党组织书记带头谈心谈话，班子成员团结协作。".repeat(20);
        let ratings = [("m1".to_string(), "好".to_string())].into_iter().collect();
        let fields = [
            ("notes", FieldValue::Text(note)),
            ("interviewer", FieldValue::Str("张三".into())),
            ("score", FieldValue::Int(87)),
            ("share", FieldValue::Float(0.5)),
            ("ratings", FieldValue::Map(ratings)),
        ];
        let actor = automerge::ActorId::from([9u8; 16]);
        let made = creation::create(&header, &actor, 1_700_000_000_000, &fields).unwrap();
        for change in made.changes() {
            let bytes = change.raw_bytes();
            check(bytes).unwrap();
            crate::inspect_change(bytes).unwrap();
        }
    }

    #[test]
    fn a_string_longer_than_its_column_is_refused() {
        // Key column (id 1, type string): a run of 1 of a string claiming 100 MB.
        let mut data = Vec::new();
        sleb(&mut data, 1);
        uleb(&mut data, 100_000_000);
        data.extend(b"key");
        let err = check(&chunk((1 << 4) | 5, &data)).unwrap_err();
        assert!(err.contains("a string in a column"), "{err}");
        assert!(crate::inspect_change(&chunk((1 << 4) | 5, &data)).is_err());

        // The same string with its true length passes this check.
        let mut data = Vec::new();
        sleb(&mut data, 1);
        uleb(&mut data, 3);
        data.extend(b"key");
        check(&chunk((1 << 4) | 5, &data)).unwrap();
    }

    #[test]
    fn runs_claiming_more_operations_than_a_change_holds_are_refused() {
        // A run of 2^40 copies of one action: three bytes claiming a trillion operations.
        let mut data = Vec::new();
        sleb(&mut data, 1 << 40);
        uleb(&mut data, 1);
        let err = check(&chunk((4 << 4) | 2, &data)).unwrap_err();
        assert!(err.contains("operations"), "{err}");
        // Nulls and booleans count too.
        let mut nulls = Vec::new();
        sleb(&mut nulls, 0);
        uleb(&mut nulls, MAX_OPS + 1);
        assert!(check(&chunk((2 << 4) | 1, &nulls)).is_err());
        let mut flags = Vec::new();
        uleb(&mut flags, MAX_OPS);
        uleb(&mut flags, 1);
        assert!(check(&chunk((5 << 4) | 4, &flags)).is_err());
        // At the limit it passes.
        let mut flags = Vec::new();
        uleb(&mut flags, MAX_OPS);
        check(&chunk((5 << 4) | 4, &flags)).unwrap();
    }

    #[test]
    fn lengths_past_the_end_are_refused_wherever_they_are() {
        let good = chunk((1 << 4) | 5, &[]);
        check(&good).unwrap();
        for n in 9..good.len() {
            assert!(check(&good[..n]).is_err(), "a prefix of {n} bytes passed");
        }
        // A literal run of strings that stops early.
        let mut data = Vec::new();
        sleb(&mut data, -3);
        uleb(&mut data, 1);
        data.push(b'a');
        assert!(check(&chunk((1 << 4) | 5, &data)).is_err());
    }
}
