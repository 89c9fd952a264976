//! The public keys RequestAuthentication rules name by URL, fetched by
//! the control plane and inlined into each proxy's JWT filter, as istiod
//! does: proxies need no route to the issuer, and every proxy of the
//! mesh checks tokens against the same keys.
//!
//! [`Keys`] is what a snapshot compiles with (plain data, no I/O);
//! [`Resolver`] fetches (`jwksUri`, or the issuer's OpenID discovery
//! document when a rule gives neither `jwks` nor `jwksUri`) before a
//! snapshot is built, caches, and refreshes in the background. A key set
//! that cannot be fetched, or is no JWKS, fails closed: the rule gets a
//! key nobody holds the private half of, so its tokens are refused while
//! requests without a token are let through (Istio's behaviour).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};

/// Where a rule's keys come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// `jwksUri`.
    Uri(String),
    /// Neither `jwks` nor `jwksUri`: the issuer's
    /// `/.well-known/openid-configuration` names the key set.
    Discovery(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Uri(u) => write!(f, "jwksUri {u}"),
            Source::Discovery(i) => write!(f, "the OpenID discovery of issuer {i}"),
        }
    }
}

/// Where `rule`'s keys are fetched from; `None` when it gives them
/// inline (`jwks`).
pub fn source_of(rule: &weft_api::security::JwtRule) -> Option<Source> {
    if rule.jwks.is_some() {
        return None;
    }
    match rule.jwks_uri.as_ref().or(rule.jwks_uri_snake.as_ref()) {
        Some(uri) => Some(Source::Uri(uri.clone())),
        None => Some(Source::Discovery(rule.issuer.clone())),
    }
}

/// The fetched key sets of one snapshot: JWKS text, or why there is none.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    sets: HashMap<Source, Result<Arc<str>, String>>,
}

impl Keys {
    /// The JWKS `source` resolved to; `Err` says why there is none
    /// (including "not fetched" for a source the resolver was not given).
    pub fn get(&self, source: &Source) -> Result<Arc<str>, String> {
        self.sets
            .get(source)
            .cloned()
            .unwrap_or_else(|| Err(format!("{source} has not been fetched")))
    }

    /// Every source with its key set or why there is none, in order.
    pub fn entries(&self) -> impl Iterator<Item = (&Source, &Result<Arc<str>, String>)> {
        let mut v: Vec<_> = self.sets.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.into_iter()
    }

    /// Keys given directly (tests, and callers that fetch themselves).
    pub fn insert(&mut self, source: Source, jwks: Result<Arc<str>, String>) {
        self.sets.insert(source, jwks);
    }
}

/// A JWKS whose only key nobody holds the private half of (generated for
/// this purpose, its private key discarded): what a rule whose keys
/// cannot be had is given, so that its tokens fail verification.
pub const FAIL_CLOSED_JWKS: &str = r#"{"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid":"weft-unavailable","e":"AQAB","n":"Y8QiWq_zSKrWLKZ3-zybADQPM6NcqMLsOUXmTVyQecFHtiv6hvFKZqP-2lyqswpHRj6UaD5EapER4-SjyiiUQeYqNcyDYr3xvlUwTX5ofOl4YZIC7MOCmUKcMdnmWtCTBiKou5Luifia0VKRgewCLoGDZSi3Yb0rxgJe10UfeBSbjDd828Jh1SgHC_obKw7-mB2WYZW1DW3_ZVdAu3reulM_i_GAUJ0gOv6aBqz8ytOF_zunPv7_DJzTElLyxrhqV1RMj0CJe1sbs8Jxtv70P1_lM7frI_V6VuQ_y1-vLegviAs7iHmBxYT8FbOxOddtANxZt5GeHQL6fTzn6TCfeQ"}]}"#;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}: not an http or https URL")]
    Url(String),
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {reason}")]
    Content { url: String, reason: String },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
}

impl FetchError {
    /// Whether trying again later may succeed (everything but a URL that
    /// cannot be fetched at all).
    pub fn retryable(&self) -> bool {
        !matches!(self, FetchError::Url(_))
    }
}

