//! HTTP for package mirrors: blocking GETs with bounded retries and a size cap, behind a
//! one-method trait so tests (and a future async client) can stand in. Plain `http://`
//! only for now; the caller verifies what it gets (signatures, checksums) — nothing read
//! here is trusted.

use std::time::Duration;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server answered with an error status.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The connection or transfer failed (after retries).
    #[error("GET {url}: {why} (after {attempts} attempts)")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        why: String,
        /// How many tries.
        attempts: u32,
    },
    /// The body is larger than allowed.
    #[error("GET {url}: response larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: u64,
    },
    /// A scheme this client does not speak.
    #[error("GET {0}: only http:// URLs are supported by this build; use --apk-mirror http://... or a local mirror")]
    Scheme(String),
}

/// Something that can GET a URL into memory.
pub trait Fetch {
    /// The body of `url`, at most `limit` bytes.
    fn get(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError>;
}

/// A blocking HTTP client with retries.
pub struct HttpClient {
    agent: ureq::Agent,
    attempts: u32,
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new(Duration::from_secs(600), 3)
    }
}

impl HttpClient {
    /// A client with a per-request `timeout` and `attempts` tries for transient failures.
    pub fn new(timeout: Duration, attempts: u32) -> HttpClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        HttpClient {
            agent,
            attempts: attempts.max(1),
        }
    }

    fn once(&self, url: &str, limit: u64) -> Result<Vec<u8>, (bool, FetchError)> {
        let transport = |why: String| FetchError::Transport {
            url: url.to_string(),
            why,
            attempts: 1,
        };
        let mut resp = self
            .agent
            .get(url)
            .call()
            .map_err(|e| (true, transport(e.to_string())))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let retry = status >= 500 || status == 429;
            return Err((
                retry,
                FetchError::Status {
                    url: url.to_string(),
                    status,
                },
            ));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(limit.saturating_add(1))
            .read_to_vec()
            .map_err(|e| (true, transport(e.to_string())))?;
        if body.len() as u64 > limit {
            return Err((
                false,
                FetchError::TooLarge {
                    url: url.to_string(),
                    limit,
                },
            ));
        }
        Ok(body)
    }
}

impl Fetch for HttpClient {
    fn get(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        if !url.starts_with("http://") {
            return Err(FetchError::Scheme(url.to_string()));
        }
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.once(url, limit) {
                Ok(b) => return Ok(b),
                Err((true, e)) if attempt < self.attempts => {
                    let _ = e;
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err((_, FetchError::Transport { url, why, .. })) => {
                    return Err(FetchError::Transport {
                        url,
                        why,
                        attempts: attempt,
                    })
                }
                Err((_, e)) => return Err(e),
            }
        }
    }
}
