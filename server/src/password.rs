//! Password hashing with argon2id (the `argon2` crate's defaults follow the
//! OWASP recommendation: m=19 MiB, t=2, p=1). Hashing runs on the blocking
//! pool so it never stalls the async workers.
//!
//! Each hash works in 19 MiB. Unbounded, a burst of logins took that much
//! per request, and since glibc keeps such freed blocks (sourceware bug
//! 14581) the process stayed at its peak (the `cloister` binary now uses
//! jemalloc; a process embedding this library keeps its own allocator). So at most
//! `limits.max_password_hashes` hashes run at once; up to
//! `limits.password_hash_queue` requests wait briefly for a slot, and the
//! rest are refused as busy (429), which costs nothing.
//!
//! The limiter belongs to the server's state (the CLI makes its own), so
//! several servers in one process (the tests) each keep their own bound.
//!
//! A finished hash zeroes its buffer and hands it to the next caller if one
//! is already queued, so a burst of sign-ins allocates once per slot. When
//! nobody waits, the buffer is freed at once and glibc is asked to give the
//! pages back (`malloc_trim`), which it otherwise would not: held on, the
//! buffers sat on top of whatever load followed a burst. A lone sign-in
//! pays a few milliseconds of page faults for this. Buffers a queued caller
//! left unused are freed by [`Passwords::release_idle`] (the housekeeping
//! loop).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use argon2::password_hash::{
    rand_core::OsRng, Output, ParamsString, PasswordHash, Salt, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::{Zeroize, Zeroizing};

use crate::error::ApiError;

