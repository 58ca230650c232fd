//! One request, from the task to the origin and back: checked for secrets and phantoms,
//! decided by the gate (with git pushes and registry uploads as their own effects),
//! credentials swapped in, forwarded, and recorded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use remit_types::effect::Effect;
use remit_types::network::Placement;

use crate::body::{
    BodyError, Held, Metered, ProxyBody, Scan, body_error, collect_limited, full, full_held,
};
use crate::credentials::{query_has, swap_basic, swap_header, swap_query};
use crate::deny::{refusal, wants_json};
use crate::events::{Denial, EgressEvent, RequestRecord, Violation, ViolationKind};
use crate::git;
use crate::matcher::{Hit, Label, encoding_name};
use crate::proxy::{normalize_host, upstream_refusal};
use crate::upstream::{self, Origin, UpstreamError};
use crate::{EgressGate, GateDecision, Shared};

/// Commits remembered per task to prove fast-forwards across pushes.
const COMMIT_CACHE: usize = 200_000;

/// Bodies up to this size are checked whole before the request is sent.
const SMALL_BODY: u64 = 1 << 20;

/// Where a request goes.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// TLS towards the origin.
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Arrived inside a `CONNECT` tunnel (the tunnel names the host).
    pub(crate) tunneled: bool,
    /// The task's TLS was terminated by the proxy.
    pub(crate) intercepted: bool,
}

