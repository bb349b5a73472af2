//! `ensure`: make an image's files present and verified (SmolVM's `ensure_image`). Under the
//! image's lock, each file already in place is hashed and kept when it matches; every other
//! one is streamed into a temp file in the image's directory — hashed as it arrives,
//! zstd-decompressed when compressed, written sparse — and checked against its pinned
//! digest. Only when every download verified are the temp files renamed over the final
//! names, so a failed or corrupt download leaves the previous files untouched and no final
//! path ever holds a partial file. `.source.json` and `.fingerprint` are written last.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::layout::{self, ImageLock, FINGERPRINT, SOURCE, TEMP_PREFIX};
use super::local::LocalImage;
use super::source::{Asset, Compression, ImageSource, Role};
use super::sparse::SparseWriter;
use super::stamp::Stamp;
use super::ImagesError;
use crate::digest::{Digest, Hasher, HashingReader};
use crate::fetch::{FetchError, Fetcher};

/// What happens, for progress bars and `--json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnsureEvent {
    /// A cached file matched its digest and is kept.
    Cached {
        /// Which file.
        role: Role,
        /// Its path.
        path: PathBuf,
    },
    /// A cached file is of another version than the one asked for (it is replaced).
    Outdated {
        /// Which file.
        role: Role,
        /// Its path.
        path: PathBuf,
    },
    /// A cached file did not match its digest (it is downloaded again).
    Corrupt {
        /// Which file.
        role: Role,
        /// Its path.
        path: PathBuf,
    },
    /// A download starts.
    Start {
        /// Which file.
        role: Role,
        /// From where.
        url: String,
        /// Its length when the server said.
        len: Option<u64>,
    },
    /// More bytes arrived.
    Progress {
        /// Which file.
        role: Role,
        /// How many (since the last event).
        bytes: u64,
    },
    /// A download verified (not yet renamed into place).
    Verified {
        /// Which file.
        role: Role,
        /// Bytes downloaded.
        downloaded: u64,
        /// Bytes of the file written.
        size: u64,
    },
}

/// Limits.
#[derive(Debug, Clone, Copy)]
pub struct EnsureOptions {
    /// Largest file written (decompressed), a guard against a decompression bomb served in
    /// place of the pinned file (its hash is only known at the end).
    pub max_file_bytes: u64,
}

impl Default for EnsureOptions {
    fn default() -> Self {
        EnsureOptions {
            max_file_bytes: 256 << 30,
        }
    }
}

