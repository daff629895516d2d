//! One verification flow: its phase, and each transition as a function of
//! the message that caused it, returning what to send. The flow knows
//! nothing of devices or requests; [`super::super::machine`]'s verification
//! methods look keys up and queue the messages.

use serde_json::{json, Value};
use vodozemac::sas::{EstablishedSas, Sas};

use super::emoji::SasEmoji;
use super::qr::QrState;
use super::sas::{self, Cancel, MacMethod, Party};
use super::{OUR_METHODS, SAS_V1};

/// Where a verification stands, as an app shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum VerificationPhase {
    /// Requested by one side; the other has not accepted yet.
    Requested,
    /// Both sides are ready; either may start SAS.
    Ready,
    /// SAS is being negotiated.
    Started,
    /// Show these to the user, who compares them with the other screen.
    ShowSas {
        /// Seven emoji.
        emoji: Vec<SasEmoji>,
        /// Three numbers of 1000–9191.
        decimals: (u16, u16, u16),
    },
    /// The other device scanned the QR code we show: ask the user to
    /// confirm it finished there, then `confirm_qr_scanned`.
    QrScanned,
    /// We confirmed that they match; waiting for the other side.
    Confirmed,
    /// Both sides confirmed and checked each other's keys.
    Done,
    /// The flow ended without verifying.
    Cancelled {
        /// The spec's code (`m.user`, `m.timeout`, `m.mismatched_sas`…).
        code: String,
        /// Why, for people.
        reason: String,
        /// Whether this side cancelled.
        by_us: bool,
    },
}

impl VerificationPhase {
    /// Whether the flow has ended.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Done | Self::Cancelled { .. })
    }
}

/// A snapshot of one verification for the app.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerificationInfo {
    /// The transaction id that names the flow.
    pub flow_id: String,
    /// Who is being verified.
    pub other_user: String,
    /// Their device, once known (a request to all own devices names it
    /// when one answers).
    pub other_device: Option<String>,
    /// Whether this side sent the request.
    pub we_requested: bool,
    /// The DM it runs in (verifying another person, as Element does); None
    /// for to-device.
    pub room_id: Option<String>,
    /// Where it stands.
    pub phase: VerificationPhase,
}

enum SasState {
    Idle,
    /// We sent the start; waiting for their accept.
    WeStarted {
        sas: Sas,
        start: Value,
    },
    /// They accepted our start and we sent our key; waiting for theirs,
    /// which must match their commitment.
    KeySent {
        sas: Sas,
        start: Value,
        mac: MacMethod,
        commitment: String,
    },
    /// We accepted their start; waiting for their key.
    WeAccepted {
        sas: Sas,
        mac: MacMethod,
    },
    /// Keys exchanged.
    Established {
        sas: EstablishedSas,
        mac: MacMethod,
    },
}

