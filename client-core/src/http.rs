//! The HTTP transport: the only place client-core touches the network.

use std::time::Duration;

use fieldsync_protocol::{
    attachment::{self, MissingRequest, MissingResponse},
    auth::{ENROLL_PATH, EnrollRequest, EnrollResponse, ME_PATH, MeResponse},
    wire::{
        self, CBOR_CONTENT_TYPE, DecodeLimits, ErrorBody, MAX_PAGE_BYTES, PULL_PATH, PUSH_PATH,
        PullQuery, PullResponse, PushRequest, PushResponse,
    },
};
use reqwest::{Url, blocking::Client, header};
use uuid::Uuid;

use crate::sync::{Transport, TransportError};

/// Bytes moved by a transport, counted as they crossed the wire (compressed bodies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferStats {
    /// Request body bytes sent.
    pub body_bytes_up: u64,
    /// Response body bytes received.
    pub body_bytes_down: u64,
    /// Requests made.
    pub requests: u64,
}

/// Talks to a fieldsync server over HTTP(S) with gzip-compressed CBOR bodies.
#[derive(Clone)]
pub struct HttpTransport {
    client: Client,
    base: Url,
    token: Option<String>,
    /// What has crossed the wire so far.
    pub stats: TransferStats,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

/// How to reach a server beyond its address.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Allow plain `http://` to a host that is not this machine (only on a network you trust,
    /// such as behind a VPN; cadre data otherwise travels in clear text).
    pub allow_plain_http: bool,
    /// PEM certificates to trust as the only roots (a server with a self-signed certificate).
    pub root_certificates: Vec<Vec<u8>>,
}

/// Why an [`HttpTransport`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    /// The address is not a valid http(s) URL.
    #[error("{0:?} is not a valid server address (expected http://host:port or https://...): {1}")]
    BadUrl(String, String),
    /// Plain HTTP to a host that is not this machine.
    #[error(
        "refusing plain http to {0}: cadre data must travel encrypted; use https:// (plain http \
         is allowed only to 127.0.0.1, ::1 and localhost)"
    )]
    Insecure(String),
    /// The HTTP client could not be built.
    #[error("could not set up the HTTP client: {0}")]
    Client(String),
    /// A certificate to trust is not valid PEM.
    #[error("the certificate to trust is not a valid PEM certificate: {0}")]
    Certificate(String),
}

impl HttpTransport {
    /// A transport to the server at `base` (such as `http://127.0.0.1:8080`). Plain `http` is
    /// refused for anything but loopback.
    pub fn new(base: &str) -> Result<Self, HttpSetupError> {
        Self::with_options(base, &HttpOptions::default())
    }

