//! The HTTP client: one range per request (servers mishandle multi-range replies),
//! `If-Range` with the package's validator, TLS with the platform's roots or the
//! certificates of a CA file. `ureq` with `rustls`: a small, synchronous client
//! with no async runtime to carry in the self-extracting stub.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::error::SourceError;

/// What to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// The last `n` bytes (`Range: bytes=-n`).
    Suffix(u64),
    /// Bytes `start` to `end` excluded (`Range: bytes=start-(end-1)`).
    Bytes { start: u64, end: u64 },
}

/// What the server sent.
pub(crate) enum Reply {
    /// 206: the range asked for, starting at `start`, of a file of `total` bytes.
    Partial { start: u64, end: u64, total: u64, body: Box<dyn Read + Send>, validator: Option<String> },
    /// 200: the whole file (the server ignores `Range`, or the file changed and
    /// `If-Range` no longer matched); `len` from `Content-Length`.
    Whole { len: Option<u64>, body: Box<dyn Read + Send>, validator: Option<String> },
}

/// A client for one URL.
#[derive(Debug)]
pub(crate) struct Client {
    agent: ureq::Agent,
    url: String,
}

impl Client {
    /// A client of `url`, trusting the platform's roots, or only the certificates
    /// of `ca_file` when one is given (as curl's `--cacert`).
    pub fn new(url: &str, ca_file: Option<&Path>) -> Result<Client, SourceError> {
        let roots = match ca_file {
            None => RootCerts::PlatformVerifier,
            Some(path) => RootCerts::Specific(Arc::new(read_ca_file(path)?)),
        };
        let config = ureq::Agent::config_builder()
            .tls_config(
                TlsConfig::builder()
                    .root_certs(roots)
                    // ring, given here rather than through ureq's `rustls` feature,
                    // which would also bundle Mozilla's roots (unused: the platform's
                    // or the CA file's are).
                    .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .build(),
            )
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .user_agent(format!("pkgrun/{}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client { agent: config.into(), url: url.to_owned() })
    }

    /// One request for `want`; `validator` (an `ETag` or `Last-Modified` seen
    /// before) goes in `If-Range`, so that a file changed on the server comes whole.
    pub fn get(&self, want: Want, validator: Option<&str>) -> Result<Reply, SourceError> {
        let range = match want {
            Want::Suffix(n) => format!("bytes=-{n}"),
            Want::Bytes { start, end } => format!("bytes={start}-{}", end - 1),
        };
        let mut request = self.agent.get(&self.url).header("Range", &range).header("Accept-Encoding", "identity");
        if let Some(validator) = validator {
            request = request.header("If-Range", validator);
        }
        let response = request.call().map_err(|e| self.transfer(e.to_string()))?;
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let validator = header("etag").filter(|e| !e.starts_with("W/")).or_else(|| header("last-modified"));
        match status {
            206 => {
                let content_range = header("content-range").unwrap_or_default();
                let Some((start, end, total)) = parse_content_range(&content_range) else {
                    return Err(self.status(status, format!("a Content-Range of {content_range:?}, not one range")));
                };
                let asked = match want {
                    Want::Suffix(n) => (total.saturating_sub(n), total),
                    Want::Bytes { start, end } => (start, end.min(total)),
                };
                if (start, end) != asked {
                    return Err(self.status(
                        status,
                        format!("bytes {start}-{end} of {total}, where {}-{} were asked for", asked.0, asked.1),
                    ));
                }
                let body = Box::new(response.into_body().into_reader());
                Ok(Reply::Partial { start, end, total, body, validator })
            }
            200 => {
                let len = header("content-length").and_then(|v| v.parse().ok());
                Ok(Reply::Whole { len, body: Box::new(response.into_body().into_reader()), validator })
            }
            416 => Err(self.status(status, "the range asked for is not in the file: it changed or was cut".into())),
            other => Err(self.status(other, "not the package (200 or 206 expected)".into())),
        }
    }

    /// A plain GET of `url`, a companion of the package (its header copy) on the
    /// same server: its body when the server has it (200), `None` otherwise.
    pub fn get_companion(&self, url: &str) -> Result<Option<Box<dyn Read + Send>>, SourceError> {
        let response = self
            .agent
            .get(url)
            .header("Accept-Encoding", "identity")
            .call()
            .map_err(|e| SourceError::Transfer { url: url.to_owned(), reason: e.to_string() })?;
        Ok((response.status().as_u16() == 200).then(|| Box::new(response.into_body().into_reader()) as Box<_>))
    }

    fn transfer(&self, reason: String) -> SourceError {
        SourceError::Transfer { url: self.url.clone(), reason }
    }

    fn status(&self, status: u16, reason: String) -> SourceError {
        SourceError::Status { url: self.url.clone(), status, reason }
    }
}

/// `bytes START-LAST/TOTAL` as (start, end excluded, total).
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, last) = range.split_once('-')?;
    let (start, last, total): (u64, u64, u64) = (start.parse().ok()?, last.parse().ok()?, total.parse().ok()?);
    (start <= last && last < total).then_some((start, last + 1, total))
}

/// The certificates of a PEM file.
fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, SourceError> {
    let bad = |reason: String| SourceError::CaFile { path: path.to_owned(), reason };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(certificate) = item.map_err(|e| bad(format!("not a PEM file: {e}")))? {
            certificates.push(certificate);
        }
    }
    if certificates.is_empty() {
        return Err(bad("it holds no PEM certificate".into()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_strictly() {
        assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 100, 1000)));
        assert_eq!(parse_content_range("bytes 900-999/1000"), Some((900, 1000, 1000)));
        assert_eq!(parse_content_range("bytes 0-1000/1000"), None, "past the end");
        assert_eq!(parse_content_range("bytes 5-4/1000"), None);
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
