//! `rootsmith images` against real HTTP servers on 127.0.0.1: Python's `http.server` (one per
//! test run, its request log counting downloads) for ensure/registry/publish/ls/rm, and a
//! tiny in-test server that sends slowly or hangs up mid-body for atomicity, concurrency and
//! network failures. Oracles: the bytes served, `zstd -d`, `sha256sum -c`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::common::{have, ok, require, rootsmith, run, sha256_file};

/// The Python server: its document root, base URL and request log.
struct Www {
    dir: PathBuf,
    url: String,
    log: PathBuf,
}

/// Stops `cmd` (run with `sh -c`) once this test process has exited.
fn on_exit(cmd: &str) {
    let me = std::process::id();
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; {cmd}"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn www() -> Option<&'static Www> {
    static W: OnceLock<Result<Www, String>> = OnceLock::new();
    let w = W.get_or_init(|| {
        if !have("python3") {
            return Err("python3".into());
        }
        let root =
            std::env::temp_dir().join(format!("rootsmith-images-test-{}", std::process::id()));
        let dir = root.join("www");
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let log = root.join("http.log");
        let logf = fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(logf)
            .spawn()
            .map_err(|e| e.to_string())?;
        on_exit(&format!("kill {}; rm -rf {}", child.id(), root.display()));
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .ok_or(format!("odd http.server banner {line:?}"))?;
        Ok(Www {
            dir,
            url: format!("http://127.0.0.1:{port}"),
            log,
        })
    });
    match w {
        Ok(w) => Some(w),
        Err(what) => {
            require(false, what);
            None
        }
    }
}

impl Www {
    /// Serves `bytes` at `/name`; returns its URL.
    fn put(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        format!("{}/{name}", self.url)
    }

    /// How many GETs of `/name` the server logged.
    fn gets(&self, name: &str) -> usize {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let needle = format!("\"GET /{name} ");
        log.lines().filter(|l| l.contains(&needle)).count()
    }
}