/// Messages to send, and the keys whose MACs verified when that happened.
#[derive(Default)]
pub(crate) struct Outcome {
    pub send: Vec<(&'static str, Value)>,
    pub verified_keys: Option<Vec<String>>,
}

impl Outcome {
    pub(crate) fn send(event_type: &'static str, content: Value) -> Self {
        Self {
            send: vec![(event_type, content)],
            verified_keys: None,
        }
    }
}

/// `(user id, device id)` of one side.
pub(crate) type Side<'a> = (&'a str, &'a str);

pub(crate) struct Flow {
    pub flow_id: String,
    /// The DM a verification with another person runs in; None for
    /// to-device (own devices).
    pub room_id: Option<String>,
    pub other_user: String,
    pub other_device: Option<String>,
    /// The devices our request went to (all but the one that answers get a
    /// cancel).
    pub requested_devices: Vec<String>,
    pub we_requested: bool,
    pub phase: VerificationPhase,
    pub last_activity_ms: u64,
    /// The methods the other side offered (request or ready).
    pub their_methods: Vec<String>,
    /// The QR side of the flow, when a code was shown or scanned.
    pub qr: Option<QrState>,
    sas: SasState,
    their_mac: Option<Value>,
    mac_verified: bool,
    pub done_received: bool,
}

/// The `methods` of a request or ready.
pub(crate) fn methods_of(content: &Value) -> Vec<String> {
    content
        .get("methods")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn unexpected(what: &str) -> Cancel {
    Cancel::new("m.unexpected_message", format!("unexpected {what}"))
}

impl Flow {
    pub(crate) fn outgoing(
        flow_id: String,
        other_user: &str,
        devices: Vec<String>,
        now: u64,
    ) -> Self {
        Self::new(flow_id, other_user, None, devices, true, now)
    }

    pub(crate) fn incoming(flow_id: String, other_user: &str, from_device: &str, now: u64) -> Self {
        Self::new(
            flow_id,
            other_user,
            Some(from_device.to_owned()),
            Vec::new(),
            false,
            now,
        )
    }

    fn new(
        flow_id: String,
        other_user: &str,
        other_device: Option<String>,
        requested_devices: Vec<String>,
        we_requested: bool,
        now: u64,
    ) -> Self {
        Self {
            flow_id,
            room_id: None,
            other_user: other_user.to_owned(),
            other_device,
            requested_devices,
            we_requested,
            phase: VerificationPhase::Requested,
            last_activity_ms: now,
            their_methods: Vec::new(),
            qr: None,
            sas: SasState::Idle,
            their_mac: None,
            mac_verified: false,
            done_received: false,
        }
    }

    /// The same flow, in a room (a DM with the other person).
    pub(crate) fn in_room(mut self, room_id: &str) -> Self {
        self.room_id = Some(room_id.to_owned());
        self
    }

    /// A message's content for this flow's channel: to-device messages
    /// name the flow by `transaction_id`, room events by an `m.reference`
    /// to the request event.
    pub(crate) fn wrap(&self, mut content: Value) -> Value {
        if self.room_id.is_some() {
            if let Some(map) = content.as_object_mut() {
                map.remove("transaction_id");
                map.insert(
                    "m.relates_to".to_owned(),
                    json!({ "rel_type": "m.reference", "event_id": self.flow_id }),
                );
            }
        }
        content
    }

    pub(crate) fn info(&self) -> VerificationInfo {
        VerificationInfo {
            flow_id: self.flow_id.clone(),
            other_user: self.other_user.clone(),
            other_device: self.other_device.clone(),
            we_requested: self.we_requested,
            room_id: self.room_id.clone(),
            phase: self.phase.clone(),
        }
    }

    fn their_side(&self) -> Side<'_> {
        (
            &self.other_user,
            self.other_device.as_deref().unwrap_or_default(),
        )
    }

    /// The app accepts their request: we answer `ready`.
    pub(crate) fn accept(&mut self, my_device: &str) -> Result<Outcome, Cancel> {
        if self.we_requested || self.phase != VerificationPhase::Requested {
            return Err(unexpected("accept: there is no request to accept"));
        }
        self.phase = VerificationPhase::Ready;
        Ok(Outcome::send(
            "m.key.verification.ready",
            self.wrap(json!({ "from_device": my_device, "methods": OUR_METHODS, "transaction_id": self.flow_id })),
        ))
    }

    pub(crate) fn receive_ready(&mut self, content: &Value) -> Result<Outcome, Cancel> {
        if !self.we_requested || self.phase != VerificationPhase::Requested {
            return Err(unexpected("m.key.verification.ready"));
        }
        let from_device = content
            .get("from_device")
            .and_then(Value::as_str)
            .ok_or_else(|| Cancel::new("m.invalid_message", "ready without from_device"))?;
        let methods = content.get("methods").and_then(Value::as_array);
        if !methods.is_some_and(|m| m.iter().any(|m| m == SAS_V1)) {
            return Err(Cancel::new(
                "m.unknown_method",
                "the other side cannot do SAS",
            ));
        }
        self.other_device = Some(from_device.to_owned());
        self.their_methods = methods_of(content);
        self.phase = VerificationPhase::Ready;
        Ok(Outcome::default())
    }

    /// The app starts SAS (either side, once ready).
    pub(crate) fn start_sas(&mut self, my_device: &str) -> Result<Outcome, Cancel> {
        if self.phase != VerificationPhase::Ready {
            return Err(unexpected("start: the flow is not ready"));
        }
        let start = self.wrap(sas::start_content(&self.flow_id, my_device));
        // Emoji instead of a code we may have shown: the code is void.
        self.qr = None;
        self.sas = SasState::WeStarted {
            sas: Sas::new(),
            start: start.clone(),
        };
        self.phase = VerificationPhase::Started;
        Ok(Outcome::send("m.key.verification.start", start))
    }

    pub(crate) fn receive_start(
        &mut self,
        content: &Value,
        me: Side<'_>,
    ) -> Result<Outcome, Cancel> {
        let from_device = content.get("from_device").and_then(Value::as_str);
        if from_device != self.other_device.as_deref() {
            return Err(Cancel::new(
                "m.user_mismatch",
                "the start comes from another device than the one that answered",
            ));
        }
        match (&self.phase, &self.sas) {
            (VerificationPhase::Ready, _) => {}
            (VerificationPhase::Started, SasState::WeStarted { .. }) => {
                // Both sides started: the spec lets the smaller (user id,
                // device id) win; if that is us, their start is ignored.
                if me < self.their_side() {
                    return Ok(Outcome::default());
                }
            }
            _ => return Err(unexpected("m.key.verification.start")),
        }
        let (mac, methods) = sas::accept_methods(content)?;
        // They chose emoji over a code we may have shown: the code is void.
        self.qr = None;
        let ours = Sas::new();
        let commitment = sas::commitment(&ours.public_key().to_base64(), content)?;
        let accept = self.wrap(sas::accept_content(
            &self.flow_id,
            mac,
            &methods,
            &commitment,
        ));
        self.sas = SasState::WeAccepted { sas: ours, mac };
        self.phase = VerificationPhase::Started;
        Ok(Outcome::send("m.key.verification.accept", accept))
    }

    pub(crate) fn receive_accept(&mut self, content: &Value) -> Result<Outcome, Cancel> {
        let SasState::WeStarted { .. } = &self.sas else {
            return Err(unexpected("m.key.verification.accept"));
        };
        let (mac, commitment) = sas::read_accept(content)?;
        let SasState::WeStarted { sas, start } = std::mem::replace(&mut self.sas, SasState::Idle)
        else {
            unreachable!("matched above");
        };
        let key = sas.public_key().to_base64();
        self.sas = SasState::KeySent {
            sas,
            start,
            mac,
            commitment,
        };
        Ok(Outcome::send(
            "m.key.verification.key",
            self.wrap(json!({ "transaction_id": self.flow_id, "key": key })),
        ))
    }

    pub(crate) fn receive_key(&mut self, content: &Value, me: Side<'_>) -> Result<Outcome, Cancel> {
        let their_key = content
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| Cancel::new("m.invalid_message", "key message without key"))?
            .to_owned();
        let invalid = |_| Cancel::new("m.invalid_message", "their SAS key is not usable");
        let (established, mac, we_started, outcome) =
            match std::mem::replace(&mut self.sas, SasState::Idle) {
                SasState::KeySent {
                    sas,
                    start,
                    mac,
                    commitment,
                } => {
                    if sas::commitment(&their_key, &start)? != commitment {
                        return Err(Cancel::new(
                            "m.mismatched_commitment",
                            "their key does not match the commitment in their accept",
                        ));
                    }
                    let established = sas.diffie_hellman_with_raw(&their_key).map_err(invalid)?;
                    (established, mac, true, Outcome::default())
                }
                SasState::WeAccepted { sas, mac } => {
                    let key = sas.public_key().to_base64();
                    let established = sas.diffie_hellman_with_raw(&their_key).map_err(invalid)?;
                    let reply = Outcome::send(
                        "m.key.verification.key",
                        self.wrap(json!({ "transaction_id": self.flow_id, "key": key })),
                    );
                    (established, mac, false, reply)
                }
                other => {
                    self.sas = other;
                    return Err(unexpected("m.key.verification.key"));
                }
            };
        let ours = established.our_public_key().to_base64();
        let mine = Party {
            user_id: me.0,
            device_id: me.1,
            key: &ours,
        };
        let (them_user, them_device) = self.their_side();
        let theirs = Party {
            user_id: them_user,
            device_id: them_device,
            key: &their_key,
        };
        let (starter, accepter) = if we_started {
            (&mine, &theirs)
        } else {
            (&theirs, &mine)
        };
        let (emoji, decimals) =
            sas::short_auth_string(&established, starter, accepter, &self.flow_id);
        self.sas = SasState::Established {
            sas: established,
            mac,
        };
        self.phase = VerificationPhase::ShowSas {
            emoji: emoji.to_vec(),
            decimals,
        };
        Ok(outcome)
    }

