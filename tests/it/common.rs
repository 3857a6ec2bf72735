//! Helpers shared by the integration tests: running `kiln`, finding the
//! repository's files, and filtering output for snapshots.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The repository root (where `Cargo.toml` is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    repo().join(relative)
}

/// The `kiln` binary built for this test run, with a stable environment:
/// no colour, diagnostics at a fixed width, and no tree snapshots
/// (`KILN_SNAPSHOT_LIMIT=0`), so each build makes the tree it tests; the
/// snapshot tests set a limit of their own.
pub fn kiln() -> Command {
    let mut command = Command::cargo_bin("kiln").expect("kiln binary is built");
    command
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .env("KILN_SNAPSHOT_LIMIT", "0");
    command
}

/// The committed imagefile schema, parsed.
pub fn committed_schema() -> serde_json::Value {
    let text = std::fs::read_to_string(repo_path("schema/imagefile.schema.json"))
        .expect("schema/imagefile.schema.json exists");
    serde_json::from_str(&text).expect("the committed schema is JSON")
}

/// Every file under `dir` (recursively) whose name ends with one of `exts`.
pub fn files_with_extension(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if exts.iter().any(|ext| path.to_string_lossy().ends_with(ext)) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The tests' cache outside the clone, reused between runs:
/// `KILN_TEST_CACHE`, or where `scripts/install-test-deps` puts it.
pub fn test_cache() -> PathBuf {
    std::env::var_os("KILN_TEST_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/kiln-test"), PathBuf::from)
}

/// A kiln cache shared by the tests that only read from it, so the mirror
/// is asked for each file once per run of the suite (in [`test_cache`]).
pub fn shared_cache() -> PathBuf {
    let dir = test_cache().join("kiln-cache");
    std::fs::create_dir_all(&dir).expect("create the shared cache");
    dir
}

/// Mount points (from /proc/self/mountinfo) at or below `path`.
pub fn mounts_under(path: &Path) -> Vec<String> {
    let path = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_string))
        .filter(|mount_point| mount_point.starts_with(&path))
        .collect()
}

/// Processes whose root directory is inside `path`.
pub fn processes_rooted_in(path: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(root) = std::fs::read_link(entry.path().join("root"))
            && root.starts_with(path)
        {
            found.push(format!("{pid} (root {})", root.display()));
        }
    }
    found
}

/// Loop devices (`losetup -a`) whose backing file is inside `path`.
pub fn loop_devices_under(path: &Path) -> Vec<String> {
    let output = std::process::Command::new("losetup")
        .arg("-a")
        .output()
        .expect("losetup runs");
    assert!(output.status.success(), "losetup -a failed");
    let path = path.to_string_lossy().into_owned();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(&path))
        .map(str::to_string)
        .collect()
}

/// A loop device attached to the host for as long as this lives, holding
/// an ext4 filesystem labelled `cloudimg-rootfs`: what a host that builds
/// or tests images often has attached, and what a build must not see.
pub struct HostLoopDisk {
    /// The device, `/dev/loopN`.
    pub device: String,
    _dir: tempfile::TempDir,
}

impl HostLoopDisk {
    /// Makes the file, the filesystem and attaches it.
    pub fn attach() -> HostLoopDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("host-disk.img");
        let file_arg = file.to_str().expect("UTF-8");
        tool("truncate", &["-s", "64M", file_arg]);
        tool("mkfs.ext4", &["-q", "-L", "cloudimg-rootfs", file_arg]);
        let device = tool("losetup", &["-f", "--show", file_arg])
            .trim()
            .to_string();
        assert!(device.starts_with("/dev/loop"), "{device}");
        let label = tool("blkid", &["-s", "LABEL", "-o", "value", &device]);
        assert_eq!(label.trim(), "cloudimg-rootfs");
        HostLoopDisk { device, _dir: dir }
    }
}

impl Drop for HostLoopDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.device])
            .status();
    }
}

/// After kiln was killed with SIGKILL mid-build: waits (up to 10 s) for the
/// kernel to tear the build's namespaces down, then asserts that nothing
/// is left — no mount under `out`, no loop device backed by a file under
/// `scratch`, no process rooted in `work` — and no tree that looks
/// finished (`out/<image>.root`).
pub fn assert_clean_after_kill(out: &Path, work: &Path, scratch: &Path, image: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (!mounts_under(out).is_empty() || !processes_rooted_in(work).is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        mounts_under(out),
        Vec::<String>::new(),
        "mounts left after SIGKILL"
    );
    assert_eq!(
        loop_devices_under(scratch),
        Vec::<String>::new(),
        "loop devices left after SIGKILL"
    );
    assert_eq!(
        processes_rooted_in(work),
        Vec::<String>::new(),
        "processes left after SIGKILL"
    );
    for finished in ["root", "raw", "qcow2", "tar", "report.json"] {
        assert!(
            !out.join(format!("{image}.{finished}")).exists(),
            "no {finished} that looks finished"
        );
    }
}

