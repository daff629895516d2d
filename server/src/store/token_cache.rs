//! Access-token look-ups kept for a moment, so that a client polling
//! several times a second does not cost a statement per request.
//!
//! Every request looked its token up: under load one statement in seven
//! of a `/sync`, and on SQLite each statement is a round trip to the
//! connection's thread (docs/performance.md, "Access tokens looked up once
//! a second"). The copy is of the row only, not of the rules: the service
//! still checks deactivation, soft logout and expiry on every request.
//!
//! A copy is dropped, on this node, by the commit of any write that ends
//! or changes a session (the store functions that do call
//! [`WriteTx::ends_sessions`](super::WriteTx::ends_sessions)). Writes this
//! node does not see (another node on the same PostgreSQL, the `cloister`
//! admin commands) end a session here within the time to live at most,
//! which is why it is short; 0 turns the copies off.
//!
//! On PostgreSQL the node also tells the others (`cluster.rs`), which drop
//! their copies when they hear it, within milliseconds.
//!
//! A look-up that raced such a write must not store what it read before
//! the commit: each look-up notes the generation before it reads, and its
//! result is kept only if no session ended meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::users::TokenOwner;

/// Beyond this many copies, the expired ones go; if none has, all of them.
const MAX_ENTRIES: usize = 65_536;

/// Token digests are SHA-256.
type Digest = [u8; 32];

/// Tells the other nodes that sessions ended here.
pub(super) type Announce = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub(super) struct TokenCache {
    /// `None`: nothing is kept.
    ttl: Option<Duration>,
    inner: Mutex<Inner>,
    announce: OnceLock<Announce>,
    /// For the metrics: copies used, and times every copy was dropped.
    pub(super) used: AtomicU64,
    pub(super) dropped: AtomicU64,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    entries: HashMap<Digest, (TokenOwner, Instant)>,
}

impl TokenCache {
    pub(super) fn new(ttl: Option<Duration>) -> TokenCache {
        TokenCache {
            ttl: ttl.filter(|t| !t.is_zero()),
            inner: Mutex::default(),
            announce: OnceLock::new(),
            used: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Set once, when the node starts exchanging messages with others.
    pub(super) fn announce_with(&self, announce: Announce) {
        let _ = self.announce.set(announce);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The copy for this digest, if one younger than the time to live exists.
    pub(super) fn get(&self, digest: &[u8]) -> Option<TokenOwner> {
        let ttl = self.ttl?;
        let digest: &Digest = digest.try_into().ok()?;
        let inner = self.lock();
        let (owner, stored) = inner.entries.get(digest)?;
        if stored.elapsed() >= ttl {
            return None;
        }
        self.used.fetch_add(1, Ordering::Relaxed);
        Some(owner.clone())
    }

    /// Taken before reading the row that [`TokenCache::put`] may keep.
    pub(super) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Keeps `owner` unless a session ended since `generation` was read.
    pub(super) fn put(&self, digest: &[u8], owner: &TokenOwner, generation: u64) {
        let Some(ttl) = self.ttl else { return };
        let Ok(digest) = Digest::try_from(digest) else {
            return;
        };
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner
                .entries
                .retain(|_, (_, stored)| stored.elapsed() < ttl);
            if inner.entries.len() >= MAX_ENTRIES {
                inner.entries.clear();
            }
        }
        inner
            .entries
            .insert(digest, (owner.clone(), Instant::now()));
    }

    /// Drops one copy, so the next request reads the row again.
    pub(super) fn forget(&self, digest: &[u8]) {
        if let Ok(digest) = Digest::try_from(digest) {
            self.lock().entries.remove(&digest);
        }
    }

    /// Drops every copy and turns away look-ups already under way.
    /// Sessions end rarely, so this is simpler than finding the tokens a
    /// write touched, and as cheap.
    pub(super) fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A session ended through this node: [`TokenCache::clear`] here, and
    /// the other nodes are told to.
    pub(super) fn sessions_ended(&self) {
        self.clear();
        if let Some(announce) = self.announce.get() {
            announce();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user: &str) -> TokenOwner {
        TokenOwner {
            user_id: user.into(),
            device_id: "DEV".into(),
            is_admin: false,
            deactivated: false,
            last_seen_ts: None,
            soft_logout: false,
            expires_ts: None,
        }
    }

    #[test]
    fn keeps_what_it_was_given_until_cleared() {
        let cache = TokenCache::new(Some(Duration::from_secs(60)));
        let digest = [7u8; 32];
        assert!(cache.get(&digest).is_none());
        cache.put(&digest, &owner("@a:x"), cache.generation());
        assert_eq!(cache.get(&digest).unwrap().user_id, "@a:x");
        cache.clear();
        assert!(cache.get(&digest).is_none());
    }

    #[test]
    fn a_read_that_raced_a_session_ending_is_not_kept() {
        let cache = TokenCache::new(Some(Duration::from_secs(60)));
        let digest = [1u8; 32];
        let before = cache.generation();
        cache.clear(); // a logout commits while the row is being read
        cache.put(&digest, &owner("@a:x"), before);
        assert!(cache.get(&digest).is_none());
    }

    #[test]
    fn copies_expire_and_zero_keeps_none() {
        let cache = TokenCache::new(Some(Duration::from_millis(20)));
        let digest = [2u8; 32];
        cache.put(&digest, &owner("@a:x"), cache.generation());
        assert!(cache.get(&digest).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get(&digest).is_none());

        let off = TokenCache::new(Some(Duration::ZERO));
        off.put(&digest, &owner("@a:x"), off.generation());
        assert!(off.get(&digest).is_none());
    }

    #[test]
    fn forget_drops_one_and_odd_digests_are_ignored() {
        let cache = TokenCache::new(Some(Duration::from_secs(60)));
        let (a, b) = ([3u8; 32], [4u8; 32]);
        let generation = cache.generation();
        cache.put(&a, &owner("@a:x"), generation);
        cache.put(&b, &owner("@b:x"), generation);
        cache.forget(&a);
        assert!(cache.get(&a).is_none());
        assert!(cache.get(&b).is_some());
        cache.put(&[5u8; 31], &owner("@c:x"), generation);
        assert!(cache.get(&[5u8; 31]).is_none());
    }

    #[test]
    fn a_full_cache_makes_room() {
        let cache = TokenCache::new(Some(Duration::from_secs(60)));
        let generation = cache.generation();
        for i in 0..=MAX_ENTRIES {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.put(&digest, &owner("@a:x"), generation);
        }
        assert!(cache.lock().entries.len() <= MAX_ENTRIES);
    }
}