impl Target {
    fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// At most this much of a URL in a message.
pub(crate) fn clip(text: &str) -> String {
    if text.len() <= 300 {
        return text.to_owned();
    }
    let mut end = 300;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The record of one request, emitted when it is dropped (after the response body ends).
struct RecordGuard<G: EgressGate> {
    shared: Arc<Shared<G>>,
    record: Mutex<RequestRecord>,
    started: Instant,
    request_bytes: Arc<AtomicU64>,
    response_bytes: Arc<AtomicU64>,
    /// A secret found in a streamed body after the response had begun.
    hit: Arc<Mutex<Option<Hit>>>,
    /// The request's place among the task's requests under way (`None`: there was none).
    place: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<G: EgressGate> Drop for RecordGuard<G> {
    fn drop(&mut self) {
        let Ok(mut record) = self.record.lock() else {
            return;
        };
        record.request_bytes = self.request_bytes.load(Ordering::Relaxed);
        record.response_bytes = self.response_bytes.load(Ordering::Relaxed);
        record.duration_us = micros(self.started);
        if let Ok(mut hit) = self.hit.lock()
            && let Some(hit) = hit.take()
        {
            let reason = hit_reason(&self.shared, &hit, &record.host, true);
            record.error.get_or_insert_with(|| reason.clone());
            self.shared.gate.observe(EgressEvent::Violation(Violation {
                kind: if matches!(hit.label, Label::Phantom(_)) {
                    ViolationKind::Phantom
                } else {
                    ViolationKind::KnownSecret
                },
                peer: record.peer,
                host: record.host.clone(),
                port: record.port,
                method: Some(record.method.clone()),
                path: Some(record.path.clone()),
                policy: if matches!(hit.label, Label::Phantom(_)) {
                    "egress.phantom"
                } else {
                    "egress.dlp"
                }
                .into(),
                reason,
            }));
        }
        self.shared
            .gate
            .observe(EgressEvent::Request(record.clone()));
    }
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

struct Ctx<G: EgressGate> {
    shared: Arc<Shared<G>>,
    guard: Arc<RecordGuard<G>>,
    /// The id of the request's record.
    id: u64,
    json: bool,
    what: String,
    peer: SocketAddr,
}

impl<G: EgressGate> Ctx<G> {
    fn deny(&self, status: StatusCode, policy: &str, reason: &str) -> Response<ProxyBody> {
        if let Ok(mut record) = self.guard.record.lock() {
            record.status = status.as_u16();
            record.denied = Some(Denial {
                policy: policy.to_owned(),
                reason: reason.to_owned(),
            });
        }
        refusal(status, policy, reason, &self.what, self.json)
    }

    fn violation(&self, kind: ViolationKind, policy: &str, reason: &str) -> Response<ProxyBody> {
        self.violation_with(kind, StatusCode::FORBIDDEN, policy, reason)
    }

    /// [`Self::violation`], answered with `status`.
    fn violation_with(
        &self,
        kind: ViolationKind,
        status: StatusCode,
        policy: &str,
        reason: &str,
    ) -> Response<ProxyBody> {
        if let Ok(record) = self.guard.record.lock() {
            self.shared.gate.observe(EgressEvent::Violation(Violation {
                kind,
                peer: self.peer,
                host: record.host.clone(),
                port: record.port,
                method: Some(record.method.clone()),
                path: Some(record.path.clone()),
                policy: policy.to_owned(),
                reason: reason.to_owned(),
            }));
        }
        self.deny(status, policy, reason)
    }

    async fn decide(&self, effect: Effect) -> Result<(), Response<ProxyBody>> {
        let decision = self.shared.gate.decide(effect).await;
        self.refusal_for(decision).map_or(Ok(()), Err)
    }

    /// Decide the request itself, under the id its record will carry.
    async fn decide_request(&self, effect: Effect) -> Result<(), Response<ProxyBody>> {
        let decision = self.shared.gate.decide_request(self.id, effect).await;
        self.refusal_for(decision).map_or(Ok(()), Err)
    }

    /// The refusal a decision calls for, if any.
    fn refusal_for(&self, decision: GateDecision) -> Option<Response<ProxyBody>> {
        match decision {
            GateDecision::Allow => None,
            GateDecision::Deny { policy, reason } => {
                Some(self.deny(StatusCode::FORBIDDEN, &policy, &reason))
            }
        }
    }
}

/// The refusal of a secret, or of a phantom where it is not injected, `found` in the
/// request's head (`place`, when not empty, says where).
fn head_hit<G: EgressGate>(
    ctx: &Ctx<G>,
    found: &crate::matcher::Found,
    host: &str,
    place: &str,
) -> Response<ProxyBody> {
    let hit = Hit {
        label: found.label,
        encoding: found.encoding,
    };
    let mut reason = hit_reason(&ctx.shared, &hit, host, false);
    if !place.is_empty() {
        reason = format!("{reason} ({place})");
    }
    match found.label {
        Label::Phantom(_) => ctx.violation(ViolationKind::Phantom, "egress.phantom", &reason),
        _ => ctx.violation(ViolationKind::KnownSecret, "egress.dlp", &reason),
    }
}

/// Why a secret or phantom in a request is refused, for the agent.
fn hit_reason<G: EgressGate>(shared: &Shared<G>, hit: &Hit, host: &str, in_body: bool) -> String {
    let what = shared.matcher.describe(hit.label);
    let place = if in_body { "body" } else { "request" };
    match hit.label {
        Label::Phantom(i) => {
            let credential = shared.matcher.credentials.get(i);
            let hosts = credential
                .map(|c| {
                    c.hosts
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let env = credential
                .and_then(|c| c.env.clone())
                .map(|e| format!(" (`${e}`)"))
                .unwrap_or_default();
            format!(
                "the {place} carries the placeholder of {what}{env} ({}) to `{host}`; remit swaps it for the real value only on requests to {hosts} (over HTTPS, unless the remit names a plain port), and sends it nowhere else",
                encoding_name(hit.encoding)
            )
        }
        Label::Bound(i) => format!(
            "the {place} carries {what} ({}) to `{host}`; it may be sent only to {}",
            encoding_name(hit.encoding),
            shared.matcher.bound_hosts(i)
        ),
        Label::Real(_) | Label::Known(_) => format!(
            "the {place} carries {what} ({}); this task's secrets never leave it. Use the credential's variable inside the task and let the proxy inject it where the remit allows",
            encoding_name(hit.encoding)
        ),
    }
}

/// The refusal for a secret or phantom found in a body.
fn hit_refusal<G: EgressGate>(ctx: &Ctx<G>, hit: &Hit, host: &str) -> Response<ProxyBody> {
    let reason = hit_reason(&ctx.shared, hit, host, true);
    if matches!(hit.label, Label::Phantom(_)) {
        ctx.violation(ViolationKind::Phantom, "egress.phantom", &reason)
    } else {
        ctx.violation(ViolationKind::KnownSecret, "egress.dlp", &reason)
    }
}

/// Resolve `.` and `..` segments and decode percent-escaped unreserved characters, so that
/// a path is decided and forwarded in one spelling.
pub(crate) fn canonical_path(path_and_query: &str) -> Result<String, String> {
    if path_and_query == "*" {
        return Ok("*".into());
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    if !path.starts_with('/') {
        return Err("the path does not start with `/`".into());
    }
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = path.get(i + 1..i + 3).ok_or("a `%` escape is cut short")?;
            let value = u8::from_str_radix(hex, 16)
                .map_err(|_| format!("`%{hex}` is not a percent escape"))?;
            if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                decoded.push(char::from(value));
            } else {
                decoded.push_str(&format!("%{value:02X}"));
            }
            i += 3;
            continue;
        }
        if b.is_ascii_control() || b == b' ' || b == b'\\' || b >= 0x80 {
            return Err(
                "the path has a space, a control character, `\\` or a non-ASCII byte".into(),
            );
        }
        decoded.push(char::from(b));
        i += 1;
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/').skip(1) {
        // `..;x` or `a%2F..`: a dot segment to servers that drop path parameters or decode
        // separators before resolving (Tomcat, Jetty, some proxies), a name to the policy.
        let hidden_dots = !matches!(segment, "." | "..")
            && segment
                .split("%2F")
                .flat_map(|part| part.split("%5C"))
                .any(|part| matches!(part.split(';').next(), Some("." | "..")));
        if hidden_dots {
            return Err(format!(
                "the path segment `{segment}` hides a `.` or `..` behind parameters or an escaped separator, which servers resolve differently"
            ));
        }
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = format!("/{}", segments.join("/"));
    if trailing && !out.ends_with('/') {
        out.push('/');
    }
    if let Some(q) = query {
        if q.bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b >= 0x80)
        {
            return Err("the query has a space, a control character or a non-ASCII byte".into());
        }
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// Headers that belong to one connection, never forwarded.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "transfer-encoding",
        "upgrade",
        "te",
        "expect",
        "host",
    ] {
        headers.remove(name);
    }
}

/// Serve one request.
pub(crate) async fn handle<G: EgressGate>(
    shared: Arc<Shared<G>>,
    peer: SocketAddr,
    target: Target,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let started_unix_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_owned();
    let raw = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let shown_path = clip(&shared.matcher.redact(&raw));
    // Any token is a method: one spelled as a secret is shown and recorded redacted too.
    let shown_method = clip(&shared.matcher.redact(&method));
    let request_bytes = Arc::new(AtomicU64::new(0));
    let response_bytes = Arc::new(AtomicU64::new(0));
    let hit_slot = Arc::new(Mutex::new(None));
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    // Held until the answer's body is over (the guard lives as long).
    let place = Arc::clone(&shared.requests).try_acquire_owned().ok();
    let guard = Arc::new(RecordGuard {
        shared: Arc::clone(&shared),
        record: Mutex::new(RequestRecord {
            id,
            peer,
            host: target.host.clone(),
            port: target.port,
            method: shown_method.clone(),
            path: shown_path.clone(),
            intercepted: target.intercepted,
            status: 0,
            denied: None,
            sent: false,
            upstream: None,
            protocol: None,
            credentials: Vec::new(),
            request_bytes: 0,
            response_bytes: 0,
            started_unix_ms,
            response_after_us: None,
            duration_us: 0,
            error: None,
        }),
        started,
        request_bytes: Arc::clone(&request_bytes),
        response_bytes: Arc::clone(&response_bytes),
        hit: Arc::clone(&hit_slot),
        place,
    });
    let ctx = Ctx {
        shared: Arc::clone(&shared),
        guard: Arc::clone(&guard),
        id,
        json: wants_json(&parts.headers),
        what: format!(
            "{shown_method} {}://{}{}",
            target.scheme(),
            target.authority(),
            shown_path
        ),
        peer,
    };
    if guard.place.is_none() {
        let response = ctx.violation_with(
            ViolationKind::Limit,
            StatusCode::SERVICE_UNAVAILABLE,
            "egress.requests",
            &format!(
                "the task has {} requests under way already; retry once some are answered",
                shared.limits.max_requests
            ),
        );
        // Read a little of the body, as for any early refusal: the client reads the refusal
        // instead of a reset stream.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain(body, 1 << 20)).await;
        if let Ok(mut record) = guard.record.lock() {
            record.status = response.status().as_u16();
        }
        return response;
    }
    let mut body = Some(body);
    let result = pipeline(
        &ctx,
        &target,
        parts,
        &mut body,
        started,
        request_bytes,
        response_bytes,
        hit_slot,
    )
    .await;
    if let (Err(_), Some(unread)) = (&result, body.take()) {
        // Refused before the body was read: read a little of it, so that the client (which
        // may still be sending) reads the refusal instead of a reset stream.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(2), drain(unread, 1 << 20)).await;
    }
    match result {
        Ok(response) | Err(response) => {
            if let Ok(mut record) = guard.record.lock()
                && record.status == 0
            {
                record.status = response.status().as_u16();
            }
            response
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn pipeline<G: EgressGate>(
    ctx: &Ctx<G>,
    target: &Target,
    parts: http::request::Parts,
    body: &mut Option<Incoming>,
    started: Instant,
    request_bytes: Arc<AtomicU64>,
    response_bytes: Arc<AtomicU64>,
    hit_slot: Arc<Mutex<Option<Hit>>>,
) -> Result<Response<ProxyBody>, Response<ProxyBody>> {
    let shared = &ctx.shared;
    let matcher = &shared.matcher;
    let host = target.host.as_str();
    let port = target.port;
    let method = parts.method.as_str().to_owned();
    let raw = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut path = canonical_path(raw)
        .map_err(|why| ctx.deny(StatusCode::BAD_REQUEST, "egress.request", &why))?;

    // Inside a tunnel, the request must name the tunnel's host (no fronting another name).
    if target.tunneled {
        let named = parts
            .uri
            .authority()
            .map(|a| a.host().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.parse::<http::uri::Authority>().ok())
                    .map(|a| a.host().to_owned())
            });
        if let Some(named) = named
            && normalize_host(&named).as_deref() != Some(host)
        {
            let reason = format!(
                "the request names `{named}` inside a tunnel to `{host}`; open a tunnel to `{named}` itself"
            );
            return Err(ctx.violation(ViolationKind::HostMismatch, "egress.host", &reason));
        }
    }
    if parts.headers.contains_key(header::UPGRADE) {
        return Err(ctx.deny(
            StatusCode::NOT_IMPLEMENTED,
            "egress.upgrade",
            "remit's egress proxy does not pass protocol upgrades (WebSocket); use plain HTTP requests",
        ));
    }

    // Known secrets and phantoms in the request line and headers.
    let mut swaps: Vec<usize> = Vec::new();
    // The path as sent, and fully percent-decoded (a secret spelled `%73%6B…`).
    let decoded = crate::credentials::percent_decode(&path);
    let mut in_path = matcher.find_all(path.as_bytes());
    in_path.extend(
        matcher
            .find_all(&decoded)
            .into_iter()
            .filter(|f| !matches!(f.label, Label::Phantom(_))),
    );
    for found in in_path {
        match found.label {
            Label::Phantom(i) => {
                let Some(c) = matcher.credentials.get(i) else {
                    continue;
                };
                if !c.injects_into(host, port, target.tls) {
                    return Err(head_hit(ctx, &found, host, ""));
                }
                if let Placement::Query(q) = &c.placement
                    && query_has(&path, q, c.phantom.as_bytes())
                    && !swaps.contains(&i)
                {
                    swaps.push(i);
                }
            }
            // A token the task holds for this host (a git lease's, to its repository).
            Label::Bound(i) if matcher.bound_allows(i, host, port) => {}
            _ => return Err(head_hit(ctx, &found, host, "")),
        }
    }
    for (name, value) in &parts.headers {
        if name == header::PROXY_AUTHORIZATION {
            continue;
        }
        for found in matcher.find_all(value.as_bytes()) {
            match found.label {
                Label::Phantom(i) => {
                    let Some(c) = matcher.credentials.get(i) else {
                        continue;
                    };
                    if !c.injects_into(host, port, target.tls) {
                        return Err(head_hit(ctx, &found, host, ""));
                    }
                    let placed = match &c.placement {
                        Placement::Header(h) => name.as_str() == h,
                        Placement::Basic(_) => name == header::AUTHORIZATION,
                        Placement::Query(_) => false,
                    };
                    if placed && !swaps.contains(&i) {
                        swaps.push(i);
                    }
                }
                Label::Bound(i) if matcher.bound_allows(i, host, port) => {}
                _ => return Err(head_hit(ctx, &found, host, "")),
            }
        }
    }

    // The method and the header names go out as sent too: a secret spelled there (`-X
    // $TOKEN`, a header named after the token's hex) is a secret sent. A token the task holds
    // for this host is the only one let through.
    let outside_values = std::iter::once(method.as_str())
        .chain(parts.headers.keys().map(header::HeaderName::as_str));
    for text in outside_values {
        for found in matcher.find_all(text.as_bytes()) {
            if let Label::Bound(i) = found.label
                && matcher.bound_allows(i, host, port)
            {
                continue;
            }
            return Err(head_hit(
                ctx,
                &found,
                host,
                "in the request's method or a header's name",
            ));
        }
    }

    // The request itself.
    ctx.decide_request(Effect::HttpRequest {
        host: host.to_owned(),
        port,
        method: method.clone(),
        path: path.clone(),
    })
    .await?;

    let meter = if shared.budgets.limited() {
        match shared.budgets.meter(host) {
            Ok(m) => Some(m),
            Err(reason) => {
                return Err(ctx.violation(ViolationKind::Budget, "egress.budget", &reason));
            }
        }
    } else {
        None
    };

    // What else the request is: a git push, a registry upload.
    let bare_path = path.split('?').next().unwrap_or(&path).to_owned();
    let is_push = method == "POST" && bare_path.ends_with("/git-receive-pack");
    // A git service's path written so that only some servers route it as one (a `;`
    // parameter, an encoded separator) would pass as a plain request, past every git rule.
    if git_repository(&bare_path).is_none() && git_repository(&loose_path(&bare_path)).is_some() {
        return Err(ctx.deny(
            StatusCode::FORBIDDEN,
            "egress.git",
            "a git service's path must be written plainly: no `;` parameters and no encoded `/` or `\\`",
        ));
    }
    // A remit git token on a git request: checked for this repository before anything
    // leaves (a push's refs are checked with its commands, below).
    let git_token = match git_tokens_of(&parts.headers) {
        Ok(mut tokens) => {
            tokens.dedup();
            if tokens.len() > 1 {
                return Err(ctx.deny(
                    StatusCode::FORBIDDEN,
                    "credentials.git",
                    "a request may carry one remit git token",
                ));
            }
            tokens.pop()
        }
        Err(why) => return Err(ctx.deny(StatusCode::FORBIDDEN, "credentials.git", &why)),
    };
    let repository = git_repository(&bare_path)
        .map(|repo_path| format!("{}://{}{}", target.scheme(), target.authority(), repo_path));
    if let Some(token) = &git_token {
        let Some(repository) = &repository else {
            return Err(ctx.deny(
                StatusCode::FORBIDDEN,
                "credentials.git",
                "a remit git token may only be sent on git requests (info/refs, git-upload-pack, git-receive-pack) to its repository",
            ));
        };
        if !is_push
            && let Err(why) = shared
                .gate
                .git_token(token, repository, crate::GitTokenAccess::Fetch)
        {
            return Err(ctx.deny(StatusCode::FORBIDDEN, "credentials.git", &why));
        }
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let candidates = shared.publish.candidates(&method, &path, &content_type);
    // One coding at most: with two headers (`identity` then `gzip`) or a list, what is
    // inspected here and what the origin decodes could differ.
    if parts
        .headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .count()
        > 1
    {
        return Err(ctx.deny(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "egress.encoding",
            "remit cannot inspect a request body with more than one Content-Encoding header; send one coding",
        ));
    }
    let encoding = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty() && v != "identity");
    if let Some(enc) = &encoding
        && !matches!(enc.as_str(), "gzip" | "x-gzip" | "deflate")
    {
        return Err(ctx.deny(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "egress.encoding",
            &format!("remit cannot inspect a request body encoded as `{enc}`; send it uncompressed or gzip-compressed"),
        ));
    }
    // Small bodies are read whole and checked before anything is sent, so a refused request
    // never reaches the origin at all; larger ones stream, checked as they pass.
    let small = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n <= SMALL_BODY);
    let read_whole = is_push
        || encoding.is_some()
        || candidates.iter().any(|c| c.needs_body())
        || (small && !matcher.is_empty());

    // Credentials: each use is an effect, then the swap.
    let mut headers = parts.headers.clone();
    let mut injected = Vec::new();
    for i in &swaps {
        let Some(c) = matcher.credentials.get(*i) else {
            continue;
        };
        ctx.decide(Effect::SecretUse {
            name: c.name.clone(),
            destination: format!("{host}:{port}"),
        })
        .await?;
        match &c.placement {
            Placement::Header(h) => {
                if let Ok(name) = HeaderName::from_bytes(h.as_bytes()) {
                    let values: Vec<HeaderValue> = headers
                        .get_all(&name)
                        .iter()
                        .filter_map(|v| HeaderValue::from_bytes(&swap_header(v.as_bytes(), c)).ok())
                        .collect();
                    headers.remove(&name);
                    for v in values {
                        headers.append(name.clone(), v);
                    }
                }
            }
            Placement::Basic(part) => {
                if let Some(value) = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| swap_basic(v.as_bytes(), c, *part))
                    && let Ok(value) = HeaderValue::from_bytes(&value)
                {
                    headers.insert(header::AUTHORIZATION, value);
                }
            }
            Placement::Query(q) => {
                if let Some(swapped) = swap_query(&path, c, q) {
                    path = swapped;
                }
            }
        }
        injected.push(c.name.clone());
    }
    if !injected.is_empty() {
        // The answer to a request carrying a real credential is searched for it: it must
        // come uncompressed, or the search would look at compressed bytes the task unpacks.
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    if let Ok(mut record) = ctx.guard.record.lock() {
        record.credentials = injected.clone();
    }

    // The body.
    let Some(body) = body.take() else {
        return Err(ctx.deny(
            StatusCode::BAD_REQUEST,
            "egress.request",
            "the request body was already read",
        ));
    };
    let outgoing: ProxyBody = if read_whole {
        let limit = shared.limits.max_inspected_body;
        let mut held = Held::new(&shared.inspecting, shared.limits.max_inspected_total);
        let idle = shared.limits.idle_timeout;
        let bytes = match collect_limited(body, limit, idle, meter.as_ref(), &mut held).await {
            Ok(b) => b,
            Err(error) => return Err(body_refusal(ctx, &*error)),
        };
        // Bytes of the allowance held for the inflated copy, given back once it is dropped.
        let mut inflated_held = 0;
        let inspected: Bytes = match encoding.as_deref() {
            None => bytes.clone(),
            Some(kind) => {
                // The inflated copy is counted before it is made: as much room as the
                // allowance has left, up to the per-body limit; what it leaves is given back.
                let ceiling = held.ceiling().min(limit);
                let room = held.take_up_to(limit);
                let (kind, compressed) = (kind.to_owned(), bytes.clone());
                // The work is in what it inflates to, up to the room: a small bomb is large work.
                let inflated = off_the_workers(room, move || inflate(&kind, &compressed, room))
                    .await
                    .unwrap_or_else(|why| Err(Inflate::Bad(why)));
                match inflated {
                    Ok(data) => {
                        inflated_held = data.len().min(room);
                        held.give_back(room - inflated_held);
                        Bytes::from(data)
                    }
                    // Past the room, which other bodies made short: retrying may succeed.
                    Err(Inflate::TooLarge) if room < ceiling => {
                        let busy = BodyError::Busy(shared.limits.max_inspected_total);
                        return Err(body_refusal(ctx, &busy));
                    }
                    // Past all the allowance could ever give it, within the per-body limit.
                    Err(Inflate::TooLarge) if room < limit => {
                        let total = BodyError::TooLarge(shared.limits.max_inspected_total);
                        return Err(body_refusal(ctx, &total));
                    }
                    Err(Inflate::TooLarge) => {
                        let why = format!("the body inflates to more than {limit} bytes");
                        return Err(ctx.deny(StatusCode::BAD_REQUEST, "egress.encoding", &why));
                    }
                    Err(Inflate::Bad(why)) => {
                        return Err(ctx.deny(StatusCode::BAD_REQUEST, "egress.encoding", &why));
                    }
                }
            }
        };
        let scanned = {
            let (matcher, body, at) = (Arc::clone(matcher), inspected.clone(), host.to_owned());
            off_the_workers(inspected.len(), move || {
                matcher.scan(&body, &at, port, true)
            })
            .await
        };
        match scanned {
            Ok(None) => {}
            Ok(Some(hit)) => return Err(hit_refusal(ctx, &hit, host)),
            // A scan that did not finish is a refusal.
            Err(why) => {
                return Err(ctx.deny(StatusCode::INTERNAL_SERVER_ERROR, "egress.inspect", &why));
            }
        }
        if is_push {
            let remote = format!(
                "{}://{}{}",
                target.scheme(),
                target.authority(),
                bare_path.trim_end_matches("/git-receive-pack")
            );
            if let Some(answer) =
                decide_push(ctx, &remote, inspected.clone(), git_token.as_deref()).await
            {
                return Err(answer);
            }
        }
        // Searching and reading a body of up to the inspection limit takes a while: not on
        // the threads that serve every other connection.
        if !candidates.is_empty() {
            let found = {
                let candidates = candidates.clone();
                let body = inspected.clone();
                off_the_workers(body.len(), move || {
                    candidates
                        .iter()
                        .find(|c| c.confirmed_by(&body))
                        .map(|c| c.args(&body))
                })
                .await
            };
            match found {
                Ok(Some(Ok(args))) => decide_publish(ctx, args).await?,
                // A publish that cannot be told is not decided as some other one: refused.
                Ok(Some(Err(why))) => {
                    return Err(ctx.deny(StatusCode::BAD_REQUEST, "egress.publish", &why));
                }
                Ok(None) => {}
                Err(why) => {
                    return Err(ctx.deny(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "egress.inspect",
                        &why,
                    ));
                }
            }
        }
        request_bytes.fetch_add(
            u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        // Only the body as sent stays in memory until it has been sent.
        drop(inspected);
        held.give_back(inflated_held);
        full_held(bytes, held)
    } else {
        if let Some(candidate) = candidates.first() {
            match candidate.args(&[]) {
                Ok(args) => decide_publish(ctx, args).await?,
                Err(why) => {
                    return Err(ctx.deny(StatusCode::BAD_REQUEST, "egress.publish", &why));
                }
            }
        }
        let scan = (!matcher.is_empty())
            .then(|| Scan::new(Arc::clone(matcher), host, port, true, Arc::clone(&hit_slot)));
        Metered::new(
            body,
            Arc::clone(&request_bytes),
            meter.clone(),
            scan,
            shared.limits.idle_timeout,
            None,
        )
        .watched(crate::progress::current())
        .boxed()
    };

    // To the origin.
    strip_hop_by_hop(&mut headers);
    let origin = Origin {
        tls: target.tls,
        host: host.to_owned(),
        port,
        h2: parts.version == Version::HTTP_2,
    };
    let authority = target.authority();
    let scheme = target.scheme();
    let request_method = parts.method.clone();
    let upstream_path = path.clone();
    let sending = Arc::clone(&ctx.guard);
    // Called when the origin's connection is ready, right before the request goes out.
    let make = move |h2: bool| -> Result<Request<ProxyBody>, UpstreamError> {
        let uri = if h2 {
            format!("{scheme}://{authority}{upstream_path}")
        } else {
            upstream_path.clone()
        };
        let mut request = Request::builder()
            .method(request_method)
            .uri(uri)
            .version(if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            })
            .body(outgoing)
            .map_err(|e| UpstreamError::Http(authority.clone(), e.to_string()))?;
        *request.headers_mut() = headers;
        if !h2 && let Ok(value) = HeaderValue::from_str(&authority) {
            request.headers_mut().insert(header::HOST, value);
        }
        if let Ok(mut record) = sending.record.lock() {
            record.sent = true;
        }
        Ok(request)
    };
    let (response, addr, protocol) = match upstream::send(shared, &origin, make).await {
        Ok(r) => r,
        Err(error) => {
            // A secret found while the body streamed is the real reason.
            if let Ok(mut slot) = hit_slot.lock()
                && let Some(hit) = slot.take()
            {
                return Err(hit_refusal(ctx, &hit, host));
            }
            if let Some(meter) = &meter
                && let Err(reason) = meter.charge(0)
            {
                return Err(ctx.violation(ViolationKind::Budget, "egress.budget", &reason));
            }
            let answer =
                upstream_refusal(shared, ctx.peer, host, port, &ctx.what, ctx.json, &error);
            if let Ok(mut record) = ctx.guard.record.lock() {
                record.status = answer.status().as_u16();
                record.error = Some(error.to_string());
                if let Some(reason) = answer
                    .headers()
                    .get(crate::deny::DENIED_HEADER)
                    .and_then(|v| v.to_str().ok())
                {
                    record.denied = Some(Denial {
                        policy: answer
                            .headers()
                            .get(crate::deny::POLICY_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                        reason: reason.to_owned(),
                    });
                }
            }
            return Err(answer);
        }
    };
    {
        // A secret held back after the origin answered early: refuse anyway.
        if let Ok(mut slot) = hit_slot.lock()
            && let Some(hit) = slot.take()
        {
            return Err(hit_refusal(ctx, &hit, host));
        }
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // Only the proxy speaks as remit: an origin's refusal headers would pass its text off
    // as a policy decision (to code mode, to the agent, to the record).
    parts.headers.remove(crate::deny::DENIED_HEADER);
    parts.headers.remove(crate::deny::POLICY_HEADER);
    parts.version = Version::HTTP_11;
    if let Ok(mut record) = ctx.guard.record.lock() {
        record.status = parts.status.as_u16();
        record.upstream = Some(addr);
        record.protocol = Some(protocol.to_owned());
        record.response_after_us = Some(micros(started));
    }
    if !injected.is_empty() {
        // A real credential reflected in the answer's headers (a redirect repeating the
        // query, an echoed header) is withheld like one in its body; so is an answer whose
        // body cannot be searched.
        for (name, value) in &parts.headers {
            if let Some(hit) = matcher.scan(value.as_bytes(), host, port, false) {
                let what = shared.matcher.describe(hit.label);
                return Err(ctx.violation(
                    ViolationKind::KnownSecret,
                    "egress.dlp",
                    &format!(
                        "the answer from `{host}` carries {what} in its `{name}` header; it was withheld from the task"
                    ),
                ));
            }
        }
        let coding = parts
            .headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
        if let Some(coding) = coding {
            return Err(ctx.deny(
                StatusCode::BAD_GATEWAY,
                "egress.encoding",
                &format!(
                    "`{host}` answered a request carrying an injected credential with a `{coding}`-encoded body, which remit cannot search for the credential; it was withheld"
                ),
            ));
        }
    }
    // A real credential reflected back by an origin that received it is cut off too.
    let scan = (!injected.is_empty()).then(|| {
        Scan::new(
            Arc::clone(matcher),
            host,
            port,
            false,
            Arc::clone(&hit_slot),
        )
    });
    let guard: Arc<dyn Send + Sync> = Arc::clone(&ctx.guard) as Arc<dyn Send + Sync>;
    let body = Metered::new(
        body,
        response_bytes,
        meter,
        scan,
        shared.limits.idle_timeout,
        Some(guard),
    );
    Ok(Response::from_parts(parts, body.boxed()))
}

/// Read and drop up to `limit` bytes of a body.
async fn drain(mut body: Incoming, limit: usize) {
    let mut read = 0usize;
    while read < limit {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}

fn body_refusal<G: EgressGate>(
    ctx: &Ctx<G>,
    error: &(dyn std::error::Error + 'static),
) -> Response<ProxyBody> {
    match body_error(error) {
        Some(BodyError::TooLarge(limit)) => ctx.deny(
            StatusCode::PAYLOAD_TOO_LARGE,
            "egress.size",
            &format!("remit reads request bodies of this kind (git pushes, registry uploads, compressed bodies) whole before deciding, up to {limit} bytes; send less at once"),
        ),
        Some(BodyError::Budget(reason)) => ctx.violation(ViolationKind::Budget, "egress.budget", reason),
        Some(busy @ BodyError::Busy(_)) => ctx.deny(StatusCode::SERVICE_UNAVAILABLE, "egress.memory", &busy.to_string()),
        Some(other) => ctx.deny(StatusCode::REQUEST_TIMEOUT, "egress.request", &other.to_string()),
        None => ctx.deny(StatusCode::BAD_REQUEST, "egress.request", &format!("the request body could not be read: {error}")),
    }
}

/// Bodies up to this size are inflated, scanned and parsed where they are: moving them to
/// another thread would cost more than the work.
const INLINE_WORK: usize = 64 << 10;

/// Run `work` over a body of `len` bytes without holding up the proxy's other connections:
/// on the blocking pool when the body is large (inflating or scanning hundreds of MiB takes
/// long enough to stall every connection sharing its worker thread). `Err` if it could not
/// finish (the pool is shutting down, or the work panicked).
async fn off_the_workers<T, F>(len: usize, work: F) -> Result<T, String>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if len <= INLINE_WORK {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("the inspection of the body did not finish: {e}"))
}

/// Why a compressed body could not be inflated.
enum Inflate {
    /// It inflates to more than the limit.
    TooLarge,
    /// It is not what its encoding says.
    Bad(String),
}

/// Inflate a body sent with `Content-Encoding: encoding` (`gzip`, `x-gzip` or `deflate`, the
/// encodings accepted), to at most `limit` bytes.
fn inflate(encoding: &str, bytes: &[u8], limit: usize) -> Result<Vec<u8>, Inflate> {
    use std::io::Read as _;
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    let read = match encoding {
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(bytes)
            .take(cap)
            .read_to_end(&mut out),
        _ => flate2::read::ZlibDecoder::new(bytes)
            .take(cap)
            .read_to_end(&mut out),
    };
    read.map_err(|e| Inflate::Bad(format!("bad {encoding} body: {e}")))?;
    if out.len() > limit {
        return Err(Inflate::TooLarge);
    }
    Ok(out)
}

/// Decide every ref of a push; `Some(answer)` refuses the push.
async fn decide_push<G: EgressGate>(
    ctx: &Ctx<G>,
    remote: &str,
    body: Bytes,
    git_token: Option<&str>,
) -> Option<Response<ProxyBody>> {
    let parsed = {
        let body = body.clone();
        off_the_workers(body.len(), move || git::parse_push(&body)).await
    };
    let push = match parsed {
        Ok(Ok(p)) => p,
        Ok(Err(error)) => {
            return Some(ctx.deny(StatusCode::BAD_REQUEST, "egress.git", &error.to_string()));
        }
        Err(why) => {
            return Some(ctx.deny(StatusCode::INTERNAL_SERVER_ERROR, "egress.inspect", &why));
        }
    };
    if let Some(token) = git_token {
        let refs: Vec<String> = push.updates.iter().map(|u| u.reference.clone()).collect();
        if let Err(why) =
            ctx.shared
                .gate
                .git_token(token, remote, crate::GitTokenAccess::Push(&refs))
        {
            return Some(ctx.deny(StatusCode::FORBIDDEN, "credentials.git", &why));
        }
    }
    if push.updates.is_empty() {
        return None;
    }
    let needs_pack = push.updates.iter().any(|u| !u.creates() && !u.deletes());
    let sha256 = push
        .capabilities
        .iter()
        .any(|c| c == "object-format=sha256");
    if let Some(at) = push.pack_offset {
        // The pack's commits tell a fast-forward from a force push; a pack that cannot be
        // read leaves every update that needs it counted as forced.
        let pack = body.slice(at.min(body.len())..);
        // The work is what the pack may inflate to, not its length: a small pack may be a
        // zlib bomb (bounded by `pack_inflate_budget`, but not small enough to run inline).
        let work = usize::try_from(git::pack_inflate_budget(pack.len())).unwrap_or(usize::MAX);
        let commits = off_the_workers(work, move || {
            git::pack_commits(&pack, sha256, 16 << 20).ok()
        })
        .await;
        if let (Ok(Some(commits)), Ok(mut graph)) = (commits, ctx.shared.commits.lock()) {
            graph.absorb(commits, COMMIT_CACHE);
        }
    }
    // Walking the commits takes a while for many refs: not on the threads that serve every
    // other connection, and within a bound (an update not told is counted as forced).
    let forced: Vec<bool> = {
        let shared = Arc::clone(&ctx.shared);
        let updates = push.updates.clone();
        let walk = move || match shared.commits.lock() {
            Ok(graph) => {
                let mut budget = git::MAX_ANCESTRY_VISITS;
                updates
                    .iter()
                    .map(|u| {
                        needs_pack
                            && !u.creates()
                            && !u.deletes()
                            && !graph.fast_forward_within(&u.old, &u.new, &mut budget)
                    })
                    .collect()
            }
            Err(_) => updates
                .iter()
                .map(|u| !u.creates() && !u.deletes())
                .collect(),
        };
        let work = if needs_pack { usize::MAX } else { 0 };
        match off_the_workers(work, walk).await {
            Ok(forced) => forced,
            Err(why) => {
                return Some(ctx.deny(StatusCode::INTERNAL_SERVER_ERROR, "egress.inspect", &why));
            }
        }
    };
    let mut reasons: Vec<Option<String>> = Vec::new();
    let mut refused = false;
    let mut first: Option<(String, String)> = None;
    for (update, force) in push.updates.iter().zip(forced) {
        let effect = Effect::GitPush {
            remote: remote.to_owned(),
            reference: update.reference.clone(),
            old: if update.creates() {
                String::new()
            } else {
                update.old.clone()
            },
            new: if update.deletes() {
                String::new()
            } else {
                update.new.clone()
            },
            force,
            new_branch: update.creates(),
        };
        match ctx.shared.gate.decide(effect).await {
            GateDecision::Allow => reasons.push(None),
            GateDecision::Deny { policy, reason } => {
                refused = true;
                reasons.push(Some(format!("{reason} (policy `{policy}`)")));
                first.get_or_insert((policy, reason));
            }
        }
    }
    if !refused {
        return None;
    }
    let (policy, reason) = first.unwrap_or_default();
    if let Ok(mut record) = ctx.guard.record.lock() {
        record.denied = Some(Denial {
            policy: policy.clone(),
            reason: reason.clone(),
        });
        record.status = 200;
    }
    if !push.has("report-status") && !push.has("report-status-v2") {
        return Some(ctx.deny(StatusCode::FORBIDDEN, &policy, &reason));
    }
    let answer = git::refusal(&push, &reasons, &format!("push refused: {reason}"));
    let mut response = Response::new(full(answer));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-git-receive-pack-result"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(crate::deny::POLICY_HEADER), value);
    }
    Some(response)
}

async fn decide_publish<G: EgressGate>(
    ctx: &Ctx<G>,
    args: std::collections::BTreeMap<String, String>,
) -> Result<(), Response<ProxyBody>> {
    let args = args
        .into_iter()
        .filter(|(k, _)| ctx.shared.publish_args.iter().any(|a| a == k))
        .collect();
    ctx.decide(Effect::Action {
        kind: "publish".into(),
        workspace: String::new(),
        args,
    })
    .await
}

/// The remit git token (`rgt_…`) a request carries: `Authorization: Bearer <token>`, or either
/// half of `Authorization: Basic` (git's credential helpers send it as the password).
/// Every remit git token a request carries, from all its `Authorization` values; `Err` when
/// one travels in any other header, where the checks below would not look for it.
fn git_tokens_of(headers: &HeaderMap) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    for (name, value) in headers {
        let carries = value
            .as_bytes()
            .windows(crate::GIT_TOKEN_PREFIX.len())
            .any(|w| w == crate::GIT_TOKEN_PREFIX.as_bytes());
        if name == header::AUTHORIZATION {
            match value.to_str() {
                Ok(text) => tokens.extend(git_token_in(text)),
                // Not text: a token in it could not be checked.
                Err(_) if carries => {
                    return Err("an Authorization header that is not text carries what looks like a remit git token".into());
                }
                Err(_) => {}
            }
        } else if carries {
            return Err(format!(
                "a remit git token may travel only in the Authorization header, not in `{name}`"
            ));
        }
    }
    tokens.sort();
    Ok(tokens)
}

#[cfg(test)]
fn git_token_of(headers: &HeaderMap) -> Option<String> {
    git_tokens_of(headers).ok()?.into_iter().next()
}

fn git_token_in(value: &str) -> Option<String> {
    use base64::Engine as _;
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return rest
            .starts_with(crate::GIT_TOKEN_PREFIX)
            .then(|| rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        return [password, user]
            .into_iter()
            .find(|v| v.starts_with(crate::GIT_TOKEN_PREFIX))
            .map(str::to_owned);
    }
    None
}

/// The repository path of a git smart-HTTP request path (`/acme/widgets.git/info/refs` gives
/// `/acme/widgets.git`); `None` for anything else.
/// `path` (canonical, without its query) as servers that drop each segment's `;` parameters
/// and decode `%2F` and `%5C` before routing see it.
fn loose_path(path: &str) -> String {
    path.replace("%2F", "/")
        .replace("%5C", "/")
        .split('/')
        .map(|segment| segment.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

fn git_repository(bare_path: &str) -> Option<&str> {
    ["/info/refs", "/git-upload-pack", "/git-receive-pack"]
        .iter()
        .find_map(|suffix| bare_path.strip_suffix(suffix))
        .filter(|repo| !repo.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A git service's path in disguise: plain to the policy, a git service to servers that
    /// drop path parameters (Jetty) or decode separators before routing.
    #[test]
    fn git_services_in_disguise_are_seen_through() {
        for disguised in [
            "/acme/widgets.git/git-receive-pack;x=1",
            "/acme/widgets.git%2Fgit-receive-pack",
            "/acme/widgets.git%5Cgit-upload-pack",
            "/acme/widgets.git/info;v=1/refs",
        ] {
            assert_eq!(git_repository(disguised), None, "{disguised}");
            assert!(
                git_repository(&loose_path(disguised)).is_some(),
                "{disguised}"
            );
        }
        // Harmless twins: plain git paths, and paths that are no git service however read.
        assert_eq!(
            git_repository("/acme/widgets.git/git-receive-pack"),
            Some("/acme/widgets.git")
        );
        for plain in ["/a;b/c", "/docs%2Fgit-receive-pack-notes", "/info/refs-old"] {
            assert_eq!(git_repository(&loose_path(plain)), None, "{plain}");
        }
    }

    #[test]
    fn git_tokens_are_found_in_bearer_and_basic_authorization() {
        use base64::Engine as _;
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            git_token_of(&h)
        };
        assert_eq!(with("Bearer rgt_abc").as_deref(), Some("rgt_abc"));
        let basic = base64::engine::general_purpose::STANDARD.encode("x-access-token:rgt_abc");
        assert_eq!(with(&format!("Basic {basic}")).as_deref(), Some("rgt_abc"));
        let user = base64::engine::general_purpose::STANDARD.encode("rgt_abc:");
        assert_eq!(with(&format!("basic {user}")).as_deref(), Some("rgt_abc"));
        assert_eq!(with("Bearer ghp_other"), None);
        assert_eq!(with("Basic !!!"), None);
        assert_eq!(git_token_of(&HeaderMap::new()), None);
        // Every Authorization value is looked at, and a token anywhere else is refused.
        let mut two = HeaderMap::new();
        two.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        two.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer rgt_second"),
        );
        assert_eq!(git_tokens_of(&two).unwrap(), ["rgt_second"]);
        let mut elsewhere = HeaderMap::new();
        elsewhere.insert("private-token", HeaderValue::from_static("rgt_abc"));
        assert!(
            git_tokens_of(&elsewhere)
                .unwrap_err()
                .contains("private-token")
        );
        let mut not_text = HeaderMap::new();
        not_text.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xffrgt_abc").unwrap(),
        );
        assert!(git_tokens_of(&not_text).is_err());
        assert_eq!(git_repository("/acme/w.git/info/refs"), Some("/acme/w.git"));
        assert_eq!(
            git_repository("/acme/w.git/git-receive-pack"),
            Some("/acme/w.git")
        );
        assert_eq!(git_repository("/info/refs"), None);
        assert_eq!(git_repository("/api/v1"), None);
    }

    #[test]
    fn paths() {
        assert_eq!(canonical_path("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(canonical_path("/a/%2e%2e/b").unwrap(), "/b");
        assert_eq!(
            canonical_path("/repos/acme/%2E%2E/%2E%2E/admin").unwrap(),
            "/admin"
        );
        assert_eq!(
            canonical_path("/a/%41%2fb?x=%2e").unwrap(),
            "/a/A%2Fb?x=%2e"
        );
        assert_eq!(canonical_path("/a/b/").unwrap(), "/a/b/");
        assert_eq!(canonical_path("/a/..").unwrap(), "/");
        assert_eq!(canonical_path("/../../etc").unwrap(), "/etc");
        assert!(canonical_path("/a%zz").is_err());
        assert!(canonical_path("/a%2").is_err());
        assert!(canonical_path("a").is_err());
        // Dot segments hidden behind parameters or escaped separators are refused…
        for hidden in [
            "/repos/acme/..;/other/admin",
            "/repos/acme/..;x=1/admin",
            "/a/.;/b",
            "/a/%2e%2e;/b",
            "/repos/acme/x%2F..%2F..%2Fadmin",
            "/repos/acme/x%2f..%2fadmin",
            "/a/..%5Cadmin",
            "/a/%2F..",
        ] {
            let refused = canonical_path(hidden).unwrap_err();
            assert!(
                refused.contains("hides a `.` or `..`"),
                "{hidden}: {refused}"
            );
        }
        // …while their harmless twins pass.
        assert_eq!(canonical_path("/a/x;v=1").unwrap(), "/a/x;v=1");
        assert_eq!(canonical_path("/a/...").unwrap(), "/a/...");
        assert_eq!(canonical_path("/a/..b;c").unwrap(), "/a/..b;c");
        assert_eq!(canonical_path("/a/x%2Fy").unwrap(), "/a/x%2Fy");
        assert_eq!(canonical_path("/a/.well-known").unwrap(), "/a/.well-known");
        assert_eq!(canonical_path("*").unwrap(), "*");
    }

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
