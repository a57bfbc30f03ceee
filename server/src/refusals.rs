//! Every refused request is audited, in one place: a middleware around the whole router writes
//! an audit line for each 4xx answer (its error code, the device when known, the path, the
//! address) before the answer leaves, and folds repeats of the same refusal by the same device
//! or address within a minute into one line with a count, so that a flood of 429s is one line.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::Response,
};
use serde_json::json;
use uuid::Uuid;

use crate::{AppState, storage::AuditEntry};

/// How often the count of a repeated refusal is written to its line, at most.
const REPEAT_FLUSH: Duration = Duration::from_secs(5);

/// The error code of a refused answer, put on the response by [`crate::error::ApiError`].
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// A device and its person, when known.
type Asker = (Uuid, Option<Uuid>);

/// Who was asking, filled in by the `Auth` extractor as soon as it knows the device.
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(Arc<Mutex<Option<Asker>>>);

impl AuditSlot {
    /// Records the device (and its person, when known) making the request.
    pub fn set(&self, device: Uuid, person: Option<Uuid>) {
        *self.0.lock().expect("audit slot") = Some((device, person));
    }

    fn get(&self) -> Option<Asker> {
        *self.0.lock().expect("audit slot")
    }
}

/// One refusal's line of the current minute and how often it happened.
#[derive(Debug)]
struct Seen {
    minute: u64,
    line: i64,
    times: u64,
    written: u64,
    written_at: Instant,
}

/// The refusals of the current minute, by (who, code).
#[derive(Debug)]
pub struct RefusalLog {
    started: Instant,
    seen: Mutex<HashMap<(String, &'static str), Seen>>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            started: Instant::now(),
            seen: Mutex::new(HashMap::new()),
        }
    }
}

enum Step {
    /// A new line.
    Write,
    /// A repeat to count on line `.0`, `.1` times in all (written now when `Some`).
    Count(i64, Option<u64>),
}

impl RefusalLog {
    fn minute(&self) -> u64 {
        self.started.elapsed().as_secs() / 60
    }

    /// What to do for one more refusal `(who, code)`; also hands back the counts of last
    /// minute's lines not written yet.
    fn step(&self, who: &str, code: &'static str) -> (Step, Vec<(i64, u64)>) {
        let minute = self.minute();
        let mut seen = self.seen.lock().expect("refusal log");
        let mut stale = Vec::new();
        if seen.values().any(|s| s.minute != minute) {
            seen.retain(|_, s| {
                if s.minute == minute {
                    return true;
                }
                if s.times > s.written {
                    stale.push((s.line, s.times));
                }
                false
            });
        }
        let step = match seen.get_mut(&(who.to_string(), code)) {
            Some(s) => {
                s.times += 1;
                let write = s.written_at.elapsed() >= REPEAT_FLUSH;
                if write {
                    s.written = s.times;
                    s.written_at = Instant::now();
                }
                Step::Count(s.line, write.then_some(s.times))
            }
            None => Step::Write,
        };
        (step, stale)
    }

    fn written(&self, who: &str, code: &'static str, line: i64) {
        let mut seen = self.seen.lock().expect("refusal log");
        if seen.len() > 50_000 {
            seen.clear();
        }
        seen.insert(
            (who.to_string(), code),
            Seen {
                minute: self.minute(),
                line,
                times: 1,
                written: 1,
                written_at: Instant::now(),
            },
        );
    }
}

/// The client's address, as the edge works it out (trusted proxies' `X-Forwarded-For`).
fn client_ip(state: &AppState, request: &Request) -> Option<String> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let tls = request
        .extensions()
        .get::<crate::edge::Transport>()
        .is_some_and(|t| t.tls);
    crate::edge::client(&state.edge, peer, tls, request.headers())
        .ip
        .map(|ip| ip.to_string())
}

/// The middleware: audits every 4xx answer before it is sent.
pub async fn audit(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let slot = AuditSlot::default();
    request.extensions_mut().insert(slot.clone());
    let ip = client_ip(&state, &request);
    let path = request.uri().path().to_string();
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let who = slot.get();
    if !status.is_client_error() {
        return response;
    }
    let code = response
        .extensions()
        .get::<ErrorCode>()
        .map(|c| c.0)
        .unwrap_or(match status.as_u16() {
            404 => "not_found",
            405 => "method_not_allowed",
            _ => "refused",
        });
    let key = match (&who, &ip) {
        (Some((device, _)), _) => device.to_string(),
        (None, Some(ip)) => ip.clone(),
        (None, None) => String::new(),
    };
    let log = &state.refusals;
    let (step, stale) = log.step(&key, code);
    for (line, times) in stale {
        let _ = state.storage.audit_repeated(line, times).await;
    }
    match step {
        Step::Write => {
            let entry = AuditEntry {
                at: 0,
                device: who.map(|w| w.0),
                person: who.and_then(|w| w.1),
                action: "refused".into(),
                outcome: "refused".into(),
                detail: json!({
                    "code": code,
                    "status": status.as_u16(),
                    "path": path,
                    "method": method,
                    "ip": ip,
                    "times": 1,
                }),
            };
            match state.storage.audit_line(entry).await {
                Ok(line) => log.written(&key, code, line),
                Err(e) => tracing::error!(error = %e, "audit log write failed"),
            }
        }
        Step::Count(line, Some(times)) => {
            if let Err(e) = state.storage.audit_repeated(line, times).await {
                tracing::error!(error = %e, "audit log write failed");
            }
        }
        Step::Count(_, None) => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_a_minute_are_counted_on_one_line() {
        let log = RefusalLog::default();
        assert!(matches!(log.step("d", "rate_limited").0, Step::Write));
        log.written("d", "rate_limited", 7);
        for _ in 0..100 {
            match log.step("d", "rate_limited").0 {
                Step::Count(line, write) => {
                    assert_eq!(line, 7);
                    assert_eq!(write, None, "written at most every few seconds");
                }
                Step::Write => panic!("a repeat made a new line"),
            }
        }
        // Another refusal, or another device, is a line of its own.
        assert!(matches!(log.step("d", "out_of_scope").0, Step::Write));
        assert!(matches!(log.step("e", "rate_limited").0, Step::Write));
    }
}
