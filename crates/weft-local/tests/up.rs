//! `weft up examples/bookinfo` in-process: the control plane, seven weft
//! proxies (six sidecars, the ingress gateway) and the Bookinfo demo
//! applications; the README tour's scenarios applied by copying Istio's
//! sample VirtualServices into the watched directory.

mod common;

use std::time::{Duration, Instant};

use common::{example_copy, repo};

use weft_testkit::envoy::{free_port, TempDir};
use weft_testkit::http::{call_at, request, Call, Reply};
use weft_testkit::wait::{wait_for, PATIENCE};

/// The example binds fixed addresses (its apps and sidecars): one mesh at
/// a time in this test binary.
static ONE_MESH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn tour(name: &str) -> String {
    std::fs::read_to_string(repo().join("tour").join(name)).unwrap()
}

async fn get(gw: u16, path: &str, cookie: Option<&str>) -> Reply {
    let url = format!("http://127.0.0.1:{gw}{path}");
    let mut headers = vec![("host", "bookinfo.local")];
    if let Some(c) = cookie {
        headers.push(("cookie", c));
    }
    request("GET", &url, &headers, false)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// Which reviews workload served the product's reviews.
async fn podname(gw: u16, cookie: Option<&str>) -> String {
    let r = get(gw, "/api/v1/products/0/reviews", cookie).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["podname"].as_str().unwrap_or_default().to_string()
}

/// Waits until `n` answers in a row come from `want`.
async fn until_served_by(gw: u16, cookie: Option<&str>, want: &str) {
    let start = Instant::now();
    let mut streak = 0;
    let mut last = String::new();
    while start.elapsed() < PATIENCE {
        last = podname(gw, cookie).await;
        streak = if last == want { streak + 1 } else { 0 };
        if streak == 10 {
            return;
        }
    }
    panic!("reviews not served by {want} (last: {last}, streak {streak})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_up_and_the_tour() {
    let _one = ONE_MESH.lock().await;
    let dir = TempDir::new("up");
    let gw = free_port();
    example_copy(&dir.0, gw);
    let state = TempDir::new("up-state");
    let mut opts = weft_local::Options::new(&dir.0);
    opts.control.xds = "127.0.0.1:0".parse().unwrap();
    opts.control.debug = "127.0.0.1:0".parse().unwrap();
    // As `weft up` runs by default: the CA on, every proxy with its
    // workload certificate, mesh mTLS.
    let mut ca = weft_control::ca::SecureOptions::new(&state.0);
    ca.address = "127.0.0.1:0".parse().unwrap();
    opts.control.ca = Some(ca);
    let mesh = weft_local::start(opts).await.unwrap();
    assert_eq!(mesh.plan.apps.len(), 6, "{:?}", mesh.plan);
    assert_eq!(mesh.proxies.len(), 7, "{:?}", mesh.plan);
    // The HTTP server, and the HTTPS one (a free port in the copy).
    assert_eq!(mesh.plan.gateway_ports.len(), 2);
    assert!(mesh.plan.gateway_ports.contains(&u32::from(gw)));
    let problems = mesh.settle(PATIENCE).await;
    assert!(problems.is_empty(), "{problems:?}");

    // The page, through the gateway, productpage's sidecar, and the
    // details and reviews sidecars.
    let page = get(gw, "/productpage", None).await;
    assert_eq!(page.status, 200, "{page:?}");
    for want in [
        "Book Details",
        "paperback",
        "Reviewer1",
        "Reviews served by: <b>reviews-v",
    ] {
        assert!(
            page.body.contains(want),
            "{want:?} missing from {}",
            page.body
        );
    }
    let products = get(gw, "/api/v1/products", None).await;
    assert!(
        products.body.contains("The Comedy of Errors"),
        "{products:?}"
    );
    let details = get(gw, "/api/v1/products/0", None).await;
    assert!(details.body.contains("ISBN-10"), "{details:?}");
    let ratings = get(gw, "/api/v1/products/0/ratings", None).await;
    assert!(ratings.body.contains("Reviewer1"), "{ratings:?}");
    assert_eq!(get(gw, "/admin", None).await.status, 404);

    // Route everything to v1: no stars.
    std::fs::write(dir.0.join("tour.yaml"), tour("virtual-service-all-v1.yaml")).unwrap();
    until_served_by(gw, None, "reviews-v1").await;
    let page = get(gw, "/productpage", None).await;
    assert!(!page.body.contains("class=\"stars\""), "{}", page.body);

    // Log in as jason: the cookie becomes the end-user header that the
    // jason → v2 rule matches; everyone else gets v3.
    let body = b"username=jason&passwd=x";
    let login = call_at(
        "127.0.0.1".parse().unwrap(),
        &Call {
            method: "POST",
            port: gw,
            path: "/login",
            host: "bookinfo.local",
            headers: &[("content-type", "application/x-www-form-urlencoded")],
            body,
            h2: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(login.status, 302, "{login:?}");
    let cookie = login
        .headers
        .get("set-cookie")
        .expect("a session cookie")
        .clone();
    let cookie = cookie.split(';').next().unwrap().to_string();
    assert_eq!(cookie, "user=jason");
    std::fs::write(
        dir.0.join("tour.yaml"),
        tour("virtual-service-reviews-jason-v2-v3.yaml"),
    )
    .unwrap();
    until_served_by(gw, Some(&cookie), "reviews-v2").await;
    until_served_by(gw, None, "reviews-v3").await;
    let page = get(gw, "/productpage", Some(&cookie)).await;
    assert!(page.body.contains("data-color=\"black\""), "{}", page.body);
    let page = get(gw, "/productpage", None).await;
    assert!(page.body.contains("data-color=\"red\""), "{}", page.body);

    // Istio's standard metrics, which the control plane's filters make
    // every proxy report: productpage's sidecar counts its calls to
    // reviews by version (the exchange told it who answered), and
    // reviews-v2's counts jason's calls from productpage over mutual TLS.
    let admin_of = |name: &str| {
        mesh.proxies
            .iter()
            .find(|(w, _)| w.name == name)
            .and_then(|(_, a)| *a)
            .unwrap_or_else(|| panic!("{name}'s sidecar has an admin address"))
    };
    let scrape = |admin: std::net::SocketAddr, want: Vec<&'static str>| async move {
        let text = request(
            "GET",
            &format!("http://{admin}/stats/prometheus"),
            &[],
            false,
        )
        .await
        .map_err(|e| e.to_string())?
        .body;
        let found = text
            .lines()
            .any(|l| l.starts_with("istio_requests_total{") && want.iter().all(|w| l.contains(w)));
        if found {
            Ok(())
        } else {
            Err(format!("no istio_requests_total with {want:?} in:\n{text}"))
        }
    };
    let productpage = admin_of("productpage-v1");
    for version in ["v2", "v3"] {
        let want = vec![
            "reporter=\"source\"",
            "source_workload=\"productpage-v1\"",
            "source_app=\"productpage\"",
            "destination_service=\"reviews.default.svc.cluster.local\"",
            "destination_service_name=\"reviews\"",
            "response_code=\"200\"",
        ];
        let want: Vec<&'static str> = want
            .into_iter()
            .chain([if version == "v2" {
                "destination_version=\"v2\""
            } else {
                "destination_version=\"v3\""
            }])
            .collect();
        wait_for(
            "productpage's sidecar to report reviews by version",
            PATIENCE,
            async || scrape(productpage, want.clone()).await,
        )
        .await;
    }
    let reviews_v2 = admin_of("reviews-v2");
    wait_for(
        "reviews-v2's sidecar to report its caller",
        PATIENCE,
        async || {
            scrape(
                reviews_v2,
                vec![
                "reporter=\"destination\"",
                "source_workload=\"productpage-v1\"",
                "source_principal=\"spiffe://cluster.local/ns/default/sa/bookinfo-productpage\"",
                "destination_workload=\"reviews-v2\"",
                "destination_version=\"v2\"",
                "connection_security_policy=\"mutual_tls\"",
            ],
            )
            .await
        },
    )
    .await;

    // Ratings abort for jason: his reviews say ratings are unavailable.
    std::fs::write(
        dir.0.join("tour-ratings.yaml"),
        tour("virtual-service-ratings-test-abort.yaml"),
    )
    .unwrap();
    let start = Instant::now();
    loop {
        let page = get(gw, "/productpage", Some(&cookie)).await;
        if page
            .body
            .contains("Ratings service is currently unavailable")
        {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "{}", page.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let page = get(gw, "/productpage", None).await;
    assert!(
        page.body.contains("data-color=\"red\""),
        "others still see ratings: {}",
        page.body
    );

    // The seeds' redirect and rewrite on the gateway.
    std::fs::write(
        dir.0.join("tour-gw.yaml"),
        tour("gateway-redirect-rewrite.yaml"),
    )
    .unwrap();
    let start = Instant::now();
    let ask = |path: &'static str| async move {
        let url = format!("http://127.0.0.1:{gw}{path}");
        request("GET", &url, &[("host", "bookinfo.example")], false)
            .await
            .unwrap()
    };
    while ask("/yunwei").await.status != 301 {
        assert!(start.elapsed() < PATIENCE, "the gateway never redirected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = ask("/yunwei").await;
    assert_eq!(
        r.headers.get("location").map(String::as_str),
        Some("http://blog.csdn.net/weixin_43279138?type=blog")
    );
    let r = ask("/receiveapi/api/v1/products").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("The Comedy of Errors"), "{r:?}");

    // The seeds' circuit breaker replaces the ratings rule and is accepted.
    let before = mesh.control.server.snapshot().version;
    std::fs::write(
        dir.0.join("tour-cb.yaml"),
        tour("ratings-circuit-breaker.yaml"),
    )
    .unwrap();
    // Once the watcher has published a snapshot with it and every proxy
    // has been sent it, every proxy must accept it.
    wait_for(
        "a snapshot with the circuit breaker, sent to every proxy",
        PATIENCE,
        async || {
            let version = mesh.control.server.snapshot().version;
            let status = mesh.control.server.status();
            let behind: Vec<_> = status
                .iter()
                .filter(|p| p.snapshot != version)
                .map(|p| p.id.clone())
                .collect();
            if version > before && behind.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "version {version} (was {before}); behind: {behind:?}"
                ))
            }
        },
    )
    .await;
    let problems = mesh.settle(PATIENCE).await;
    assert!(problems.is_empty(), "{problems:?}");
    let ratings = get(gw, "/api/v1/products/0/ratings", None).await;
    assert_eq!(ratings.status, 200, "{ratings:?}");

    // A workload added while the mesh runs gets its sidecar and its app;
    // removed, both go.
    std::fs::write(dir.0.join("details-v2.yaml"), DETAILS_V2).unwrap();
    let direct = || async {
        request(
            "GET",
            "http://127.0.0.17:9080/details/0",
            &[("host", "details:9080")],
            false,
        )
        .await
    };
    let start = Instant::now();
    loop {
        if let Ok(r) = direct().await {
            assert_eq!(r.status, 200, "{r:?}");
            assert!(r.body.contains("ISBN-10"), "{r:?}");
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "details-v2's sidecar never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running = running_names(&mesh).await;
    assert!(running.contains(&"details-v2".to_string()), "{running:?}");
    assert_eq!(get(gw, "/productpage", None).await.status, 200);

    std::fs::remove_file(dir.0.join("details-v2.yaml")).unwrap();
    let start = Instant::now();
    while direct().await.is_ok() {
        assert!(
            start.elapsed() < PATIENCE,
            "details-v2's sidecar still answers after its workload went"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running = running_names(&mesh).await;
    assert!(!running.contains(&"details-v2".to_string()), "{running:?}");

    // The tour's mTLS step: mesh-wide STRICT. A plaintext client outside
    // the mesh is refused at a sidecar's inbound address, while the
    // page, sidecar to sidecar over auto mTLS, keeps working.
    let reviews_direct = || async {
        request(
            "GET",
            "http://127.0.0.13:9080/reviews/0",
            &[("host", "reviews:9080")],
            false,
        )
        .await
    };
    let r = reviews_direct().await.expect("PERMISSIVE serves plaintext");
    assert_eq!(r.status, 200, "{r:?}");
    std::fs::write(
        dir.0.join("tour-mtls.yaml"),
        tour("peer-authentication-strict.yaml"),
    )
    .unwrap();
    let start = Instant::now();
    while let Ok(r) = reviews_direct().await {
        assert!(
            start.elapsed() < PATIENCE,
            "plaintext still served under STRICT: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let problems = mesh.settle(PATIENCE).await;
    assert!(problems.is_empty(), "{problems:?}");
    for _ in 0..5 {
        let page = get(gw, "/productpage", None).await;
        assert_eq!(page.status, 200, "{page:?}");
        assert!(
            page.body.contains("Book Details") && page.body.contains("Reviewer1"),
            "{}",
            page.body
        );
    }

    // The tour's authorization steps (Istio's "Authorization on HTTP
    // traffic" on Bookinfo): allow-nothing denies the page at
    // productpage's sidecar; the viewers open it again, each service to
    // the caller identities (mTLS principals) that need it.
    std::fs::write(
        dir.0.join("tour-authz.yaml"),
        tour("authz-allow-nothing.yaml"),
    )
    .unwrap();
    let start = Instant::now();
    loop {
        let page = get(gw, "/productpage", None).await;
        if page.status == 403 {
            assert_eq!(page.body, "RBAC: access denied", "{page:?}");
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "allow-nothing never applied: {page:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(
        dir.0.join("tour-authz-viewers.yaml"),
        tour("authz-bookinfo-viewers.yaml"),
    )
    .unwrap();
    let start = Instant::now();
    loop {
        let page = get(gw, "/productpage", None).await;
        if page.status == 200
            && page.body.contains("Book Details")
            && page.body.contains("Reviewer1")
            && !page.body.contains("unavailable")
        {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the viewers never opened the page: {page:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // productpage-viewer allows GET only: logging in (a POST) is denied.
    let login = call_at(
        "127.0.0.1".parse().unwrap(),
        &Call {
            method: "POST",
            port: gw,
            path: "/login",
            host: "bookinfo.local",
            headers: &[("content-type", "application/x-www-form-urlencoded")],
            body: b"username=jason&passwd=x",
            h2: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(login.status, 403, "{login:?}");

    // Step 11, JWT at the ingress gateway: with the demo issuer's
    // RequestAuthentication and a DENY for requests without a verified
    // token, no token is 403, a bad one 401, the demo key's token 200.
    let jwt_tour = tour("jwt-gateway.yaml");
    let kid = jwt_tour
        .split("\"kid\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the tour's JWKS names its kid");
    let issuer = weft_testkit::jwt::Issuer::from_pem(
        &std::fs::read_to_string(repo().join("tour/jwt/demo-key.pem")).unwrap(),
        kid,
    );
    let token =
        issuer.token(serde_json::json!({"iss": "testing@weft.dev", "sub": "testing@weft.dev"}));
    std::fs::write(dir.0.join("tour-jwt.yaml"), jwt_tour.as_str()).unwrap();
    let with = |t: String| async move {
        let url = format!("http://127.0.0.1:{gw}/productpage");
        let auth = format!("Bearer {t}");
        request(
            "GET",
            &url,
            &[("host", "bookinfo.local"), ("authorization", &auth)],
            false,
        )
        .await
        .unwrap()
    };
    let start = Instant::now();
    loop {
        let page = get(gw, "/productpage", None).await;
        if page.status == 403 {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the gateway never required a token: {page:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bad = with("garbage".into()).await;
    assert_eq!(
        (bad.status, bad.body.as_str()),
        (
            401,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
        ),
        "{bad:?}"
    );
    let good = with(token).await;
    assert_eq!(good.status, 200, "{good:?}");
    assert!(good.body.contains("Book Details"), "{}", good.body);
    let problems = mesh.settle(PATIENCE).await;
    assert!(problems.is_empty(), "{problems:?}");
}

async fn running_names(mesh: &weft_local::Running) -> Vec<String> {
    let proxies = mesh.running_proxies().await;
    proxies.into_iter().map(|w| w.name).collect()
}

/// A second details workload, as a user would add one.
const DETAILS_V2: &str = "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: details-v2
  namespace: default
  annotations: {weft.dev/demo: bookinfo}
spec:
  address: 127.0.0.17
  ports: {http: 9080}
  labels: {app: details, version: v2}
  serviceAccount: bookinfo-details
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: details-v2, namespace: default}
spec:
  workloadSelector: {labels: {app: details, version: v2}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: 127.0.0.17
    captureMode: NONE
    defaultEndpoint: 127.0.0.1:19090
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: 127.0.1.17
    captureMode: NONE
    hosts: [./*]
";

/// `--gateway none`: the mesh runs without its gateway, and a real Envoy
/// started from `weft bootstrap`'s output takes the gateway's place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_joins_as_the_gateway() {
    let _one = ONE_MESH.lock().await;
    use weft_control::bootstrap::envoy;
    let dir = TempDir::new("up-envoy");
    let gw = free_port();
    example_copy(&dir.0, gw);
    let mut opts = weft_local::Options::new(&dir.0);
    opts.control.xds = "127.0.0.1:0".parse().unwrap();
    opts.control.debug = "127.0.0.1:0".parse().unwrap();
    opts.gateway = weft_local::GatewayMode::None;
    let mesh = weft_local::start(opts).await.unwrap();
    assert_eq!(mesh.proxies.len(), 6, "no gateway proxy started");
    let who = mesh
        .plan
        .proxies
        .iter()
        .find(|p| p.kind == weft_control::ProxyKind::Router)
        .expect("the plan still names the gateway")
        .clone();
    let admin = free_port();
    let boot = envoy(
        &who,
        &weft_control::bootstrap::Options {
            xds: mesh.control.xds,
            admin,
            sds_socket: None,
            prometheus: 0,
        },
    )
    .to_string();
    let _envoy = weft_testkit::envoy::start_envoy(&boot, admin).await;
    let start = Instant::now();
    let page = loop {
        let url = format!("http://127.0.0.1:{gw}/productpage");
        if let Ok(r) = request("GET", &url, &[("host", "bookinfo.local")], false).await {
            if r.status == 200 {
                break r;
            }
        }
        assert!(
            start.elapsed() < PATIENCE,
            "Envoy gateway never served the page"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        page.body.contains("Book Details") && page.body.contains("Reviewer1"),
        "{}",
        page.body
    );
    let problems = mesh.settle(PATIENCE).await;
    assert!(problems.is_empty(), "{problems:?}");
    let status = mesh.control.server.status();
    assert!(
        status.iter().any(|p| p.id.starts_with("router~")),
        "{status:?}"
    );
}
