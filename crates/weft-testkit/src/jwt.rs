//! A token issuer for tests: a P-256 key made on the spot, its public
//! half as a JWKS, tokens signed with it (ES256), and a small HTTP server
//! that publishes the key set (`/jwks`) and an OpenID discovery document
//! (`/.well-known/openid-configuration`) the way issuers do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};

/// A signing key and its JWKS.
pub struct Issuer {
    pub kid: String,
    key: jsonwebtoken::EncodingKey,
    pub jwks: Value,
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

impl Issuer {
    pub fn new(kid: &str) -> Issuer {
        let key =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a P-256 key");
        Issuer::with_key(&key, kid)
    }

    /// An issuer whose key is `pem` (PKCS#8), under `kid`.
    pub fn from_pem(pem: &str, kid: &str) -> Issuer {
        Issuer::with_key(
            &rcgen::KeyPair::from_pem(pem).expect("a PKCS#8 PEM key"),
            kid,
        )
    }

    fn with_key(key: &rcgen::KeyPair, kid: &str) -> Issuer {
        let point = key.public_key_raw();
        Issuer {
            kid: kid.to_string(),
            jwks: json!({"keys": [{"kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
                "x": b64(&point[1..33]), "y": b64(&point[33..65])}]}),
            key: jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
        }
    }

    /// A token with `claims` (and `exp` an hour from now unless given).
    pub fn token(&self, mut claims: Value) -> String {
        if claims.get("exp").is_none() {
            claims["exp"] = json!(now() + 3600);
        }
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, &claims, &self.key).expect("a signed token")
    }
}

/// An HTTP server answering GETs from a table of path → JSON document
/// (404 otherwise); documents can be replaced while it runs.
pub struct KeyServer {
    pub addr: SocketAddr,
    docs: Arc<Mutex<Vec<(String, Value)>>>,
}

impl KeyServer {
    pub async fn start() -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("an address");
        let docs: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let served = docs.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let served = served.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        let doc = served
                            .lock()
                            .unwrap()
                            .iter()
                            .find(|(p, _)| p == req.uri().path())
                            .map(|(_, d)| d.to_string());
                        async move {
                            let r = match doc {
                                Some(d) => http::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(d))),
                                None => http::Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::new())),
                            };
                            Ok::<_, Infallible>(r.expect("a response"))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        KeyServer { addr, docs }
    }

    /// `http://ADDR` — an issuer name whose discovery document this
    /// server publishes.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `doc` at `path`, replacing what was there.
    pub fn put(&self, path: &str, doc: Value) {
        let mut docs = self.docs.lock().unwrap();
        docs.retain(|(p, _)| p != path);
        docs.push((path.to_string(), doc));
    }

    /// Publishes `issuer`'s keys at `/jwks` and a discovery document
    /// naming them.
    pub fn publish(&self, issuer: &Issuer) {
        self.put("/jwks", issuer.jwks.clone());
        self.put(
            "/.well-known/openid-configuration",
            json!({"issuer": self.url(), "jwks_uri": format!("{}/jwks", self.url())}),
        );
    }
}