/// `len` bytes that look like an ext4 image: pseudo-random 4 KiB blocks between zero ones.
fn image_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = vec![0u8; len];
    for (i, block) in v.chunks_mut(4096).enumerate() {
        if i % 3 == 1 {
            continue;
        }
        for b in block {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    v
}

fn hex(b: &[u8]) -> String {
    crate::common::hex(&{
        use sha2::Digest;
        sha2::Sha256::digest(b)
    })
}

fn images(dir: &Path) -> Command {
    let mut c = rootsmith();
    c.arg("images").arg("--images-dir").arg(dir);
    c
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A failing command: exit 1 and one line on stderr; returns it.
fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    err
}

#[test]
fn ensure_installs_verified_files_and_a_warm_ensure_downloads_nothing() {
    let Some(w) = www() else { return };
    let cache = tempfile::tempdir().unwrap();
    let rootfs = image_bytes(1, 3 << 20);
    let kernel = image_bytes(2, 100_000);
    let r = w.put("t1/alpine-rootfs.ext4", &rootfs);
    let k = w.put("t1/vmlinux", &kernel);
    let ensure = |c: &mut Command| {
        c.args(["ensure", &r, "--sha256", &hex(&rootfs)]).args([
            "--kernel-url",
            &k,
            "--kernel-sha256",
            &hex(&kernel),
            "--json",
        ]);
        json_lines(&ok(c))
    };
    let ev = ensure(&mut images(cache.path()));
    let done = ev.last().unwrap();
    assert_eq!(done["event"], "ensured");
    assert_eq!(done["name"], "alpine", "name from the URL");
    assert_eq!(names(&done["downloaded"]), ["kernel", "rootfs"]);
    let dir = cache.path().join("alpine");
    assert_eq!(
        done["rootfs_path"],
        dir.join("rootfs.ext4").to_str().unwrap()
    );
    assert_eq!(
        done["kernel_path"],
        dir.join("vmlinux.bin").to_str().unwrap()
    );
    assert_eq!(fs::read(dir.join("rootfs.ext4")).unwrap(), rootfs);
    assert_eq!(fs::read(dir.join("vmlinux.bin")).unwrap(), kernel);
    let fp = fs::read_to_string(dir.join(".fingerprint")).unwrap();
    assert_eq!(fp.trim(), done["fingerprint"].as_str().unwrap());
    // Nothing else: no temp file left beside the final names.
    assert_eq!(
        files_in(&dir),
        [
            ".fingerprint",
            ".rootsmith.lock",
            ".source.json",
            "rootfs.ext4",
            "vmlinux.bin"
        ]
        .map(String::from)
        .into()
    );
    // Zero blocks were not written.
    let m = fs::metadata(dir.join("rootfs.ext4")).unwrap();
    assert!(m.blocks() * 512 < m.len(), "rootfs.ext4 is not sparse");
    assert_eq!(
        (w.gets("t1/alpine-rootfs.ext4"), w.gets("t1/vmlinux")),
        (1, 1)
    );

    let ev = ensure(&mut images(cache.path()));
    let done = ev.last().unwrap();
    assert_eq!(names(&done["downloaded"]), Vec::<String>::new());
    assert_eq!(names(&done["cached"]), ["kernel", "rootfs"]);
    assert_eq!(
        (w.gets("t1/alpine-rootfs.ext4"), w.gets("t1/vmlinux")),
        (1, 1)
    );
}

#[test]
fn a_corrupt_download_installs_nothing_and_leaves_the_previous_file() {
    let Some(w) = www() else { return };
    let cache = tempfile::tempdir().unwrap();
    let v1 = image_bytes(3, 1 << 20);
    let url = w.put("t2/img.ext4", &v1);
    ok(images(cache.path()).args(["ensure", &url, "--sha256", &hex(&v1), "-q"]));
    let installed = cache.path().join("img/rootfs.ext4");
    let before = sha256_file(&installed);

    // A new release is pinned, but the server sends other bytes.
    let v2 = image_bytes(4, 1 << 20);
    let mut served = v2.clone();
    served[123_456] ^= 1;
    w.put("t2/img.ext4", &served);
    let err = fails(images(cache.path()).args(["ensure", &url, "--sha256", &hex(&v2)]));
    assert!(
        err.contains("sha256") && err.contains("nothing was installed"),
        "{err}"
    );
    assert_eq!(
        sha256_file(&installed),
        before,
        "the previous image changed"
    );
    assert!(!files_in(&cache.path().join("img"))
        .iter()
        .any(|f| f.contains("rootsmith-dl")));

    // A first install that fails leaves no rootfs at all.
    let err = fails(images(cache.path()).args([
        "ensure",
        &url,
        "--sha256",
        &hex(&v2),
        "--name",
        "fresh",
    ]));
    assert!(err.contains("nothing was installed"), "{err}");
    assert!(!cache.path().join("fresh").exists());
}

#[test]
fn a_corrupted_cached_file_is_downloaded_again() {
    let Some(w) = www() else { return };
    let cache = tempfile::tempdir().unwrap();
    let img = image_bytes(5, 1 << 20);
    let url = w.put("t3/img.ext4", &img);
    let args = ["ensure", url.as_str(), "--sha256", &hex(&img), "--json"];
    ok(images(cache.path()).args(args));
    let installed = cache.path().join("img/rootfs.ext4");
    let mut bad = fs::read(&installed).unwrap();
    bad[4096 * 2 + 7] ^= 0xff;
    fs::write(&installed, &bad).unwrap();

    let ev = json_lines(&ok(images(cache.path()).args(args)));
    assert!(
        ev.iter()
            .any(|e| e["event"] == "corrupt" && e["role"] == "rootfs"),
        "{ev:?}"
    );
    assert_eq!(names(&ev.last().unwrap()["downloaded"]), ["rootfs"]);
    assert_eq!(fs::read(&installed).unwrap(), img);
    assert_eq!(w.gets("t3/img.ext4"), 2);
}

#[test]
fn a_zstd_download_is_decompressed_and_checked_again_later() {
    let Some(w) = www() else { return };
    if !require(have("zstd"), "zstd") {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let img = image_bytes(6, 4 << 20);
    let plain = w.put("t4/z-rootfs.ext4", &img);
    ok(Command::new("zstd")
        .args(["-q", "-19", "-f"])
        .arg(w.dir.join("t4/z-rootfs.ext4")));
    let zst = format!("{plain}.zst");
    let zbytes = fs::read(w.dir.join("t4/z-rootfs.ext4.zst")).unwrap();
    // The pinned hash is the compressed file's, as SmolVM's manifest pins release assets.
    let args = ["ensure", zst.as_str(), "--sha256", &hex(&zbytes), "--json"];
    let ev = json_lines(&ok(images(cache.path()).args(args)));
    assert_eq!(ev.last().unwrap()["name"], "z");
    let installed = cache.path().join("z/rootfs.ext4");
    assert_eq!(fs::read(&installed).unwrap(), img);
    assert!(!cache.path().join("z/rootfs.ext4.zst").exists());

    let ev = json_lines(&ok(images(cache.path()).args(args)));
    assert_eq!(names(&ev.last().unwrap()["cached"]), ["rootfs"]);
    assert_eq!(w.gets("t4/z-rootfs.ext4.zst"), 1);

    let mut bad = img.clone();
    bad[9] ^= 1;
    fs::write(&installed, &bad).unwrap();
    let ev = json_lines(&ok(images(cache.path()).args(args)));
    assert_eq!(names(&ev.last().unwrap()["downloaded"]), ["rootfs"]);
    assert_eq!(fs::read(&installed).unwrap(), img);

    // Bytes that match the pin but are not zstd: a clear error, nothing installed.
    let url = w.put("t4/fake.ext4.zst", b"not zstd at all");
    let err =
        fails(images(cache.path()).args(["ensure", &url, "--sha256", &hex(b"not zstd at all")]));
    assert!(err.contains("not valid zstd"), "{err}");
    assert!(!cache.path().join("fake/rootfs.ext4").exists());
}

#[test]
fn registry_names_resolve_with_relative_urls_from_a_file_or_a_url() {
    let Some(w) = www() else { return };
    let cache = tempfile::tempdir().unwrap();
    let img = image_bytes(7, 1 << 20);
    let kernel = image_bytes(8, 50_000);
    w.put("t5/rootfs.ext4", &img);
    w.put("t5/vmlinux", &kernel);
    let reg = format!(
        r#"{{"images": {{"reg-img": {{"rootfs_url": "rootfs.ext4", "rootfs_sha256": "{}",
            "kernel_url": "vmlinux", "kernel_sha256": "{}"}}}}}}"#,
        hex(&img),
        hex(&kernel)
    );
    let reg_url = w.put("t5/registry.json", reg.as_bytes());
    let ev = json_lines(&ok(images(cache.path()).args([
        "ensure",
        "reg-img",
        "--registry",
        &reg_url,
        "--json",
    ])));
    assert_eq!(
        names(&ev.last().unwrap()["downloaded"]),
        ["kernel", "rootfs"]
    );
    assert_eq!(
        fs::read(cache.path().join("reg-img/vmlinux.bin")).unwrap(),
        kernel
    );
    assert_eq!(w.gets("t5/rootfs.ext4"), 1);

    // The same registry as a file: its relative URLs are files beside it.
    let cache2 = tempfile::tempdir().unwrap();
    let reg_file = w.dir.join("t5/registry.json");
    let ev = json_lines(&ok(images(cache2.path())
        .args(["ensure", "reg-img", "--json", "--registry"])
        .arg(&reg_file)));
    assert_eq!(
        names(&ev.last().unwrap()["downloaded"]),
        ["kernel", "rootfs"]
    );
    assert_eq!(
        fs::read(cache2.path().join("reg-img/rootfs.ext4")).unwrap(),
        img
    );
    assert_eq!(
        w.gets("t5/rootfs.ext4"),
        1,
        "file: registry went to the server"
    );

    let err = fails(images(cache.path()).args(["ensure", "nope", "--registry", &reg_url]));
    assert!(
        err.contains("\"nope\"") && err.contains("it has: reg-img"),
        "{err}"
    );
    let bad = w.put(
        "t5/bad.json",
        br#"{"x": {"rootfs_url": "r", "rootfs_shaa256": "00"}}"#,
    );
    let err = fails(images(cache.path()).args(["ensure", "x", "--registry", &bad]));
    assert!(err.contains("rootfs_shaa256"), "{err}");
}

