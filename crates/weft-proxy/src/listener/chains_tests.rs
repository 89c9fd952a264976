use super::*;

/// A bootstrap with one listener whose one chain has `fcm` as its match.
fn boot(fcm: &str) -> weft_envoy::Bootstrap {
    let text = format!(
        "static_resources:
  clusters: [{{name: c, type: STATIC}}]
  listeners:
  - name: l
    address: {{socket_address: {{address: 0.0.0.0, port_value: 1}}}}
    filter_chains:
    - filter_chain_match: {fcm}
      filters:
      - name: tcp
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: t
          cluster: c
"
    );
    weft_envoy::parse_bootstrap("t", &text).unwrap()
}

fn m(fcm: &str) -> ChainMatch {
    let b = boot(fcm);
    ChainMatch::compile(
        b.static_resources.listeners[0].filter_chains[0]
            .filter_chain_match
            .as_ref(),
    )
    .unwrap()
}

fn chains(rules: &[&str]) -> Chains<&'static str> {
    static NAMES: [&str; 8] = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];
    Chains {
        chains: rules.iter().zip(NAMES).map(|(r, n)| (m(r), n)).collect(),
        default: None,
    }
}

fn facts(local: &str, peer: &str) -> ConnectionFacts {
    ConnectionFacts {
        local: Some(local.parse().unwrap()),
        peer: Some(peer.parse().unwrap()),
        transport: "raw_buffer",
        ..Default::default()
    }
}

#[test]
fn most_specific_destination_port_then_ip_wins() {
    let c = chains(&[
        "{}",
        "{destination_port: 80}",
        "{prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}]}",
        "{prefix_ranges: [{address_prefix: 10.1.0.0, prefix_len: 16}]}",
    ]);
    assert_eq!(c.select(&facts("10.1.2.3:80", "1.1.1.1:5")), Some(&"c1"));
    assert_eq!(c.select(&facts("10.1.2.3:81", "1.1.1.1:5")), Some(&"c3"));
    assert_eq!(c.select(&facts("10.2.2.3:81", "1.1.1.1:5")), Some(&"c2"));
    assert_eq!(c.select(&facts("11.0.0.1:81", "1.1.1.1:5")), Some(&"c0"));
}

#[test]
fn no_backtracking_after_a_specific_step() {
    // Port 80 picks c0 at step one; its server name then fails, and the
    // catch-all c1 is not reconsidered: no chain.
    let c = chains(&[
        "{destination_port: 80, server_names: [a.example.com]}",
        "{}",
    ]);
    let mut f = facts("127.0.0.1:80", "127.0.0.1:5");
    assert_eq!(c.select(&f), None);
    f.server_name = Some("a.example.com".into());
    assert_eq!(c.select(&f), Some(&"c0"));
}

#[test]
fn server_names_exact_before_longest_wildcard() {
    let c = chains(&[
        "{server_names: [\"*.com\"]}",
        "{server_names: [\"*.example.com\"]}",
        "{server_names: [api.example.com]}",
        "{}",
    ]);
    let with = |sni: Option<&str>| {
        let mut f = facts("127.0.0.1:1", "127.0.0.1:2");
        f.server_name = sni.map(str::to_string);
        c.select(&f).copied()
    };
    assert_eq!(with(Some("api.example.com")), Some("c2"));
    assert_eq!(with(Some("www.example.com")), Some("c1"));
    assert_eq!(with(Some("a.b.example.com")), Some("c1"));
    assert_eq!(with(Some("example.org.com")), Some("c0"));
    assert_eq!(with(Some("example.org")), Some("c3"));
    assert_eq!(with(None), Some("c3"));
}

#[test]
fn transport_and_application_protocols() {
    let c = chains(&[
        "{transport_protocol: tls, application_protocols: [h2]}",
        "{transport_protocol: tls}",
        "{application_protocols: [\"http/1.1\", h2c]}",
        "{transport_protocol: raw_buffer}",
    ]);
    let with = |transport, alpn: &[&str]| {
        let mut f = facts("127.0.0.1:1", "127.0.0.1:2");
        f.transport = transport;
        f.application_protocols = alpn.iter().map(|s| s.to_string()).collect();
        c.select(&f).copied()
    };
    assert_eq!(with("tls", &["http/1.1", "h2"]), Some("c0"));
    assert_eq!(with("tls", &["http/1.1"]), Some("c1"));
    // raw_buffer: step 3 keeps only c2 (unset) and c3 (exact): c3 wins.
    assert_eq!(with("raw_buffer", &["h2c"]), Some("c3"));
}

#[test]
fn source_type_ranges_and_ports() {
    let c = chains(&[
        "{source_type: SAME_IP_OR_LOOPBACK}",
        "{source_type: EXTERNAL, source_prefix_ranges: [{address_prefix: 192.0.2.0, prefix_len: 24}]}",
        "{source_type: EXTERNAL, source_ports: [4000]}",
        "{source_type: EXTERNAL}",
    ]);
    assert_eq!(c.select(&facts("10.0.0.1:1", "127.0.0.9:5")), Some(&"c0"));
    assert_eq!(c.select(&facts("10.0.0.1:1", "10.0.0.1:5")), Some(&"c0"));
    assert_eq!(c.select(&facts("10.0.0.1:1", "192.0.2.7:5")), Some(&"c1"));
    assert_eq!(c.select(&facts("10.0.0.1:1", "10.9.9.9:4000")), Some(&"c2"));
    assert_eq!(c.select(&facts("10.0.0.1:1", "10.9.9.9:4001")), Some(&"c3"));
    // An IPv4 peer seen through a dual-stack socket still matches ranges.
    assert_eq!(
        c.select(&facts("[::ffff:10.0.0.1]:1", "[::ffff:192.0.2.7]:5")),
        Some(&"c1")
    );
}

#[test]
fn default_chain_takes_what_nothing_matches() {
    let mut c = chains(&["{server_names: [a.example.com]}"]);
    let f = facts("127.0.0.1:1", "127.0.0.1:2");
    assert_eq!(c.select(&f), None);
    c.default = Some("default");
    assert_eq!(c.select(&f), Some(&"default"));
}

#[test]
fn identical_rules_are_detected_in_any_order() {
    let a = m("{server_names: [b.com, a.com], source_ports: [1, 2]}");
    let b = m("{server_names: [a.com, b.com], source_ports: [2, 1]}");
    assert!(a.same_rules(&b));
    assert!(!a.same_rules(&m("{server_names: [a.com]}")));
}

#[test]
fn bad_match_fields_are_named() {
    let b = boot("{server_names: [\"a.*.com\"]}");
    let fcm = b.static_resources.listeners[0].filter_chains[0]
        .filter_chain_match
        .as_ref();
    let e = ChainMatch::compile(fcm).unwrap_err();
    assert!(e.contains("server_names[0]"), "{e}");
    let b = boot("{prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 33}]}");
    let fcm = b.static_resources.listeners[0].filter_chains[0]
        .filter_chain_match
        .as_ref();
    let e = ChainMatch::compile(fcm).unwrap_err();
    assert!(e.contains("prefix_ranges[0].prefix_len"), "{e}");
}
