//! Errors of the proxy, each saying where it came from and whether a
//! retry could help.

/// Why a configuration could not be turned into a runnable snapshot.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{field}: {message}")]
    Config { field: String, message: String },
}

/// A field weft does not implement yet, refused by name.
pub(crate) fn unsupported(field: String, what: &str) -> CompileError {
    CompileError::Config {
        field,
        message: format!("{what} is not implemented by weft yet"),
    }
}

/// Fails on the first field in `set` that is in use.
pub(crate) fn reject(at: &str, set: &[(&str, bool)]) -> Result<(), CompileError> {
    match set.iter().find(|(_, used)| *used) {
        Some((name, _)) => Err(unsupported(format!("{at}.{name}"), name)),
        None => Ok(()),
    }
}

/// Why a request failed inside the proxy; maps onto Envoy's response
/// flags and local replies.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No virtual host or route matched (downstream's request).
    #[error("no route")]
    NoRoute,
    /// The route names a cluster that does not exist (config).
    #[error("cluster not found")]
    NoCluster,
    /// The cluster has no endpoints to send to (upstream).
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    /// Connecting to the chosen endpoint failed (upstream; retriable).
    #[error("upstream connect error or disconnect/reset before headers. reset reason: remote connection failure")]
    ConnectFailure,
    /// The upstream reset or closed before a response (upstream; retriable).
    #[error("upstream connect error or disconnect/reset before headers. reset reason: connection termination")]
    UpstreamReset,
    /// The route timeout, or the last attempt's per-try timeout, expired
    /// (upstream).
    #[error("upstream request timeout")]
    Timeout,
    /// A circuit breaker of the cluster is open (upstream overload).
    #[error("upstream connect error or disconnect/reset before headers. reset reason: overflow")]
    Overflow,
    /// The client's request body was malformed (bad chunking) while it
    /// was being forwarded (downstream; not retriable).
    #[error("Bad Request")]
    DownstreamProtocol,
}

impl ForwardError {
    /// Envoy's response flag for this failure.
    pub fn flag(&self) -> &'static str {
        match self {
            ForwardError::NoRoute => "NR",
            ForwardError::NoCluster => "NC",
            ForwardError::NoHealthyUpstream => "UH",
            ForwardError::ConnectFailure => "UF",
            ForwardError::UpstreamReset => "UC",
            ForwardError::Timeout => "UT",
            ForwardError::Overflow => "UO",
            ForwardError::DownstreamProtocol => "DPE",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ForwardError::NoRoute => 404,
            ForwardError::Timeout => 504,
            ForwardError::DownstreamProtocol => 400,
            _ => 503,
        }
    }

    /// Whether trying again (another attempt or endpoint) could succeed.
    pub fn retriable(&self) -> bool {
        matches!(
            self,
            ForwardError::ConnectFailure | ForwardError::UpstreamReset
        )
    }

    /// The body Envoy sends with this local reply; after retries a
    /// reset says it was the latest of several.
    pub fn body(&self, retried: bool) -> &'static str {
        match (self, retried) {
            (ForwardError::NoRoute | ForwardError::NoCluster, _) => "",
            (ForwardError::NoHealthyUpstream, _) => "no healthy upstream",
            (ForwardError::ConnectFailure, false) => "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure",
            (ForwardError::ConnectFailure, true) => "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure",
            (ForwardError::UpstreamReset, false) => "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            (ForwardError::UpstreamReset, true) => "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection termination",
            (ForwardError::Overflow, _) => "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            (ForwardError::DownstreamProtocol, _) => "Bad Request",
            (ForwardError::Timeout, _) => "upstream request timeout",
        }
    }
}