#[test]
fn publish_writes_a_zstd_release_that_zstd_and_sha256sum_accept_and_ensure_reads_back() {
    let Some(w) = www() else { return };
    if !require(have("zstd") && have("sha256sum"), "zstd and sha256sum") {
        return;
    }
    // An image as `rootsmith build --smolvm` lays it out.
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("built");
    fs::create_dir_all(&dir).unwrap();
    let img = image_bytes(9, 6 << 20);
    let kernel = image_bytes(10, 70_000);
    fs::write(dir.join("rootfs.ext4"), &img).unwrap();
    fs::write(dir.join("vmlinux.bin"), &kernel).unwrap();
    fs::write(dir.join(".fingerprint"), "f00d\n").unwrap();
    let out = w.dir.join("t6");
    let o = ok(images(cache.path())
        .args(["publish", "built", "--json"])
        .arg(&out));
    let done = &json_lines(&o)[0];
    assert_eq!(done["rootfs_sha256"], hex(&img));
    assert_eq!(
        files_in(&out),
        ["registry.json", "rootfs.ext4.zst", "sha256", "vmlinux.bin"]
            .map(String::from)
            .into()
    );
    let d = ok(Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .arg(out.join("rootfs.ext4.zst")));
    assert!(d.stdout == img, "zstd -d gives other bytes");
    let sums = fs::read_to_string(out.join("sha256")).unwrap();
    assert_eq!(sums.lines().count(), 2, "{sums}");
    ok(Command::new("sha256sum")
        .args(["-c", "--strict", "sha256"])
        .current_dir(&out));
    // Level 19 frames say so in zstd -lv; the content size is recorded.
    let l = ok(Command::new("zstd")
        .args(["-lv"])
        .arg(out.join("rootfs.ext4.zst")));
    let l = String::from_utf8_lossy(&l.stdout);
    assert!(
        l.contains(&format!("{} B", img.len())) || l.contains("6.00 MiB"),
        "{l}"
    );

    // Served as is, the output is an image source.
    let fresh = tempfile::tempdir().unwrap();
    let ev = json_lines(&ok(images(fresh.path()).args([
        "ensure",
        "built",
        "--json",
        "--registry",
        &format!("{}/t6/registry.json", w.url),
    ])));
    assert_eq!(
        names(&ev.last().unwrap()["downloaded"]),
        ["kernel", "rootfs"]
    );
    assert_eq!(
        fs::read(fresh.path().join("built/rootfs.ext4")).unwrap(),
        img
    );
    assert_eq!(
        fs::read(fresh.path().join("built/vmlinux.bin")).unwrap(),
        kernel
    );
}

