//! The receiving side: users long-poll `/v3/sync` or sliding sync the way
//! clients do and note when each of the run's messages first reaches them.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::cli::SyncApi;
use crate::matrix::{retrying, Failure, Http, Session};
use crate::payload::id_of_content;
use crate::send::{unix_us, Clock};
use crate::stats::Latencies;

/// What an Element-like client asks for: a long timeline (so a busy room
/// rarely comes back `limited`), lazy-loaded members, no presence.
pub(crate) const DEFAULT_FILTER: &str = r#"{"room":{"timeline":{"limit":1000},"state":{"lazy_load_members":true}},"presence":{"not_types":["*"]}}"#;

/// What a mobile client asks of sliding sync: its first rooms with their
/// latest events and room state, to-device messages and E2EE key counts.
pub(crate) const DEFAULT_SLIDING_REQUEST: &str = r#"{"conn_id":"bench","lists":{"all":{"ranges":[[0,19]],"required_state":[["m.room.encryption",""]],"timeline_limit":10}},"extensions":{"to_device":{"enabled":true},"e2ee":{"enabled":true}}}"#;

/// Pages of `/messages` fetched to fill one `limited` gap.
const BACKFILL_PAGES: usize = 10;

/// One user's view of the run.
#[derive(Debug, Default)]
pub(crate) struct SeenLog {
    /// Keys (`MessageId::key`) of the run's messages this user has seen.
    pub seen: HashSet<u64>,
    /// Send-to-seen latency of each measured message, first sighting only.
    pub latencies: Latencies,
    /// Measured messages seen (one per message: duplicates not counted).
    pub seen_measured: u64,
    /// A message this user had already seen came again in a later sync.
    pub duplicates: u64,
    pub requests: u64,
    /// Successful sync answers that arrived in the measured window.
    pub responses_in_window: u64,
    pub errors: BTreeMap<String, u64>,
    pub rate_limited: u64,
    /// Incremental syncs with a `limited` room timeline (a gap the client
    /// must fill from `/messages`).
    pub limited: u64,
    /// Messages found by filling such gaps.
    pub backfilled: u64,
}

impl SeenLog {
    /// Notes one timeline event; `fresh` is false for backfilled pages,
    /// where meeting a known message is how the gap's end is found.
    /// Returns whether it was one of this run's messages already seen.
    pub(crate) fn note(&mut self, event: &Value, clock: &Clock, now_us: u64, fresh: bool) -> bool {
        if event.get("type").and_then(Value::as_str) != Some("m.room.encrypted") {
            return false;
        }
        let Some(id) = event.get("content").and_then(id_of_content) else {
            return false;
        };
        if id.run != clock.run {
            return false;
        }
        if !self.seen.insert(id.key()) {
            if fresh {
                self.duplicates += 1;
            }
            return true;
        }
        if !fresh {
            self.backfilled += 1;
        }
        if clock.measured(id.sent_at_us) {
            self.seen_measured += 1;
            let interval = clock.interval(id.sent_at_us);
            self.latencies
                .push(interval, now_us.saturating_sub(id.sent_at_us));
        }
        false
    }

    fn error(&mut self, what: &str, f: &crate::matrix::Failure) {
        *self
            .errors
            .entry(format!("{what} {}", f.kind()))
            .or_default() += 1;
        if f.is_rate_limited() {
            self.rate_limited += 1;
        }
    }
}

/// Where each sync API puts what the generator reads (JSON pointers; the
/// room ones relative to a room).
struct Shape {
    /// The rooms whose timelines are read, by room id.
    rooms: &'static str,
    events: &'static str,
    limited: &'static str,
    prev_batch: &'static str,
    /// The token the next request continues from.
    next: &'static str,
}

const V3_SHAPE: Shape = Shape {
    rooms: "/rooms/join",
    events: "/timeline/events",
    limited: "/timeline/limited",
    prev_batch: "/timeline/prev_batch",
    next: "/next_batch",
};

const SLIDING_SHAPE: Shape = Shape {
    rooms: "/rooms",
    events: "/timeline",
    limited: "/limited",
    prev_batch: "/prev_batch",
    next: "/pos",
};

/// What a syncer asks, by API.
#[derive(Debug, Clone)]
pub(crate) enum SyncRequest {
    /// `GET /v3/sync` with this filter (inline JSON).
    V3 { filter: String },
    /// Sliding sync with this body, sent whole with every request (its
    /// parameters are not sticky); the to-device extension's `since`
    /// follows the answers.
    Sliding { body: Value },
}

impl SyncRequest {
    pub(crate) fn new(api: SyncApi, filter: &str, sliding_body: &str) -> anyhow::Result<Self> {
        Ok(match api {
            SyncApi::V3 => SyncRequest::V3 {
                filter: filter.to_owned(),
            },
            SyncApi::Sliding => SyncRequest::Sliding {
                body: serde_json::from_str(sliding_body)?,
            },
        })
    }