/// How long a queued request waits for a slot before it is refused.
const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// What a refused client is told to wait: a few hashes' time.
pub const RETRY_AFTER_MS: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("too many password hashes in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

impl From<argon2::password_hash::Error> for PasswordError {
    fn from(err: argon2::password_hash::Error) -> Self {
        PasswordError::Failed(err.to_string())
    }
}

impl From<PasswordError> for ApiError {
    fn from(err: PasswordError) -> Self {
        match err {
            PasswordError::Busy => ApiError {
                message: "The server is busy checking passwords; try again shortly".into(),
                ..ApiError::limit_exceeded(RETRY_AFTER_MS)
            },
            PasswordError::Failed(detail) => {
                tracing::error!(error = %detail, "password hashing failed");
                ApiError::internal()
            }
        }
    }
}

/// The password hasher of one server (or CLI command): at most `slots`
/// hashes at once, their memory handed on within a burst, and up to `queue`
/// callers waiting briefly for a slot. Cheap to clone; clones share slots.
#[derive(Clone)]
pub struct Passwords {
    limiter: Arc<Limiter>,
}

impl Passwords {
    pub fn new(slots: usize, queue: usize) -> Passwords {
        Passwords {
            limiter: Arc::new(Limiter::new(slots.max(1), queue, QUEUE_WAIT)),
        }
    }

    /// Hashes `password` with a fresh salt into a PHC string
    /// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
    pub async fn hash(&self, password: Zeroizing<String>) -> Result<String, PasswordError> {
        self.limiter
            .clone()
            .run(move |memory| {
                let salt = SaltString::generate(&mut OsRng);
                hash_into(password.as_bytes(), salt.as_salt(), memory)
            })
            .await?
    }

    /// Frees the kept buffers no hash used for `idle`; returns how many.
    pub fn release_idle(&self, idle: Duration) -> usize {
        let released = {
            let mut buffers = self
                .limiter
                .buffers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let before = buffers.len();
            buffers.retain(|b| b.since.elapsed() < idle);
            before - buffers.len()
        };
        if released > 0 {
            return_freed_memory();
        }
        released
    }

    /// Buffers kept for reuse right now.
    pub fn kept_buffers(&self) -> usize {
        self.limiter
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether `password` matches `stored`, compared in constant time. A
    /// missing hash never matches, but the work is still done so timing
    /// does not reveal which users exist. `Busy` when no slot came free in
    /// time.
    pub async fn check(
        &self,
        password: Zeroizing<String>,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        self.limiter
            .clone()
            .run(move |memory| verify_with(password.as_bytes(), stored.as_deref(), memory))
            .await
    }
}

const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3mBLdHG4dU4VWhCIk2Tz6ZB8Dp9fOHObB1w0FGMnNvQ";

fn verify_with(password: &[u8], stored: Option<&str>, memory: &mut [Block]) -> bool {
    let (hash, real) = match stored {
        Some(hash) => (hash, true),
        None => (DUMMY, false),
    };
    matches!(verify_hash(password, hash, memory), Ok(true)) && real
}

/// What `Argon2::hash_password` produces, computed in `memory`.
fn hash_into(
    password: &[u8],
    salt: Salt<'_>,
    memory: &mut [Block],
) -> Result<String, PasswordError> {
    let params = Params::default();
    let output = compute(
        Algorithm::Argon2id,
        Version::V0x13,
        &params,
        password,
        salt,
        Params::DEFAULT_OUTPUT_LEN,
        memory,
    )?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// What `PasswordVerifier::verify_password` decides, computed in `memory`.
fn verify_hash(password: &[u8], stored: &str, memory: &mut [Block]) -> Result<bool, PasswordError> {
    let phc = PasswordHash::new(stored)?;
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(phc.algorithm)?;
    let version = match phc.version {
        Some(v) => Version::try_from(v).map_err(argon2::password_hash::Error::from)?,
        None => Version::default(),
    };
    let params = Params::try_from(&phc)?;
    let computed = compute(
        algorithm,
        version,
        &params,
        password,
        salt,
        expected.len(),
        memory,
    )?;
    // `Output`'s equality is constant-time.
    Ok(computed == expected)
}

fn compute(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: Salt<'_>,
    output_len: usize,
    memory: &mut [Block],
) -> Result<Output, PasswordError> {
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf)?;
    let blocks = params.block_count();
    // Hashes stored with costlier parameters than ours (none so far) get
    // memory of their own.
    let mut own;
    let memory = match memory.get_mut(..blocks) {
        Some(memory) => memory,
        None => {
            own = vec![Block::new(); blocks];
            &mut own[..]
        }
    };
    Ok(Output::init_with(output_len, |out| {
        Ok(argon2.hash_password_into_with_memory(password, salt, out, &mut *memory)?)
    })?)
}

struct Limiter {
    queue: usize,
    wait: Duration,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Working memory of idle slots; never more buffers than slots.
    buffers: Mutex<Vec<Kept>>,
}

/// A zeroed buffer waiting for the next hash, and since when.
struct Kept {
    memory: Box<[Block]>,
    since: std::time::Instant,
}

/// Makes glibc serve every allocation of 1 MiB or more (the 19 MiB hashing
/// buffers) with its own mapping, so freeing one unmaps it. The `cloister`
/// binary allocates Rust memory with jemalloc, so there this governs only
/// glibc's own share (SQLite's pages); the figures for jemalloc in
/// docs/performance.md were measured with it set. By default
/// glibc raises that threshold to the size of the last such block freed,
/// after which the next buffers come from its heaps, and a freed block in
/// a thread's heap stays resident even through `malloc_trim`: measured, a
/// server that freed its buffers after each burst of sign-ins went back to
/// 25 MiB after the first burst and stayed at 63 MiB after every later one.
/// Pinning the threshold also stops glibc raising its trim threshold, so
/// freed heap tops go back too. Called once, first thing in `main`.
pub fn unmap_large_blocks_on_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc's allocator parameters; called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Gives the pages of freed buffers back to the operating system. glibc
/// keeps large freed blocks in its heaps (sourceware bug 14581) unless
/// asked; other allocators (jemalloc, in the `cloister` binary) return them
/// on their own.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heaps; it takes no
    // pointers and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The right to run one hash, with its working memory.
struct Slot {
    limiter: Arc<Limiter>,
    memory: Option<Box<[Block]>>,
    _permit: OwnedSemaphorePermit,
}

impl Limiter {
    fn new(slots: usize, queue: usize, wait: Duration) -> Limiter {
        Limiter {
            queue,
            wait,
            permits: Arc::new(Semaphore::new(slots)),
            waiting: AtomicUsize::new(0),
            buffers: Mutex::new(Vec::new()),
        }
    }

    async fn slot(self: &Arc<Self>) -> Result<Slot, PasswordError> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _queued = Queued::enter(self).ok_or(PasswordError::Busy)?;
                tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
                    .await
                    .map_err(|_| PasswordError::Busy)?
                    .map_err(|_| PasswordError::Busy)?
            }
        };
        Ok(Slot {
            limiter: self.clone(),
            memory: None,
            _permit: permit,
        })
    }

    async fn run<T: Send + 'static>(
        self: Arc<Self>,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let mut slot = self.slot().await?;
        // The slot moves into the blocking task: a request dropped meanwhile
        // (its client hung up) must not free the slot while its hash runs.
        tokio::task::spawn_blocking(move || work(slot.memory()))
            .await
            .map_err(|e| PasswordError::Failed(e.to_string()))
    }
}

