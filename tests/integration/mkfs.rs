//! `rootsmith mkfs` end to end: every base fixture and a stress tree become images that
//! e2fsck accepts, the kernel mounts with the same listing as the source (and ext4-view
//! agrees), the kernel can write and resize2fs can grow; builds are byte-reproducible, also
//! as an unprivileged user; bad input fails in one line and leaves nothing behind.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn mkfs(args: &[&str], src_flag: &str, src: &Path, out: &Path) -> std::process::Output {
    run(rootsmith()
        .arg("mkfs")
        .args(args)
        .arg(src_flag)
        .arg(src)
        .arg(out))
}

fn extract_with_gnu_tar(tarball: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    ok(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(tarball)
        .arg("-C")
        .arg(dir));
}

/// e2fsck -fy on a copy must change nothing but its own bookkeeping in the primary
/// superblock (s_wtime, s_lastcheck, s_kbytes_written and the checksum).
fn fsck_fix_changes_nothing(img: &Path) {
    let copy = img.with_extension("copy");
    fs::copy(img, &copy).unwrap();
    let out = run(Command::new(which("e2fsck").unwrap()).arg("-fy").arg(&copy));
    assert_eq!(
        out.status.code(),
        Some(0),
        "e2fsck -fy changed something: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (a, b) = (fs::read(img).unwrap(), fs::read(&copy).unwrap());
    assert_eq!(a.len(), b.len());
    let first_diff = (0..a.len()).find(|&i| a[i] != b[i] && !(1024..2048).contains(&i));
    assert_eq!(
        first_diff, None,
        "e2fsck -fy modified the image outside the superblock"
    );
    fs::remove_file(copy).unwrap();
}

#[test]
fn every_base_fixture_is_fsck_clean_and_mounts_with_the_source_listing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = is_root();
    let can_mount = require(
        root,
        "root (for GNU tar extraction with owners and a loop mount)",
    );
    for tarball in all_fixtures() {
        let name = tarball.file_name().unwrap().to_string_lossy().into_owned();
        let img = tmp.path().join(format!("{name}.ext4"));
        let out = mkfs(&["--json"], "--from-tar", &tarball, &img);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["sha256"].as_str().unwrap(),
            format!("sha256:{}", sha256_file(&img))
        );
        assert_eq!(fsck(&img), 0, "{name}: e2fsck -fn");
        fsck_fix_changes_nothing(&img);
        // Auto sizing: the image stays within 15 % of what the tree occupies.
        let used = report["blocks_used"].as_u64().unwrap() * 4096;
        let size = report["size"].as_u64().unwrap();
        assert!(
            size <= used + used * 15 / 100 + (4 << 20) + (1 << 20),
            "{name}: {size} bytes for {used} used"
        );

        let viewed = list_image(&img);
        if !can_mount {
            assert!(viewed.contains_key("/etc"), "{name}: no /etc in the image");
            continue;
        }
        let src = tmp.path().join(format!("{name}.src"));
        extract_with_gnu_tar(&tarball, &src);
        let source = list_host(&src, false);
        let m = Mount::new(&img, "ro");
        let mounted = list_host(&m.dir, true);
        assert_same(
            &format!("{name}: kernel mount vs GNU tar"),
            &lines(&source, &Fields::ALL),
            &lines(&mounted, &Fields::ALL),
        );
        let basic = Fields {
            xattrs: false,
            nlink: false,
            mtime: true,
            symlink_mtime: true,
            rdev: false,
        };
        assert_same(
            &format!("{name}: ext4-view vs kernel"),
            &lines(&mounted, &basic),
            &lines(&viewed, &basic),
        );
        drop(m);
        fs::remove_dir_all(&src).ok();
        fs::remove_file(&img).ok();
    }
}