    fn shape(&self) -> &'static Shape {
        match self {
            SyncRequest::V3 { .. } => &V3_SHAPE,
            SyncRequest::Sliding { .. } => &SLIDING_SHAPE,
        }
    }

    async fn send(
        &self,
        http: &Http,
        session: &Session,
        since: Option<&str>,
        timeout_ms: u64,
    ) -> Result<Value, Failure> {
        match self {
            SyncRequest::V3 { filter } => http.sync(session, since, timeout_ms, filter).await,
            SyncRequest::Sliding { body } => {
                http.sliding_sync(session, since, timeout_ms, body).await
            }
        }
    }

    /// Takes in an answer: the token to continue from, and (sliding sync)
    /// the to-device position, which acknowledges what was delivered.
    fn advance(&mut self, answer: &Value) -> anyhow::Result<String> {
        if let SyncRequest::Sliding { body } = self {
            let next = answer
                .pointer("/extensions/to_device/next_batch")
                .and_then(Value::as_str);
            if let (Some(next), Some(to_device)) = (
                next,
                body.pointer_mut("/extensions/to_device")
                    .and_then(Value::as_object_mut),
            ) {
                to_device.insert("since".into(), Value::from(next));
            }
        }
        let next = self.shape().next;
        answer
            .pointer(next)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("sync answer lacks {}", &next[1..]))
    }
}

/// Walks the rooms of a sync answer: each timeline event is noted, and
/// each limited timeline's `prev_batch` is returned for backfilling.
/// `fresh` is false for the first answer of a restarted connection, which
/// sends again what the client had: copies there are no duplicates.
pub(crate) fn note_sync(
    log: &mut SeenLog,
    request: &SyncRequest,
    body: &Value,
    clock: &Clock,
    now_us: u64,
    fresh: bool,
) -> Vec<(String, String)> {
    let shape = request.shape();
    let mut gaps = vec![];
    let Some(rooms) = body.pointer(shape.rooms).and_then(Value::as_object) else {
        return gaps;
    };
    for (room_id, room) in rooms {
        for event in room
            .pointer(shape.events)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            log.note(event, clock, now_us, fresh);
        }
        if room.pointer(shape.limited).and_then(Value::as_bool) == Some(true) {
            if let Some(prev) = room.pointer(shape.prev_batch).and_then(Value::as_str) {
                gaps.push((room_id.clone(), prev.to_owned()));
            }
        }
    }
    gaps
}

pub(crate) struct Syncer {
    pub http: Http,
    pub session: Session,
    pub run: u32,
    /// Set once sending starts, which is after every initial sync.
    pub window: Arc<OnceLock<Clock>>,
    pub timeout_ms: u64,
    pub request: SyncRequest,
    /// Events asked for per gap-filling `/messages` page.
    pub backfill_limit: u32,
    pub log: Arc<Mutex<SeenLog>>,
    /// Counts syncers past their initial sync, so sending starts only when
    /// every receiver is listening.
    pub ready: Arc<AtomicU32>,
}

impl Syncer {
    fn clock(&self) -> Clock {
        self.window.get().copied().unwrap_or(Clock {
            run: self.run,
            measure_from_us: 0,
            measure_until_us: 0,
            intervals_from_us: 0,
            interval_us: 1,
        })
    }