    /// A transport with [`HttpOptions`].
    pub fn with_options(base: &str, options: &HttpOptions) -> Result<Self, HttpSetupError> {
        let url =
            Url::parse(base).map_err(|e| HttpSetupError::BadUrl(base.into(), e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = match url.host() {
                    Some(url::Host::Domain(d)) => d == "localhost",
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                };
                if !loopback && !options.allow_plain_http {
                    return Err(HttpSetupError::Insecure(base.into()));
                }
            }
            other => {
                return Err(HttpSetupError::BadUrl(
                    base.into(),
                    format!("unsupported scheme {other:?}"),
                ));
            }
        }
        let mut builder = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            // The server closes a kept-alive connection after 15 s without a request (its
            // header timeout): a connection idle for nearly as long is not reused, since a request
            // sent as the server closes it breaks (seen with 1,000 devices, bench_load).
            .pool_idle_timeout(Duration::from_secs(10))
            .user_agent(concat!("fieldsync-client-core/", env!("CARGO_PKG_VERSION")));
        if !options.root_certificates.is_empty() {
            let certs = options
                .root_certificates
                .iter()
                .map(|pem| {
                    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                        return Err(HttpSetupError::Certificate(
                            "no BEGIN CERTIFICATE block".into(),
                        ));
                    }
                    reqwest::Certificate::from_pem(pem)
                        .map_err(|e| HttpSetupError::Certificate(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .map_err(|e| HttpSetupError::Client(e.to_string()))?;
        Ok(HttpTransport {
            client,
            base: url,
            token: None,
            stats: TransferStats::default(),
        })
    }

    /// The same transport, sending `token` as `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The server address.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// Exchanges a one-time enrollment code for a device token (`POST /v1/enroll`). The
    /// transport sends the token from then on.
    pub fn enroll(
        &mut self,
        device: uuid::Uuid,
        code: &str,
        name: &str,
    ) -> Result<EnrollResponse, TransportError> {
        let body = serde_json::to_vec(&EnrollRequest {
            code: code.to_string(),
            device: device.to_string(),
            name: name.to_string(),
        })
        .map_err(|e| TransportError::Protocol(e.to_string()))?;
        let up = body.len() as u64;
        let req = self
            .client
            .post(self.url(ENROLL_PATH))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        let bytes = self.send(req, up)?;
        let response: EnrollResponse = serde_json::from_slice(&bytes)
            .map_err(|e| TransportError::Protocol(format!("enroll response: {e}")))?;
        self.token = Some(response.token.clone());
        Ok(response)
    }

    /// Who this device is and what it may see (`GET /v1/me`).
    pub fn me(&mut self) -> Result<MeResponse, TransportError> {
        let bytes = self.send(self.client.get(self.url(ME_PATH)), 0)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TransportError::Protocol(format!("me response: {e}")))
    }

    /// Who wrote each conflicting value of record `id`, as the server knows it
    /// (`GET /v1/records/{id}/conflicts`): (actor hex, the person's name) for every value whose
    /// writer the server can name. A record the server has not merged yet answers 404.
    pub fn conflict_writers(
        &mut self,
        id: uuid::Uuid,
    ) -> Result<Vec<(String, String)>, TransportError> {
        let path = format!("/v1/records/{id}/conflicts");
        let bytes = self.send(self.client.get(self.url(&path)), 0)?;
        let body: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| TransportError::Protocol(format!("conflicts response: {e}")))?;
        let mut out = Vec::new();
        for conflict in body["conflicts"].as_array().into_iter().flatten() {
            for value in conflict["values"].as_array().into_iter().flatten() {
                if let (Some(actor), Some(person)) =
                    (value["actor"].as_str(), value["person"].as_str())
                {
                    out.push((actor.to_string(), person.to_string()));
                }
            }
        }
        Ok(out)
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(path);
        u
    }

    fn send(
        &mut self,
        request: reqwest::blocking::RequestBuilder,
        up: u64,
    ) -> Result<Vec<u8>, TransportError> {
        self.exchange(request, up).map(|(_, body)| body)
    }

    /// Sends a request; a 2xx answer's headers and body, or the refusal.
    fn exchange(
        &mut self,
        request: reqwest::blocking::RequestBuilder,
        up: u64,
    ) -> Result<(header::HeaderMap, Vec<u8>), TransportError> {
        self.stats.requests += 1;
        self.stats.body_bytes_up += up;
        let request = match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let response = request
            .header(header::ACCEPT_ENCODING, "gzip")
            .send()
            .map_err(not_sent)?;
        let status = response.status();
        let headers = response.headers().clone();
        let retry_after = retry_after(response.headers());
        let gzipped = response
            .headers()
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let body = response
            .bytes()
            .map_err(|e| TransportError::Interrupted(e.to_string()))?;
        self.stats.body_bytes_down += body.len() as u64;
        let body = if gzipped {
            wire::gunzip(&body, 4 * MAX_PAGE_BYTES)
                .map_err(|e| TransportError::Interrupted(e.to_string()))?
        } else {
            body.to_vec()
        };
        if status.is_success() {
            return Ok((headers, body));
        }
        Err(refusal(status, &body, retry_after))
    }
}

/// A request that got no answer: the server could not be reached, or the line broke.
fn not_sent(e: reqwest::Error) -> TransportError {
    if e.is_connect() {
        TransportError::Unreachable(e.to_string())
    } else {
        TransportError::Interrupted(e.to_string())
    }
}

/// A refused answer as the error it is: the server's JSON error, or the status and the start of
/// whatever else came back.
fn refusal(
    status: reqwest::StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
) -> TransportError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => TransportError::Refused {
            status: status.as_u16(),
            code: b.error.code,
            message: b.error.message,
            hint: b.error.hint,
            retry_after,
        },
        Err(_) => TransportError::Refused {
            status: status.as_u16(),
            code: "http_error".into(),
            message: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            hint: None,
            retry_after,
        },
    }
}

/// The longest `Retry-After` honoured: a server asking for more is waited on for this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// A `Retry-After` of whole seconds (the form the fieldsync server sends), at most
/// [`MAX_RETRY_AFTER`]. The HTTP-date form is not read (`None`: the caller's own backoff).
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

