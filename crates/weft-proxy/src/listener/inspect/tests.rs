use super::*;
use weft_testkit::tls::client_hello as hello;

#[test]
fn reads_sni_and_alpn_from_a_client_hello() {
    let b = hello(Some("API.Example.com"), &["h2", "http/1.1"], None);
    assert_eq!(
        client_hello(&b),
        Tls::Hello(ClientHello {
            server_name: Some("api.example.com".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
        })
    );
    assert_eq!(
        client_hello(&hello(None, &[], None)),
        Tls::Hello(ClientHello::default())
    );
}

#[test]
fn a_hello_split_over_records_and_reads_is_assembled() {
    let b = hello(Some("a.example.com"), &["istio"], Some(7));
    for cut in 0..b.len() {
        assert_eq!(client_hello(&b[..cut]), Tls::NeedMore, "cut at {cut}");
    }
    assert!(
        matches!(client_hello(&b), Tls::Hello(h) if h.server_name.as_deref() == Some("a.example.com"))
    );
}

#[test]
fn plain_bytes_are_not_tls() {
    assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Tls::NotTls);
    assert_eq!(client_hello(b"\x16\x01\x00\x00\x00"), Tls::NotTls);
    // Fewer than a record header's 5 bytes decide nothing, as in Envoy.
    assert_eq!(client_hello(b"hi\n"), Tls::NeedMore);
    // A handshake record that is not a ClientHello (type 2, ServerHello).
    assert_eq!(
        client_hello(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00"),
        Tls::NotTls
    );
}

#[test]
fn lengths_that_lie_do_not_panic() {
    let good = hello(Some("x.example.com"), &["h2"], None);
    // Every truncation and every single-byte corruption of the body must
    // give an answer, not a panic.
    for i in 5..good.len() {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut b = good.clone();
            b[i] = v;
            let _ = client_hello(&b);
        }
    }
}

#[test]
fn an_oversized_hello_is_refused() {
    // Handshake header claiming 1 MiB.
    let b = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x10, 0x00, 0x00];
    assert_eq!(client_hello(&b), Tls::TooLarge);
}

#[test]
fn tells_http1_from_h2c_and_from_other_protocols() {
    assert_eq!(
        http_protocol(b"GET / HTTP/1.1\r\nhost: a\r\n"),
        Http::Protocol("http/1.1")
    );
    assert_eq!(
        http_protocol(b"POST /x HTTP/1.0\r\n"),
        Http::Protocol("http/1.0")
    );
    assert_eq!(
        http_protocol(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        Http::Protocol("h2c")
    );
    assert_eq!(http_protocol(b"PRI * HTTP/2"), Http::NeedMore);
    assert_eq!(http_protocol(b"GET /long/pa"), Http::NeedMore);
    assert_eq!(http_protocol(b"GET / HTT"), Http::NeedMore);
    assert_eq!(http_protocol(b"GET / HTTP/2.0\r\n"), Http::NotHttp);
    assert_eq!(http_protocol(b"GET / SSH-2.0"), Http::NotHttp);
    assert_eq!(http_protocol(b"SSH-2.0-OpenSSH\r\n"), Http::NotHttp);
    assert_eq!(http_protocol(b"\x00\x01binary"), Http::NotHttp);
    assert_eq!(http_protocol(b"*1\r\n$4\r\nPING\r\n"), Http::NotHttp);
}

#[test]
fn random_bytes_never_panic() {
    fastrand::seed(7);
    let mut buf = Vec::new();
    for i in 0..20_000 {
        buf.clear();
        let len = fastrand::usize(..600);
        // Half start like a TLS record, to get past the first check.
        if i % 2 == 0 {
            buf.extend([0x16, 0x03, fastrand::u8(..4)]);
        }
        buf.extend((0..len).map(|_| fastrand::u8(..)));
        let _ = client_hello(&buf);
        let _ = http_protocol(&buf);
    }
}