/// The outcome.
#[derive(Debug, Clone)]
pub struct Ensured {
    /// The image, as now on disk.
    pub image: LocalImage,
    /// Files downloaded this time.
    pub downloaded: Vec<Role>,
    /// Files that were already in place and verified.
    pub cached: Vec<Role>,
    /// Bytes downloaded.
    pub downloaded_bytes: u64,
    /// The source's fingerprint (also in `.fingerprint`).
    pub fingerprint: String,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ImagesError + '_ {
    move |source| ImagesError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Makes `source`'s files present and verified under `root` (see the module docs).
pub fn ensure(
    root: &Path,
    source: &ImageSource,
    fetcher: &Fetcher,
    opts: &EnsureOptions,
    on: &dyn Fn(&EnsureEvent),
) -> Result<Ensured, ImagesError> {
    source.check().map_err(|why| ImagesError::Registry {
        origin: "source".into(),
        why,
    })?;
    let lock = layout::lock_image(root, &source.name)?;
    match ensure_locked(&lock, root, source, fetcher, opts, on) {
        Ok(done) => Ok(done),
        Err(e) => {
            // A first install that failed leaves no empty directory behind.
            let only_lock = fs::read_dir(lock.dir())
                .map(|rd| rd.flatten().all(|e| e.file_name() == layout::LOCK))
                .unwrap_or(false);
            if only_lock {
                let _ = layout::remove_image(lock);
            }
            Err(e)
        }
    }
}

fn ensure_locked(
    lock: &ImageLock,
    root: &Path,
    source: &ImageSource,
    fetcher: &Fetcher,
    opts: &EnsureOptions,
    on: &dyn Fn(&EnsureEvent),
) -> Result<Ensured, ImagesError> {
    layout::remove_stale_temps(lock)?;
    let dir = lock.dir().to_path_buf();
    let old = fs::read_to_string(dir.join(SOURCE))
        .ok()
        .and_then(|t| Stamp::parse(&t))
        .unwrap_or_default();
    let fingerprint = source.fingerprint();
    let mut stamp = Stamp::new(&source.name, &fingerprint);
    let mut pending: Vec<(tempfile::NamedTempFile, PathBuf)> = Vec::new();
    let mut downloaded = Vec::new();
    let mut cached = Vec::new();
    let mut downloaded_bytes = 0u64;
    for (role, asset) in source.assets() {
        let path = dir.join(&asset.file);
        if let Some((want, size)) = old.expected(asset) {
            match check_file(&path, want, size)? {
                Check::Good(len) => {
                    stamp.record(role, asset, want, len);
                    cached.push(role);
                    on(&EnsureEvent::Cached { role, path });
                    continue;
                }
                Check::Bad if old.is_other_version(asset) => on(&EnsureEvent::Outdated {
                    role,
                    path: path.clone(),
                }),
                Check::Bad => on(&EnsureEvent::Corrupt {
                    role,
                    path: path.clone(),
                }),
                Check::Missing => {}
            }
        }
        let got = download(lock, role, asset, fetcher, opts, on)?;
        downloaded_bytes = downloaded_bytes.saturating_add(got.downloaded);
        stamp.record(role, asset, got.content, got.size);
        pending.push((got.tmp, path));
        downloaded.push(role);
    }
    // Everything verified: publish.
    for (tmp, path) in pending {
        tmp.as_file().sync_all().map_err(io_at(tmp.path()))?;
        tmp.persist(&path).map_err(|e| io_at(&path)(e.error))?;
    }
    write_atomic(lock, SOURCE, stamp.to_json().as_bytes())?;
    write_atomic(lock, FINGERPRINT, format!("{fingerprint}\n").as_bytes())?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    let image = LocalImage::read(root, &source.name)?.ok_or_else(|| ImagesError::NotCached {
        name: source.name.clone(),
        dir: root.to_path_buf(),
    })?;
    Ok(Ensured {
        image,
        downloaded,
        cached,
        downloaded_bytes,
        fingerprint,
    })
}

enum Check {
    Good(u64),
    Bad,
    Missing,
}

/// Hashes the file at `path` against `want` (size first, when known).
fn check_file(path: &Path, want: Digest, size: Option<u64>) -> Result<Check, ImagesError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Check::Missing),
        Err(e) => return Err(io_at(path)(e)),
    };
    let len = f.metadata().map_err(io_at(path))?.len();
    if size.is_some_and(|s| s != len) {
        return Ok(Check::Bad);
    }
    let mut h = Hasher::new();
    io::copy(&mut io::BufReader::with_capacity(1 << 20, f), &mut h).map_err(io_at(path))?;
    Ok(if h.finish() == want {
        Check::Good(len)
    } else {
        Check::Bad
    })
}

struct Downloaded {
    tmp: tempfile::NamedTempFile,
    downloaded: u64,
    content: Digest,
    size: u64,
}

/// Counts and reports bytes, remembering a network error (so it is not blamed on zstd).
struct Tap<'a, R> {
    inner: HashingReader<R>,
    role: Role,
    on: &'a dyn Fn(&EnsureEvent),
    error: Option<String>,
}

impl<R: Read> Read for Tap<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                if n > 0 {
                    (self.on)(&EnsureEvent::Progress {
                        role: self.role,
                        bytes: n as u64,
                    });
                }
                Ok(n)
            }
            Err(e) => {
                self.error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
    TooLarge,
}

