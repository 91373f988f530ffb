//! One HTTP probe of one URL: the request an http check sends and the conditions its
//! answer must meet, with the reason (a short label value) and the cause (words a
//! person can act on) when it does not.
//!
//! [`ProbeSpec`] is every key of an http check but its URLs: its own keys and the
//! connection keys every kind that speaks HTTP shares ([`ConnectionKeys`]), so the
//! same keys describe how each URL of a check is probed and, later, a probe module run
//! on demand. A [`Prober`] is those keys validated once (regexes compiled, files
//! opened, the agent built); [`Prober::prepare`] re-reads the files a run needs, and
//! [`Prober::probe`] runs one probe within a deadline and never returns without a
//! result.
//!
//! The body is read as it came over the wire and gzip is decoded here rather than in
//! ureq, so that a probe knows both sizes: bytes on the wire and bytes decoded (what
//! `body_size_limit` and the body regexes apply to).
//!
//! The files of this directory, each importing only those listed before it:
//! `spec` (the keys as written), `outcome` (result and reasons), `target` (the URL),
//! `body` (reading and decoding), `judge` (the conditions of an answer), `validate`
//! (keys → validated parts); this file ties them into the [`Prober`].

mod body;
mod judge;
mod outcome;
mod spec;
mod target;
mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_saphyr::Location;
use ureq::http::{HeaderName, HeaderValue, Method, Request};

pub use outcome::{ProbeResult, Reason};
pub use spec::ProbeSpec;
pub use target::Target;

use body::DEFAULT_BODY_LIMIT;
use judge::{Conditions, MAX_REDIRECTS};
use validate::{Auth, BodySource, HeaderSource};

use super::BuildContext;
use crate::net::http::{self as client, AgentOptions};
use crate::problem::Problem;

/// What one run sends: files re-read once for all of its probes.
#[derive(Debug, Default)]
pub struct Prepared {
    authorization: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Arc<Vec<u8>>>,
}

/// The keys of a [`ProbeSpec`], validated: ready to probe any number of URLs.
#[derive(Debug)]
pub struct Prober {
    check: String,
    method: Method,
    headers: Vec<(HeaderName, HeaderSource)>,
    asks_encoding: bool,
    body: BodySource,
    conditions: Conditions,
    body_limit: u64,
    auth: Auth,
    agent: ureq::Agent,
    timeout: Duration,
}

impl Prober {
    /// Validates the keys; problems go to `problems` with their location (`fallback`
    /// when a problem has no key of its own, e.g. the TLS setup).
    pub fn build(
        spec: &ProbeSpec,
        ctx: &BuildContext,
        fallback: Location,
        problems: &mut Vec<Problem>,
    ) -> Option<Prober> {
        let own = &spec.own;
        let method = validate::method(own, ctx, problems);
        let headers = validate::headers(own, ctx, problems);
        let asks_encoding = headers
            .iter()
            .any(|(n, _)| n == ureq::http::header::ACCEPT_ENCODING);
        let body = validate::body(own, ctx, problems);
        let conditions = validate::conditions(own, ctx, problems);
        let auth = validate::auth(own, ctx, problems);
        let options = AgentOptions {
            max_redirects: if own.follow_redirects {
                MAX_REDIRECTS
            } else {
                0
            },
            pool: false,
            keep_last_redirect: true,
            ..AgentOptions::default()
        };
        let agent = ctx.agent(&spec.connection, &options, fallback, problems)?;
        Some(Prober {
            check: ctx.meta.name.clone(),
            method,
            headers,
            asks_encoding,
            body,
            conditions,
            body_limit: own.body_size_limit.map_or(DEFAULT_BODY_LIMIT, |s| s.0),
            auth,
            agent,
            timeout: ctx.meta.timeout,
        })
    }

    /// What this run sends: the `Authorization` header and the header and body files,
    /// re-read now (a file that cannot be read keeps its last good content).
    pub fn prepare(&self) -> Prepared {
        let authorization = match &self.auth {
            Auth::None => None,
            Auth::Basic { username, password } => {
                let password = password.as_ref().map(|p| p.get(&self.check));
                let password = password.as_ref().map_or("", |p| p.expose());
                Some(client::basic_auth(username, password))
            }
            Auth::Bearer(token) => Some(format!("Bearer {}", token.get(&self.check).expose())),
        };
        let headers = self
            .headers
            .iter()
            .map(|(name, source)| {
                let value = match source {
                    HeaderSource::Inline(v) => v.clone(),
                    HeaderSource::File(file) => file.get(&self.check).0.clone(),
                };
                (name.clone(), value)
            })
            .collect();
        let body = match &self.body {
            BodySource::None => None,
            BodySource::Inline(b) => Some(Arc::clone(b)),
            BodySource::File(file) => Some(Arc::new(file.get(&self.check).to_vec())),
        };
        Prepared {
            authorization,
            headers,
            body,
        }
    }

