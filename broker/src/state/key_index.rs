//! The message key index (QUERY_MESSAGE) and the idempotent-produce window.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use serde::{Deserialize, Serialize};

use super::command::AppendResult;

/// Most `(topic, UNIQ_KEY)`s in the idempotency window (oldest evicted first).
pub const DEDUP_WINDOW_MAX: usize = 100_000;

/// 64-bit FNV-1a of a key: stable across versions and platforms, because key hashes are
/// written to checkpoints.
pub fn key_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A hasher for keys that already are hashes.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashKeyed<V> = HashMap<u64, V, BuildHasherDefault<IdentityHasher>>;

/// Most candidates one key lookup returns: 4 for each of the 64 records a QUERY_MESSAGE
/// answer holds at most (RocketMQ's `maxMsgsNumBatch`), since hashes may collide and a
/// key may also be another record's UNIQ_KEY (the caller reads and filters them).
pub const KEY_LOOKUP_MAX: usize = 256;
/// Entries per sorted run of the key index: a run is sorted once when it fills (a short,
/// cache-resident sort), and a lookup binary-searches each run.
const KEY_RUN_LEN: usize = 1 << 15;

/// One indexed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Physical offset of the record.
    pub physical_offset: i64,
    /// Its store time.
    pub store_time: i64,
}

/// A key hash and the record indexed under it.
type Keyed = (u64, IndexEntry);

/// Index entries sorted by (hash, physical offset), with the ranges they cover so that
/// purges and time-bounded lookups can skip whole runs.
#[derive(Debug, Clone)]
struct Run {
    entries: Vec<Keyed>,
    min_offset: i64,
    max_offset: i64,
    min_time: i64,
    max_time: i64,
}

impl Run {
    fn sealed(mut entries: Vec<Keyed>) -> Run {
        entries.sort_unstable_by_key(|(h, e)| (*h, e.physical_offset));
        let mut run = Run {
            entries,
            min_offset: i64::MAX,
            max_offset: i64::MIN,
            min_time: i64::MAX,
            max_time: i64::MIN,
        };
        run.measure();
        run
    }

    fn measure(&mut self) {
        self.min_offset = i64::MAX;
        self.max_offset = i64::MIN;
        self.min_time = i64::MAX;
        self.max_time = i64::MIN;
        for (_, e) in &self.entries {
            self.min_offset = self.min_offset.min(e.physical_offset);
            self.max_offset = self.max_offset.max(e.physical_offset);
            self.min_time = self.min_time.min(e.store_time);
            self.max_time = self.max_time.max(e.store_time);
        }
    }

    /// The entries with `hash`.
    fn hits(&self, hash: u64) -> &[Keyed] {
        let from = self.entries.partition_point(|(h, _)| *h < hash);
        let len = self.entries[from..].partition_point(|(h, _)| *h == hash);
        &self.entries[from..from + len]
    }
}

/// One topic's entries: sealed runs, then the unsorted tail in apply order.
#[derive(Debug, Clone, Default)]
struct TopicKeys {
    runs: Vec<Run>,
    tail: Vec<Keyed>,
}

impl TopicKeys {
    fn push(&mut self, k: Keyed, run_len: usize) {
        // Grows by doubling (a topic with few keys stays small), never past a run.
        if self.tail.len() == self.tail.capacity() {
            let more = self
                .tail
                .len()
                .max(16)
                .min(run_len - self.tail.len().min(run_len));
            self.tail.reserve_exact(more.max(1));
        }
        self.tail.push(k);
        if self.tail.len() >= run_len {
            self.runs.push(Run::sealed(std::mem::take(&mut self.tail)));
        }
    }

    fn len(&self) -> usize {
        self.runs.iter().map(|r| r.entries.len()).sum::<usize>() + self.tail.len()
    }

    fn is_empty(&self) -> bool {
        self.tail.is_empty() && self.runs.is_empty()
    }
}

