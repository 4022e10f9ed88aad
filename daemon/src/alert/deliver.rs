//! Delivering notifications: a queue apart from the runs, each delivery in its own task, 5
//! tries over about 5 minutes (0, 10 s, 30 s, 90 s, 170 s after the first), 10 s per try, the
//! body signed with HMAC-SHA256 when the notifier has a secret, and a bounded log of what was
//! sent and how it went. A slow or failing receiver delays nothing but its own delivery.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evald_model::Delivery;
use serde_json::{Value, json};

use crate::config::{Notifier, NotifierFormat, Secret};

/// Waits before each try after the first.
pub const RETRY_DELAYS: [Duration; 4] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(90),
    Duration::from_secs(170),
];

/// A try with no 2xx within this long has failed.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(10);

/// Deliveries kept in the log.
pub const LOG_LEN: usize = 500;

/// The body a notifier sends for `payload` (DESIGN's fields).
pub fn body(n: &Notifier, payload: &Value) -> Vec<u8> {
    let v = match &n.format {
        NotifierFormat::Json => payload.clone(),
        NotifierFormat::Slack => json!({ "text": payload["message"] }),
        NotifierFormat::Template(t) => {
            let env = minijinja::Environment::new();
            match env.render_str(t, payload) {
                Ok(s) => return s.into_bytes(),
                Err(e) => {
                    tracing::warn!(notifier = %n.name, error = %e, "the notifier's template failed; sending JSON");
                    payload.clone()
                }
            }
        }
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// One POST of a delivery; the receiver's status or what went wrong (scrubbed of `secrets`).
pub async fn try_once(
    http: &reqwest::Client,
    n: &Notifier,
    id: &str,
    body: &[u8],
    secrets: &[Secret],
) -> Result<u16, (Option<u16>, String)> {
    let mut rb = http
        .post(n.url.clone())
        .timeout(TRY_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-evald-delivery", id)
        .body(body.to_vec());
    if let Some(s) = &n.secret {
        rb = rb.header("x-evald-signature", signature(s, body));
    }
    for (k, v) in &n.headers {
        rb = rb.header(k, v);
    }
    match rb.send().await {
        Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
        Ok(r) => Err((
            Some(r.status().as_u16()),
            format!("HTTP {}", r.status().as_u16()),
        )),
        Err(e) => {
            let mut cause = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                cause = s.to_string();
                src = s.source();
            }
            Err((None, crate::endpoint::redact(&cause, secrets)))
        }
    }
}

/// The queue and the log.
#[derive(Clone)]
pub struct Deliveries {
    http: reqwest::Client,
    log: Arc<Mutex<VecDeque<Delivery>>>,
    secrets: Arc<Vec<Secret>>,
    delays: Arc<Vec<Duration>>,
    tracker: tokio_util::task::TaskTracker,
    /// Where each delivery's end (delivered, or failed after the last try) is counted.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// The HTTP client deliveries go out with (and `evald notify test`'s, so a test looks the same
/// to the receiver).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("evald/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

impl Deliveries {
    /// A queue whose tasks `tracker` waits for at shutdown (or not: a delivery never holds a
    /// shutdown up beyond its current try).
    pub fn new(secrets: Vec<Secret>) -> Deliveries {
        Deliveries::with_delays(secrets, RETRY_DELAYS.to_vec())
    }

    /// A queue waiting `delays` between tries (one more try than delays).
    pub fn with_delays(secrets: Vec<Secret>, delays: Vec<Duration>) -> Deliveries {
        Deliveries {
            delays: Arc::new(delays),
            http: http_client(),
            log: Arc::new(Mutex::new(VecDeque::new())),
            secrets: Arc::new(secrets),
            tracker: tokio_util::task::TaskTracker::new(),
            metrics: None,
        }
    }

    /// The same queue, counting each delivery's end in `evald_notifications_total`.
    pub fn counted(self, metrics: Arc<crate::metrics::Metrics>) -> Deliveries {
        Deliveries {
            metrics: Some(metrics),
            ..self
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, VecDeque<Delivery>> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest deliveries, newest first.
    pub fn recent(&self) -> Vec<Delivery> {
        self.log().iter().rev().cloned().collect()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Delivery)) {
        if let Some(d) = self.log().iter_mut().rev().find(|d| d.id == id) {
            f(d);
        }
    }

    /// Queues `payload` for `n`; returns at once.
    pub fn send(&self, n: &Notifier, d: Delivery, payload: Value) {
        let body = body(n, &payload);
        {
            let mut log = self.log();
            log.push_back(d.clone());
            while log.len() > LOG_LEN {
                log.pop_front();
            }
        }
        let (me, n) = (self.clone(), n.clone());
        self.tracker.spawn(async move {
            let mut tries = 0u32;
            loop {
                tries += 1;
                let res = try_once(&me.http, &n, &d.id, &body, &me.secrets).await;
                let done = res.is_ok() || tries as usize > me.delays.len();
                me.update(&d.id, |e| {
                    e.attempts = tries;
                    match &res {
                        Ok(s) => {
                            e.http_status = Some(*s);
                            e.status = "delivered".into();
                            e.error = None;
                        }
                        Err((s, why)) => {
                            e.http_status = *s;
                            e.error = Some(why.clone());
                            e.status = if done { "failed".into() } else { "retrying".into() };
                        }
                    }
                });
                if done && let Some(m) = &me.metrics {
                    m.notification(&n.name, res.is_ok());
                }
                match res {
                    Ok(_) => return,
                    Err((_, why)) if done => {
                        tracing::warn!(notifier = %n.name, delivery = %d.id, job = %d.job, alert = %d.alert, tries, error = %why, "a notification could not be delivered");
                        return;
                    }
                    Err((_, why)) => {
                        tracing::info!(notifier = %n.name, delivery = %d.id, tries, error = %why, "notification not delivered yet; retrying");
                        tokio::time::sleep(me.delays[tries as usize - 1]).await;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use evald_tests::webhook::receiver;

    fn notifier(url: &str) -> Notifier {
        Notifier {
            name: "hook".into(),
            url: reqwest::Url::parse(url).unwrap(),
            secret: Some(Secret::new("hook-secret-1")),
            signed: true,
            format: NotifierFormat::Json,
            headers: vec![],
        }
    }

    fn delivery(id: &str) -> Delivery {
        Delivery {
            id: id.into(),
            notifier: "hook".into(),
            job: "j".into(),
            alert: "a".into(),
            target: "t".into(),
            state: "firing".into(),
            attempts: 0,
            status: "pending".into(),
            http_status: None,
            error: None,
            time: String::new(),
        }
    }

    async fn settled(d: &Deliveries, id: &str) -> Delivery {
        for _ in 0..500 {
            if let Some(x) = d.recent().into_iter().find(|x| x.id == id)
                && (x.status == "delivered" || x.status == "failed")
            {
                return x;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("delivery {id} never settled: {:?}", d.recent());
    }

    /// A receiver that fails twice gets the delivery on the third try, the same delivery id
    /// and a valid signature each time; the log says 3 tries, delivered. Delays are 20 ms here
    /// (5 tries over ~5 minutes in the daemon).
    #[tokio::test]
    async fn a_failing_receiver_gets_the_delivery_on_a_retry() {
        let (url, seen) = receiver(2).await;
        let d = Deliveries::with_delays(vec![], vec![Duration::from_millis(20); 4]);
        d.send(&notifier(&url), delivery("d-1"), json!({"state": "firing"}));
        let got = settled(&d, "d-1").await;
        assert_eq!(
            (got.status.as_str(), got.attempts, got.http_status),
            ("delivered", 3, Some(200))
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        for (id, sig, body) in &seen {
            assert_eq!(id, "d-1");
            assert_eq!(sig, &signature(&Secret::new("hook-secret-1"), body));
        }
    }

    /// One that always fails: five tries, then `failed`, with the last status kept.
    #[tokio::test]
    async fn after_five_tries_the_failure_is_logged() {
        let (url, seen) = receiver(u32::MAX).await;
        let d = Deliveries::with_delays(vec![], vec![Duration::from_millis(5); 4]);
        d.send(&notifier(&url), delivery("d-2"), json!({"state": "firing"}));
        let got = settled(&d, "d-2").await;
        assert_eq!(
            (got.status.as_str(), got.attempts, got.http_status),
            ("failed", 5, Some(500))
        );
        assert_eq!(seen.lock().unwrap().len(), 5);
    }

    /// RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        let s = super::signature(
            &crate::config::Secret::new("Jefe"),
            b"what do ya want for nothing?",
        );
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
