//! Streaming downloads for bodies too large to hold in memory (VM images): the status is
//! checked (with the same retries as [`Fetcher::get`]) before any byte is handed over, then
//! the body is a plain `Read` the caller hashes and writes as it arrives. No global time
//! limit: a multi-GiB image on a slow link must not be cut off; a stalled connect or
//! response head still times out. `https://` uses rustls (ring) with the platform's trust
//! store (`SSL_CERT_FILE` is honoured), so SmolVM's release URLs work as they are.

use std::io::Read;
use std::time::Duration;

use super::{file_error, file_path, FetchError, Fetcher};

/// An open download: its length when the server says it, and the body.
pub struct Body {
    /// `Content-Length` (or the file's size for `file:`), when known.
    pub len: Option<u64>,
    /// The bytes. A connection closed before `len` bytes is a read error, not a short EOF.
    pub reader: Box<dyn Read + Send>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").field("len", &self.len).finish()
    }
}

impl Fetcher {
    /// Opens `url` (`http://`, `https://` or `file:`) for streaming.
    pub fn open(&self, url: &str) -> Result<Body, FetchError> {
        if url.starts_with("file:") {
            let f = std::fs::File::open(file_path(url)).map_err(|e| file_error(url, e))?;
            let len = f.metadata().ok().map(|m| m.len());
            return Ok(Body {
                len,
                reader: Box::new(f),
            });
        }
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(FetchError::Failed {
                url: url.into(),
                why: "unsupported URL scheme; use http://, https:// or file:".into(),
            });
        }
        // https: rustls with ring (as the OCI client uses) and the platform's trust store.
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .tls_config(tls)
            .build()
            .new_agent();
        self.call(&agent, url, |resp| {
            let (_, body) = resp.into_parts();
            Ok(Body {
                len: body.content_length(),
                reader: Box::new(body.into_reader()),
            })
        })
    }
}