    /// The user says the emoji match: send our MACs, and check theirs if
    /// they came first.
    pub(crate) fn confirm(
        &mut self,
        me: Side<'_>,
        our_keys: &[(String, String)],
        known: impl Fn(&str) -> Option<String>,
    ) -> Result<Outcome, Cancel> {
        let (VerificationPhase::ShowSas { .. }, SasState::Established { sas, mac }) =
            (&self.phase, &self.sas)
        else {
            return Err(unexpected("confirmation: there is nothing to confirm"));
        };
        let info = sas::mac_info(me, self.their_side(), &self.flow_id);
        let content = self.wrap(sas::mac_content(sas, *mac, &info, &self.flow_id, our_keys));
        self.phase = VerificationPhase::Confirmed;
        let mut outcome = Outcome::send("m.key.verification.mac", content);
        if self.their_mac.is_some() {
            let checked = self.check_their_mac(me, known)?;
            outcome.send.extend(checked.send);
            outcome.verified_keys = checked.verified_keys;
        }
        Ok(outcome)
    }

    pub(crate) fn receive_mac(
        &mut self,
        content: &Value,
        me: Side<'_>,
        known: impl Fn(&str) -> Option<String>,
    ) -> Result<Outcome, Cancel> {
        if self.their_mac.is_some() || !matches!(self.sas, SasState::Established { .. }) {
            return Err(unexpected("m.key.verification.mac"));
        }
        self.their_mac = Some(content.clone());
        if self.phase == VerificationPhase::Confirmed {
            self.check_their_mac(me, known)
        } else {
            Ok(Outcome::default())
        }
    }

