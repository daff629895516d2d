//! Password hashing with argon2id (the `argon2` crate's defaults follow the
//! OWASP recommendation: m=19 MiB, t=2, p=1). Hashing runs on the blocking
//! pool so it never stalls the async workers.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use zeroize::Zeroizing;

pub async fn hash(password: Zeroizing<String>) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
    })
    .await?
}

/// Constant-time verification (inside argon2). A missing hash never matches,
/// but the work is still done so timing does not reveal which users exist.
pub async fn verify(password: Zeroizing<String>, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3mBLdHG4dU4VWhCIk2Tz6ZB8Dp9fOHObB1w0FGMnNvQ";
        let (hash, real) = match stored.as_deref() {
            Some(h) => (h, true),
            None => (DUMMY, false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && real
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let a = hash(Zeroizing::new("correct horse".into())).await.unwrap();
        let b = hash(Zeroizing::new("correct horse".into())).await.unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salts must differ");
        assert!(verify(Zeroizing::new("correct horse".into()), Some(a.clone())).await);
        assert!(!verify(Zeroizing::new("wrong".into()), Some(a)).await);
        assert!(!verify(Zeroizing::new("x".into()), None).await);
    }
}