#[test]
fn ls_rm_and_json() {
    let cache = tempfile::tempdir().unwrap();
    let o = ok(images(cache.path()).args(["ls"]));
    assert!(o.stdout.is_empty());
    for (name, len, fp) in [
        ("b-img", 10_000usize, Some("abcdef0123456789")),
        ("a-img", 5000, None),
    ] {
        let d = cache.path().join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("rootfs.ext4"), vec![1u8; len]).unwrap();
        if let Some(fp) = fp {
            fs::write(d.join(".fingerprint"), format!("{fp}\n")).unwrap();
            fs::write(d.join("vmlinux.bin"), vec![2u8; 100]).unwrap();
        }
    }
    fs::create_dir_all(cache.path().join("custom/x/y")).unwrap();
    let v = &json_lines(&ok(images(cache.path()).args(["ls", "--json"])))[0];
    let list = v["images"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "a-img");
    assert_eq!(list[0]["size"], 5000);
    assert_eq!(list[0]["fingerprint"], serde_json::Value::Null);
    assert_eq!(list[1]["size"], 10_100);
    assert_eq!(list[1]["fingerprint"], "abcdef0123456789");
    assert!(list[1]["age_seconds"].as_u64().unwrap() < 600);
    let text = String::from_utf8(ok(images(cache.path()).args(["ls"])).stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAME")
            && lines[0].contains("FINGERPRINT")
            && lines[0].contains("AGE")
    );
    assert!(
        lines[2].starts_with("b-img")
            && lines[2].contains("abcdef012345")
            && lines[2].contains("9.9 KiB"),
        "{text}"
    );

    ok(images(cache.path()).args(["rm", "b-img"]));
    assert!(!cache.path().join("b-img").exists());
    let v = &json_lines(&ok(images(cache.path()).args(["ls", "--json"])))[0];
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    let err = fails(images(cache.path()).args(["rm", "b-img"]));
    assert!(
        err.contains("no image \"b-img\"") && err.contains("images ls"),
        "{err}"
    );
    let err = fails(images(cache.path()).args(["rm", "../x"]));
    assert!(err.contains("not a valid image name"), "{err}");
    // SMOLVM_IMAGE_DIR is the default root.
    let o = ok(rootsmith()
        .args(["images", "ls", "--json"])
        .env("SMOLVM_IMAGE_DIR", cache.path()));
    assert_eq!(json_lines(&o)[0]["images"][0]["name"], "a-img");
}

