//! A plain `GET` for checks that read an HTTP API (`elasticsearch`, `tunnel`): the
//! `http` check's own client (deadline, TLS, basic auth, redirects, error reasons),
//! without its judging. The caller decides what the status and the body mean.

use std::sync::Arc;

use http::Method;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::time::Instant;

use super::{Inner, Progress, Target, UrlSpec, basic_auth_source, tls_server_name};
use crate::checks::{BuildError, CheckError};
use crate::config::types::{BasicAuth, SafeUrl, TlsConfig};
use crate::net::{self, IpProtocol};

/// The most body bytes a [`HttpGet::get`] reads: API answers are small.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An answer: any status, and at most [`MAX_BODY_BYTES`] of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The status code of the last response (after redirects).
    pub status: u16,
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Vec<u8>,
    /// The body was longer than [`MAX_BODY_BYTES`].
    pub truncated: bool,
}

/// A prepared client: TLS settings loaded and credentials checked once, at build time.
#[derive(Debug)]
pub struct HttpGet {
    inner: Box<Inner>,
}

/// Checks a base URL for [`HttpGet`] (`http(s)://host[:port][/path]`): no password, no
/// placeholder, no query or fragment, since paths are appended to it.
///
/// # Errors
/// A message for a config error.
pub fn validate_base_url(text: &str) -> Result<SafeUrl, String> {
    let url = SafeUrl::parse(text, &["http", "https"])?;
    if text.contains(['?', '#']) {
        return Err(format!(
            "invalid URL {text:?}: a base URL has no query or fragment"
        ));
    }
    match UrlSpec::parse(text)? {
        UrlSpec::Fixed(_) => Ok(url),
        UrlSpec::Template(_) => Err(format!(
            "invalid URL {text:?}: placeholders are not supported here"
        )),
    }
}

impl HttpGet {
    /// Loads the TLS settings and checks the credentials.
    ///
    /// # Errors
    /// A [`BuildError`] on `tls_config.*` or `basic_auth*`, as the `http` check names them.
    pub fn new(tls_config: &TlsConfig, basic_auth: Option<&BasicAuth>) -> Result<Self, BuildError> {
        let tls: Arc<ClientConfig> = net::client_config(tls_config)?;
        let server_name: Option<ServerName<'static>> = tls_server_name(tls_config)?;
        Ok(HttpGet {
            inner: Box::new(Inner {
                url_text: String::new(),
                url: UrlSpec::Template(String::new()),
                method: Method::GET,
                headers: Vec::new(),
                body: None,
                valid_status_codes: Vec::new(),
                fail_if_body_matches: Vec::new(),
                fail_if_body_not_matches: Vec::new(),
                json_expect: Vec::new(),
                basic_auth: basic_auth_source(basic_auth)?,
                tls,
                server_name,
                follow_redirects: true,
                ip_protocol: IpProtocol::Ip4,
                ip_protocol_fallback: true,
                max_body_bytes: MAX_BODY_BYTES,
            }),
        })
    }

    /// `GET url` before `deadline`, following redirects (credentials go only to the
    /// URL's host, never over a downgrade to `http`).
    ///
    /// # Errors
    /// The `http` check's reasons: `dns`, `refused`, `timeout`, `tls`, `protocol`, and
    /// `auth` when the password cannot be read. Any status code is an answer, not an
    /// error.
    pub async fn get(&self, url: &str, deadline: Instant) -> Result<Fetched, CheckError> {
        let target =
            Target::parse(url).map_err(|e| CheckError::new(crate::checks::Reason::Internal, e))?;
        let mut p = Progress::default();
        let (status, body) = self.inner.fetch(&target, deadline, &mut p).await?;
        Ok(Fetched {
            status: status.as_u16(),
            body,
            truncated: p.truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        for ok in [
            "http://127.0.0.1:9200",
            "https://es.example/",
            "http://[::1]:9200/prefix",
        ] {
            assert!(validate_base_url(ok).is_ok(), "{ok}");
        }
        for (bad, needle) in [
            ("ftp://h", "scheme"),
            ("http://u:pw@h", "password"),
            ("http://h/?x", "no query"),
            ("http://h/#x", "no query"),
            ("http://{a.b}/", "placeholders"),
            ("http://h:x/", "bad port"),
        ] {
            let e = validate_base_url(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
