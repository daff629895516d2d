//! Recovery: secret storage and key backup on the async client, as Element
//! sets them up. `setup_recovery` makes a recovery key (or passphrase key),
//! stores the cross-signing keys and the backup key under it as account
//! data, and turns the key backup on; `recover` on a new device takes them
//! back with the recovery key, restores the history's keys, and trusts the
//! device through cross-signing.

use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::http::{encode, ClientError, Result};
use super::Client;
use crate::crypto::{
    BackupImport, CryptoError, SecretStorageKey, PASSPHRASE_ITERATIONS, SECRET_BACKUP,
    SECRET_MASTER, SECRET_SELF_SIGNING, SECRET_USER_SIGNING,
};

const DEFAULT_KEY: &str = "m.secret_storage.default_key";
const BACKUP_VERSION: &str = "/_matrix/client/v3/room_keys/version";

/// What [`Client::recover`] restored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Whether the cross-signing keys were taken (this device is now
    /// trusted by the account's identity).
    pub cross_signing: bool,
    /// The backup restored from, if there was one.
    pub backup_version: Option<String>,
    /// What the backup gave.
    pub keys: BackupImport,
}

fn is_not_found(error: &ClientError) -> bool {
    matches!(error, ClientError::Server { status: 404, .. })
}

impl Client {
    fn account_data_path(&self, event_type: &str) -> String {
        format!(
            "/_matrix/client/v3/user/{}/account_data/{}",
            encode(self.user_id()),
            encode(event_type)
        )
    }