#[test]
fn bad_input_is_one_line_and_exit_1() {
    let Some(w) = www() else { return };
    let cache = tempfile::tempdir().unwrap();
    let url = format!("{}/t8/missing.ext4", w.url);
    let err = fails(images(cache.path()).args(["ensure", &url]));
    assert!(err.contains("--sha256"), "{err}");
    let err = fails(images(cache.path()).args(["ensure", &url, "--sha256", &"ab".repeat(32)]));
    assert!(err.contains("not found"), "{err}");
    let err = fails(images(cache.path()).args(["ensure", "some-name"]));
    assert!(err.contains("--registry"), "{err}");
    let err = fails(images(cache.path()).args(["publish", "nothing-here", "/tmp/x"]));
    assert!(err.contains("no image"), "{err}");
    let err = fails(images(cache.path()).args([
        "ensure",
        "http://127.0.0.1:1/r.ext4",
        "--sha256",
        &"ab".repeat(32),
    ]));
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(files_in(cache.path()).iter().all(|n| !cache
        .path()
        .join(n)
        .join("rootfs.ext4")
        .exists()));
}

/// A server that sends `body` in small pieces with pauses, or stops halfway (`hang_up`);
/// counts requests.
fn slow_server(body: Vec<u8>, hang_up: bool) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slow-rootfs.ext4", l.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let end = if hang_up { body.len() / 2 } else { body.len() };
                for chunk in body[..end].chunks(64 << 10) {
                    if s.write_all(chunk).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(40));
                }
            });
        }
    });
    (url, count)
}