/// Copies `r` into `w`, hashing what is written.
fn copy(
    r: &mut dyn Read,
    w: &mut SparseWriter<'_>,
    h: &mut Hasher,
    limit: u64,
) -> Result<(), CopyError> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        if w.len().saturating_add(n as u64) > limit {
            return Err(CopyError::TooLarge);
        }
        h.update(&buf[..n]);
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

fn download(
    lock: &ImageLock,
    role: Role,
    asset: &Asset,
    fetcher: &Fetcher,
    opts: &EnsureOptions,
    on: &dyn Fn(&EnsureEvent),
) -> Result<Downloaded, ImagesError> {
    let dir = lock.dir();
    let body = fetcher.open(&asset.url)?;
    on(&EnsureEvent::Start {
        role,
        url: asset.url.clone(),
        len: body.len,
    });
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}.", asset.file))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_at(dir))?;
    let mut tap = Tap {
        inner: HashingReader::new(body.reader),
        role,
        on,
        error: None,
    };
    let mut content = Hasher::new();
    let mut out = SparseWriter::new(tmp.as_file());
    let limit = opts.max_file_bytes;
    let (result, tap) = match asset.compression {
        Compression::None => (copy(&mut tap, &mut out, &mut content, limit), tap),
        Compression::Zstd => match zstd::stream::read::Decoder::new(tap) {
            Ok(mut dec) => {
                let r = copy(&mut dec, &mut out, &mut content, limit);
                let mut rest = dec.finish();
                // Trailing bytes (or the rest after a decode error) still count for the hash.
                if r.is_ok() || rest.get_ref().error.is_none() {
                    let _ = io::copy(&mut rest, &mut io::sink());
                }
                (r, rest.into_inner())
            }
            Err(e) => {
                return Err(ImagesError::Decompress {
                    role,
                    url: asset.url.clone(),
                    why: e.to_string(),
                })
            }
        },
    };
    let network_error = tap.error.clone();
    let (got, downloaded, _) = tap.inner.finish();
    let fetch_failed = |why: String| {
        ImagesError::Fetch(FetchError::Failed {
            url: asset.url.clone(),
            why: format!("{why}; nothing was installed, run the command again"),
        })
    };
    if let Some(why) = network_error {
        return Err(fetch_failed(why));
    }
    match result {
        Ok(()) => {}
        Err(CopyError::TooLarge) => {
            return Err(ImagesError::TooLarge {
                role,
                url: asset.url.clone(),
                limit,
            })
        }
        Err(CopyError::Write(e)) => return Err(io_at(tmp.path())(e)),
        Err(CopyError::Read(e)) => {
            // Not the network: the decoder. A wrong file is reported as such first.
            if got != asset.sha256 {
                return Err(ImagesError::Mismatch {
                    role,
                    url: asset.url.clone(),
                    want: asset.sha256,
                    got,
                });
            }
            return Err(ImagesError::Decompress {
                role,
                url: asset.url.clone(),
                why: e.to_string(),
            });
        }
    }
    if got != asset.sha256 {
        return Err(ImagesError::Mismatch {
            role,
            url: asset.url.clone(),
            want: asset.sha256,
            got,
        });
    }
    let size = out.finish().map_err(io_at(tmp.path()))?;
    on(&EnsureEvent::Verified {
        role,
        downloaded,
        size,
    });
    Ok(Downloaded {
        tmp,
        downloaded,
        content: content.finish(),
        size,
    })
}

/// Writes a small file in a locked image's directory through a temp file and a rename.
fn write_atomic(lock: &ImageLock, name: &str, bytes: &[u8]) -> Result<(), ImagesError> {
    let dir = lock.dir();
    let path = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(io_at(dir))?;
    tmp.write_all(bytes).map_err(io_at(&path))?;
    tmp.as_file().sync_all().map_err(io_at(&path))?;
    tmp.persist(&path).map_err(|e| io_at(&path)(e.error))?;
    Ok(())
}
