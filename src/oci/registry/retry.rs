//! Retry policy: which client errors are transient (5xx, 429, resets, timeouts) and
//! which are not (4xx, digest and size mismatches), and exponential backoff.

use std::future::Future;

use oci_client::errors::OciDistributionError;

use crate::cache::CacheError;
use crate::oci::reference::Reference;
use crate::oci::OciError;

use super::fetch::Ctx;
use super::Event;

/// A failed attempt: retry it or not.
pub(super) enum Failure {
    Transient(String),
    Permanent(OciError),
}

impl From<CacheError> for Failure {
    fn from(e: CacheError) -> Self {
        Failure::Permanent(e.into())
    }
}

/// Sorts a client error into retry-or-not, with rootsmith's message.
pub(super) fn classify(e: OciDistributionError, r: &Reference, what: &str) -> Failure {
    use OciDistributionError as E;
    let not_found = |message: String| {
        Failure::Permanent(OciError::NotFound {
            reference: r.to_string(),
            registry: r.registry.clone(),
            message,
        })
    };
    let permanent = |message: String| {
        Failure::Permanent(OciError::Registry {
            what: what.to_string(),
            registry: r.registry.clone(),
            message,
            attempts: 1,
        })
    };
    match e {
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => {
            Failure::Permanent(OciError::Unauthorized {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
            })
        }
        E::RegistryError { envelope, .. } => {
            let msg = envelope
                .errors
                .iter()
                .map(|x| x.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            let codes = format!(
                "{:?}",
                envelope.errors.iter().map(|x| &x.code).collect::<Vec<_>>()
            );
            if codes.contains("TooManyRequests") {
                Failure::Transient(format!("{codes} {msg}"))
            } else if codes.contains("Unknown") {
                not_found(if msg.is_empty() { codes } else { msg })
            } else if codes.contains("Unauthorized") || codes.contains("Denied") {
                Failure::Permanent(OciError::Unauthorized {
                    registry: r.registry.clone(),
                    repository: r.repository.clone(),
                })
            } else {
                permanent(format!("{codes} {msg}"))
            }
        }
        E::ServerError { code, message, .. } => match code {
            401 => Failure::Permanent(OciError::Unauthorized {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
            }),
            404 => not_found(format!("HTTP 404 {}", message.trim())),
            408 | 429 | 500..=599 => Failure::Transient(format!("HTTP {code} {}", message.trim())),
            _ => permanent(format!("HTTP {code} {}", message.trim())),
        },
        E::RequestError(re) if re.is_builder() => permanent(re.to_string()),
        E::RequestError(re) => Failure::Transient(chain_text(&re)),
        E::IoError(io) => Failure::Transient(io.to_string()),
        other => permanent(other.to_string()),
    }
}

fn chain_text(e: &dyn std::error::Error) -> String {
    // reqwest's Display hides the cause ("error sending request"); add the chain.
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

pub(super) async fn with_retries<T, F, Fut>(
    ctx: &Ctx<'_>,
    what: &str,
    mut f: F,
) -> Result<T, OciError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut attempt = 1u32;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(Failure::Permanent(e)) => return Err(e),
            Err(Failure::Transient(msg)) => {
                if attempt > ctx.opts.retries {
                    return Err(OciError::Registry {
                        what: what.to_string(),
                        registry: ctx.reference.registry.clone(),
                        message: msg,
                        attempts: attempt,
                    });
                }
                let wait = ctx
                    .opts
                    .backoff
                    .saturating_mul(1u32 << (attempt - 1).min(6));
                (ctx.progress)(&Event::Retry {
                    what: what.to_string(),
                    attempt,
                    error: msg,
                    wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                });
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}
