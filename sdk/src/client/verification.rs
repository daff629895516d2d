//! Cross-signing and interactive verification on the async client: thin
//! calls into the crypto core, each saved to the store and followed by
//! sending what the core queued.

use serde_json::json;

use super::http::{ClientError, Result};
use super::Client;
use crate::crypto::{OlmMachine, VerificationInfo};

const DEVICE_SIGNING_UPLOAD: &str = "/_matrix/client/v3/keys/device_signing/upload";

impl Client {
    /// Create the account's cross-signing identity and make this device
    /// its first trusted device. The server asks for the password when an
    /// identity exists already (`reset`), and may ask for it the first
    /// time; without `password` such a request fails with its 401.
    pub async fn bootstrap_cross_signing(&self, password: Option<&str>, reset: bool) -> Result<()> {
        let mut body = {
            let mut machine = self.inner.machine.lock().await;
            let body = machine.bootstrap_cross_signing(reset)?;
            // The private keys are stored before the public ones leave.
            self.save(None, &mut machine, None).await?;
            serde_json::to_value(body).map_err(crate::crypto::CryptoError::from)?
        };
        let first = self.inner.http.post(DEVICE_SIGNING_UPLOAD, &body).await;
        match (first, password) {
            (Ok(_), _) => {}
            (Err(ClientError::Server { status: 401, .. }), Some(password)) => {
                // Our server and Synapse take an answer without the
                // challenge's session.
                body["auth"] = json!({
                    "type": "m.login.password",
                    "identifier": { "type": "m.id.user", "user": self.user_id() },
                    "password": password,
                });
                self.inner.http.post(DEVICE_SIGNING_UPLOAD, &body).await?;
            }
            (Err(error), _) => return Err(error),
        }
        self.with_machine(OlmMachine::mark_cross_signing_uploaded)
            .await
    }

    /// Whether this device holds the cross-signing private keys.
    pub async fn has_cross_signing_keys(&self) -> bool {
        self.inner.machine.lock().await.has_cross_signing_keys()
    }

    /// Whether `user_id`'s identity is verified by us (for ourselves: this
    /// device vouches for our identity).
    pub async fn is_identity_verified(&self, user_id: &str) -> bool {
        self.inner
            .machine
            .lock()
            .await
            .is_identity_verified(user_id)
    }

    /// Ask `user_id` to verify (their `devices`, or every known one; for
    /// ourselves every other own device). Returns the flow id.
    pub async fn request_verification(&self, user_id: &str, devices: &[String]) -> Result<String> {
        let now = self.now();
        let mut flow = String::new();
        self.with_machine(|m| {
            flow = m.request_verification(user_id, devices, now)?;
            Ok(())
        })
        .await?;
        Ok(flow)
    }

    /// Ask `user_id` to verify in the DM `room_id`, as Element does for
    /// other people. Returns the flow id (the request event's id).
    pub async fn request_verification_in_room(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<String> {
        let now = self.now();
        let mut provisional = String::new();
        self.with_machine(|m| {
            provisional = m.request_verification_in_room(room_id, user_id, now)?;
            Ok(())
        })
        .await?;
        Ok(self
            .inner
            .machine
            .lock()
            .await
            .verification_id(&provisional))
    }

    /// Accept a verification request from another device.
    pub async fn accept_verification(&self, flow_id: &str) -> Result<()> {
        self.with_machine(|m| m.accept_verification(flow_id)).await
    }

    /// Start emoji (SAS) verification on a ready flow.
    pub async fn start_sas(&self, flow_id: &str) -> Result<()> {
        self.with_machine(|m| m.start_sas(flow_id)).await
    }

    /// The bytes of a QR code to show on a ready flow (render them in byte
    /// mode); the other device scans it.
    pub async fn verification_qr_code(&self, flow_id: &str) -> Result<Vec<u8>> {
        let mut machine = self.inner.machine.lock().await;
        Ok(machine.verification_qr_code(flow_id)?)
    }

    /// The camera read the other device's QR code: check it and answer.
    pub async fn scan_verification_qr_code(&self, flow_id: &str, data: &[u8]) -> Result<()> {
        self.with_machine(|m| m.scan_verification_qr_code(flow_id, data))
            .await
    }

    /// The user confirmed that the other device finished scanning our code.
    pub async fn confirm_qr_scanned(&self, flow_id: &str) -> Result<()> {
        self.with_machine(|m| m.confirm_qr_scanned(flow_id)).await
    }

    /// The user confirmed the emoji match.
    pub async fn confirm_sas(&self, flow_id: &str) -> Result<()> {
        self.with_machine(|m| m.confirm_sas(flow_id)).await
    }

    /// The user said the emoji differ.
    pub async fn sas_mismatch(&self, flow_id: &str) -> Result<()> {
        self.with_machine(|m| m.sas_mismatch(flow_id)).await
    }

    /// Cancel a verification.
    pub async fn cancel_verification(&self, flow_id: &str) -> Result<()> {
        self.with_machine(|m| m.cancel_verification(flow_id)).await
    }

    /// One verification as it stands.
    pub async fn verification(&self, flow_id: &str) -> Option<VerificationInfo> {
        self.inner.machine.lock().await.verification(flow_id)
    }

    /// Every verification the client still remembers.
    pub async fn verifications(&self) -> Vec<VerificationInfo> {
        self.inner.machine.lock().await.verifications()
    }

    /// Run `step` on the crypto core, save, and send what it queued.
    async fn with_machine(
        &self,
        step: impl FnOnce(&mut OlmMachine) -> std::result::Result<(), crate::crypto::CryptoError>,
    ) -> Result<()> {
        {
            let mut machine = self.inner.machine.lock().await;
            step(&mut machine)?;
            self.save(None, &mut machine, None).await?;
        }
        self.send_crypto_requests().await
    }
}