/// Builds the stress tree the foundation issue lists, on the host (needs root for devices,
/// owners and trusted./security. xattrs).
fn make_stress_tree(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let sh = |script: &str| ok(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
    sh(r#"
        mkdir -p types deep/a/b/c links/x links/y big flat
        echo hello > types/file
        mknod types/chr c 1 3; mknod types/blk b 7 0; mkfifo types/fifo
        python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('types/sock')"
        chmod 4755 types/file; chmod 1777 deep; chmod 2750 deep/a
        : > types/empty
        ln -s "$(printf 'a%.0s' $(seq 59))" types/sym59
        ln -s "$(printf 'b%.0s' $(seq 60))" types/sym60
        # 4,095 bytes in 255-byte-or-shorter components (ext4-view's paths allow no longer ones).
        ln -s "$(python3 -c "print(('x' * 99 + '/') * 40 + 'y' * 95, end='')")" types/sym4095
        ln -s ../types/file links/rel
        echo shared > links/x/one; ln links/x/one links/y/two; ln links/x/one links/three
        touch "$(printf 'n%.0s' $(seq 255))"
        echo unicode > 'ünïcødé ☃'
        chown 4000000000:4000000000 types/file
        touch -h -d '1960-05-01 12:00:00.123456789' types/empty
        touch -d '2100-01-01 00:00:00.987654321' types/file
        setfattr -n user.small -v hi types/file
        setfattr -n trusted.t -v 0x0102 types/file
        setfattr -n security.capability -v 0x0100000200100000000000000000000000000000 types/empty
        setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\0' 'x')" big
        setfattr -n user.onsymlink -v 1 types/sym60 2>/dev/null || true
        # 640 MiB, sparse: 1 block of data every MiB, so far more extents than fit in an inode.
        python3 - <<'PY'
with open('big/sparse', 'wb') as f:
    for i in range(640):
        f.seek(i << 20)
        f.write(bytes([i % 251 + 1]) * 4096)
    f.truncate(640 << 20)
# A dense file with zero blocks inside (holes in the image, zeros when read).
with open('big/zeros-inside', 'wb') as f:
    f.write(b'x' * 5000 + b'\0' * 3 * 4096 + b'y' * 10)
PY
        cd flat && seq 1 20000 | sed 's/^/entry-/' | xargs touch
    "#);
}

#[test]
fn stress_tree_round_trips_through_the_kernel_and_ext4_view() {
    if !require(
        is_root() && have("setfattr"),
        "root and setfattr (attr package)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_stress_tree(&src);
    let img = tmp.path().join("stress.ext4");
    let out = mkfs(&[], "--from-dir", &src, &img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fsck(&img), 0);
    fsck_fix_changes_nothing(&img);
    // The image stays sparse: far less allocated than the 640 MiB file's apparent size.
    let allocated = fs::metadata(&img)
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
        .unwrap();
    assert!(allocated < 200 << 20, "image allocates {allocated} bytes");
    let source = list_host(&src, false);
    let m = Mount::new(&img, "ro");
    let mounted = list_host(&m.dir, true);
    assert_same(
        "stress: kernel mount vs source",
        &lines(&source, &Fields::ALL),
        &lines(&mounted, &Fields::ALL),
    );
    let basic = Fields {
        xattrs: false,
        nlink: false,
        mtime: true,
        symlink_mtime: true,
        rdev: false,
    };
    let (viewed, mut skipped) = list_image_partial(&img);
    skipped.sort();
    // lost+found carries the superblock epoch, the newest mtime in the tree (2100 here).
    assert_eq!(
        skipped,
        ["/lost+found", "/types/empty", "/types/file"],
        "ext4-view refuses only the wide times"
    );
    skipped.retain(|p| p != "/lost+found");
    let mut mounted_in_range = mounted.clone();
    for p in &skipped {
        mounted_in_range.remove(p);
    }
    assert_same(
        "stress: ext4-view vs kernel",
        &lines(&mounted_in_range, &basic),
        &lines(&viewed, &basic),
    );
    // The wide times themselves, through the kernel.
    assert_eq!(
        mounted["/types/empty"].mtime,
        (-305_121_600, 123_456_789),
        "pre-1970 mtime"
    );
    assert_eq!(
        mounted["/types/file"].mtime,
        (4_102_444_800, 987_654_321),
        "post-2038 mtime"
    );
    // The 640 MiB file needs an extent tree (more than 4 extents).
    let stat = ok(Command::new(which("debugfs").unwrap())
        .args(["-R", "stat /big/sparse"])
        .arg(&img));
    let text = String::from_utf8_lossy(&stat.stdout);
    assert!(
        text.contains("(ETB0)") || text.contains("ETB"),
        "no extent tree block in:\n{text}"
    );
}

#[test]
fn the_kernel_writes_to_it_and_resize2fs_grows_it() {
    if !require(is_root(), "root (loop mount read-write)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("rw.ext4");
    let out = mkfs(
        &[],
        "--from-tar",
        &fixture("debian-bookworm-slim-amd64.rootfs.tar.xz"),
        &img,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let m = Mount::new(&img, "rw");
        let d = m.dir.join("tmp/many");
        fs::create_dir(&d).unwrap();
        for i in 0..1000 {
            fs::write(d.join(format!("f{i}")), format!("{i}").repeat(i % 50 + 1)).unwrap();
        }
        for i in (0..1000).step_by(2) {
            fs::remove_file(d.join(format!("f{i}"))).unwrap();
        }
        fs::write(m.dir.join("tmp/big"), vec![7u8; 3 << 20]).unwrap();
    }
    assert_eq!(fsck(&img), 0, "after kernel writes");
    // resize2fs on a fresh image (after a mount it insists on `e2fsck -f` first).
    let fresh = tmp.path().join("fresh.ext4");
    ok(rootsmith()
        .arg("mkfs")
        .arg("--from-tar")
        .arg(fixture("debian-bookworm-slim-amd64.rootfs.tar.xz"))
        .arg(&fresh));
    ok(Command::new(which("resize2fs").unwrap())
        .arg(&fresh)
        .arg("4G"));
    assert_eq!(fs::metadata(&fresh).unwrap().len(), 4 << 30);
    assert_eq!(fsck(&fresh), 0, "after resize2fs 4G");
    {
        let m = Mount::new(&fresh, "rw");
        fs::write(m.dir.join("root/after-resize"), vec![1u8; 64 << 20]).unwrap();
    }
    assert_eq!(fsck(&fresh), 0, "after writing 64 MiB into the grown image");
    let out = ok(Command::new(which("dumpe2fs").unwrap()).arg("-h").arg(&img));
    let text = String::from_utf8_lossy(&out.stdout);
    let features = text
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap()
        .to_string();
    for f in rootsmith::ext4::FEATURES {
        assert!(
            features.split_whitespace().any(|w| w == *f),
            "{f} missing from {features}"
        );
    }
}

#[test]
fn builds_are_byte_reproducible_also_as_nobody() {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let tarball = fixture("alpine-minirootfs-3.20.3-x86_64.tar.gz");
    let a = tmp.path().join("a.ext4");
    let b = tmp.path().join("b.ext4");
    for img in [&a, &b] {
        let out = run(rootsmith()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("mkfs")
            .arg("--from-tar")
            .arg(&tarball)
            .arg(img));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(sha256_file(&a), sha256_file(&b));
    // A different epoch gives different bytes (the input matters).
    let c = tmp.path().join("c.ext4");
    ok(rootsmith()
        .env("SOURCE_DATE_EPOCH", "1600000000")
        .arg("mkfs")
        .arg("--from-tar")
        .arg(&tarball)
        .arg(&c));
    assert_ne!(sha256_file(&a), sha256_file(&c));
    if !require(
        is_root() && have("setpriv"),
        "root and setpriv (to run as nobody)",
    ) {
        return;
    }
    let n = tmp.path().join("nobody.ext4");
    let out = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_rootsmith"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("TMPDIR", tmp.path())
        .arg("mkfs")
        .arg("--from-tar")
        .arg(&tarball)
        .arg(&n));
    assert!(
        out.status.success(),
        "as nobody: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sha256_file(&a),
        sha256_file(&n),
        "nobody's image differs from root's"
    );
}

fn assert_fails_cleanly(out: &std::process::Output, img: &Path, expect: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "succeeded, expected failure about {expect}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(
        err.to_lowercase().contains(expect),
        "{err:?} does not mention {expect:?}"
    );
    assert!(!img.exists(), "{} exists after a failure", img.display());
    if let Some(dir) = img.parent().filter(|d| d.is_dir()) {
        let stray: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".part"))
            .collect();
        assert!(stray.is_empty(), "temp files left: {stray:?}");
    }
}

#[test]
fn bad_input_fails_in_one_line_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let alpine = fixture("alpine-minirootfs-3.20.3-x86_64.tar.gz");
    let gz = fs::read(&alpine).unwrap();
    let img = t.join("out.ext4");

    // Truncated archive (compressed and plain).
    fs::write(t.join("trunc.tar.gz"), &gz[..gz.len() / 2]).unwrap();
    assert_fails_cleanly(
        &mkfs(&[], "--from-tar", &t.join("trunc.tar.gz"), &img),
        &img,
        "tarball",
    );
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
    fs::write(t.join("trunc.tar"), &plain[..plain.len() / 3 / 512 * 512]).unwrap();
    assert_fails_cleanly(
        &mkfs(&[], "--from-tar", &t.join("trunc.tar"), &img),
        &img,
        "truncated",
    );

    // Corrupt gzip: flip bytes in the middle.
    let mut bad = gz.clone();
    for b in &mut bad[gz.len() / 2..gz.len() / 2 + 64] {
        *b ^= 0x5a;
    }
    fs::write(t.join("corrupt.tar.gz"), &bad).unwrap();
    assert_fails_cleanly(
        &mkfs(&[], "--from-tar", &t.join("corrupt.tar.gz"), &img),
        &img,
        "tarball",
    );

    // Traversal entries.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.as_gnu_mut().unwrap().name[..16].copy_from_slice(b"../../etc/passwd");
    h.set_cksum();
    b.append(&h, &b"pwn"[..]).unwrap();
    fs::write(t.join("traversal.tar"), b.into_inner().unwrap()).unwrap();
    let out = mkfs(&[], "--from-tar", &t.join("traversal.tar"), &img);
    assert_fails_cleanly(&out, &img, "climbs out of the root");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("../../etc/passwd"),
        "entry not named"
    );

    // --size too small: says how much is needed.
    let out = mkfs(&["--size", "4M"], "--from-tar", &alpine, &img);
    assert_fails_cleanly(&out, &img, "image too small");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--size"),
        "no fix suggested"
    );

    // Output directory missing.
    let missing = t.join("no/such/dir/out.ext4");
    assert_fails_cleanly(
        &mkfs(&[], "--from-tar", &alpine, &missing),
        &missing,
        "does not exist",
    );

    // Output directory read-only (as nobody: root ignores permissions).
    if require(
        is_root() && have("setpriv"),
        "root and setpriv (read-only dir as nobody)",
    ) {
        let ro = t.join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(t, fs::Permissions::from_mode(0o755)).unwrap();
        let tarcopy = t.join("alpine.tar.gz");
        fs::copy(&alpine, &tarcopy).unwrap();
        fs::set_permissions(&tarcopy, fs::Permissions::from_mode(0o644)).unwrap();
        let target = ro.join("out.ext4");
        let out = run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_rootsmith"))
            .arg("mkfs")
            .arg("--from-tar")
            .arg(&tarcopy)
            .arg(&target));
        assert_fails_cleanly(&out, &target, "permission denied");
    }
}

#[test]
fn ctrl_c_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("out.ext4");
    // stdin stays open, so the run is still unpacking when the signal arrives.
    let mut child = rootsmith()
        .arg("mkfs")
        .arg("--from-tar")
        .arg("-")
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(
        &mut stdin,
        &fs::read(fixture("alpine-minirootfs-3.20.3-x86_64.tar.gz")).unwrap()[..100_000],
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    ok(Command::new("kill").arg("-INT").arg(child.id().to_string()));
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "something was left in the output directory"
    );
}