/// Per topic, [`key_hash`] of each KEYS word and UNIQ_KEY of every retained record, as
/// RocketMQ's index files hold them. Appends are a push to the topic's tail; every
/// [`KEY_RUN_LEN`] entries the tail is sorted into a run (no hash table to grow: 24 bytes
/// per entry). Hashes may collide, so lookups return *candidates*: callers read the
/// records and keep those whose keys match (clients filter again anyway). Not part of
/// snapshots (a node that installs one has no log below it) but written to checkpoints.
#[derive(Debug, Clone)]
pub struct KeyIndex {
    topics: HashMap<String, TopicKeys>,
    len: usize,
    run_len: usize,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            topics: HashMap::new(),
            len: 0,
            run_len: KEY_RUN_LEN,
        }
    }
}

impl KeyIndex {
    /// An empty index sealing runs of `run_len` entries (tests: many small runs).
    #[cfg(test)]
    pub(super) fn with_run_len(run_len: usize) -> Self {
        KeyIndex {
            run_len: run_len.max(1),
            ..Self::default()
        }
    }

    /// Indexes one record under `key`.
    pub fn add(&mut self, topic: &str, key: &str, physical_offset: i64, store_time: i64) {
        if key.is_empty() {
            return;
        }
        self.add_hash(topic, key_hash(key), physical_offset, store_time);
    }

    /// Indexes one record under a key hash.
    pub fn add_hash(&mut self, topic: &str, hash: u64, physical_offset: i64, store_time: i64) {
        let e = IndexEntry {
            physical_offset,
            store_time,
        };
        let keys = match self.topics.get_mut(topic) {
            Some(k) => k,
            None => self.topics.entry(topic.to_owned()).or_default(),
        };
        keys.push((hash, e), self.run_len);
        self.len += 1;
    }

    /// Indexes a run of entries of one topic (checkpoint restore: one topic lookup for the
    /// whole run).
    pub fn extend_hashes(
        &mut self,
        topic: &str,
        entries: impl ExactSizeIterator<Item = (u64, IndexEntry)>,
    ) {
        let n = entries.len();
        let keys = match self.topics.get_mut(topic) {
            Some(k) => k,
            None => self.topics.entry(topic.to_owned()).or_default(),
        };
        for k in entries {
            keys.push(k, self.run_len);
        }
        self.len += n;
    }

    /// Candidate physical offsets indexed under `topic#key` with `begin ≤ store time ≤ end`,
    /// newest first, at most `max` and at most [`KEY_LOOKUP_MAX`]. May include records of
    /// other keys with the same hash.
    pub fn lookup(&self, topic: &str, key: &str, begin: i64, end: i64, max: usize) -> Vec<i64> {
        let max = max.min(KEY_LOOKUP_MAX);
        let Some(keys) = self.topics.get(topic) else {
            return Vec::new();
        };
        if max == 0 {
            return Vec::new();
        }
        let hash = key_hash(key);
        let in_time = |e: &IndexEntry| (begin..=end).contains(&e.store_time);
        // The newest `max` offsets seen so far (a min-heap: the oldest kept is on top).
        let mut newest: BinaryHeap<Reverse<i64>> = BinaryHeap::with_capacity(max + 1);
        // The offset an entry must beat to be kept, once `max` are kept.
        let floor = |newest: &BinaryHeap<Reverse<i64>>| {
            (newest.len() >= max).then(|| newest.peek().map_or(i64::MIN, |Reverse(o)| *o))
        };
        let keep = |newest: &mut BinaryHeap<Reverse<i64>>, offset: i64| {
            // The same record under one key twice is one candidate.
            if newest.iter().any(|Reverse(o)| *o == offset) {
                return;
            }
            newest.push(Reverse(offset));
            if newest.len() > max {
                newest.pop();
            }
        };
        for (h, e) in &keys.tail {
            if *h == hash && in_time(e) && floor(&newest).is_none_or(|f| e.physical_offset > f) {
                keep(&mut newest, e.physical_offset);
            }
        }
        // Newest runs first; within a run a key's entries are in offset order, so each run
        // is walked backwards and left at the first entry too old to be kept: a lookup
        // keeps at most `max` entries per run, however common the key.
        for run in keys
            .runs
            .iter()
            .rev()
            .filter(|r| r.max_time >= begin && r.min_time <= end)
        {
            if floor(&newest).is_some_and(|f| run.max_offset <= f) {
                continue;
            }
            for (_, e) in run.hits(hash).iter().rev() {
                if floor(&newest).is_some_and(|f| e.physical_offset <= f) {
                    break;
                }
                if in_time(e) {
                    keep(&mut newest, e.physical_offset);
                }
            }
        }
        let mut out: Vec<i64> = newest.into_iter().map(|Reverse(o)| o).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }

    /// Entries held (for sizing checkpoints).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry as (topic, hash, entry) (checkpoint rewrites; restoring them in this
    /// order gives an index with the same answers).
    pub fn entries(&self) -> impl Iterator<Item = (&str, u64, &IndexEntry)> {
        self.topics.iter().flat_map(|(t, keys)| {
            keys.runs
                .iter()
                .flat_map(|r| r.entries.iter())
                .chain(keys.tail.iter())
                .map(move |(h, e)| (t.as_str(), *h, e))
        })
    }

    /// Drops entries of records starting below `physical_offset` (retention).
    pub fn purge_below(&mut self, physical_offset: i64) {
        for keys in self.topics.values_mut() {
            keys.runs.retain(|r| r.max_offset >= physical_offset);
            for run in &mut keys.runs {
                if run.min_offset < physical_offset {
                    run.entries
                        .retain(|(_, e)| e.physical_offset >= physical_offset);
                    run.measure();
                }
            }
            keys.runs.retain(|r| !r.entries.is_empty());
            keys.tail
                .retain(|(_, e)| e.physical_offset >= physical_offset);
        }
        self.topics.retain(|_, keys| !keys.is_empty());
        self.len = self.topics.values().map(TopicKeys::len).sum();
    }

    /// Forgets `topic`.
    pub fn remove_topic(&mut self, topic: &str) {
        if let Some(keys) = self.topics.remove(topic) {
            self.len -= keys.len();
        }
    }
}

/// One window entry, as serialized in snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupEntry {
    /// Topic.
    pub topic: String,
    /// UNIQ_KEY.
    pub uniq_key: String,
    /// Where the first copy went.
    pub result: AppendResult,
}

/// Recent `(topic, UNIQ_KEY)` → first result, FIFO-evicted at a fixed capacity.
///
/// Deterministic: insertion order is apply order, eviction is by insertion order, and
/// snapshots carry the entries in that order. Every replica consults it for every send,
/// so it is laid out for that: the entries sit in a ring in insertion order, each with
/// one allocation (topic and key side by side), and a map from a seeded 64-bit hash of
/// the pair to the sequence numbers of the entries with that hash. Lookups compare the strings, so
/// a hash collision costs a comparison, never a wrong answer.
#[derive(Debug, Clone)]
pub struct DedupWindow {
    capacity: usize,
    /// Entries in insertion order; the front one has sequence number `first_seq`.
    order: VecDeque<DedupSlot>,
    first_seq: u64,
    /// Pair hash → sequence numbers of the entries with that hash.
    by_hash: HashKeyed<SeqList>,
    /// Seeds the pair hash per process: producers choose UNIQ_KEYs, and an unseeded hash
    /// would let them make every key collide (each lookup then walks them all). Replicas
    /// may hash differently: hashes only locate entries, answers and order do not depend
    /// on them.
    seed: RandomState,
    /// Tests: a fixed hash function instead (to force collisions).
    hash_fn: Option<fn(&str, &str) -> u64>,
}

/// A key [`DedupWindow::check`] did not find: the hash the insert reuses.
#[derive(Debug, Clone, Copy)]
pub struct Vacancy {
    hash: u64,
}

/// Bytes of topic plus UNIQ_KEY a window entry holds without an allocation (RocketMQ's
/// UNIQ_KEYs are 32 characters): the entry's text is then in the ring itself, so a lookup
/// touches one fewer cache line and an insert or eviction allocates and frees nothing.
const SLOT_INLINE_TEXT: usize = 62;

/// `topic` then `uniq_key`, inline when short.
#[derive(Debug, Clone)]
enum SlotText {
    Inline {
        len: u8,
        bytes: [u8; SLOT_INLINE_TEXT],
    },
    Heap(Box<str>),
}