/// Runs a host tool, asserting it succeeds; returns its stdout.
pub fn tool(program: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (install it: scripts/install-test-deps): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One line per entry of `tree` (sorted by path): type, mode with the
/// setuid/setgid/sticky bits, owner, size, link target, device number,
/// link count, mtime clamped to `clamp`, and every extended attribute, so
/// two trees compare equal exactly when an archive kept everything.
pub fn tree_inventory(tree: &Path, clamp: i64) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut lines = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let path = tree.join(&relative);
        let meta = std::fs::symlink_metadata(&path).expect("lstat");
        let kind = meta.file_type();
        let mut xattrs: Vec<String> = xattr::list(&path)
            .expect("list xattrs")
            .map(|name| {
                let value = xattr::get(&path, &name)
                    .expect("get xattr")
                    .unwrap_or_default();
                format!("{}={}", name.to_string_lossy(), hex::encode(value))
            })
            .collect();
        xattrs.sort();
        let target = if kind.is_symlink() {
            std::fs::read_link(&path)
                .expect("readlink")
                .display()
                .to_string()
        } else {
            String::new()
        };
        // A directory's size and link count depend on the filesystem, not
        // on what the archive kept.
        let (size, links) = if kind.is_dir() {
            (0, 0)
        } else {
            (meta.size(), meta.nlink())
        };
        lines.push(format!(
            "{} mode={:o} owner={}:{} size={size} links={links} rdev={} mtime={} target={target} xattrs={}",
            relative.display(),
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.rdev(),
            meta.mtime().min(clamp),
            xattrs.join(",")
        ));
        if kind.is_dir() {
            for entry in std::fs::read_dir(&path).expect("readdir") {
                stack.push(relative.join(entry.expect("entry").file_name()));
            }
        }
    }
    lines.sort();
    lines
}

/// One TCG guest at a time, across every test that boots one (`boot`,
/// `docs`): the test machines have few cores, and two emulated guests at
/// once would each take longer than their timeouts.
static BOOTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the right to boot a guest until dropped.
pub fn one_boot_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    BOOTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The lines `kiln test` prints for its built-in checks when they pass
/// (each followed by the time it took), in order.
pub const BUILT_IN_CHECKS_PASSED: [&str; 7] = [
    "✓ boots, and `debian` logs in over ssh with the key from the seed (",
    "✓ systemd reaches `running` with no failed unit (",
    "✓ ssh refuses password logins (",
    "✓ the root filesystem fills the disk (",
    "✓ `/` has room for users (",
    "✓ `cloudimg-rootfs` is mounted at `/` (",
    "✓ sshd's host keys were made on this machine, not taken from the image (",
];

/// Writes an executable bash hook at `path` (its directories made): `set
/// -eu`, then `body`.
pub fn write_hook(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().expect("a hook has a directory")).expect("mkdir");
    std::fs::write(path, format!("#!/bin/bash\nset -eu\n{body}")).expect("write");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
}

/// A tmpfs of a chosen size mounted on a temporary directory, for tests
/// that fill a disk; unmounted when dropped, also when the test fails.
pub struct SmallFilesystem {
    /// Where it is mounted.
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFilesystem {
    /// Mounts a tmpfs of `size` (`mount`'s syntax: `40m`).
    pub fn mount(size: &str) -> SmallFilesystem {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).expect("mkdir");
        let mount_point = path.to_str().expect("UTF-8");
        tool(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                mount_point,
            ],
        );
        SmallFilesystem { path, _dir: dir }
    }

    /// Makes it `size` large, keeping what it holds: space freed.
    pub fn resize(&self, size: &str) {
        let mount_point = self.path.to_str().expect("UTF-8");
        tool(
            "mount",
            &["-o", &format!("remount,size={size}"), mount_point],
        );
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            // Busy (a failed test left something open in it): detach it.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
    }
}

/// The blobs of the kiln cache in `cache` (`blobs/sha256/<xx>/<sha256>`).
pub fn cache_blobs(cache: &Path) -> Vec<PathBuf> {
    let mut blobs = Vec::new();
    let Ok(prefixes) = std::fs::read_dir(cache.join("blobs/sha256")) else {
        return blobs;
    };
    for prefix in prefixes.flatten() {
        for blob in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            blobs.push(blob.path());
        }
    }
    blobs.sort();
    blobs
}

/// What is wrong with the kiln cache in `cache`, as a verify would find
/// it: each blob whose content does not hash to its name, and each file
/// left in `tmp/` (where only a running writer has one). Blobs for which
/// `skip` holds are not read.
pub fn cache_problems(cache: &Path, skip: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut problems = Vec::new();
    for blob in cache_blobs(cache) {
        if skip(&blob) {
            continue;
        }
        let name = blob
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match kiln::cache::Digest::of_file(&blob) {
            Ok(digest) if digest.sha256 == name => {}
            Ok(digest) => problems.push(format!(
                "{} holds {} bytes of sha256 {}",
                blob.display(),
                digest.size,
                digest.sha256
            )),
            Err(error) => problems.push(format!("{}: {error}", blob.display())),
        }
    }
    for temp in std::fs::read_dir(cache.join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
    {
        problems.push(format!("{} left in tmp/", temp.path().display()));
    }
    problems
}

/// An archive at `mirror` made of the `.deb`s that `locks` pin, as links to
/// their blobs in [`shared_cache`] at the locks' `Filename`s: a local
/// mirror for `--mirror`, so a test can count what kiln downloads without
/// asking the real mirror twice. Returns each package's `/`-rooted path.
pub fn mirror_from_shared_cache(locks: &[&Path], mirror: &Path) -> Vec<String> {
    let cache = kiln::cache::Cache::open(&shared_cache()).expect("the shared cache");
    let mut paths = Vec::new();
    for lock in locks {
        let lock = kiln::lock::read(lock).expect("a lock");
        for package in &lock.packages {
            let digest = kiln::cache::Digest::new(&package.sha256, package.size).expect("digest");
            let blob = cache.blob_path(&digest);
            assert!(blob.is_file(), "{} is in the shared cache", package.name);
            let link = mirror.join(&package.filename);
            if !link.exists() {
                std::fs::create_dir_all(link.parent().expect("a parent")).expect("mkdir");
                std::os::unix::fs::symlink(&blob, &link).expect("symlink");
            }
            paths.push(format!("/{}", package.filename));
        }
    }
    paths.sort();
    paths.dedup();
    paths
}
