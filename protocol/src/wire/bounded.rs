//! Decoding with bounds: every array of a sync message is counted while it is decoded, so a
//! small body that claims (or holds) millions of tiny elements is refused before it costs
//! memory, and decoder errors are told in words with the field they concern.
//!
//! The bounds of the message being decoded live in a thread-local for the duration of one
//! [`decode_with`](super::decode_with) call: serde's derive gives a field's `deserialize_with`
//! function no context, and decoding is synchronous, so one decode per thread at a time holds.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde_bytes::ByteBuf;

/// The bounds a decoded message must stay within. Decoding stops at the first element past a
/// bound (see `docs/PROTOCOL.md`, "Bounds").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The most array elements in the whole message together (actors, records, changes, tags,
    /// hashes, places): what bounds the memory of many tiny elements.
    pub items: usize,
    /// The most actor ids in a push.
    pub actors: usize,
    /// The most records in the message.
    pub records: usize,
    /// The most changes (and as many tags) in one record.
    pub changes_per_record: usize,
    /// The largest change, in bytes.
    pub change_bytes: usize,
    /// The longest string (ids, kinds, scopes, place codes), in bytes.
    pub string_bytes: usize,
    /// The most change hashes in a state file.
    pub hashes: usize,
}

/// Actor ids, tags and hashes are 16 or 32 bytes; anything longer than this is refused while
/// decoding (the exact length is checked afterwards).
pub const MAX_ID_BYTES: usize = 64;

impl DecodeLimits {
    /// A push (`POST /v1/sync/push`): a device writes with few actors, a push carries at most
    /// [`super::MAX_PUSH_RECORDS`] records, and its body is at most [`super::MAX_PUSH_BYTES`].
    pub const PUSH: DecodeLimits = DecodeLimits {
        items: 200_000,
        actors: 1_024,
        records: super::MAX_PUSH_RECORDS,
        changes_per_record: 100_000,
        change_bytes: super::MAX_PAGE_BYTES,
        string_bytes: 256,
        hashes: 0,
    };
    /// A pull page: at most [`super::MAX_PAGE_BYTES`] of changes (plus one larger change alone).
    pub const PULL: DecodeLimits = DecodeLimits {
        items: 1_000_000,
        actors: 1_024,
        records: 200_000,
        changes_per_record: 500_000,
        change_bytes: super::MAX_PUSH_BYTES,
        string_bytes: 256,
        hashes: 0,
    };
    /// A bundle or a state file: at most [`super::MAX_BUNDLE_BYTES`] once decompressed.
    pub const BUNDLE: DecodeLimits = DecodeLimits {
        items: 8_000_000,
        actors: 1_024,
        records: 2_000_000,
        changes_per_record: 1_000_000,
        change_bytes: super::MAX_PUSH_BYTES,
        string_bytes: 256,
        hashes: 8_000_000,
    };
}

/// Which bound a message passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// [`DecodeLimits::items`].
    Items,
    /// [`DecodeLimits::actors`].
    Actors,
    /// [`DecodeLimits::records`].
    Records,
    /// [`DecodeLimits::changes_per_record`] (changes or tags of one record).
    ChangesPerRecord,
    /// [`DecodeLimits::change_bytes`].
    ChangeBytes,
    /// [`DecodeLimits::string_bytes`].
    StringBytes,
    /// [`MAX_ID_BYTES`].
    IdBytes,
    /// [`DecodeLimits::hashes`].
    Hashes,
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bound::Items => "array elements in the whole message",
            Bound::Actors => "actor ids",
            Bound::Records => "records",
            Bound::ChangesPerRecord => "changes (or tags) in one record",
            Bound::ChangeBytes => "bytes in one change",
            Bound::StringBytes => "bytes in one string",
            Bound::IdBytes => "bytes in one actor id, tag or hash",
            Bound::Hashes => "change hashes",
        })
    }
}

/// The state of the decode under way on this thread.
struct Active {
    limits: DecodeLimits,
    items: usize,
    passed: Option<(Bound, usize)>,
    path: Option<String>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

/// What one bounded decode learned besides its result.
pub(crate) struct Outcome {
    /// The bound that stopped decoding, with its value.
    pub passed: Option<(Bound, usize)>,
    /// Where in the message the decoder failed (`records[3].changes`), when it did.
    pub path: Option<String>,
}

/// Runs `f` (one decode) with `limits` in force on this thread.
pub(crate) fn with_limits<R>(limits: DecodeLimits, f: impl FnOnce() -> R) -> (R, Outcome) {
    let previous = ACTIVE.with(|a| {
        a.borrow_mut().replace(Active {
            limits,
            items: 0,
            passed: None,
            path: None,
        })
    });
    let result = f();
    let active = ACTIVE.with(|a| std::mem::replace(&mut *a.borrow_mut(), previous));
    let outcome = match active {
        Some(a) => Outcome {
            passed: a.passed,
            path: a.path,
        },
        None => Outcome {
            passed: None,
            path: None,
        },
    };
    (result, outcome)
}

/// The limits in force (the widest, a bundle's, when decoding outside [`with_limits`]).
fn limits() -> DecodeLimits {
    ACTIVE.with(|a| {
        a.borrow()
            .as_ref()
            .map_or(DecodeLimits::BUNDLE, |a| a.limits)
    })
}

/// Notes that `bound` (of value `limit`) was passed and makes the decoder's error.
fn passed<E: de::Error>(bound: Bound, limit: usize) -> E {
    ACTIVE.with(|a| {
        if let Some(a) = a.borrow_mut().as_mut() {
            a.passed.get_or_insert((bound, limit));
        }
    });
    E::custom(format_args!("more than {limit} {bound}"))
}

/// Counts one more element against [`DecodeLimits::items`].
fn count_item<E: de::Error>() -> Result<(), E> {
    let over = ACTIVE.with(|a| match a.borrow_mut().as_mut() {
        Some(a) => {
            a.items += 1;
            (a.items > a.limits.items).then_some(a.limits.items)
        }
        None => None,
    });
    match over {
        Some(limit) => Err(passed(Bound::Items, limit)),
        None => Ok(()),
    }
}

/// Wraps the top-level message so that a decoder error says at which field it happened.
pub(crate) struct Tracked<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Tracked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_path_to_error::deserialize(d)
            .map(Tracked)
            .map_err(|e| {
                let path = e.path().to_string();
                ACTIVE.with(|a| {
                    if let Some(a) = a.borrow_mut().as_mut() {
                        a.path.get_or_insert(path);
                    }
                });
                e.into_inner()
            })
    }
}