    fn check_their_mac(
        &mut self,
        me: Side<'_>,
        known: impl Fn(&str) -> Option<String>,
    ) -> Result<Outcome, Cancel> {
        let (SasState::Established { sas, mac }, Some(content)) = (&self.sas, &self.their_mac)
        else {
            return Err(unexpected("MAC check"));
        };
        let info = sas::mac_info(self.their_side(), me, &self.flow_id);
        let verified = sas::check_mac(sas, *mac, &info, content, known)?;
        self.mac_verified = true;
        if self.done_received {
            self.phase = VerificationPhase::Done;
        }
        Ok(Outcome {
            send: vec![(
                "m.key.verification.done",
                self.wrap(json!({ "transaction_id": self.flow_id })),
            )],
            verified_keys: Some(verified),
        })
    }

    pub(crate) fn receive_done(&mut self) -> Result<Outcome, Cancel> {
        if !matches!(self.sas, SasState::Established { .. }) {
            return Err(unexpected("m.key.verification.done"));
        }
        self.done_received = true;
        if self.mac_verified {
            self.phase = VerificationPhase::Done;
        }
        Ok(Outcome::default())
    }

    /// End the flow; the ephemeral secret goes with it.
    pub(crate) fn cancel(&mut self, code: &str, reason: &str, by_us: bool) {
        self.sas = SasState::Idle;
        self.phase = VerificationPhase::Cancelled {
            code: code.to_owned(),
            reason: reason.to_owned(),
            by_us,
        };
    }
}
