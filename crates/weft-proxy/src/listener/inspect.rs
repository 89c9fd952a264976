//! What the listener filters learn from a connection's first bytes:
//! `tls_inspector` reads the TLS ClientHello for the server name (SNI) and
//! the offered ALPN protocols, `http_inspector` tells HTTP/1.x from an
//! HTTP/2 prior-knowledge preface. Both look at bytes the client sent and
//! never trust them: every length is checked before it is used.

/// Envoy's default limit on a ClientHello the inspector will buffer.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;
/// How much of a request line the HTTP inspector reads before giving up.
pub const MAX_HTTP_SNIFF: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Tls {
    /// The bytes so far are a prefix of a ClientHello.
    NeedMore,
    /// Not a TLS handshake: the connection is plain (`raw_buffer`).
    NotTls,
    /// A ClientHello larger than [`MAX_CLIENT_HELLO`]: Envoy closes these.
    TooLarge,
    Hello(ClientHello),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub server_name: Option<String>,
    pub alpn: Vec<String>,
}

/// Reads `n` bytes from the front of `b`.
fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Some(head)
}

fn u8_at(b: &mut &[u8]) -> Option<usize> {
    take(b, 1).map(|x| x[0] as usize)
}

fn u16_at(b: &mut &[u8]) -> Option<usize> {
    take(b, 2).map(|x| u16::from_be_bytes([x[0], x[1]]) as usize)
}

/// Looks at the first bytes of a connection for a TLS ClientHello, which
/// may span several handshake records.
pub fn client_hello(buf: &[u8]) -> Tls {
    // A TLS record: content type 22 (handshake), version 3.x, length.
    // Like Envoy (whose TLS library reads a whole record header before
    // judging), nothing is decided on fewer than 5 bytes.
    if buf.len() < 5 {
        return Tls::NeedMore;
    }
    if buf[0] != 0x16 || buf[1] != 0x03 {
        return Tls::NotTls;
    }
    let mut handshake = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return Tls::NeedMore;
        }
        if rest[0] != 0x16 || rest[1] != 0x03 {
            return Tls::NotTls;
        }
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if rest.len() < 5 + len {
            return if 5 + len + handshake.len() > MAX_CLIENT_HELLO {
                Tls::TooLarge
            } else {
                Tls::NeedMore
            };
        }
        handshake.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if handshake.len() >= 4 {
            if handshake[0] != 0x01 {
                return Tls::NotTls;
            }
            let body = (handshake[1] as usize) << 16
                | (handshake[2] as usize) << 8
                | handshake[3] as usize;
            if body + 4 > MAX_CLIENT_HELLO {
                return Tls::TooLarge;
            }
            if handshake.len() >= 4 + body {
                return match parse_hello(&handshake[4..4 + body]) {
                    Some(h) => Tls::Hello(h),
                    None => Tls::NotTls,
                };
            }
        }
    }
}

/// The ClientHello body after the handshake header; `None` when it is
/// malformed.
fn parse_hello(mut b: &[u8]) -> Option<ClientHello> {
    let b = &mut b;
    take(b, 2 + 32)?; // client_version, random
    let n = u8_at(b)?;
    take(b, n)?; // session id
    let n = u16_at(b)?;
    if n == 0 || n % 2 != 0 {
        return None;
    }
    take(b, n)?; // cipher suites
    let n = u8_at(b)?;
    if n == 0 {
        return None;
    }
    take(b, n)?; // compression methods
    let mut hello = ClientHello::default();
    if b.is_empty() {
        return Some(hello);
    }
    let n = u16_at(b)?;
    let mut exts = take(b, n)?;
    while !exts.is_empty() {
        let kind = u16_at(&mut exts)?;
        let n = u16_at(&mut exts)?;
        let mut data = take(&mut exts, n)?;
        match kind {
            0 => hello.server_name = server_name(&mut data),
            16 => hello.alpn = alpn(&mut data)?,
            _ => {}
        }
    }
    Some(hello)
}

/// The host_name entry of a server_name extension, lowercased.
fn server_name(data: &mut &[u8]) -> Option<String> {
    let n = u16_at(data)?;
    let mut list = take(data, n)?;
    while !list.is_empty() {
        let kind = u8_at(&mut list)?;
        let n = u16_at(&mut list)?;
        let name = take(&mut list, n)?;
        if kind == 0 {
            return std::str::from_utf8(name).ok().map(str::to_ascii_lowercase);
        }
    }
    None
}

fn alpn(data: &mut &[u8]) -> Option<Vec<String>> {
    let n = u16_at(data)?;
    let mut list = take(data, n)?;
    let mut out = Vec::new();
    while !list.is_empty() {
        let n = u8_at(&mut list)?;
        let p = take(&mut list, n)?;
        out.push(String::from_utf8_lossy(p).into_owned());
    }
    Some(out)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Http {
    NeedMore,
    NotHttp,
    /// The application protocol Envoy's http_inspector reports:
    /// `http/1.0`, `http/1.1` or `h2c`.
    Protocol(&'static str),
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Tells an HTTP/1.x request line or the HTTP/2 connection preface from
/// anything else.
pub fn http_protocol(buf: &[u8]) -> Http {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Http::Protocol("h2c")
        } else {
            Http::NeedMore
        };
    }
    let line_end = buf.iter().position(|&c| c == b'\n');
    let line = &buf[..line_end.unwrap_or(buf.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // method SP target SP version
    let mut parts = line.splitn(3, |&c| c == b' ');
    let method = parts.next().unwrap_or_default();
    if !method.iter().all(|&c| is_token(c)) {
        return Http::NotHttp;
    }
    let Some(target) = parts.next() else {
        return more_or_not(line_end, buf);
    };
    if method.is_empty() || target.iter().any(|&c| c.is_ascii_control()) {
        return Http::NotHttp;
    }
    let Some(version) = parts.next() else {
        return more_or_not(line_end, buf);
    };
    if line_end.is_none() {
        let prefix = version.len().min(8);
        return if version[..prefix] == b"HTTP/1.1"[..prefix]
            || version[..prefix] == b"HTTP/1.0"[..prefix]
        {
            more_or_not(None, buf)
        } else {
            Http::NotHttp
        };
    }
    match version {
        b"HTTP/1.1" => Http::Protocol("http/1.1"),
        b"HTTP/1.0" => Http::Protocol("http/1.0"),
        _ => Http::NotHttp,
    }
}

fn more_or_not(line_end: Option<usize>, buf: &[u8]) -> Http {
    if line_end.is_some() || buf.len() >= MAX_HTTP_SNIFF {
        Http::NotHttp
    } else {
        Http::NeedMore
    }
}

/// The destination a connection had before NAT redirected it (iptables
/// REDIRECT/TPROXY as Istio's capture sets up), read with
/// `SO_ORIGINAL_DST`. `None` when the connection was not redirected or
/// the platform cannot tell; the listener's local address stands then.
#[cfg(target_os = "linux")]
pub fn original_dst(s: &tokio::net::TcpStream) -> Option<std::net::SocketAddr> {
    let sock = socket2::SockRef::from(s);
    // A connection that was not redirected has no entry in the NAT
    // table: the kernel answers ENOENT.
    let dst = if s.local_addr().ok()?.is_ipv6() {
        sock.original_dst_v6()
    } else {
        sock.original_dst_v4()
    };
    dst.ok()?.as_socket()
}

#[cfg(not(target_os = "linux"))]
pub fn original_dst(_: &tokio::net::TcpStream) -> Option<std::net::SocketAddr> {
    None
}

#[cfg(test)]
mod tests;