/// Istio's default JWKS fetch timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often cached key sets are fetched again (istiod's
/// `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL` default).
pub const REFRESH: Duration = Duration::from_secs(20 * 60);
/// A fetched document larger than this is refused.
const MAX_BYTES: usize = 1 << 20;

struct Entry {
    jwks: Result<Arc<str>, String>,
    fetched: Instant,
}

/// Fetches and caches key sets; shared by the build loop and the
/// refresher.
#[derive(Default)]
pub struct Resolver {
    cache: Mutex<HashMap<Source, Entry>>,
    /// Told when a refresh changed a key set.
    changed: tokio::sync::Notify,
}

impl Resolver {
    pub fn new() -> Arc<Resolver> {
        Arc::new(Resolver::default())
    }

    /// The keys of `needed` (with each source's fetch timeout), fetching
    /// the ones not cached, concurrently.
    pub async fn resolve(&self, needed: &[(Source, Duration)]) -> Keys {
        let missing: Vec<&(Source, Duration)> = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            needed
                .iter()
                .filter(|(s, _)| !cache.contains_key(s))
                .collect()
        };
        // Together: the slowest source bounds the wait, not their sum.
        let fetched = futures_util::future::join_all(
            missing
                .iter()
                .map(|(s, t)| async move { (s.clone(), fetch(s, *t).await) }),
        )
        .await;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for (source, result) in fetched {
            if let Err(e) = &result {
                tracing::error!("RequestAuthentication keys from {source}: {e}; tokens of this issuer are refused until they can be fetched");
            }
            cache.insert(
                source,
                Entry {
                    jwks: result,
                    fetched: Instant::now(),
                },
            );
        }
        let mut keys = Keys::default();
        for (s, _) in needed {
            if let Some(e) = cache.get(s) {
                keys.insert(s.clone(), e.jwks.clone());
            }
        }
        keys
    }

    /// Waits until a refresh changed a key set.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Fetches again every cached key set older than `every` (failed
    /// ones after a tenth of it), forever; a changed set wakes
    /// [`Resolver::changed`]. Sources no longer `needed` are forgotten.
    pub async fn refresh(self: Arc<Self>, every: Duration, needed: impl Fn() -> BTreeSet<Source>) {
        let tick = (every / 10).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            let keep = needed();
            let due: Vec<Source> = {
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                cache.retain(|s, _| keep.contains(s));
                cache
                    .iter()
                    .filter(|(_, e)| {
                        let age = e.fetched.elapsed();
                        age >= every || (e.jwks.is_err() && age >= tick)
                    })
                    .map(|(s, _)| s.clone())
                    .collect()
            };
            let mut changed = false;
            for source in due {
                let result = fetch(&source, DEFAULT_TIMEOUT).await;
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                let old_ok = cache
                    .get(&source)
                    .and_then(|e| e.jwks.as_ref().ok().cloned());
                // A failed refresh keeps the keys that were good.
                let jwks = match (result, &old_ok) {
                    (Ok(new), _) => Ok(new),
                    (Err(e), Some(good)) => {
                        tracing::warn!("refreshing RequestAuthentication keys from {source}: {e}; keeping the last good ones");
                        Ok(good.clone())
                    }
                    (Err(e), None) => Err(e),
                };
                changed |= jwks.as_ref().ok() != old_ok.as_ref();
                cache.insert(
                    source,
                    Entry {
                        jwks,
                        fetched: Instant::now(),
                    },
                );
            }
            if changed {
                self.changed.notify_one();
            }
        }
    }
}

/// The JWKS text of `source`, checked to be a JWKS with keys.
async fn fetch(source: &Source, timeout: Duration) -> Result<Arc<str>, String> {
    let text = match source {
        Source::Uri(u) => get(u, timeout).await,
        Source::Discovery(issuer) => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            match get(&url, timeout).await {
                Ok(doc) => match serde_json::from_str::<serde_json::Value>(&doc)
                    .ok()
                    .and_then(|d| d.get("jwks_uri")?.as_str().map(str::to_string))
                {
                    Some(jwks_uri) => get(&jwks_uri, timeout).await,
                    None => Err(FetchError::Content {
                        url,
                        reason: "no jwks_uri in the discovery document".into(),
                    }),
                },
                Err(e) => Err(e),
            }
        }
    }
    .map_err(|e| e.to_string())?;
    weft_config::mesh::jwks::check(&text)?;
    Ok(Arc::from(text))
}

