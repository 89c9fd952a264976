//! Everything `weft control` generates for the examples, read by weft's
//! proxy both ways: straight from the protobuf message (what the proxy
//! does) and from its proto3 JSON form (what names a field when a
//! resource is refused). Both must give the same model, and the direct
//! read must not refuse anything the JSON form takes — it would still
//! be applied, through the fallback, but slowly and unnoticed.

use std::collections::HashSet;
use std::path::Path;

use weft_control::context::{Context, Mesh};
use weft_control::gen::{self, Proxy};
use weft_xds::Kind;

fn examples() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|dir| {
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .expect("example directory")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect();
            files.sort();
            let yaml = files
                .iter()
                .map(|p| std::fs::read_to_string(p).expect("readable") + "\n---\n")
                .collect();
            (dir.display().to_string(), yaml)
        })
        .collect()
}

fn proxies(ctx: &Context) -> Vec<Proxy> {
    let sidecars = [
        // Bound egress through its Sidecar, where the example has one.
        "sidecar~127.0.0.13~reviews-v1.default~default.svc.cluster.local",
        "sidecar~127.0.0.11~productpage-v1.default~default.svc.cluster.local",
        // No Sidecar applies: iptables shape, every visible service.
        "sidecar~10.1.0.9~client.other~other.svc.cluster.local",
    ];
    let mut out: Vec<Proxy> = sidecars
        .iter()
        .map(|id| Proxy::from_node(id, None, ctx).expect("node id"))
        .collect();
    let gateway = [("istio".to_string(), "ingressgateway".to_string())]
        .into_iter()
        .collect();
    out.push(
        Proxy::from_node(
            "router~10.1.0.1~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local",
            Some(gateway),
            ctx,
        )
        .expect("node id"),
    );
    out
}

#[test]
fn generated_resources_read_the_same_both_ways() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for (dir, yaml) in examples() {
        let loaded = weft_config::load_str("mesh.yaml", &yaml, &Default::default());
        let ctx = Context::build(&loaded.resources, Mesh::default());
        for proxy in proxies(&ctx) {
            let output = match proxy.kind {
                gen::ProxyKind::Sidecar => gen::sidecar(&ctx, &proxy),
                gen::ProxyKind::Router => gen::gateway(&ctx, &proxy),
            };
            let clusters: HashSet<&str> = output
                .get(&Kind::Cluster)
                .map(|c| c.keys().map(String::as_str).collect())
                .unwrap_or_default();
            for (kind, resources) in &output {
                for (name, resource) in resources {
                    let any = resource.to_any();
                    match weft_xds::compare_decoders(&any.type_url, &any.value, &clusters) {
                        Ok(got) if got.starts_with("error at ") => failures.push(format!(
                            "{dir}: {}: {kind:?} {name}: refused: {got}",
                            proxy.id
                        )),
                        Ok(_) => checked += 1,
                        Err(e) => failures.push(format!("{dir}: {}: {e}", proxy.id)),
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every example directory gives each proxy clusters, endpoints,
    // listeners and routes; far more than a hundred in all.
    assert!(checked > 100, "only {checked} resources checked");
    eprintln!("{checked} generated resources read the same both ways");
}
