//! Dropping retried duplicates: the recent (trace id, span id) keys, and rows without the skipped ones.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use hoptrace_otlp::SpanKey;

/// Rows minus the positions listed in `skip` (sorted ascending).
pub(super) fn without<R>(rows: Vec<R>, skip: &[u32]) -> Vec<R> {
    if skip.is_empty() {
        return rows;
    }
    let mut skip = skip.iter().peekable();
    rows.into_iter()
        .enumerate()
        .filter(|(i, _)| {
            if skip.peek().is_some_and(|&&s| s as usize == *i) {
                skip.next();
                false
            } else {
                true
            }
        })
        .map(|(_, r)| r)
        .collect()
}

/// A fast hash for (trace id, span id) that stays well spread even when ids are sequential rather than
/// random (some SDKs and test tools make them so): multiply-rotate per word, murmur3's finaliser at the end.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        }
    }
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

pub(super) type KeySet = HashSet<SpanKey, BuildHasherDefault<IdHasher>>;

/// The last `window`..`2 × window` keys seen, in two generations so forgetting is O(1).
pub(super) struct RecentKeys {
    pub(super) current: KeySet,
    pub(super) previous: KeySet,
    pub(super) window: usize,
}

impl RecentKeys {
    pub(super) fn new(window: usize) -> Self {
        RecentKeys { current: KeySet::default(), previous: KeySet::default(), window: window.max(1) }
    }

    /// True if the key was not seen recently (and remembers it).
    pub(super) fn insert(&mut self, key: SpanKey) -> bool {
        if self.previous.contains(&key) || !self.current.insert(key) {
            return false;
        }
        if self.current.len() >= self.window {
            // The older generation's table is emptied and reused: a fresh one grew (and faulted in its
            // pages) all over again in every window.
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
        }
        true
    }

    /// Seeds the older generation with keys already stored.
    pub(super) fn preload(&mut self, keys: Vec<SpanKey>) {
        self.previous.extend(keys);
    }

    pub(super) fn forget(&mut self, key: &SpanKey) {
        self.current.remove(key);
        self.previous.remove(key);
    }
}