/// A GET of `url` (http or https), its body as text.
async fn get(url: &str, timeout: Duration) -> Result<String, FetchError> {
    match tokio::time::timeout(timeout, get_now(url)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout {
            url: url.to_string(),
            timeout,
        }),
    }
}

async fn get_now(url: &str) -> Result<String, FetchError> {
    let uri: http::Uri = url.parse().map_err(|_| FetchError::Url(url.to_string()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(FetchError::Url(url.to_string())),
    };
    let host = uri
        .host()
        .ok_or_else(|| FetchError::Url(url.to_string()))?
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let transport = |reason: String| FetchError::Transport {
        url: url.to_string(),
        reason,
    };
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| transport(e.to_string()))?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or(host.clone());
    let request = http::Request::get(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "weft-control")
        .body(Empty::<Bytes>::new())
        .map_err(|e| transport(e.to_string()))?;
    let response = if https {
        let name =
            rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| transport(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(client_tls())
            .connect(name, tcp)
            .await
            .map_err(|e| transport(format!("TLS: {e}")))?;
        send(hyper_util::rt::TokioIo::new(tls), request).await
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), request).await
    }
    .map_err(|e| transport(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let body = Limited::new(response.into_body(), MAX_BYTES)
        .collect()
        .await
        .map_err(|e| transport(e.to_string()))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| FetchError::Content {
        url: url.to_string(),
        reason: "the body is not UTF-8".into(),
    })
}

async fn send<IO>(
    io: IO,
    request: http::Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, hyper::Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(request).await
}

/// TLS to issuers: the Mozilla roots (webpki-roots), as no cluster CA
/// signs a public issuer's certificate.
fn client_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::LazyLock<Arc<rustls::ClientConfig>> =
        std::sync::LazyLock::new(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
            )
        });
    CONFIG.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfetched_source_says_so() {
        let keys = Keys::default();
        let e = keys.get(&Source::Uri("http://x/jwks".into())).unwrap_err();
        assert!(
            e.contains("jwksUri http://x/jwks has not been fetched"),
            "{e}"
        );
    }

    /// Refreshing picks up a rotated key set, and keeps the last good
    /// one when the issuer then fails.
    #[tokio::test]
    async fn refresh_follows_rotation_and_keeps_the_last_good_set() {
        let server = weft_testkit::jwt::KeyServer::start().await;
        let first = weft_testkit::jwt::Issuer::new("k1");
        let second = weft_testkit::jwt::Issuer::new("k2");
        server.put("/jwks", first.jwks.clone());
        let source = Source::Uri(format!("{}/jwks", server.url()));
        let needed = [(source.clone(), DEFAULT_TIMEOUT)];
        let resolver = Resolver::new();
        let kid = |keys: &Keys| -> String {
            let v: serde_json::Value = serde_json::from_str(&keys.get(&source).unwrap()).unwrap();
            v["keys"][0]["kid"].as_str().unwrap().to_string()
        };
        assert_eq!(kid(&resolver.resolve(&needed).await), "k1");
        let keep = {
            let s = source.clone();
            move || BTreeSet::from([s.clone()])
        };
        let task = tokio::spawn(resolver.clone().refresh(Duration::from_millis(100), keep));
        server.put("/jwks", second.jwks.clone());
        tokio::time::timeout(Duration::from_secs(10), resolver.changed())
            .await
            .expect("the rotation noticed");
        assert_eq!(kid(&resolver.resolve(&needed).await), "k2");
        // The issuer breaks: a few refreshes later, k2 still serves.
        server.put("/jwks", serde_json::json!({"keys": []}));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(kid(&resolver.resolve(&needed).await), "k2");
        task.abort();
    }

    #[tokio::test]
    async fn only_http_and_https_are_fetched() {
        let e = get("ftp://x/jwks", DEFAULT_TIMEOUT).await.unwrap_err();
        assert!(matches!(e, FetchError::Url(_)) && !e.retryable(), "{e}");
    }
}
