//! productpage: the HTML page and Bookinfo's JSON API. The logged-in
//! user (a `user` cookie set by `POST /login`) travels to the services
//! it calls as the `end-user` header — what the seeds' "jason sees v2"
//! routing matches on.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::{call, json_reply, reply, Body, CallError, State};

/// Bookinfo's productpage gives details and reviews 3 s, and tries once
/// more after a failure (which is why the ratings delay of Istio's tour
/// shows as "reviews unavailable" after about 6 s).
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

async fn call_with_retry(
    state: &State,
    service: &str,
    path: &str,
    headers: &HeaderMap,
) -> Result<Value, CallError> {
    match call(state, service, path, headers, TIMEOUT).await {
        Ok(v) => Ok(v),
        Err(_) => call(state, service, path, headers, TIMEOUT).await,
    }
}

fn user(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == "user")
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// The headers to pass on: the request's, with `end-user` from the login.
fn outgoing(headers: &HeaderMap) -> HeaderMap {
    let mut h = headers.clone();
    if let Some(u) = user(headers).and_then(|u| HeaderValue::from_str(&u).ok()) {
        h.insert("end-user", u);
    }
    h
}

fn redirect(to: &str, cookie: Option<String>) -> Response<Body> {
    let mut r = Response::builder()
        .status(StatusCode::FOUND)
        .header("location", to);
    if let Some(c) = cookie {
        r = r.header("set-cookie", c);
    }
    r.body(http_body_util::Full::new(Bytes::new()))
        .expect("static response parts")
}

fn products() -> Value {
    json!([{
        "id": 0,
        "title": "The Comedy of Errors",
        "descriptionHtml": "<a href=\"https://en.wikipedia.org/wiki/The_Comedy_of_Errors\">Wikipedia Summary</a>: The Comedy of Errors is one of William Shakespeare's early plays. It is his shortest and one of his most farcical comedies, with a major part of the humour coming from slapstick and mistaken identity, in addition to puns and word play."
    }])
}

/// Answers a JSON API call by asking `service`; 503 with the reason
/// when it cannot.
async fn api(state: &State, service: &str, path: &str, headers: &HeaderMap) -> Response<Body> {
    match call_with_retry(state, service, path, &outgoing(headers)).await {
        Ok(v) => json_reply(StatusCode::OK, &v),
        Err(e) => json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": format!("Sorry, {service} is currently unavailable: {}", e.0)}),
        ),
    }
}

pub(crate) async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let headers = req.headers().clone();
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, [""]) => reply(
            StatusCode::OK,
            "text/html",
            "<html><body><h1>Bookinfo (weft demo)</h1><p><a href=\"/productpage\">productpage</a></p></body></html>\n",
        ),
        (Method::GET, ["productpage"]) => product_page(state, &headers).await,
        (Method::POST, ["login"]) => {
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let form = String::from_utf8_lossy(&body).into_owned();
            let name = form
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "username")
                .map(|(_, v)| v.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect::<String>())
                .unwrap_or_default();
            redirect("/productpage", Some(format!("user={name}; Path=/")))
        }
        (Method::GET, ["logout"]) => redirect("/productpage", Some("user=; Path=/; Max-Age=0".into())),
        (Method::GET, ["api", "v1", "products"]) => json_reply(StatusCode::OK, &products()),
        (Method::GET, ["api", "v1", "products", id]) => api(state, "details", &format!("/details/{id}"), &headers).await,
        (Method::GET, ["api", "v1", "products", id, "reviews"]) => {
            api(state, "reviews", &format!("/reviews/{id}"), &headers).await
        }
        (Method::GET, ["api", "v1", "products", id, "ratings"]) => {
            api(state, "ratings", &format!("/ratings/{id}"), &headers).await
        }
        (Method::GET, ["static", ..]) => reply(StatusCode::OK, "text/css", "/* weft demo */\n"),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn product_page(state: &State, headers: &HeaderMap) -> Response<Body> {
    let out = outgoing(headers);
    let (details, reviews) = tokio::join!(
        call_with_retry(state, "details", "/details/0", &out),
        call_with_retry(state, "reviews", "/reviews/0", &out),
    );
    let mut html = String::from("<html><head><title>Simple Bookstore App</title></head><body>\n");
    match user(headers) {
        Some(u) => html += &format!("<p>Signed in as <b>{}</b> · <a href=\"/logout\">sign out</a></p>\n", escape(&u)),
        None => html += "<form method=\"post\" action=\"/login\"><input name=\"username\"><button>Sign in</button></form>\n",
    }
    html += "<h2>The Comedy of Errors</h2>\n<h3>Book Details</h3>\n";
    match details {
        Ok(d) => {
            for key in [
                "type",
                "pages",
                "publisher",
                "language",
                "ISBN-10",
                "ISBN-13",
            ] {
                html += &format!(
                    "<p><b>{key}:</b> {}</p>\n",
                    escape(&d[key].to_string().replace('"', ""))
                );
            }
        }
        Err(e) => {
            html += &format!(
                "<p>Error fetching product details! ({})</p>\n",
                escape(&e.0)
            )
        }
    }
    html += "<h3>Book Reviews</h3>\n";
    match reviews {
        Ok(r) => {
            for review in r["reviews"].as_array().into_iter().flatten() {
                html += &format!(
                    "<blockquote><p>{}</p><small>{}</small>",
                    escape(review["text"].as_str().unwrap_or_default()),
                    escape(review["reviewer"].as_str().unwrap_or_default())
                );
                if let Some(stars) = review["rating"]["stars"].as_u64() {
                    let color = review["rating"]["color"].as_str().unwrap_or("black");
                    let full = "★".repeat(stars as usize);
                    let empty = "☆".repeat(5usize.saturating_sub(stars as usize));
                    html += &format!(" <span class=\"stars\" style=\"color: {color}\" data-color=\"{color}\">{full}{empty}</span>");
                } else if let Some(err) = review["rating"]["error"].as_str() {
                    html += &format!(" <span class=\"stars-error\">{}</span>", escape(err));
                }
                html += "</blockquote>\n";
            }
            html += &format!(
                "<p class=\"served-by\">Reviews served by: <b>{}</b></p>\n",
                escape(r["podname"].as_str().unwrap_or_default())
            );
        }
        Err(e) => {
            html += &format!(
                "<p>Error fetching product reviews! ({})</p>\n",
                escape(&e.0)
            )
        }
    }
    html += "</body></html>\n";
    reply(StatusCode::OK, "text/html; charset=utf-8", html)
}