impl SlotText {
    fn new(topic: &str, uniq_key: &str) -> SlotText {
        let (t, k) = (topic.as_bytes(), uniq_key.as_bytes());
        let len = t.len() + k.len();
        if len <= SLOT_INLINE_TEXT {
            let mut bytes = [0u8; SLOT_INLINE_TEXT];
            bytes[..t.len()].copy_from_slice(t);
            bytes[t.len()..len].copy_from_slice(k);
            // Cannot truncate: len ≤ SLOT_INLINE_TEXT < 256.
            SlotText::Inline {
                len: len as u8,
                bytes,
            }
        } else {
            let mut text = String::with_capacity(len);
            text.push_str(topic);
            text.push_str(uniq_key);
            SlotText::Heap(text.into_boxed_str())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            SlotText::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            SlotText::Heap(s) => s.as_bytes(),
        }
    }
}

/// One window entry.
#[derive(Debug, Clone)]
struct DedupSlot {
    hash: u64,
    topic_len: usize,
    text: SlotText,
    result: AppendResult,
}

impl DedupSlot {
    /// A part of the text; both parts were whole `str`s, so this never fails in practice.
    fn part(&self, range: std::ops::Range<usize>) -> &str {
        self.text
            .as_bytes()
            .get(range)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    fn topic(&self) -> &str {
        self.part(0..self.topic_len)
    }

    fn uniq_key(&self) -> &str {
        self.part(self.topic_len..self.text.as_bytes().len())
    }

    fn is(&self, topic: &str, uniq_key: &str) -> bool {
        let text = self.text.as_bytes();
        self.topic_len == topic.len()
            && text.len() == topic.len() + uniq_key.len()
            && text.get(..topic.len()) == Some(topic.as_bytes())
            && text.get(topic.len()..) == Some(uniq_key.as_bytes())
    }
}

/// Sequence numbers sharing one hash: one inline (the rule), more boxed (collisions).
#[derive(Debug, Clone)]
enum SeqList {
    One(u64),
    Many(Vec<u64>),
}

impl SeqList {
    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let (one, many) = match self {
            SeqList::One(s) => (Some(*s), None),
            SeqList::Many(v) => (None, Some(v.iter().copied())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

impl Default for DedupWindow {
    fn default() -> Self {
        Self::with_capacity(DEDUP_WINDOW_MAX)
    }
}

impl DedupWindow {
    /// An empty window holding at most `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        DedupWindow {
            capacity,
            order: VecDeque::new(),
            first_seq: 0,
            by_hash: HashKeyed::default(),
            seed: RandomState::new(),
            hash_fn: None,
        }
    }

    fn hash(&self, topic: &str, uniq_key: &str) -> u64 {
        match self.hash_fn {
            Some(f) => f(topic, uniq_key),
            None => self.seed.hash_one((topic, uniq_key)),
        }
    }

    /// An empty window hashing pairs with `hash_fn` (tests: force collisions).
    #[cfg(test)]
    pub(super) fn with_hasher(capacity: usize, hash_fn: fn(&str, &str) -> u64) -> Self {
        DedupWindow {
            hash_fn: Some(hash_fn),
            ..Self::with_capacity(capacity)
        }
    }

    fn slot(&self, seq: u64) -> Option<&DedupSlot> {
        let i = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.order.get(i)
    }

    fn find(&self, hash: u64, topic: &str, uniq_key: &str) -> Option<u64> {
        self.by_hash
            .get(&hash)?
            .iter()
            .find(|&seq| self.slot(seq).is_some_and(|s| s.is(topic, uniq_key)))
    }

    /// The first result for `(topic, uniq_key)`, if still in the window.
    pub fn get(&self, topic: &str, uniq_key: &str) -> Option<AppendResult> {
        let seq = self.find(self.hash(topic, uniq_key), topic, uniq_key)?;
        self.slot(seq).map(|s| s.result)
    }

    /// The first result for `(topic, uniq_key)` if it is in the window, else the
    /// [`Vacancy`] to [`DedupWindow::fill`] once the record is appended: apply hashes and
    /// searches once per send, not once to look and again to insert.
    pub fn check(&self, topic: &str, uniq_key: &str) -> Result<AppendResult, Vacancy> {
        let hash = self.hash(topic, uniq_key);
        match self
            .find(hash, topic, uniq_key)
            .and_then(|seq| self.slot(seq))
        {
            Some(s) => Ok(s.result),
            None => Err(Vacancy { hash }),
        }
    }

    /// Remembers the first result of a key that [`DedupWindow::check`] just found missing
    /// (with nothing inserted in between), evicting the oldest key when full; false when the
    /// window holds nothing (capacity 0).
    pub fn fill(
        &mut self,
        vacancy: Vacancy,
        topic: &str,
        uniq_key: &str,
        result: AppendResult,
    ) -> bool {
        debug_assert!(self.find(vacancy.hash, topic, uniq_key).is_none());
        if self.capacity == 0 {
            return false;
        }
        self.push_new(vacancy.hash, topic, uniq_key, result);
        true
    }

    /// Remembers a first result, evicting the oldest key when full; false if the key was
    /// already held (its first result is kept updated, its place in the order is not).
    pub fn insert(&mut self, topic: &str, uniq_key: &str, result: AppendResult) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let hash = self.hash(topic, uniq_key);
        if let Some(seq) = self.find(hash, topic, uniq_key) {
            let i = (seq - self.first_seq) as usize;
            if let Some(s) = self.order.get_mut(i) {
                s.result = result;
            }
            return false;
        }
        self.push_new(hash, topic, uniq_key, result);
        true
    }