    /// Long-polls until `stop` turns true. The initial sync is retried at
    /// most 30 times; after it, errors are counted and the loop goes on
    /// (pausing briefly) until stopped. A sliding sync position the server
    /// no longer knows (`M_UNKNOWN_POS`) starts the connection over, as
    /// clients do.
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let initial =
            retrying(30, || self.request.send(&self.http, &self.session, None, 0)).await?;
        let mut since = Some(self.request.advance(&initial)?);
        self.ready.fetch_add(1, Ordering::SeqCst);
        let mut fresh = true;
        while !*stop.borrow() {
            let request =
                self.request
                    .send(&self.http, &self.session, since.as_deref(), self.timeout_ms);
            let result = tokio::select! {
                r = request => r,
                _ = stop.changed() => break,
            };
            self.log.lock().expect("seen log").requests += 1;
            let body = match result {
                Ok(body) => body,
                Err(f) => {
                    self.log.lock().expect("seen log").error("sync", &f);
                    if f.errcode.as_deref() == Some("M_UNKNOWN_POS") {
                        (since, fresh) = (None, false);
                        continue;
                    }
                    let pause = f.retry_after_ms.unwrap_or(200).clamp(10, 5_000);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    continue;
                }
            };
            let now = unix_us();
            let clock = self.clock();
            let gaps = {
                let mut log = self.log.lock().expect("seen log");
                if clock.measured(now) {
                    log.responses_in_window += 1;
                }
                let gaps = note_sync(&mut log, &self.request, &body, &clock, now, fresh);
                log.limited += gaps.len() as u64;
                gaps
            };
            for (room_id, prev_batch) in gaps {
                self.backfill(&room_id, prev_batch).await;
            }
            since = Some(self.request.advance(&body)?);
            fresh = true;
        }
        Ok(())
    }

    /// Fills a limited timeline's gap from `/messages`, back to the first
    /// message already seen (or BACKFILL_PAGES pages).
    async fn backfill(&self, room_id: &str, mut from: String) {
        for _ in 0..BACKFILL_PAGES {
            let page = match self
                .http
                .messages_before(&self.session, room_id, &from, self.backfill_limit)
                .await
            {
                Ok(page) => page,
                Err(f) => {
                    self.log.lock().expect("seen log").error("messages", &f);
                    return;
                }
            };
            let now = unix_us();
            let clock = self.clock();
            let chunk = page.get("chunk").and_then(Value::as_array);
            let mut met_known = false;
            {
                let mut log = self.log.lock().expect("seen log");
                for event in chunk.into_iter().flatten() {
                    met_known |= log.note(event, &clock, now, false);
                }
            }
            match page.get("end").and_then(Value::as_str) {
                Some(end) if !met_known && chunk.is_some_and(|c| !c.is_empty()) => {
                    from = end.to_owned();
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{megolm_content, DeviceKeys, MessageId};
    use serde_json::json;

    fn event(id: MessageId) -> Value {
        json!({"type": "m.room.encrypted", "event_id": "$x", "sender": "@a:l",
               "content": megolm_content(&id, &DeviceKeys::new("D"))})
    }

    /// The same rooms as each API answers them.
    fn answers(events_a: Vec<Value>, events_b: Vec<Value>) -> [(SyncRequest, Value); 2] {
        let v3 = SyncRequest::new(SyncApi::V3, "{}", "{}").unwrap();
        let sliding = SyncRequest::new(SyncApi::Sliding, "{}", DEFAULT_SLIDING_REQUEST).unwrap();
        [
            (
                v3,
                json!({"next_batch": "s2", "rooms": {"join": {
                    "!a:l": {"timeline": {"limited": false, "events": events_a}},
                    "!b:l": {"timeline": {"limited": true, "prev_batch": "p1", "events": events_b}},
                }}}),
            ),
            (
                sliding,
                json!({"pos": "s2", "rooms": {
                    "!a:l": {"initial": false, "timeline": events_a},
                    "!b:l": {"limited": true, "prev_batch": "p1", "timeline": events_b},
                }, "extensions": {"to_device": {"next_batch": "t7", "events": []}}}),
            ),
        ]
    }

    #[test]
    fn sync_bodies_are_read_for_latency_duplicates_and_gaps() {
        let clock = Clock {
            run: 9,
            measure_from_us: 1_000,
            measure_until_us: 2_000,
            intervals_from_us: 0,
            interval_us: 1_000,
        };
        let id = |seq, at| MessageId {
            run: 9,
            sender: 3,
            seq,
            sent_at_us: at,
        };
        let other_run = MessageId {
            run: 8,
            ..id(1, 1_500)
        };
        let room_a = vec![
            event(id(1, 1_500)),
            event(id(2, 500)),
            event(other_run),
            json!({"type": "m.room.member", "content": {"membership": "join"}}),
        ];
        for (mut request, body) in answers(room_a, vec![event(id(1, 1_500))]) {
            let mut log = SeenLog::default();
            let gaps = note_sync(&mut log, &request, &body, &clock, 1_800, true);
            assert_eq!(gaps, vec![("!b:l".to_owned(), "p1".to_owned())]);
            assert_eq!(log.seen.len(), 2);
            // id 2 was sent in the warm-up: seen, but not measured.
            let mut expected = Latencies::default();
            expected.push(1, 300);
            assert_eq!(log.latencies, expected);
            assert_eq!(log.seen_measured, 1);
            assert_eq!(log.duplicates, 1);
            // Backfilled copies of known messages end a gap, and are no duplicates.
            assert!(log.note(&event(id(2, 500)), &clock, 1_900, false));
            assert_eq!(log.duplicates, 1);
            assert!(!log.note(&event(id(3, 1_600)), &clock, 1_900, false));
            assert_eq!((log.backfilled, log.latencies.summary().count), (1, 2));
            // A restarted connection's copies are no duplicates either.
            note_sync(&mut log, &request, &body, &clock, 1_950, false);
            assert_eq!(log.duplicates, 1);
            assert_eq!(request.advance(&body).unwrap(), "s2");
            assert!(request.advance(&json!({})).is_err());
        }
    }

    #[test]
    fn sliding_requests_acknowledge_to_device_messages() {
        let [(_, _), (mut request, body)] = answers(vec![], vec![]);
        request.advance(&body).unwrap();
        let SyncRequest::Sliding { body: sent } = &request else {
            unreachable!()
        };
        assert_eq!(sent["extensions"]["to_device"]["since"], "t7");
        assert_eq!(sent["conn_id"], "bench");
        assert_eq!(sent["lists"]["all"]["timeline_limit"], 10);
    }
}