    async fn account_data(&self, event_type: &str) -> Result<Option<Value>> {
        match self
            .inner
            .http
            .get(&self.account_data_path(event_type))
            .await
        {
            Ok(content) => Ok(Some(content)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn set_account_data(&self, event_type: &str, content: &Value) -> Result<()> {
        self.inner
            .http
            .put(&self.account_data_path(event_type), content)
            .await
            .map(drop)
    }

    /// Set up recovery for this account: a new secret storage key — random,
    /// returned as the recovery key to write down, or from `passphrase` —
    /// holding the cross-signing keys this device has and the key backup's
    /// key; a new key backup is created when this device has none, and
    /// every room key is uploaded to it from now on. Returns the recovery
    /// key (also for a passphrase key, as a fallback to the passphrase).
    pub async fn setup_recovery(&self, passphrase: Option<&str>) -> Result<Zeroizing<String>> {
        let key = match passphrase {
            Some(p) => SecretStorageKey::from_new_passphrase(p, PASSPHRASE_ITERATIONS),
            None => SecretStorageKey::new(),
        };
        if self.inner.machine.lock().await.backup_version().is_none() {
            let body = {
                let mut machine = self.inner.machine.lock().await;
                let body = machine.create_backup()?;
                // The key is stored before the server hears of it.
                self.save(None, &mut machine, None).await?;
                body
            };
            let created = self.inner.http.post(BACKUP_VERSION, &body).await?;
            let version = created
                .get("version")
                .and_then(Value::as_str)
                .ok_or_else(|| ClientError::InvalidResponse {
                    path: BACKUP_VERSION.into(),
                    reason: "no version".into(),
                })?
                .to_owned();
            let mut machine = self.inner.machine.lock().await;
            machine.enable_backup(&version)?;
            self.save(None, &mut machine, None).await?;
        }
        let secrets = {
            let machine = self.inner.machine.lock().await;
            let mut secrets = machine.cross_signing_secrets();
            if let Some(backup) = machine.backup_key() {
                secrets.push((SECRET_BACKUP, backup));
            }
            secrets
        };
        // The key and the secrets first, the default last: cut short, the
        // account keeps its previous recovery key working.
        let description = key.description();
        self.set_account_data(
            &format!("m.secret_storage.key.{}", key.key_id()),
            &description,
        )
        .await?;
        for (name, secret) in &secrets {
            let content = json!({ "encrypted": { key.key_id(): key.encrypt(name, secret) } });
            self.set_account_data(name, &content).await?;
        }
        self.set_account_data(DEFAULT_KEY, &json!({ "key": key.key_id() }))
            .await?;
        self.send_crypto_requests().await?;
        Ok(key.recovery_key())
    }

    /// Recover on this device with the recovery key (or the passphrase):
    /// take the cross-signing keys (this device becomes trusted), the
    /// backup key, and every room key in the backup. Sync first, so that
    /// the account's identity is known. Events that waited for their keys
    /// decrypt on the next sync.
    pub async fn recover(&self, recovery_key_or_passphrase: &str) -> Result<RecoveryReport> {
        let storage_error =
            |reason: &str| ClientError::Crypto(CryptoError::SecretStorage(reason.into()));
        let default = self.account_data(DEFAULT_KEY).await?.ok_or_else(|| {
            storage_error("this account has no secret storage (set up recovery first)")
        })?;
        let key_id = default
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| storage_error("the default key names no key"))?
            .to_owned();
        let description = self
            .account_data(&format!("m.secret_storage.key.{key_id}"))
            .await?
            .ok_or_else(|| storage_error("the default key has no description"))?;
        let key =
            SecretStorageKey::from_recovery_key(&key_id, &description, recovery_key_or_passphrase)
                .or_else(|e| {
                    if description.get("passphrase").is_some() {
                        SecretStorageKey::from_passphrase(
                            &key_id,
                            &description,
                            recovery_key_or_passphrase,
                        )
                    } else {
                        Err(e)
                    }
                })?;
        let mut report = RecoveryReport::default();

        let mut cross_signing: Vec<Option<Zeroizing<String>>> = Vec::new();
        for name in [SECRET_MASTER, SECRET_SELF_SIGNING, SECRET_USER_SIGNING] {
            let secret = match self.account_data(name).await? {
                Some(content) => Some(key.decrypt(name, &content)?),
                None => None,
            };
            cross_signing.push(secret);
        }
        if cross_signing.iter().any(Option::is_some) {
            let mut machine = self.inner.machine.lock().await;
            let get = |i: usize| cross_signing[i].as_deref().map(String::as_str);
            machine.import_cross_signing_secrets(get(0), get(1), get(2))?;
            self.save(None, &mut machine, None).await?;
            report.cross_signing = true;
        }

        let version_info = match self.inner.http.get(BACKUP_VERSION).await {
            Ok(info) => Some(info),
            Err(error) if is_not_found(&error) => None,
            Err(error) => return Err(error),
        };
        let backup_secret = match self.account_data(SECRET_BACKUP).await? {
            Some(content) => Some(key.decrypt(SECRET_BACKUP, &content)?),
            None => None,
        };
        if let (Some(info), Some(secret)) = (version_info, backup_secret) {
            let version = info
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            {
                let mut machine = self.inner.machine.lock().await;
                machine.import_backup_key(&secret, &info)?;
                self.save(None, &mut machine, None).await?;
            }
            let keys = self
                .inner
                .http
                .get(&format!(
                    "/_matrix/client/v3/room_keys/keys?version={}",
                    encode(&version)
                ))
                .await?;
            let mut machine = self.inner.machine.lock().await;
            report.keys = machine.import_backup(&keys)?;
            self.save(None, &mut machine, None).await?;
            report.backup_version = Some(version);
        }
        self.send_crypto_requests().await?;
        Ok(report)
    }

    /// The key backup this device uploads room keys to, if any.
    pub async fn backup_version(&self) -> Option<String> {
        self.inner.machine.lock().await.backup_version()
    }

    /// Whether the account's current backup is signed by a key this device
    /// trusts (its own, a verified device's, or the verified identity's).
    pub async fn is_backup_trusted(&self) -> Result<bool> {
        let info = match self.inner.http.get(BACKUP_VERSION).await {
            Ok(info) => info,
            Err(error) if is_not_found(&error) => return Ok(false),
            Err(error) => return Err(error),
        };
        Ok(self.inner.machine.lock().await.is_backup_trusted(&info))
    }
}