    /// Appends a key known to be absent.
    fn push_new(&mut self, hash: u64, topic: &str, uniq_key: &str, result: AppendResult) {
        let seq = self.first_seq + self.order.len() as u64;
        self.order.push_back(DedupSlot {
            hash,
            topic_len: topic.len(),
            text: SlotText::new(topic, uniq_key),
            result,
        });
        match self.by_hash.get_mut(&hash) {
            None => {
                self.by_hash.insert(hash, SeqList::One(seq));
            }
            Some(SeqList::One(first)) => {
                let first = *first;
                self.by_hash.insert(hash, SeqList::Many(vec![first, seq]));
            }
            Some(SeqList::Many(v)) => v.push(seq),
        }
        while self.order.len() > self.capacity {
            self.evict_front();
        }
    }

    fn evict_front(&mut self) {
        let Some(old) = self.order.pop_front() else {
            return;
        };
        let seq = self.first_seq;
        self.first_seq += 1;
        let empty = match self.by_hash.get_mut(&old.hash) {
            Some(SeqList::Many(v)) => {
                v.retain(|&s| s != seq);
                v.is_empty()
            }
            Some(SeqList::One(_)) => true,
            None => false,
        };
        if empty {
            self.by_hash.remove(&old.hash);
        }
    }

    /// The sequence number the next insert gets (inserts are numbered from 0 in order).
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.order.len() as u64
    }

    /// The entries inserted at sequence number `seq` or later that are still held, oldest
    /// first, as (topic, UNIQ_KEY, first result).
    pub fn since(&self, seq: u64) -> impl ExactSizeIterator<Item = (&str, &str, AppendResult)> {
        let skip = usize::try_from(seq.saturating_sub(self.first_seq)).unwrap_or(usize::MAX);
        self.order
            .iter()
            .skip(skip)
            .map(|s| (s.topic(), s.uniq_key(), s.result))
    }

    /// The window's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Forgets every key of `topic` (topic deletion: rare, so the window is rebuilt).
    pub fn remove_topic(&mut self, topic: &str) {
        if !self.order.iter().any(|s| s.topic() == topic) {
            return;
        }
        let kept: Vec<DedupSlot> = self
            .order
            .drain(..)
            .filter(|s| s.topic() != topic)
            .collect();
        self.first_seq = 0;
        self.by_hash.clear();
        for s in kept {
            self.insert(s.topic(), s.uniq_key(), s.result);
        }
    }

    /// Entries in insertion order (for snapshots).
    pub fn entries(&self) -> Vec<DedupEntry> {
        self.order
            .iter()
            .map(|s| DedupEntry {
                topic: s.topic().to_owned(),
                uniq_key: s.uniq_key().to_owned(),
                result: s.result,
            })
            .collect()
    }

    /// A window rebuilt from [`DedupWindow::entries`].
    pub fn from_entries(capacity: usize, entries: Vec<DedupEntry>) -> Self {
        let mut w = Self::with_capacity(capacity);
        for e in entries {
            w.insert(&e.topic, &e.uniq_key, e.result);
        }
        w
    }
}
