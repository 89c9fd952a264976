//! Request mirroring side by side with Envoy over xDS: what the mirror
//! cluster receives, and the share of requests mirrored.
mod support;

use serde_json::{json, Value};
use support::echo_backend;
use support::scenario::{both_sides, route, table};
use support::xds::{assignment, eds_cluster};
use weft_testkit::wait::{wait_for, PATIENCE};
use weft_xds::Kind;

/// What a mirror backend saw, without what differs between the two
/// proxies' runs by design (request ids, the test's key). Also left out,
/// a known difference: Envoy sends shadows through its internal async
/// client, which marks them `x-envoy-internal: true` and appends a
/// placeholder address (192.0.2.2) to x-forwarded-for; weft sends the
/// shadow with the original request's headers and does not invent an
/// address.
fn shadow_view(seen: &Value) -> String {
    let mut s = seen.clone();
    if let Some(h) = s["headers"].as_object_mut() {
        for name in [
            "x-request-id",
            "x-test-key",
            "x-envoy-internal",
            "x-forwarded-for",
        ] {
            h.remove(name);
        }
    }
    s.to_string()
}

/// What the mirror backend has seen of this key's requests, once it has
/// seen `want` of them: a shadow is sent on its own, and may arrive
/// after the answer to the request it copies.
async fn shadows(key: &str, want: usize) -> Vec<Value> {
    wait_for(
        &format!("{want} shadows of {key} at the mirror"),
        PATIENCE,
        async || {
            let got: Vec<Value> = support::seen_with_key(key)
                .into_iter()
                .filter(|s| s["backend"] == "m")
                .collect();
            if got.len() >= want {
                Ok(got)
            } else {
                Err(got.len())
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_mirroring_matches_envoy() {
    let a = echo_backend("a").await.port();
    let m = echo_backend("m").await.port();
    let sides = both_sides(&[a]).await;
    let mirrored = |prefix: &str, policy: Value| {
        route(
            prefix,
            "backend",
            json!({"request_mirror_policies": [policy]}),
        )
    };
    let routes = vec![
        mirrored("/m/all", json!({"cluster": "mirror"})),
        mirrored(
            "/m/plain",
            json!({"cluster": "mirror", "disable_shadow_host_suffix_append": true}),
        ),
        mirrored(
            "/m/half",
            json!({"cluster": "mirror", "runtime_fraction": {"default_value": {"numerator": 50}}}),
        ),
        mirrored(
            "/m/none",
            json!({"cluster": "mirror", "runtime_fraction": {"default_value": {"numerator": 0}}}),
        ),
        route("/", "backend", json!({})),
    ];
    for s in &sides {
        s.apply(&[
            (Kind::Cluster, eds_cluster("mirror")),
            (Kind::ClusterLoadAssignment, assignment("mirror", &[m])),
            (Kind::RouteConfiguration, table(routes.clone())),
        ])
        .await;
    }
    let mut diffs = Vec::new();
    // (path, host, body)
    for (i, (path, host, body)) in [
        ("/m/all?q=1", "svc.test", ""),
        ("/m/all", "svc.test:8080", "mirror me"),
        ("/m/plain", "svc.test", ""),
    ]
    .into_iter()
    .enumerate()
    {
        let mut got = Vec::new();
        for s in &sides {
            let key = format!("{}-mirror-{i}", s.name);
            let r = support::call(&support::Call {
                method: if body.is_empty() { "GET" } else { "POST" },
                port: s.port,
                path,
                host,
                headers: &[("x-test-key", &key)],
                body: body.as_bytes(),
                h2: false,
            })
            .await
            .unwrap();
            assert_eq!(r.headers.get("x-backend").map(String::as_str), Some("a"));
            let seen = shadows(&key, 1).await;
            assert_eq!(seen.len(), 1, "{} {path}: one shadow", s.name);
            got.push(shadow_view(&seen[0]));
        }
        if got[0] != got[1] {
            diffs.push(format!(
                "{host}{path}:\n  envoy: {}\n  weft:  {}",
                got[0], got[1]
            ));
        }
    }
    // The share: 400 requests at 50% (σ = 10; ±50 is 5σ); none at 0%.
    for s in &sides {
        let key = format!("{}-mirror-half", s.name);
        for _ in 0..400 {
            s.request("/m/half", &[("x-test-key", &key)]).await.unwrap();
        }
        let none = format!("{}-mirror-none", s.name);
        for _ in 0..20 {
            s.request("/m/none", &[("x-test-key", &none)])
                .await
                .unwrap();
        }
        // Shadows go out in the order of their requests, each on its own:
        // once one sent after all these has arrived, the others have had
        // every chance to (the share is random, so there is no count of
        // them to wait for).
        let last = format!("{}-mirror-last", s.name);
        s.request("/m/all", &[("x-test-key", &last)]).await.unwrap();
        shadows(&last, 1).await;
        let count = |k: &str| {
            support::seen_with_key(k)
                .iter()
                .filter(|s| s["backend"] == "m")
                .count()
        };
        let half = count(&key);
        assert!(
            (150..=250).contains(&half),
            "{}: {half} of 400 mirrored",
            s.name
        );
        assert_eq!(count(&none), 0, "{}", s.name);
    }
    assert!(
        diffs.is_empty(),
        "weft differs from Envoy:\n{}",
        diffs.join("\n")
    );
}
