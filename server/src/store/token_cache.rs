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
//! node is not told of (the `cloister` admin commands on PostgreSQL) end a
//! session here within the time to live at most, which is why it is
//! short; 0 turns the copies off.
//!
//! On PostgreSQL the node also tells the others (`cluster.rs`), which drop
//! their copies when they hear it, within milliseconds.
//!
//! On SQLite the only other writer is the `cloister` admin commands, run on
//! the same machine (the database is a local file). They replace a marker
//! file beside the database whenever a write of theirs ended sessions
//! ([`touch_marker`]); the node looks at the marker's metadata (one `stat`,
//! no statement) before it uses, keeps or hands out a generation for a
//! copy, and drops them all when it changed. So a password reset or a
//! deactivation from the command line takes effect on the running node as
//! soon as the command returns.
//!
//! A look-up that raced such a write must not store what it read before
//! the commit: each look-up notes the generation before it reads, and its
//! result is kept only if no session ended meanwhile.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
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
    /// SQLite: the file the admin commands replace when they end sessions.
    marker: Option<PathBuf>,
    inner: Mutex<Inner>,
    announce: OnceLock<Announce>,
    /// PostgreSQL, in a process that runs no node: the statement that
    /// tells the nodes, run inside each transaction that ends sessions.
    notify: OnceLock<String>,
    /// For the metrics: copies used, and times every copy was dropped.
    pub(super) used: AtomicU64,
    pub(super) dropped: AtomicU64,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    entries: HashMap<Digest, (TokenOwner, Instant)>,
    /// The marker as it was when this generation began.
    marker: Option<Stamp>,
}

/// What tells one version of the marker file from the next: each is a new
/// file renamed over the old one, so it has another inode than the one it
/// replaces, and its own change time (an inode number may come back two
/// versions later, its change time to the nanosecond does not).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    inode: u64,
    ctime: (i64, i64),
}

fn stamp(marker: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(marker).ok()?;
    Some(Stamp {
        inode: m.ino(),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// Tells a running node on the same SQLite file that sessions ended: a new
/// version of the marker, written beside it and renamed over it, so that a
/// node never sees it half written and each version is a new file. Best
/// effort: if it cannot be written, the node's copies still expire within
/// their time to live.
pub(super) fn touch_marker(marker: &Path) {
    let mut next = marker.as_os_str().to_owned();
    next.push(format!(".{}", std::process::id()));
    let next = PathBuf::from(next);
    let written =
        super::file_modes::create_private_file(&next).and_then(|()| std::fs::rename(&next, marker));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&next);
        tracing::warn!(error = %e, marker = %marker.display(), "could not tell a running node that sessions ended; its copies of access tokens expire within limits.access_token_cache_ms");
    }
}

impl TokenCache {
    pub(super) fn new(ttl: Option<Duration>) -> TokenCache {
        TokenCache {
            ttl: ttl.filter(|t| !t.is_zero()),
            marker: None,
            inner: Mutex::default(),
            announce: OnceLock::new(),
            notify: OnceLock::new(),
            used: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Watches `marker` (see [`touch_marker`]); set before any copy is
    /// kept. With copies off there is nothing to drop, so no `stat` either.
    pub(super) fn watching(mut self, marker: Option<PathBuf>) -> TokenCache {
        let marker = marker.filter(|_| self.ttl.is_some());
        let stamp = marker.as_deref().and_then(stamp);
        self.inner
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .marker = stamp;
        self.marker = marker;
        self
    }

    /// Set once, by a process that runs no node (see
    /// [`Store::announce_to_running_nodes`](super::Store::announce_to_running_nodes)).
    pub(super) fn notify_in_transaction(&self, statement: String) {
        let _ = self.notify.set(statement);
    }

    /// What a transaction that ends sessions runs before its commit.
    pub(super) fn notify_statement(&self) -> Option<&str> {
        self.notify.get().map(String::as_str)
    }

    /// Set once, when the node starts exchanging messages with others.
    pub(super) fn announce_with(&self, announce: Announce) {
        let _ = self.announce.set(announce);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cache locked, every copy dropped first if the admin commands
    /// replaced the marker since the generation began.
    fn checked(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        if let Some(marker) = &self.marker {
            let now = stamp(marker);
            if now != inner.marker {
                inner.marker = now;
                inner.generation += 1;
                inner.entries.clear();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        inner
    }

    /// The copy for this digest, if one younger than the time to live exists.
    pub(super) fn get(&self, digest: &[u8]) -> Option<TokenOwner> {
        let ttl = self.ttl?;
        let digest: &Digest = digest.try_into().ok()?;
        let inner = self.checked();
        let (owner, stored) = inner.entries.get(digest)?;
        if stored.elapsed() >= ttl {
            return None;
        }
        self.used.fetch_add(1, Ordering::Relaxed);
        Some(owner.clone())
    }

    /// Taken before reading the row that [`TokenCache::put`] may keep.
    pub(super) fn generation(&self) -> u64 {
        self.checked().generation
    }

    /// Keeps `owner` unless a session ended since `generation` was read.
    pub(super) fn put(&self, digest: &[u8], owner: &TokenOwner, generation: u64) {
        let Some(ttl) = self.ttl else { return };
        let Ok(digest) = Digest::try_from(digest) else {
            return;
        };
        let mut inner = self.checked();
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
    fn a_new_marker_drops_every_copy_and_a_racing_read() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("db-sessions");
        let cache = TokenCache::new(Some(Duration::from_secs(60))).watching(Some(marker.clone()));
        let digest = [6u8; 32];
        // No marker yet: copies are kept and used.
        cache.put(&digest, &owner("@a:x"), cache.generation());
        assert!(cache.get(&digest).is_some());
        // The first marker, and each new version after it, drops them.
        for _ in 0..3 {
            touch_marker(&marker);
            assert!(cache.get(&digest).is_none());
            cache.put(&digest, &owner("@a:x"), cache.generation());
            assert!(cache.get(&digest).is_some());
        }
        // A row read before the marker changed is not kept.
        let before = cache.generation();
        touch_marker(&marker);
        cache.put(&digest, &owner("@a:x"), before);
        assert!(cache.get(&digest).is_none());
        assert!(!dir
            .path()
            .join(format!("db-sessions.{}", std::process::id()))
            .exists());
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
