//! Fetching from the registry: manifests with retries, and blobs streamed into the
//! cache (declared size enforced, resumed with HTTP Range after a broken connection).

use std::cell::RefCell;

use futures_util::StreamExt;
use oci_client::client::BlobResponse;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;

use crate::cache::{BlobWriter, Cache, CacheError};
use crate::digest::Digest;
use crate::oci::descriptor::Descriptor;
use crate::oci::reference::Reference;
use crate::oci::{media_type, OciError};

use super::retry::{classify, with_retries, Failure};
use super::{Event, Progress, PullPolicy, RegistryOptions};

pub(super) struct Ctx<'a> {
    pub(super) client: oci_client::Client,
    pub(super) auth: RegistryAuth,
    pub(super) reference: &'a Reference,
    pub(super) cache: &'a Cache,
    pub(super) opts: &'a RegistryOptions,
    pub(super) progress: &'a Progress,
}

pub(super) fn oci_ref(r: &Reference, digest: Option<&Digest>) -> oci_client::Reference {
    match (digest.or(r.digest.as_ref()), &r.tag) {
        (Some(d), _) => oci_client::Reference::with_digest(
            r.registry.clone(),
            r.repository.clone(),
            d.to_string(),
        ),
        (None, Some(t)) => {
            oci_client::Reference::with_tag(r.registry.clone(), r.repository.clone(), t.clone())
        }
        (None, None) => oci_client::Reference::with_tag(
            r.registry.clone(),
            r.repository.clone(),
            "latest".into(),
        ),
    }
}

impl Ctx<'_> {
    /// Fetches a manifest document (by tag or digest) with retries; checks a pinned digest.
    pub(super) async fn manifest(
        &self,
        digest: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest), OciError> {
        let oref = oci_ref(self.reference, digest);
        let what = format!("manifest {oref}");
        let (bytes, _) = with_retries(self, &what, || async {
            self.client
                .pull_manifest_raw(&oref, &self.auth, &media_type::ACCEPT_MANIFESTS)
                .await
                .map_err(|e| classify(e, self.reference, &what))
        })
        .await?;
        let actual = Digest::of(&bytes);
        if let Some(want) = digest.or(self.reference.digest.as_ref()) {
            if *want != actual {
                return Err(OciError::Cache(CacheError::Digest {
                    expected: *want,
                    actual,
                }));
            }
        }
        Ok((bytes.to_vec(), actual))
    }

    /// One attempt at downloading a blob into the cache. A previous attempt that broke
    /// mid-stream left its partial writer in `resume`: this one asks for the rest with an
    /// HTTP Range request (the whole blob is still verified at the end), and starts over
    /// if the registry answers with the whole blob instead.
    async fn blob_once(
        &self,
        d: &Descriptor,
        oref: &oci_client::Reference,
        what: &str,
        resume: &RefCell<Option<BlobWriter>>,
    ) -> Result<(), Failure> {
        let od = OciDescriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.to_string(),
            size: i64::try_from(d.size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let mut w = match resume.take() {
            Some(w) => w,
            None => self.cache.writer(d.digest, d.size)?,
        };
        let offset = w.count();
        let mut s = if offset > 0 && offset < d.size {
            match self
                .client
                .pull_blob_stream_partial(oref, &od, offset, None)
                .await
                .map_err(|e| classify(e, self.reference, what))?
            {
                BlobResponse::Partial(s) => s,
                BlobResponse::Full(s) => {
                    w = self.cache.writer(d.digest, d.size)?;
                    s
                }
            }
        } else {
            if offset > 0 {
                w = self.cache.writer(d.digest, d.size)?;
            }
            self.client
                .pull_blob_stream(oref, &od)
                .await
                .map_err(|e| classify(e, self.reference, what))?
        };
        if let Some(cl) = s.content_length {
            let rest = d.size - w.count();
            if cl != rest {
                return Err(CacheError::Size {
                    digest: d.digest,
                    expected: d.size,
                    actual: cl.saturating_add(w.count()),
                }
                .into());
            }
        }
        let mut last_report = 0u64;
        while let Some(chunk) = s.stream.next().await {
            match chunk {
                Ok(b) => {
                    w.write_chunk(&b)?;
                    if w.count() - last_report >= 256 << 10 {
                        last_report = w.count();
                        (self.progress)(&Event::BlobProgress {
                            digest: d.digest.to_string(),
                            done: w.count(),
                        });
                    }
                }
                // Every byte arrived and the client's own digest check failed: let ours
                // name the mismatch (a permanent failure).
                Err(_) if w.count() == d.size => break,
                Err(e) => {
                    let msg = format!(
                        "connection broke after {} of {} bytes: {e}",
                        w.count(),
                        d.size
                    );
                    resume.replace(Some(w));
                    return Err(Failure::Transient(msg));
                }
            }
        }
        w.commit()?;
        Ok(())
    }

    /// Makes sure blob `d` is in the cache, verified.
    pub(super) async fn blob(&self, d: &Descriptor) -> Result<(), OciError> {
        if self.cache.has_valid(&d.digest, d.size)? {
            (self.progress)(&Event::BlobDone {
                digest: d.digest.to_string(),
                size: d.size,
                cached: true,
            });
            return Ok(());
        }
        if self.opts.pull == PullPolicy::Never {
            return Err(OciError::NotCached(format!(
                "{} (blob {})",
                self.reference, d.digest
            )));
        }
        let oref = oci_ref(self.reference, None);
        let what = format!("blob {}", d.digest);
        (self.progress)(&Event::BlobStart {
            digest: d.digest.to_string(),
            size: d.size,
        });
        let resume = RefCell::new(None);
        with_retries(self, &what, || self.blob_once(d, &oref, &what, &resume)).await?;
        (self.progress)(&Event::BlobDone {
            digest: d.digest.to_string(),
            size: d.size,
            cached: false,
        });
        Ok(())
    }
}
