use super::*;
use crate::{Context, Mesh};

fn ctx(yaml: &str) -> Context {
    let loaded = weft_config::load_str("mesh.yaml", yaml, &Default::default());
    assert!(loaded.issues.is_empty(), "{:?}", loaded.issues);
    Context::build(&loaded.resources, Mesh::default())
}

fn vs<'a>(ctx: &'a Context, name: &str) -> &'a Named<VirtualService> {
    ctx.virtual_services
        .iter()
        .find(|v| v.name == name)
        .unwrap()
}

const ROOT: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: front}
spec:
  hosts: [bookinfo.example]
  gateways: [front-gw]
  http:
  - name: pp
    match: [{uri: {prefix: /productpage}}, {uri: {prefix: /static}}]
    timeout: 3s
    delegate: {name: productpage, namespace: nsa}
  - match: [{uri: {prefix: /reviews}, headers: {end-user: {exact: jason}}}]
    delegate: {name: reviews}
  - route: [{destination: {host: fallback}}]
";

const DELEGATES: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: nsa}
spec:
  http:
  - name: v1
    match: [{uri: {prefix: /productpage/v1}}]
    route: [{destination: {host: productpage, subset: v1}}]
  - match: [{uri: {exact: /elsewhere}}]
    route: [{destination: {host: productpage, subset: v9}}]
  - timeout: 1s
    route: [{destination: {host: productpage}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: front}
spec:
  http:
  - match: [{queryParams: {v: {exact: '2'}}}]
    route: [{destination: {host: reviews, subset: v2}}]
";

#[test]
fn delegate_rules_are_merged_into_the_root_in_place() {
    let ctx = ctx(&format!("{ROOT}---\n{DELEGATES}"));
    let root = vs(&ctx, "bookinfo");
    let http = &root.spec.http;
    // pp: `v1` (fits /productpage), the catch-all (takes both root
    // matches); `/elsewhere` fits neither root match and is dropped.
    // Then reviews' one rule, then the root's own last rule.
    assert_eq!(http.len(), 4, "{http:#?}");
    assert!(http.iter().all(|r| r.delegate.is_none()));

    assert_eq!(http[0].name.as_deref(), Some("pp-v1"));
    assert_eq!(http[0].matches.len(), 1);
    assert_eq!(
        http[0].matches[0].uri.as_ref().unwrap().prefix.as_deref(),
        Some("/productpage/v1")
    );
    // Short names mean the delegate's namespace, not the root's.
    assert_eq!(
        http[0].route[0].destination.host,
        "productpage.nsa.svc.cluster.local"
    );
    // Unset in the delegate rule: the root rule's.
    assert_eq!(http[0].timeout.as_ref().map(|d| d.as_str()), Some("3s"));

    assert_eq!(http[1].name.as_deref(), Some("pp"));
    let prefixes: Vec<_> = http[1]
        .matches
        .iter()
        .map(|m| m.uri.as_ref().unwrap().prefix.clone().unwrap())
        .collect();
    assert_eq!(prefixes, ["/productpage", "/static"]);
    // Set in the delegate rule: its own.
    assert_eq!(http[1].timeout.as_ref().map(|d| d.as_str()), Some("1s"));

    // The root's conditions are added to the delegate's.
    let m = &http[2].matches[0];
    assert_eq!(m.uri.as_ref().unwrap().prefix.as_deref(), Some("/reviews"));
    assert_eq!(m.headers["end-user"].exact.as_deref(), Some("jason"));
    assert_eq!(m.query_params["v"].exact.as_deref(), Some("2"));
    assert_eq!(
        http[2].route[0].destination.host,
        "reviews.front.svc.cluster.local"
    );

    assert_eq!(http[3].route[0].destination.host, "fallback");
}

#[test]
fn a_delegate_change_changes_the_roots_digest_and_a_missing_one_drops_its_rule() {
    let before = ctx(&format!("{ROOT}---\n{DELEGATES}"));
    let edited = ctx(&format!(
        "{ROOT}---\n{}",
        DELEGATES.replace("subset: v2", "subset: v3")
    ));
    assert_ne!(
        vs(&before, "bookinfo").digest,
        vs(&edited, "bookinfo").digest
    );
    let same = ctx(&format!("{ROOT}---\n{DELEGATES}"));
    assert_eq!(vs(&before, "bookinfo").digest, vs(&same, "bookinfo").digest);

    // The productpage delegate exported only to its own namespace, the
    // reviews one gone: only the root's own rule is left.
    let hidden = DELEGATES.replace(
        "namespace: nsa}\nspec:\n",
        "namespace: nsa}\nspec:\n  exportTo: ['.']\n",
    );
    let hidden = &hidden[..hidden.find("---").unwrap()];
    let ctx = ctx(&format!("{ROOT}---\n{hidden}"));
    let http = &vs(&ctx, "bookinfo").spec.http;
    assert_eq!(http.len(), 1, "{http:#?}");
    assert_eq!(http[0].route[0].destination.host, "fallback");
}

#[test]
fn a_virtual_service_with_hosts_is_no_delegate() {
    let with_hosts = DELEGATES.replace(
        "metadata: {name: reviews, namespace: front}\nspec:\n",
        "metadata: {name: reviews, namespace: front}\nspec:\n  hosts: [reviews]\n",
    );
    let ctx = ctx(&format!("{ROOT}---\n{with_hosts}"));
    let http = &vs(&ctx, "bookinfo").spec.http;
    assert_eq!(http.len(), 3, "{http:#?}");
    assert!(http
        .iter()
        .all(|r| r.route[0].destination.host != "reviews.front.svc.cluster.local"));
}

fn sm(kind: &str, v: &str) -> StringMatch {
    let mut m = StringMatch::default();
    match kind {
        "exact" => m.exact = Some(v.into()),
        "prefix" => m.prefix = Some(v.into()),
        _ => m.regex = Some(v.into()),
    }
    m
}

#[test]
fn a_delegate_condition_must_stay_within_the_roots() {
    let cases = [
        (("prefix", "/a"), ("prefix", "/a/b"), true),
        (("prefix", "/a"), ("exact", "/a/b"), true),
        (("prefix", "/a"), ("prefix", "/b"), false),
        (("prefix", "/a"), ("exact", "/b"), false),
        (("exact", "/a"), ("exact", "/a"), true),
        (("exact", "/a"), ("exact", "/b"), false),
        (("exact", "/a"), ("prefix", "/a"), false),
        (("regex", ".*"), ("prefix", "/a"), false),
        (("prefix", "/a"), ("regex", "/a.*"), false),
    ];
    for ((rk, rv), (ck, cv), want) in cases {
        let got = string_fits(Some(&sm(rk, rv)), Some(&sm(ck, cv)));
        assert_eq!(got, want, "root {rk} {rv}, delegate {ck} {cv}");
    }
    assert!(string_fits(None, Some(&sm("regex", "x"))));
    assert!(string_fits(Some(&sm("regex", "x")), None));

    let root = HttpMatchRequest {
        port: Some(80),
        gateways: vec!["front/gw".into()],
        source_labels: [("app".to_string(), "a".to_string())].into(),
        ..Default::default()
    };
    let fits_with = |f: &dyn Fn(&mut HttpMatchRequest)| {
        let mut c = HttpMatchRequest::default();
        f(&mut c);
        fits(&root, &c)
    };
    assert!(fits_with(&|_| {}));
    assert!(fits_with(&|c| c.port = Some(80)));
    assert!(!fits_with(&|c| c.port = Some(81)));
    assert!(!fits_with(&|c| c.gateways = vec!["front/other".into()]));
    assert!(fits_with(&|c| c.gateways = vec!["front/gw".into()]));
    assert!(!fits_with(&|c| {
        c.source_labels.insert("app".into(), "b".into());
    }));
    assert!(fits_with(&|c| {
        c.source_labels.insert("version".into(), "v1".into());
    }));
    assert!(!fits_with(&|c| c.ignore_uri_case = Some(true)));
}

#[test]
fn gateway_names_compare_in_their_own_namespaces() {
    let root = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: front}
spec:
  hosts: [app.example]
  gateways: [gw, mesh]
  http:
  - match: [{gateways: [gw]}]
    delegate: {name: app, namespace: back}
";
    let delegate = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: back}
spec:
  http:
  - match: [{gateways: [front/gw]}]
    route: [{destination: {host: app}}]
  - match: [{gateways: [gw]}]
    route: [{destination: {host: other}}]
";
    let ctx = ctx(&format!("{root}---\n{delegate}"));
    let http = &vs(&ctx, "root").spec.http;
    // `front/gw` is the root's `gw`; the delegate's own `gw` is back/gw.
    assert_eq!(http.len(), 1, "{http:#?}");
    assert_eq!(http[0].matches[0].gateways, ["front/gw"]);
    assert_eq!(
        http[0].route[0].destination.host,
        "app.back.svc.cluster.local"
    );
}
