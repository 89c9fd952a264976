//! What a port speaks, decided as Istio decides it ("Protocol
//! Selection", istio.io/docs/ops/configuration/traffic-management/
//! protocol-selection; `protocol.Parse` and `kube.ConvertProtocol` in
//! Istio's source): a ServiceEntry or Gateway port's `protocol`; for a
//! Kubernetes Service port, `appProtocol` when given ("If both are
//! defined, appProtocol takes precedence over the port name"), else the
//! port name `<protocol>[-<suffix>]`. Validation, the analyzers and the
//! control plane all ask this module, so a port reads the same to each.

/// A protocol Istio knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tls,
    Tcp,
    Mongo,
    Mysql,
    Redis,
    Udp,
    /// Unnamed or unknown (Istio's `UnsupportedProtocol`): Istio sniffs
    /// such ports for HTTP; weft treats them as TCP.
    Unknown,
}

/// Ports Istio takes for TCP when nothing names their protocol, because
/// sniffing would break their server-first protocols (SMTP, DNS, MySQL,
/// MongoDB: `wellKnownPorts` in `kube.ConvertProtocol`).
const WELL_KNOWN_TCP: [u32; 4] = [25, 53, 3306, 27017];

impl Protocol {
    /// A protocol name as written in a `protocol` field, an `appProtocol`
    /// or a port name's prefix, case-insensitive; anything else is
    /// [`Protocol::Unknown`]. The names are those of the documented table
    /// (http, http2, https, tcp, tls, grpc, grpc-web, mongo, mysql, redis)
    /// and udp. `h2c` is not among them: Istio reads it only as the
    /// Kubernetes `appProtocol` value `kubernetes.io/h2c` (see
    /// [`Protocol::of_service_port`]).
    pub fn parse(name: &str) -> Protocol {
        match name.to_ascii_lowercase().as_str() {
            "http" => Protocol::Http,
            "http2" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "https" => Protocol::Https,
            "tls" => Protocol::Tls,
            "tcp" => Protocol::Tcp,
            "mongo" => Protocol::Mongo,
            "mysql" => Protocol::Mysql,
            "redis" => Protocol::Redis,
            "udp" => Protocol::Udp,
            _ => Protocol::Unknown,
        }
    }

    /// Istio's port naming convention, `<protocol>[-<suffix>]`: the part
    /// before the first `-` (`grpc-web` first, since it has one).
    pub fn from_name(port_name: &str) -> Protocol {
        let grpc_web = "grpc-web";
        if port_name
            .get(..grpc_web.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(grpc_web))
        {
            return Protocol::GrpcWeb;
        }
        Protocol::parse(port_name.split('-').next().unwrap_or_default())
    }

    /// A Kubernetes Service (or Endpoints) port: `protocol: UDP` is UDP;
    /// then `appProtocol` when set — Kubernetes' own `kubernetes.io/h2c`,
    /// `kubernetes.io/ws` and `kubernetes.io/wss` are HTTP/2, HTTP and
    /// HTTPS, anything else is read as a port name would be — else the
    /// port name; a port still unknown is TCP on the well-known
    /// server-first ports (25, 53, 3306, 27017).
    pub fn of_service_port(
        number: u32,
        name: &str,
        transport: Option<&str>,
        app_protocol: Option<&str>,
    ) -> Protocol {
        if transport == Some("UDP") {
            return Protocol::Udp;
        }
        let p = match app_protocol {
            Some("kubernetes.io/h2c") => Protocol::Http2,
            Some("kubernetes.io/ws") => Protocol::Http,
            Some("kubernetes.io/wss") => Protocol::Https,
            Some(a) => Protocol::from_name(a),
            None => Protocol::from_name(name),
        };
        if p == Protocol::Unknown && WELL_KNOWN_TCP.contains(&number) {
            return Protocol::Tcp;
        }
        p
    }

    /// The name as the port naming convention spells it (`unknown` for
    /// [`Protocol::Unknown`]).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::GrpcWeb => "grpc-web",
            Protocol::Https => "https",
            Protocol::Tls => "tls",
            Protocol::Tcp => "tcp",
            Protocol::Mongo => "mongo",
            Protocol::Mysql => "mysql",
            Protocol::Redis => "redis",
            Protocol::Udp => "udp",
            Protocol::Unknown => "unknown",
        }
    }

    /// Routed by the HTTP connection manager (route tables, VirtualService
    /// `http` rules).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }

    /// The upstream must be spoken to in HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