    /// Probes `target` once, within the check's timeout and `deadline`.
    pub fn probe(&self, target: &Target, deadline: Instant, prepared: &Prepared) -> ProbeResult {
        let start = Instant::now();
        let budget = deadline.saturating_duration_since(start).min(self.timeout);
        if budget.is_zero() {
            return ProbeResult::not_run();
        }
        let mut result = ProbeResult {
            failure: None,
            cause: None,
            ..ProbeResult::not_run()
        };
        let (outcome, trace, end) = self.exchange(target, budget, prepared, &mut result);
        result.duration = start.elapsed();
        result.cert_not_after = trace.cert_not_after;
        result.phases = trace.phases(end);
        result.ip_protocol = trace.ip_protocol;
        result.ip_addr = trace.ip_addr;
        if result.tls.is_none() && result.status == 0 {
            result.tls = trace.tls.clone();
        }
        if let Err(e) = outcome {
            result.fail(outcome::classify(&e, &trace), client::cause(&e, &trace));
        }
        result
    }

    /// Sends the request, reads the body and judges the answer, filling `result`;
    /// transport errors are returned with the trace and when the body ended.
    fn exchange(
        &self,
        target: &Target,
        budget: Duration,
        prepared: &Prepared,
        result: &mut ProbeResult,
    ) -> (Result<(), ureq::Error>, client::Trace, Option<Instant>) {
        let request = match self.request(target, prepared) {
            Ok(r) => r,
            Err(e) => return (Err(e), client::Trace::default(), None),
        };
        let sent = match &prepared.body {
            Some(body) => request
                .body(body.as_slice())
                .map(|r| client::send(&self.agent, r, budget)),
            None => request
                .body(())
                .map(|r| client::send(&self.agent, r, budget)),
        };
        let exchange = match sent {
            Ok(exchange) => exchange,
            Err(e) => return (Err(e.into()), client::Trace::default(), None),
        };
        let mut trace = exchange.trace;
        let mut response = match exchange.response {
            Ok(r) => r,
            Err(e) => return (Err(e), trace, None),
        };
        result.status = response.status().as_u16();
        result.redirects = ureq::ResponseExt::get_redirect_history(&response)
            .map_or(0, |h| h.len().saturating_sub(1));
        let over_tls = ureq::ResponseExt::get_uri(&response).scheme_str() == Some("https");
        result.tls = if over_tls { trace.tls.clone() } else { None };
        judge::note_head(&response, over_tls, result);
        let read = body::read(
            &mut response,
            self.body_limit,
            self.conditions.needs_body(),
            result,
        );
        let end = Instant::now();
        if let Some(late) = client::late_failure() {
            trace.failure.get_or_insert(late);
        }
        let kept = match read {
            Ok(Some(kept)) => kept,
            Ok(None) => return (Ok(()), trace, Some(end)),
            Err(e) => return (Err(e), trace, Some(end)),
        };
        if let Some((reason, cause)) = self.conditions.judge(&response, &kept, over_tls) {
            result.fail(reason, cause);
        }
        (Ok(()), trace, Some(end))
    }

    /// The request head for `target`; the body is added by the caller.
    fn request(
        &self,
        target: &Target,
        prepared: &Prepared,
    ) -> Result<ureq::http::request::Builder, ureq::Error> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(target.uri.clone());
        for (name, value) in &prepared.headers {
            builder = builder.header(name, value);
        }
        if !self.asks_encoding {
            builder = builder.header(ureq::http::header::ACCEPT_ENCODING, "gzip");
        }
        // Every probe measures a new connection, so say so: the server closes it (its
        // side keeps the TIME_WAIT, not sonde's ephemeral ports), and the client skips
        // checking whether the connection could be reused.
        if !prepared
            .headers
            .iter()
            .any(|(name, _)| name == ureq::http::header::CONNECTION)
        {
            builder = builder.header(ureq::http::header::CONNECTION, "close");
        }
        if let Some(auth) = prepared
            .authorization
            .as_deref()
            .or(target.userinfo_auth.as_deref())
        {
            let mut value = HeaderValue::try_from(auth)
                .map_err(|_| ureq::Error::BadUri("credentials are not a valid header".into()))?;
            value.set_sensitive(true);
            builder = builder.header(ureq::http::header::AUTHORIZATION, value);
        }
        Ok(builder)
    }
}
