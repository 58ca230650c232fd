//! What the task sees when the proxy refuses: `403` (or another status) with a body and
//! headers that name the policy and the reason, written for an agent to act on.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{ProxyBody, full};

/// Header naming the reason.
pub const DENIED_HEADER: &str = "x-remit-denied";
/// Header naming the deciding policy.
pub const POLICY_HEADER: &str = "x-remit-policy";

/// A refusal answer. `what` describes the request (`GET https://host/path`); `json` picks a
/// JSON body (clients that parse error bodies: npm, cargo, SDKs) over plain text.
pub(crate) fn refusal(
    status: StatusCode,
    policy: &str,
    reason: &str,
    what: &str,
    json: bool,
) -> Response<ProxyBody> {
    let message = format!("remit denied {what}: {reason} (policy `{policy}`)");
    let (content_type, body) = if json {
        let value = serde_json::json!({
            "error": message,
            "message": message,
            "errors": [{ "detail": message }],
            "remit": { "denied": what, "policy": policy, "reason": reason },
        });
        ("application/json", format!("{value}\n"))
    } else {
        ("text/plain; charset=utf-8", format!("{message}\n"))
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(HeaderName::from_static(DENIED_HEADER), header_text(reason));
    headers.insert(HeaderName::from_static(POLICY_HEADER), header_text(policy));
    response
}

/// Text made safe for a header value: visible ASCII and spaces, at most 1024 bytes.
fn header_text(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(1024)
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("denied"))
}

/// Whether the client would rather read JSON.
pub(crate) fn wants_json(headers: &http::HeaderMap) -> bool {
    let mentions = |name: http::header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("json"))
    };
    mentions(http::header::ACCEPT) || mentions(http::header::CONTENT_TYPE)
}