#[cfg(test)]
mod tests {
    use super::Protocol as P;
    use super::*;

    #[test]
    fn names_are_the_documented_table_case_insensitive() {
        // "The following protocols are supported: http, http2, https,
        // tcp, tls, grpc, grpc-web, mongo, mysql, redis" (and Istio's
        // protocol.Parse knows udp).
        for (name, want) in [
            ("http", P::Http),
            ("HTTP", P::Http),
            ("http2", P::Http2),
            ("https", P::Https),
            ("tcp", P::Tcp),
            ("TLS", P::Tls),
            ("grpc", P::Grpc),
            ("GRPC-Web", P::GrpcWeb),
            ("mongo", P::Mongo),
            ("mysql", P::Mysql),
            ("Redis", P::Redis),
            ("udp", P::Udp),
            ("h2c", P::Unknown),
            ("http-web", P::Unknown),
            ("", P::Unknown),
        ] {
            assert_eq!(P::parse(name), want, "parse({name:?})");
        }
    }

    #[test]
    fn port_names_are_protocol_then_optional_suffix() {
        // "By the name of the port: name: <protocol>[-<suffix>]".
        for (name, want) in [
            ("http", P::Http),
            ("http-web", P::Http),
            ("HTTP2-api", P::Http2),
            ("grpc-web", P::GrpcWeb),
            ("grpc-web-x", P::GrpcWeb),
            ("GRPC-WEBX", P::GrpcWeb),
            ("grpc-api", P::Grpc),
            ("tcp", P::Tcp),
            ("mysql-primary", P::Mysql),
            // "name: httpforecast is not" under the convention.
            ("httpforecast", P::Unknown),
            ("web-http", P::Unknown),
            ("h2c", P::Unknown),
            ("", P::Unknown),
        ] {
            assert_eq!(P::from_name(name), want, "from_name({name:?})");
        }
    }

    #[test]
    fn app_protocol_wins_over_the_port_name() {
        // "If both are defined, appProtocol takes precedence over the
        // port name."
        assert_eq!(P::of_service_port(80, "http", None, Some("tcp")), P::Tcp);
        assert_eq!(
            P::of_service_port(80, "database", None, Some("mysql")),
            P::Mysql
        );
        assert_eq!(P::of_service_port(80, "web", None, Some("HTTPS")), P::Https);
        // An appProtocol Istio does not know is not replaced by the name.
        assert_eq!(
            P::of_service_port(80, "http", None, Some("foo")),
            P::Unknown
        );
        // Kubernetes' own names.
        assert_eq!(
            P::of_service_port(80, "x", None, Some("kubernetes.io/h2c")),
            P::Http2
        );
        assert_eq!(
            P::of_service_port(80, "x", None, Some("kubernetes.io/ws")),
            P::Http
        );
        assert_eq!(
            P::of_service_port(80, "x", None, Some("kubernetes.io/wss")),
            P::Https
        );
        assert_eq!(
            P::of_service_port(80, "x", None, Some("example.com/http")),
            P::Unknown
        );
        assert_eq!(P::of_service_port(80, "http-web", None, None), P::Http);
    }

    #[test]
    fn udp_and_well_known_ports() {
        assert_eq!(
            P::of_service_port(53, "dns", Some("UDP"), Some("http")),
            P::Udp
        );
        assert_eq!(P::of_service_port(80, "http", Some("TCP"), None), P::Http);
        // Unknown on SMTP, DNS, MySQL, MongoDB ports: TCP, not sniffed.
        for port in WELL_KNOWN_TCP {
            assert_eq!(P::of_service_port(port, "db", None, None), P::Tcp, "{port}");
            assert_eq!(
                P::of_service_port(port, "http", None, None),
                P::Http,
                "{port}"
            );
        }
        assert_eq!(P::of_service_port(5432, "db", None, None), P::Unknown);
        assert_eq!(P::of_service_port(5432, "", None, None), P::Unknown);
    }

    #[test]
    fn classes() {
        assert!(P::Grpc.is_http() && P::Grpc.is_http2());
        assert!(P::GrpcWeb.is_http() && !P::GrpcWeb.is_http2());
        assert!(!P::Https.is_http() && !P::Tcp.is_http() && !P::Unknown.is_http());
        for p in [P::Http, P::Http2, P::Grpc, P::GrpcWeb, P::Tcp, P::Udp] {
            assert_eq!(P::parse(p.name()), p);
        }
    }
}
