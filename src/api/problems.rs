//! `/problems` and `/problems/{code}`: the pages the problem `type` URIs name, one
//! short HTML page per code of the catalogue in [`crate::error`], and an index.
//! Unauthenticated: a client following a `type` has nothing else to show.

use actix_web::{HttpResponse, get, web};

use super::problem::{ApiError, ApiResult};
use super::responses::EdgeErrors;
use crate::error::ErrorCode;

/// The `type` URI of a problem with this code: a relative reference (RFC 9457 §3.1.1)
/// to the page below, resolved against the URI the request went to.
pub fn type_uri(code: ErrorCode) -> String {
    format!("/problems/{code}")
}

/// The problem types: an index of every error code.
///
/// An HTML page listing every `code` a problem document can carry, with its HTTP
/// status and title, each linking to its own page.
#[utoipa::path(
    tag = "problems",
    responses(
        (status = 200, description = "The index page", content_type = "text/html", body = String),
        EdgeErrors,
    ),
    security()
)]
#[get("/problems")]
pub async fn list_problem_types() -> HttpResponse {
    let rows: String = ErrorCode::ALL
        .iter()
        .map(|c| {
            format!(
                "<tr><td><a href=\"{uri}\"><code>{c}</code></a></td><td>{}</td><td>{}</td></tr>\n",
                c.status(),
                escape(c.title()),
                uri = type_uri(*c),
            )
        })
        .collect();
    let body = format!(
        "<h1>Problem types</h1>\n<p>Every error Berth answers is an RFC 9457 \
         <code>application/problem+json</code> document whose <code>code</code> is one of these, and \
         whose <code>type</code> is the page of that code.</p>\n\
         <table>\n<tr><th>code</th><th>status</th><th>title</th></tr>\n{rows}</table>"
    );
    html(page("Problem types", &body))
}

/// One problem type: what a `code` means and what to do about it.
///
/// The page a problem document's `type` (`/problems/{code}`) names: the code's HTTP
/// status and title, what it means, and what to do. An unknown code is a 404 problem.
#[utoipa::path(
    tag = "problems",
    params(("code" = ErrorCode, Path, description = "The problem's `code`")),
    responses(
        (status = 200, description = "The page of this code", content_type = "text/html", body = String),
        (status = 404, description = "No such code (`not_found`)", body = crate::api::problem::Problem, content_type = "application/problem+json"),
        EdgeErrors,
    ),
    security()
)]
#[get("/problems/{code}")]
pub async fn get_problem_type(code: web::Path<String>) -> ApiResult<HttpResponse> {
    let code = ErrorCode::ALL
        .iter()
        .find(|c| c.as_str() == code.as_str())
        .ok_or_else(|| ApiError::not_found(format!("No problem type `{code}`; `/problems` lists them.")))?;
    let body = format!(
        "<p><a href=\"/problems\">Problem types</a></p>\n<h1>{title}</h1>\n\
         <p>HTTP status <strong>{status}</strong> · code <code>{code}</code></p>\n\
         <h2>What it means</h2>\n<p>{meaning}</p>\n<h2>What to do</h2>\n<p>{remedy}</p>",
        title = escape(code.title()),
        status = code.status(),
        meaning = code_spans(code.meaning()),
        remedy = code_spans(code.remedy()),
    );
    Ok(html(page(&format!("{code}: {}", code.title()), &body)))
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(body)
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · Berth</title>\n<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:44rem;\
         margin:2rem auto;padding:0 1rem}}code{{background:#eee;padding:0 .2em}}td,th{{padding:.1em .8em;\
         text-align:left}}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        escape(title)
    )
}

/// HTML-escaped text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Escaped text whose Markdown code spans (`` `x` ``) become `<code>` elements.
fn code_spans(text: &str) -> String {
    escape(text)
        .split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { format!("<code>{part}</code>") } else { part.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_are_code_and_markup_is_escaped() {
        assert_eq!(code_spans("Send `a<b>` & retry"), "Send <code>a&lt;b&gt;</code> &amp; retry");
        for code in ErrorCode::ALL {
            let spans = |t: &str| t.matches('`').count();
            assert_eq!(spans(code.meaning()) % 2, 0, "{code}: unbalanced code span in its meaning");
            assert_eq!(spans(code.remedy()) % 2, 0, "{code}: unbalanced code span in its remedy");
        }
    }
}
