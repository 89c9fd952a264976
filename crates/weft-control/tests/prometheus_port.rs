//! Istio's Prometheus port in the bootstrap `weft bootstrap` writes: a
//! listener answering `/stats/prometheus` from the admin endpoint (and
//! nothing else), the same under Envoy and weft, and the port in node
//! metadata `ENVOY_PROMETHEUS_PORT` for discovery to find.

mod common;

use common::{registry, snapshot};
use weft_control::bootstrap::{self, Identity};
use weft_control::server::AdsServer;
use weft_control::ProxyKind;
use weft_testkit::envoy::{free_port, start_envoy};
use weft_testkit::http::get;
use weft_testkit::wait::{wait_for, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_port_serves_the_admin_metrics_under_envoy_and_weft() {
    let backends = common::backends().await;
    let server = AdsServer::new(snapshot(&registry(9080, &backends), 1));
    let (xds, _task) = server
        .clone()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let who = Identity {
        kind: ProxyKind::Sidecar,
        name: "productpage-v1".into(),
        namespace: "default".into(),
        ip: "127.0.0.1".into(),
        service_account: None,
        labels: Default::default(),
    };
    for side in ["envoy", "weft"] {
        let (admin, prometheus) = (free_port(), free_port());
        let boot = bootstrap::envoy(
            &who,
            &bootstrap::Options {
                xds,
                admin,
                sds_socket: None,
                prometheus,
            },
        );
        assert_eq!(
            boot["node"]["metadata"]["ENVOY_PROMETHEUS_PORT"],
            prometheus.to_string()
        );
        let text = boot.to_string();
        let (_envoy, _weft) = if side == "envoy" {
            (Some(start_envoy(&text, admin).await), None)
        } else {
            let parsed = weft_envoy::parse_bootstrap("bootstrap", &text).unwrap();
            let weft = weft_proxy::start(weft_proxy::Snapshot::compile(&parsed).await.unwrap())
                .await
                .unwrap();
            weft_proxy::xds::spawn(&weft.shared, &parsed).unwrap();
            (None, Some(weft))
        };
        let url = format!("http://127.0.0.1:{prometheus}/stats/prometheus");
        wait_for(&format!("{side}'s Prometheus port"), PATIENCE, async || {
            let r = get(&url, &[]).await?;
            if r.status == 200 && r.body.contains("envoy_server_live") {
                Ok(())
            } else {
                Err(format!(
                    "{} {}",
                    r.status,
                    r.body.chars().take(200).collect::<String>()
                ))
            }
        })
        .await;
        // Only the metrics: the rest of the admin endpoint stays private.
        let other = get(&format!("http://127.0.0.1:{prometheus}/config_dump"), &[])
            .await
            .unwrap();
        assert_eq!(other.status, 404, "{side}: {other:?}");
        if let Some(w) = _weft {
            w.shared.shutdown();
        }
    }
}