/// An element type whose size is checked as each one is decoded.
trait Measured {
    fn bytes(&self) -> usize;
}

impl Measured for ByteBuf {
    fn bytes(&self) -> usize {
        self.len()
    }
}

impl Measured for String {
    fn bytes(&self) -> usize {
        self.len()
    }
}

impl Measured for super::WireRecord {
    fn bytes(&self) -> usize {
        0
    }
}

/// Decodes an array of at most `max` elements, each at most `max_bytes` long, counting every
/// element against the whole message's budget. Never allocates more than the elements seen.
fn bounded_vec<'de, D, T>(
    d: D,
    bound: Bound,
    max: usize,
    size_bound: Bound,
    max_bytes: usize,
) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Measured,
{
    struct V<T> {
        bound: Bound,
        max: usize,
        size_bound: Bound,
        max_bytes: usize,
        t: PhantomData<T>,
    }
    impl<'de, T: Deserialize<'de> + Measured> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of at most {} {}", self.max, self.bound)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // The length an array header claims is not trusted: at most 4 KiB up front.
            let cautious = seq
                .size_hint()
                .unwrap_or(0)
                .min(4096 / std::mem::size_of::<T>().max(1));
            let mut out = Vec::with_capacity(cautious.min(self.max));
            while let Some(item) = seq.next_element::<T>()? {
                if out.len() == self.max {
                    return Err(passed(self.bound, self.max));
                }
                count_item()?;
                if item.bytes() > self.max_bytes {
                    return Err(passed(self.size_bound, self.max_bytes));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V {
        bound,
        max,
        size_bound,
        max_bytes,
        t: PhantomData,
    })
}

/// `PushRequest::actors`.
pub(crate) fn actors<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ByteBuf>, D::Error> {
    bounded_vec(
        d,
        Bound::Actors,
        limits().actors,
        Bound::IdBytes,
        MAX_ID_BYTES,
    )
}

/// `records` of a push, a pull page or a bundle.
pub(crate) fn records<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<super::WireRecord>, D::Error> {
    bounded_vec(d, Bound::Records, limits().records, Bound::Records, 0)
}

/// `WireRecord::changes`.
pub(crate) fn changes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ByteBuf>, D::Error> {
    let l = limits();
    bounded_vec(
        d,
        Bound::ChangesPerRecord,
        l.changes_per_record,
        Bound::ChangeBytes,
        l.change_bytes,
    )
}

/// `WireRecord::created`: one change's bytes, counted as an element.
pub(crate) fn created<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteBuf>, D::Error> {
    let created = Option::<ByteBuf>::deserialize(d)?;
    if let Some(c) = &created {
        count_item()?;
        let max = limits().change_bytes;
        if c.len() > max {
            return Err(passed(Bound::ChangeBytes, max));
        }
    }
    Ok(created)
}

/// `WireRecord::tags`.
pub(crate) fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ByteBuf>, D::Error> {
    bounded_vec(
        d,
        Bound::ChangesPerRecord,
        limits().changes_per_record,
        Bound::IdBytes,
        MAX_ID_BYTES,
    )
}

/// `BundleState::hashes`.
pub(crate) fn hashes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ByteBuf>, D::Error> {
    bounded_vec(
        d,
        Bound::Hashes,
        limits().hashes,
        Bound::IdBytes,
        MAX_ID_BYTES,
    )
}

/// A string field (ids, kinds, scopes, formats).
pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let max = limits().string_bytes;
    if s.len() > max {
        return Err(passed(Bound::StringBytes, max));
    }
    Ok(s)
}

/// `PullResponse::scope`: the scope's place codes are bounded like records.
pub(crate) fn scope<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<crate::auth::WireScope>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Scope {
        all: bool,
        #[serde(default, deserialize_with = "string_opt")]
        campaign: Option<String>,
        #[serde(default, deserialize_with = "places")]
        places: Vec<String>,
        write: bool,
    }
    fn string_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                let max = limits().string_bytes;
                if s.len() > max {
                    Err(passed(Bound::StringBytes, max))
                } else {
                    Ok(s)
                }
            })
            .transpose()
    }
    fn places<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let l = limits();
        bounded_vec(
            d,
            Bound::Records,
            l.records,
            Bound::StringBytes,
            l.string_bytes,
        )
    }
    Ok(
        Option::<Scope>::deserialize(d)?.map(|s| crate::auth::WireScope {
            all: s.all,
            campaign: s.campaign,
            places: s.places,
            write: s.write,
        }),
    )
}
