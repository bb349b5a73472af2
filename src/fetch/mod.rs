//! Blocking HTTP (plain `http://`) and `file:` downloads for package mirrors: a few retries
//! on transient failures, a size cap, and reads verified against an expected SHA-256;
//! [`stream`] opens large bodies (VM images) as readers instead.

pub mod stream;

use std::time::Duration;

use crate::digest::Digest;

pub use stream::Body;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server answered 404/410.
    #[error("{url}: not found (http {status})")]
    NotFound {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// Any other failure after the retries.
    #[error("{url}: {why}")]
    Failed {
        /// The URL.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The bytes do not match the expected digest or size.
    #[error("{url}: sha256 {got} (size {size}) does not match the signed index's {want}; the mirror's copy is corrupt or was tampered with")]
    Mismatch {
        /// The URL.
        url: String,
        /// Got.
        got: Digest,
        /// Size got.
        size: u64,
        /// Wanted.
        want: Digest,
    },
    /// A scheme this build cannot fetch.
    #[error("{0}: unsupported URI scheme; use an http:// mirror (pass --apt-mirror http://...) or file:")]
    Scheme(String),
}

/// An HTTP client for mirrors.
#[derive(Debug, Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
    /// Largest body accepted.
    pub max_bytes: u64,
    /// Attempts per URL (≥ 1).
    pub attempts: u32,
}

impl Default for Fetcher {
    fn default() -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(300)))
            .timeout_connect(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Fetcher {
            agent,
            max_bytes: 1 << 30,
            attempts: 3,
        }
    }
}

impl Fetcher {
    /// Downloads `url` whole.
    pub fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        if url.starts_with("file:") {
            return std::fs::read(file_path(url)).map_err(|e| file_error(url, e));
        }
        if !url.starts_with("http://") {
            return Err(FetchError::Scheme(url.into()));
        }
        let max = self.max_bytes;
        self.call(&self.agent, url, |mut resp| {
            resp.body_mut()
                .with_config()
                .limit(max)
                .read_to_vec()
                .map_err(|e| e.to_string())
        })
    }

    /// GETs `url` with `agent`, retrying transport errors, 5xx and 429 up to `attempts`
    /// times, and hands each 2xx response to `take` (whose error is retried too). 404 and
    /// 410 are [`FetchError::NotFound`] at once; other 4xx end the attempts.
    fn call<T>(
        &self,
        agent: &ureq::Agent,
        url: &str,
        mut take: impl FnMut(ureq::http::Response<ureq::Body>) -> Result<T, String>,
    ) -> Result<T, FetchError> {
        let mut last = String::new();
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 << attempt));
            }
            match agent.get(url).call() {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if status == 404 || status == 410 {
                        return Err(FetchError::NotFound {
                            url: url.into(),
                            status,
                        });
                    }
                    if !(200..300).contains(&status) {
                        last = format!("http status {status}");
                        if status < 500 && status != 429 {
                            break;
                        }
                        continue;
                    }
                    match take(resp) {
                        Ok(v) => return Ok(v),
                        Err(e) => last = e,
                    }
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(FetchError::Failed {
            url: url.into(),
            why: last,
        })
    }

    /// Downloads `url` and checks it against `want` (and `size` when known).
    pub fn get_verified(
        &self,
        url: &str,
        want: &Digest,
        size: Option<u64>,
    ) -> Result<Vec<u8>, FetchError> {
        let b = self.get(url)?;
        verify(url, &b, want, size)?;
        Ok(b)
    }
}

/// The host path of a `file:` URL (the `//` after the scheme is optional).
fn file_path(url: &str) -> &str {
    url.trim_start_matches("file:").trim_start_matches("//")
}

/// A host file error as a fetch error (a missing file is [`FetchError::NotFound`]).
fn file_error(url: &str, e: std::io::Error) -> FetchError {
    if e.kind() == std::io::ErrorKind::NotFound {
        FetchError::NotFound {
            url: url.into(),
            status: 404,
        }
    } else {
        FetchError::Failed {
            url: url.into(),
            why: e.to_string(),
        }
    }
}

/// Checks `bytes` against `want` and `size`.
pub fn verify(url: &str, bytes: &[u8], want: &Digest, size: Option<u64>) -> Result<(), FetchError> {
    let got = Digest::of(bytes);
    if &got != want || size.is_some_and(|s| s != bytes.len() as u64) {
        return Err(FetchError::Mismatch {
            url: url.into(),
            got,
            size: bytes.len() as u64,
            want: *want,
        });
    }
    Ok(())
}

/// Something that can GET a URL into memory (the apk installer takes this, so tests and
/// other clients can stand in).
pub trait Fetch {
    /// The body of `url`, at most `limit` bytes.
    fn get_limited(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError>;
}

impl Fetch for Fetcher {
    fn get_limited(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        let mut f = self.clone();
        f.max_bytes = limit.min(self.max_bytes);
        f.get(url)
    }
}
