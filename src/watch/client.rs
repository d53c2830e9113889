//! The HTTP side of `berth watch`: open an event stream with the bearer (and
//! `Last-Event-ID`), and say why when the server refuses.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// Why a request gave nothing to read.
#[derive(Debug)]
pub enum Failure {
    /// Trying again will not help (bad token, unknown job, bad request): exit 2 now.
    Fatal(String),
    /// The connection failed or the server is busy or unwell: worth a reconnect.
    Transient(String),
}

/// What opening a stream gave.
pub enum Opened {
    Stream(reqwest::Response),
    /// `204`: a job's stream resumed at or past its `end`; nothing more will come.
    Over,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base).map_err(|e| format!("--url {base}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("--url {base}: use an http:// or https:// URL"));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth-watch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // The server sends a comment every 10 s while a stream is idle: three missed
            // ones mean the connection is gone.
            .read_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("building the HTTP client: {}", chain(&e)))?;
        Ok(Client { http, base, token: token.to_string() })
    }

    /// `GET path` as an event stream, resuming after `last` when given.
    pub async fn open(&self, path: &str, last: Option<u64>) -> Result<Opened, Failure> {
        let mut req = self.get(path).header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(n) = last {
            req = req.header("Last-Event-ID", n.to_string());
        }
        let res = req.send().await.map_err(|e| Failure::Transient(chain(&e)))?;
        match res.status() {
            StatusCode::OK => Ok(Opened::Stream(res)),
            StatusCode::NO_CONTENT => Ok(Opened::Over),
            _ => Err(refusal(res).await),
        }
    }

    /// `GET path` as JSON.
    pub async fn json(&self, path: &str) -> Result<Value, Failure> {
        let res = self.get(path).send().await.map_err(|e| Failure::Transient(chain(&e)))?;
        if !res.status().is_success() {
            return Err(refusal(res).await);
        }
        res.json().await.map_err(|e| Failure::Transient(chain(&e)))
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token)
    }
}

/// A non-success answer as a message: a problem's title, detail and code, or the start of
/// whatever else came back.
async fn refusal(res: reqwest::Response) -> Failure {
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    let message = describe_answer(status, &body);
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Failure::Transient(message)
    } else {
        Failure::Fatal(message)
    }
}

pub fn describe_answer(status: StatusCode, body: &str) -> String {
    let problem: Option<Value> = serde_json::from_str(body).ok();
    let field = |k: &str| problem.as_ref().and_then(|p| p.get(k)).and_then(Value::as_str).map(str::to_string);
    match (field("title"), field("detail"), field("code")) {
        (Some(title), detail, code) => {
            let mut m = format!("{} {title}", status.as_u16());
            if let Some(d) = detail.filter(|d| *d != title) {
                m.push_str(&format!(": {d}"));
            }
            if let Some(c) = code {
                m.push_str(&format!(" ({c})"));
            }
            m
        }
        _ => {
            let text: String = body.trim().chars().take(200).collect();
            if text.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {text}") }
        }
    }
}

/// An error with its causes: reqwest's own message alone rarely names the real cause.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_reads_as_title_detail_and_code() {
        let body = r#"{"type":"x","title":"Unauthorized","status":401,"detail":"the token's signature is invalid","code":"unauthorized"}"#;
        assert_eq!(
            describe_answer(StatusCode::UNAUTHORIZED, body),
            "401 Unauthorized: the token's signature is invalid (unauthorized)"
        );
        assert_eq!(describe_answer(StatusCode::BAD_GATEWAY, "<html>oops</html>"), "HTTP 502 Bad Gateway: <html>oops</html>");
        assert_eq!(describe_answer(StatusCode::NOT_FOUND, ""), "HTTP 404 Not Found");
    }
}