#[test]
fn the_final_path_never_holds_a_partial_file_and_concurrent_ensures_download_once() {
    let cache = tempfile::tempdir().unwrap();
    let img = image_bytes(11, 2 << 20); // 32 pieces × 40 ms ≈ 1.3 s
    let (url, count) = slow_server(img.clone(), false);
    let sha = hex(&img);
    let spawn = || {
        images(cache.path())
            .args(["ensure", &url, "--sha256", &sha, "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut kids = vec![spawn()];
    std::thread::sleep(Duration::from_millis(300));
    kids.push(spawn());
    kids.push(spawn());
    // Mid-download: the bytes go to a temp file; the final name does not exist yet.
    let dir = cache.path().join("slow");
    let mut saw_temp = false;
    for _ in 0..20 {
        assert!(
            !dir.join("rootfs.ext4").exists() || fs::read(dir.join("rootfs.ext4")).unwrap() == img,
            "partial rootfs.ext4"
        );
        saw_temp |= files_in(&dir)
            .iter()
            .any(|f| f.starts_with(".rootsmith-dl-rootfs.ext4."));
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(saw_temp, "no temp file seen during the download");
    for k in kids {
        let out = k.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(fs::read(dir.join("rootfs.ext4")).unwrap(), img);
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the waiters downloaded again"
    );
}

#[test]
fn a_connection_lost_mid_download_installs_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let img = image_bytes(12, 512 << 10);
    let (url, _) = slow_server(img.clone(), true);
    let err = fails(images(cache.path()).args(["ensure", &url, "--sha256", &hex(&img)]));
    assert!(err.contains("nothing was installed"), "{err}");
    assert!(
        !cache.path().join("slow").exists(),
        "a failed first install left its directory"
    );
}

#[test]
fn https_downloads_check_the_server_certificate() {
    if !require(have("openssl") && have("python3"), "openssl and python3") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let sh = |script: &str| {
        ok(Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(d.path()))
    };
    // A test CA and a leaf for 127.0.0.1 signed by it.
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=rootsmith-test-ca 2>/dev/null \
        && openssl req -newkey rsa:2048 -nodes -keyout k.pem -out leaf.csr -subj /CN=127.0.0.1 2>/dev/null \
        && printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext \
        && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out c.pem -days 1 -extfile ext 2>/dev/null");
    let img = image_bytes(13, 300_000);
    fs::write(d.path().join("tls-rootfs.ext4"), &img).unwrap();
    let server = "import http.server, ssl\n\
        srv = http.server.HTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\n\
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain('c.pem', 'k.pem')\n\
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n\
        print(srv.server_address[1], flush=True)\n\
        srv.serve_forever()\n";
    let mut child = Command::new("python3")
        .args(["-c", server])
        .current_dir(d.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let _server = Kill(child);
    let url = format!("https://127.0.0.1:{}/tls-rootfs.ext4", port.trim());
    let cache = tempfile::tempdir().unwrap();
    let ensure = || {
        let mut c = images(cache.path());
        c.args(["ensure", &url, "--sha256", &hex(&img), "-q"]);
        c
    };
    // Not trusted: refused, nothing installed.
    let err = fails(ensure().env("SSL_CERT_FILE", d.path().join("c.pem")));
    assert!(err.contains("certificate"), "{err}");
    assert!(!cache.path().join("tls").exists());
    // Trusted through the system's SSL_CERT_FILE: installed.
    ok(ensure().env("SSL_CERT_FILE", d.path().join("ca.pem")));
    assert_eq!(fs::read(cache.path().join("tls/rootfs.ext4")).unwrap(), img);
}

#[test]
fn an_ensure_killed_mid_download_leaves_no_file_and_the_next_one_succeeds() {
    let cache = tempfile::tempdir().unwrap();
    let img = image_bytes(14, 2 << 20);
    let (url, _) = slow_server(img.clone(), false);
    let sha = hex(&img);
    let mut child = images(cache.path())
        .args(["ensure", &url, "--sha256", &sha, "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dir = cache.path().join("slow");
    for _ in 0..100 {
        if files_in(&dir)
            .iter()
            .any(|f| f.starts_with(".rootsmith-dl-"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(Command::new("kill").arg("-9").arg(child.id().to_string()));
    let _ = child.wait();
    assert!(
        !dir.join("rootfs.ext4").exists(),
        "a killed download reached the final path"
    );
    ok(images(cache.path()).args(["ensure", &url, "--sha256", &sha, "-q"]));
    assert_eq!(fs::read(dir.join("rootfs.ext4")).unwrap(), img);
    assert!(
        !files_in(&dir)
            .iter()
            .any(|f| f.starts_with(".rootsmith-dl-")),
        "the killed run's temp file was not cleaned up"
    );
}
