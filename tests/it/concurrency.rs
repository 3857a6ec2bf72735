//! Builds at once sharing one cache (issue 19): two builds of the same
//! imagefile into two output directories, a build of another imagefile,
//! `kiln fetch` and `kiln lock --update`, all started together on one
//! fresh cache. They must all succeed, the two builds of the same inputs
//! must give the same bytes, the local mirror must have been asked for
//! each `.deb` exactly once (so no blob was fetched twice, at once or
//! not), and no blob may ever be visible under its name with content
//! other than its hash — watched while they run, and verified after.
//! Snapshots are on, as for users: the two builds of the same inputs save
//! the same tree's snapshot at once, and one is kept, whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::apt_repo;
use crate::common::{
    cache_blobs, cache_problems, kiln, mirror_from_shared_cache, mounts_under, processes_rooted_in,
    repo_path, shared_cache,
};

/// Writes `text` as `<dir>/imagefile.yaml`, then locks and fetches it with
/// the shared cache (so its `.deb`s are there for the local mirror).
fn imagefile(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let path = dir.join("imagefile.yaml");
    std::fs::write(&path, text).expect("write");
    let cache = shared_cache();
    for command in ["lock", "fetch"] {
        let output = kiln()
            .current_dir(dir)
            .arg(command)
            .arg("--cache-dir")
            .arg(&cache)
            .output()
            .expect("kiln runs");
        assert!(
            output.status.success(),
            "kiln {command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    path
}

/// `kiln <args>` in `dir`, started now, with snapshots on (as users run
/// it, so that builds of the same inputs at once also save the same
/// snapshot at once).
fn start(dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("NO_COLOR", "1")
        .env("KILN_SNAPSHOT_LIMIT", "2G")
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln starts")
}

fn sha256_of(path: &Path) -> String {
    kiln::cache::Digest::of_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .sha256
}

#[test]
fn builds_fetch_and_lock_at_once_share_one_cache() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let started = Instant::now();
    let temp = tempfile::tempdir().expect("tempdir");
    let minimal = std::fs::read_to_string(repo_path("manifests/debian-minimal.yaml"))
        .expect("read the manifest");
    let a = imagefile(&temp.path().join("a"), &minimal);
    // Another imagefile: another name, one more package, only a tarball.
    let other = minimal
        .replace("name: debian-minimal", "name: debian-minimal-less")
        .replace(
            "outputs:\n  - raw\n  - tar\n",
            "packages: [less]\noutputs: [tar]\n",
        );
    assert_ne!(
        other, minimal,
        "the manifest changed shape: update this test"
    );
    let b = imagefile(&temp.path().join("b"), &other);
    let a_lock = kiln::lock::path_for(&a);
    let b_lock = kiln::lock::path_for(&b);
    let locked_text = std::fs::read_to_string(&a_lock).expect("read the lock");

    let prepared = started.elapsed();
    let mirror_dir = temp.path().join("mirror");
    let debs = mirror_from_shared_cache(&[&a_lock, &b_lock], &mirror_dir);
    let mirror = apt_repo::serve(&mirror_dir);
    let cache = temp.path().join("cache");
    let cache_arg = cache.to_str().expect("UTF-8");

    // Every blob that appears under its final name is read once, at once:
    // a half-written or wrong blob must never be visible there.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (cache, stop) = (cache.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = BTreeMap::new();
            while !stop.load(Ordering::SeqCst) {
                for blob in cache_blobs(&cache) {
                    if let std::collections::btree_map::Entry::Vacant(slot) = seen.entry(blob) {
                        let blob = slot.key();
                        let whole = blob
                            .file_name()
                            .is_some_and(|name| *name == *sha256_of(blob));
                        slot.insert(whole);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        })
    };

    let (a_dir, b_dir) = (a.parent().expect("dir"), b.parent().expect("dir"));
    let out = |n: &str| temp.path().join(n).to_str().expect("UTF-8").to_string();
    let (out1, out2, out3) = (out("out1"), out("out2"), out("out3"));
    let build = |dir: &Path, out: &str| {
        start(
            dir,
            &[
                "build",
                "--locked",
                "--mirror",
                &mirror.url,
                "--cache-dir",
                cache_arg,
                "-o",
                out,
            ],
        )
    };
    let runs: Vec<(&str, std::process::Child)> = vec![
        ("build a into out1", build(a_dir, &out1)),
        ("build a into out2", build(a_dir, &out2)),
        ("build b into out3", build(b_dir, &out3)),
        (
            "fetch a",
            start(
                a_dir,
                &["fetch", "--mirror", &mirror.url, "--cache-dir", cache_arg],
            ),
        ),
        (
            "lock --update a",
            start(a_dir, &["lock", "--update", "--cache-dir", cache_arg]),
        ),
    ];
    let outputs: Vec<(&str, Output)> = runs
        .into_iter()
        .map(|(what, child)| (what, child.wait_with_output().expect("kiln ends")))
        .collect();
    stop.store(true, Ordering::SeqCst);
    let seen = watcher.join().expect("the watcher");
    for (what, output) in &outputs {
        assert!(
            output.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let elapsed = started.elapsed() - prepared;
    for (what, output) in &outputs {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let summary = stderr
            .lines()
            .find(|l| l.starts_with("built ") || l.contains("imagefile.lock"))
            .or_else(|| stderr.lines().last())
            .unwrap_or("");
        let waited = stderr
            .lines()
            .filter(|l| l.starts_with("waiting for another download"))
            .count();
        eprintln!("{what}: {summary} (waited for {waited} downloads of another process)");
    }

    // The same lock, built twice at once: the same bytes.
    assert_eq!(
        std::fs::read_to_string(&a_lock).expect("read the lock"),
        locked_text,
        "`kiln lock --update` changed the lock: the mirror was updated during the test; run it again"
    );
    for file in ["debian-minimal.raw", "debian-minimal.tar"] {
        assert_eq!(
            sha256_of(&Path::new(&out1).join(file)),
            sha256_of(&Path::new(&out2).join(file)),
            "{file} differs between two builds of the same lock at once"
        );
    }
    assert!(Path::new(&out3).join("debian-minimal-less.tar").is_file());

    // Each .deb asked of the mirror exactly once, by whichever process got
    // its lock first; the others waited and found it in the cache.
    let mut asked: BTreeMap<String, usize> = BTreeMap::new();
    for request in mirror.requests() {
        assert!(request.ends_with(" 200"), "{request}");
        let target = request.split(' ').nth(1).expect("a target").to_string();
        *asked
            .entry(target.replace("%2B", "+").replace("%2b", "+"))
            .or_default() += 1;
    }
    let twice: Vec<_> = asked.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "fetched more than once: {twice:?}");
    assert_eq!(
        asked.keys().cloned().collect::<Vec<_>>(),
        debs,
        "every locked .deb of both imagefiles is downloaded once"
    );

    let broken: Vec<_> = seen.iter().filter(|(_, whole)| !**whole).collect();
    assert!(
        broken.is_empty(),
        "blobs visible before they were whole: {broken:?}"
    );
    assert!(
        seen.len() >= debs.len(),
        "the watcher saw {} blobs",
        seen.len()
    );
    assert_eq!(cache_problems(&cache, |_| false), Vec::<String>::new());
    // One snapshot per tree (the two builds of a saved the same one), and
    // no partial copy left.
    let mut snapshots: Vec<String> = std::fs::read_dir(cache.join("snapshots"))
        .expect("the snapshots")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    snapshots.sort();
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    assert!(
        snapshots.iter().all(|name| !name.starts_with('.')),
        "{snapshots:?}"
    );
    assert_eq!(mounts_under(temp.path()), Vec::<String>::new());
    assert_eq!(processes_rooted_in(temp.path()), Vec::<String>::new());
    eprintln!(
        "5 kiln processes at once on one cache ({} .debs, each fetched once) in {:.1} s, after {:.1} s of locking",
        debs.len(),
        elapsed.as_secs_f64(),
        prepared.as_secs_f64()
    );
}
