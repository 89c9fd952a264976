//! The rotation schedule on a paused clock: when certificates are
//! renewed, and how failures are retried.

use std::sync::Mutex;

use tokio::time::Instant;
use weft_testkit::envoy::TempDir;

use super::*;
use crate::ca::{CaOptions, CaSource};

/// The CA in this process, failing the calls it is told to fail, noting
/// when (on tokio's clock) each call came.
struct Recorded {
    ca: LocalCa,
    calls: Mutex<Vec<Instant>>,
    fail: Mutex<Vec<bool>>,
    /// Answer another identity's certificate.
    lie: bool,
}

impl Recorded {
    fn new(dir: &std::path::Path) -> Arc<Recorded> {
        let ca = Ca::open(
            &CaSource::SelfSigned {
                state_dir: dir.to_path_buf(),
            },
            CaOptions::default(),
        )
        .unwrap();
        Arc::new(Recorded {
            ca: LocalCa(Arc::new(ca)),
            calls: Mutex::new(Vec::new()),
            fail: Mutex::new(Vec::new()),
            lie: false,
        })
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

impl Issue for Arc<Recorded> {
    async fn issue(&self, csr: String, ttl: Option<Duration>) -> Result<Vec<String>, ClientError> {
        self.calls.lock().unwrap().push(Instant::now());
        let fail = {
            let mut f = self.fail.lock().unwrap();
            if f.is_empty() {
                false
            } else {
                f.remove(0)
            }
        };
        if fail {
            return Err(ClientError::Call {
                code: tonic::Code::Unavailable,
                message: "down".into(),
            });
        }
        if self.lie {
            let other = Identity::in_cluster_local("default", "someone-else").unwrap();
            let (_, csr) = key_and_csr(&other)?;
            return self.ca.issue(csr, ttl).await;
        }
        self.ca.issue(csr, ttl).await
    }
}

fn id() -> Identity {
    Identity::in_cluster_local("default", "reviews").unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

/// `b - a` is `expected`, give or take the real time the test itself
/// takes (the CA dates certificates by the wall clock, which does not
/// pause).
fn about(a: Instant, b: Instant, expected: Duration) {
    let gap = b - a;
    let slack = Duration::from_secs(5);
    assert!(
        gap + slack >= expected && gap <= expected + slack,
        "{gap:?} between calls; expected about {expected:?}"
    );
}

#[test]
fn renewal_is_at_half_life() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let day = 24 * HOUR;
    assert_eq!(renew_after(t0, t0 + day, t0, 0.5), 12 * HOUR);
    assert_eq!(renew_after(t0, t0 + day, t0 + 11 * HOUR, 0.5), HOUR);
    assert_eq!(
        renew_after(t0, t0 + day, t0 + 13 * HOUR, 0.5),
        Duration::ZERO
    );
    assert_eq!(renew_after(t0, t0 + day, t0 + 2 * day, 0.5), Duration::ZERO);
    assert_eq!(renew_after(t0, t0 + day, t0, 0.25), 18 * HOUR);
}

#[tokio::test(start_paused = true)]
async fn a_certificate_already_due_is_renewed_no_more_than_once_a_second() {
    let dir = TempDir::new("rotation");
    let ca = Recorded::new(&dir.0);
    // One second: due at once by the half-life rule.
    let opts = RotationOptions {
        ttl: Some(Duration::from_secs(1)),
        grace_ratio: 1.0,
    };
    let mut rotation = Rotation::start(id(), ca.clone(), opts);
    rotation.first().await;
    for _ in 0..3 {
        rotation.certs.changed().await.unwrap();
    }
    let calls = ca.calls();
    for pair in calls.windows(2) {
        assert!(pair[1] - pair[0] >= BACKOFF_FIRST, "{calls:?}");
    }
}

#[test]
fn backoff_doubles_to_a_ceiling() {
    let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    assert_eq!(backoff(1000), BACKOFF_MAX);
}

#[tokio::test(start_paused = true)]
async fn certificates_are_renewed_at_half_life_with_a_new_key() {
    let dir = TempDir::new("rotation");
    let ca = Recorded::new(&dir.0);
    let opts = RotationOptions {
        ttl: Some(HOUR),
        ..Default::default()
    };
    let mut rotation = Rotation::start(id(), ca.clone(), opts);
    let first = rotation.first().await;
    assert_eq!(first.identity, id());
    assert!(first.key_pem.contains("PRIVATE KEY"));
    assert_eq!(first.root_pem, ca.ca.0.root_pem());

    let mut seen = vec![first];
    for _ in 0..3 {
        rotation.certs.changed().await.unwrap();
        seen.push(rotation.certs.borrow_and_update().clone().unwrap());
    }
    let calls = ca.calls();
    assert_eq!(calls.len(), 4);
    // Valid an hour from receipt (the CA's backdating aside): renewed
    // when half of that is left.
    for pair in calls.windows(2) {
        about(pair[0], pair[1], HOUR / 2);
    }
    for pair in seen.windows(2) {
        assert_ne!(pair[0].serial, pair[1].serial);
        assert_ne!(pair[0].key_pem, pair[1].key_pem, "a new key each time");
    }
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_with_backoff_and_the_old_certificate_stays() {
    let dir = TempDir::new("rotation");
    let ca = Recorded::new(&dir.0);
    // The first call fails twice, then each renewal fails three times.
    *ca.fail.lock().unwrap() = vec![true, true, false, true, true, true, false];
    let opts = RotationOptions {
        ttl: Some(HOUR),
        ..Default::default()
    };
    let mut rotation = Rotation::start(id(), ca.clone(), opts);
    let first = rotation.first().await;
    let calls = ca.calls();
    assert_eq!(calls.len(), 3);
    about(calls[0], calls[1], Duration::from_secs(1));
    about(calls[1], calls[2], Duration::from_secs(2));

    rotation.certs.changed().await.unwrap();
    let second = rotation.certs.borrow_and_update().clone().unwrap();
    assert_ne!(first.serial, second.serial);
    let calls = ca.calls();
    assert_eq!(calls.len(), 7);
    about(calls[3], calls[4], Duration::from_secs(1));
    about(calls[4], calls[5], Duration::from_secs(2));
    about(calls[5], calls[6], Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn a_chain_for_another_identity_is_not_taken() {
    let dir = TempDir::new("rotation");
    let mut ca = Recorded::new(&dir.0);
    Arc::get_mut(&mut ca).unwrap().lie = true;
    let e = fetch(&id(), &ca, None).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Answer(_)) && e.to_string().contains("someone-else"),
        "{e}"
    );
}