impl Slot {
    fn memory(&mut self) -> &mut [Block] {
        self.memory.get_or_insert_with(|| {
            let reused = self
                .limiter
                .buffers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .map(|kept| kept.memory);
            reused.unwrap_or_else(|| {
                vec![Block::new(); Params::default().block_count()].into_boxed_slice()
            })
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(mut memory) = self.memory.take() {
            // The blocks are derived from the password.
            for block in memory.iter_mut() {
                block.as_mut().zeroize();
            }
            // Kept only for a caller already queued for a slot, so a burst
            // of sign-ins reuses it. Otherwise it goes back now: kept until
            // the housekeeping tick freed it, it sat on top of the message
            // load that follows a burst, and that sum was the peak (this
            // runs on the blocking thread that hashed, not an async worker).
            if self.limiter.waiting.load(Ordering::Acquire) == 0 {
                drop(memory);
                return_freed_memory();
                return;
            }
            self.limiter
                .buffers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Kept {
                    memory,
                    since: std::time::Instant::now(),
                });
        }
    }
}

/// A place in the queue, given back however the wait ends.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn enter(limiter: &'a Limiter) -> Option<Queued<'a>> {
        limiter
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limiter.queue).then_some(n + 1)
            })
            .ok()
            .map(|_| Queued(&limiter.waiting))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher, PasswordVerifier};
    use axum::response::IntoResponse;

    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let passwords = Passwords::new(2, 0);
        let pw = |s: &str| Zeroizing::new(s.to_owned());
        let a = passwords.hash(pw("correct horse")).await.unwrap();
        let b = passwords.hash(pw("correct horse")).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salts must differ");
        let check = |p: &str, stored: Option<String>| passwords.check(pw(p), stored);
        assert!(check("correct horse", Some(a.clone())).await.unwrap());
        assert!(!check("wrong", Some(a)).await.unwrap());
        assert!(!check("x", None).await.unwrap());
    }

    #[tokio::test]
    async fn a_buffer_nobody_waits_for_is_given_back() {
        let passwords = Passwords::new(2, 0);
        let pw = |s: &str| Zeroizing::new(s.to_owned());
        passwords.hash(pw("one")).await.unwrap();
        assert_eq!(passwords.kept_buffers(), 0, "a lone hash keeps nothing");
        passwords.hash(pw("two")).await.unwrap();
        assert_eq!(passwords.kept_buffers(), 0);
    }

    /// A slot that allocated its memory, and a second caller queued behind
    /// it; `use_memory`: whether the queued one hashes.
    async fn hand_over(limiter: &Arc<Limiter>, use_memory: bool) -> (usize, usize, bool) {
        let mut first = limiter.slot().await.unwrap();
        let memory = first.memory();
        hash_into(b"pw", SaltString::generate(&mut OsRng).as_salt(), memory).unwrap();
        let first_at = memory.as_ptr() as usize;
        let queued = tokio::spawn({
            let limiter = limiter.clone();
            async move {
                let mut slot = limiter.slot().await.unwrap();
                if !use_memory {
                    return (0, false);
                }
                let memory = slot.memory();
                let clear = memory.iter().all(|b| b.as_ref().iter().all(|w| *w == 0));
                (memory.as_ptr() as usize, clear)
            }
        });
        while limiter.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        drop(first);
        let (second_at, clear) = queued.await.unwrap();
        (first_at, second_at, clear)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_caller_reuses_the_buffer_cleared() {
        let limiter = Arc::new(Limiter::new(1, 1, QUEUE_WAIT));
        let (first, second, clear) = hand_over(&limiter, true).await;
        assert_eq!(first, second, "the buffer is reused, not reallocated");
        assert!(clear, "the previous hash's memory was zeroed");
        assert_eq!(
            limiter.buffers.lock().unwrap().len(),
            0,
            "after the last of the burst, nothing is kept"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_buffers_are_released() {
        let passwords = Passwords::new(1, 1);
        // Kept for a queued caller that, here, never hashed.
        hand_over(&passwords.limiter, false).await;
        assert_eq!(passwords.kept_buffers(), 1);
        assert_eq!(passwords.release_idle(Duration::from_secs(60)), 0);
        assert_eq!(passwords.kept_buffers(), 1, "recently used: kept");
        assert_eq!(passwords.release_idle(Duration::ZERO), 1);
        assert_eq!(passwords.kept_buffers(), 0);
    }

    #[test]
    fn an_unknown_user_costs_a_whole_hash() {
        let mut memory = vec![Block::new(); Params::default().block_count()];
        // Ok(false), not a parse error: the dummy is really computed.
        assert!(matches!(verify_hash(b"x", DUMMY, &mut memory), Ok(false)));
    }

    #[test]
    fn same_phc_strings_as_the_argon2_crate_both_ways() {
        let mut memory = vec![Block::new(); Params::default().block_count()];
        let salt = SaltString::generate(&mut OsRng);
        let ours = hash_into(b"pw", salt.as_salt(), &mut memory).unwrap();
        let theirs = Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert_eq!(ours, theirs);
        // A hash of other parameters (as an older version might have stored).
        let params = Params::new(8 * 1024, 1, 1, None).unwrap();
        let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(verify_hash(b"pw", &other, &mut memory).unwrap());
        assert!(!verify_hash(b"pW", &other, &mut memory).unwrap());
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_and_a_queued_request_gets_the_next_slot() {
        let limiter = Arc::new(Limiter::new(1, 1, Duration::from_secs(3600)));
        let held = limiter.slot().await.unwrap();
        let queued = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.slot().await.map(drop) }
        });
        while limiter.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(limiter.slot().await, Err(PasswordError::Busy)));
        drop(held);
        queued
            .await
            .unwrap()
            .expect("the queued request gets the freed slot");
        assert_eq!(limiter.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_queued_request_is_refused_when_no_slot_frees_in_time() {
        let limiter = Arc::new(Limiter::new(1, 4, Duration::from_millis(10)));
        let _held = limiter.slot().await.unwrap();
        assert!(matches!(limiter.slot().await, Err(PasswordError::Busy)));
        assert_eq!(limiter.waiting.load(Ordering::Acquire), 0);
    }

    #[test]
    fn busy_is_a_429_with_retry_after() {
        let response = ApiError::from(PasswordError::Busy).into_response();
        assert_eq!(response.status(), 429);
        let err = ApiError::from(PasswordError::Busy);
        assert_eq!(err.errcode, "M_LIMIT_EXCEEDED");
        assert_eq!(err.extra["retry_after_ms"], RETRY_AFTER_MS);
    }
}
