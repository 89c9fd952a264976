//! A TLS ClientHello built byte by byte, so tests can exercise SNI and
//! ALPN matching without a TLS library: a listener's `tls_inspector`
//! (Envoy's or weft's) only reads the hello and never answers it.

/// A TLS 1.2-shaped ClientHello record carrying `server_name` (SNI) and
/// `alpn` when given. `record_split` cuts the handshake into records of at
/// most that many bytes (a ClientHello may legally span several).
pub fn client_hello(
    server_name: Option<&str>,
    alpn: &[&str],
    record_split: Option<usize>,
) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = server_name {
        let mut entry = vec![0u8]; // host_name
        push_u16(&mut entry, name.len());
        entry.extend_from_slice(name.as_bytes());
        let mut list = Vec::new();
        push_u16(&mut list, entry.len());
        list.extend(entry);
        push_u16(&mut ext, 0);
        push_u16(&mut ext, list.len());
        ext.extend(list);
    }
    if !alpn.is_empty() {
        let mut protos = Vec::new();
        for p in alpn {
            protos.push(p.len() as u8);
            protos.extend_from_slice(p.as_bytes());
        }
        let mut list = Vec::new();
        push_u16(&mut list, protos.len());
        list.extend(protos);
        push_u16(&mut ext, 16);
        push_u16(&mut ext, list.len());
        ext.extend(list);
    }
    // supported_groups and signature_algorithms: TLS libraries that parse
    // the hello for real (BoringSSL in Envoy) expect them for ECDHE suites.
    push_u16(&mut ext, 10);
    push_u16(&mut ext, 4);
    push_u16(&mut ext, 2);
    push_u16(&mut ext, 0x001d); // x25519
    push_u16(&mut ext, 13);
    push_u16(&mut ext, 4);
    push_u16(&mut ext, 2);
    push_u16(&mut ext, 0x0403); // ecdsa_secp256r1_sha256

    let mut body = vec![0x03, 0x03]; // TLS 1.2
    body.extend((0..32u8).map(|i| i.wrapping_mul(7)));
    body.push(0); // no session id
    push_u16(&mut body, 4);
    body.extend([0xc0, 0x2f, 0xc0, 0x2b]); // two ECDHE-GCM suites
    body.extend([1, 0]); // compression: null
    push_u16(&mut body, ext.len());
    body.extend(ext);

    let mut handshake = vec![0x01]; // client_hello
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);

    let split = record_split.unwrap_or(usize::MAX).max(1);
    let mut out = Vec::new();
    for chunk in handshake.chunks(split) {
        out.extend([0x16, 0x03, 0x01]);
        push_u16(&mut out, chunk.len());
        out.extend_from_slice(chunk);
    }
    out
}

fn push_u16(v: &mut Vec<u8>, n: usize) {
    v.extend_from_slice(&(n as u16).to_be_bytes());
}