impl crate::attachments::BlobTransport for HttpTransport {
    fn missing(&mut self, request: &MissingRequest) -> Result<MissingResponse, TransportError> {
        let body = serde_json::to_vec(request).expect("a request serializes");
        let up = body.len() as u64;
        let bytes = self.send(
            self.client
                .post(self.url(attachment::MISSING_PATH))
                .header(header::CONTENT_TYPE, "application/json")
                .body(body),
            up,
        )?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TransportError::Protocol(format!("missing attachments: {e}")))
    }

    fn offset(&mut self, record: Uuid, sha256: &str) -> Result<u64, TransportError> {
        let url = self.url(&attachment::attachment_path(&record, sha256));
        let (headers, _) = self.exchange(
            self.client
                .head(url)
                .header(attachment::TUS_RESUMABLE, attachment::TUS_VERSION),
            0,
        )?;
        upload_offset(&headers)
    }

    fn append(
        &mut self,
        record: Uuid,
        sha256: &str,
        offset: u64,
        chunk: &[u8],
    ) -> Result<u64, TransportError> {
        let url = self.url(&attachment::attachment_path(&record, sha256));
        let (headers, _) = self.exchange(
            self.client
                .patch(url)
                .header(attachment::TUS_RESUMABLE, attachment::TUS_VERSION)
                .header(header::CONTENT_TYPE, attachment::OFFSET_CONTENT_TYPE)
                .header(attachment::UPLOAD_OFFSET, offset)
                .body(chunk.to_vec()),
            chunk.len() as u64,
        )?;
        upload_offset(&headers)
    }

    fn download_from(
        &mut self,
        record: Uuid,
        sha256: &str,
        into: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        use std::io::Read;
        let url = self.url(&attachment::attachment_path(&record, sha256));
        let mut request = self.client.get(url);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let from = into.len();
        if from > 0 {
            request = request.header(header::RANGE, format!("bytes={from}-"));
        }
        self.stats.requests += 1;
        let mut response = request.send().map_err(not_sent)?;
        let status = response.status();
        // Everything had arrived before the line broke: nothing is left to send.
        if from > 0 && status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(());
        }
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            let body = response
                .bytes()
                .map_err(|e| TransportError::Interrupted(e.to_string()))?;
            return Err(refusal(status, &body, retry_after));
        }
        // A server that ignored the range sends the whole file again.
        if from > 0 && status != reqwest::StatusCode::PARTIAL_CONTENT {
            into.clear();
        }
        // Read as it arrives, so that what came before a cut is kept for the next request.
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match response.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    self.stats.body_bytes_down += n as u64;
                    into.extend_from_slice(&buf[..n]);
                }
                Err(e) => return Err(TransportError::Interrupted(e.to_string())),
            }
        }
    }
}

fn upload_offset(headers: &header::HeaderMap) -> Result<u64, TransportError> {
    headers
        .get(attachment::UPLOAD_OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| TransportError::Protocol("the answer has no Upload-Offset".into()))
}

impl Transport for HttpTransport {
    fn push(&mut self, request: &PushRequest) -> Result<PushResponse, TransportError> {
        let body = (self.push_encoder())(request);
        self.push_encoded(body)
    }

    fn push_encoder(&self) -> fn(&PushRequest) -> Vec<u8> {
        |request| wire::gzip(&wire::encode(request))
    }

    fn push_encoded(&mut self, body: Vec<u8>) -> Result<PushResponse, TransportError> {
        let up = body.len() as u64;
        let req = self
            .client
            .post(self.url(PUSH_PATH))
            .header(header::CONTENT_TYPE, CBOR_CONTENT_TYPE)
            .header(header::CONTENT_ENCODING, "gzip")
            .body(body);
        let bytes = self.send(req, up)?;
        wire::decode(&bytes, "push response").map_err(|e| TransportError::Protocol(e.to_string()))
    }

    fn pull(&mut self, query: &PullQuery) -> Result<PullResponse, TransportError> {
        let mut url = self.url(PULL_PATH);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("device", &query.device);
            q.append_pair("after", &query.after.to_string());
            if let Some(h) = &query.after_hash {
                q.append_pair("after_hash", h);
            }
            if let Some(m) = query.max_bytes {
                q.append_pair("max_bytes", &m.to_string());
            }
            if query.include_own {
                q.append_pair("include_own", "true");
            }
            if query.created {
                q.append_pair("created", "true");
            }
        }
        let bytes = self.send(self.client.get(url), 0)?;
        wire::decode_with(&bytes, "pull response", DecodeLimits::PULL)
            .map_err(|e| TransportError::Protocol(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut h = header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(header::RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
            "https://example.org",
        ] {
            assert!(HttpTransport::new(ok).is_ok(), "{ok}");
        }
        for bad in ["http://10.0.0.5:8080", "http://example.org"] {
            assert!(
                matches!(HttpTransport::new(bad), Err(HttpSetupError::Insecure(_))),
                "{bad}"
            );
            let told = HttpOptions {
                allow_plain_http: true,
                ..Default::default()
            };
            assert!(HttpTransport::with_options(bad, &told).is_ok(), "{bad}");
        }
        let bad_cert = HttpOptions {
            root_certificates: vec![b"not a certificate".to_vec()],
            ..Default::default()
        };
        assert!(matches!(
            HttpTransport::with_options("https://127.0.0.1:1", &bad_cert),
            Err(HttpSetupError::Certificate(_) | HttpSetupError::Client(_))
        ));
        assert!(matches!(
            HttpTransport::new("ftp://127.0.0.1"),
            Err(HttpSetupError::BadUrl(..))
        ));
        assert!(matches!(
            HttpTransport::new("not a url"),
            Err(HttpSetupError::BadUrl(..))
        ));
    }
}
