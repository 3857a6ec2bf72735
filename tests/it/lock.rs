//! `kiln lock` and `kiln fetch` against the real Debian mirror the host's
//! apt sources name (these tests need the network, as CI has it), and
//! against local `file://` copies of it for tampering: every input is
//! verified, a damaged one is named, and offline work uses only the cache.
//! A copy served from 127.0.0.1 that misbehaves on cue (`apt_repo::Fault`)
//! checks what a failing mirror does to `kiln fetch`.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::common::{kiln, repo_path, shared_cache};

/// Copies the example `manifests/NAME.yaml` into `dir`.
fn example(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::copy(repo_path(&format!("manifests/{name}.yaml")), &path).expect("copy example");
    path
}

/// Runs kiln with `args` in `dir`; returns (exit code, stderr with
/// miette's line wrapping and box drawing undone, so that messages can be
/// searched whole).
fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = kiln()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let flat = stderr
        .replace(['│', '×'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (output.status.code().unwrap_or(-1), flat)
}

/// Reads a lock, after checking its text against the committed lock
/// schema.
fn read_lock(path: &Path) -> kiln::lock::Lock {
    let text = std::fs::read_to_string(path).expect("read lock");
    let value: serde_json::Value = serde_saphyr::from_str(&text).expect("the lock is YAML");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("schema/lock.schema.json")).expect("schema"),
    )
    .expect("JSON");
    let validator = jsonschema::draft7::new(&schema).expect("a draft-07 schema");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{} does not match schema/lock.schema.json: {errors:?}",
        path.display()
    );
    kiln::lock::read(path).expect("a valid lock")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn locking_the_examples_is_exact_and_repeatable() {
    let temp = tempfile::tempdir().expect("tempdir");
    let cache = shared_cache();
    let cache = cache.to_str().expect("UTF-8 path");
    for name in ["debian-minimal", "debian-cloud", "debian-state"] {
        let manifest = example(temp.path(), name);
        let (code, stderr) = run(
            temp.path(),
            &["lock", &format!("{name}.yaml"), "--cache-dir", cache],
        );
        assert_eq!(code, 0, "{stderr}");
        let lock_path = temp.path().join(format!("{name}.lock"));
        let first = std::fs::read(&lock_path).expect("lock written");
        let lock = read_lock(&lock_path);

        // The lock pins what the issue asks for.
        assert_eq!(lock.base.distro, "debian");
        assert_eq!(lock.base.release, "bookworm");
        assert_eq!(
            lock.manifest,
            kiln::lock::sha256_tag(&std::fs::read(&manifest).expect("read"))
        );
        let suites: Vec<&str> = lock.repositories.iter().map(|r| r.suite.as_str()).collect();
        assert_eq!(
            suites,
            ["bookworm", "bookworm-updates", "bookworm-security"],
            "the release, its updates and its security suite by default"
        );
        for repository in &lock.repositories {
            assert_eq!(repository.in_release.sha256.len(), 64);
            assert_eq!(repository.signed_by.len(), 40, "{repository:?}");
            assert!(!repository.indexes.is_empty());
        }
        assert!(
            lock.repositories[2].url.ends_with("-security"),
            "the security suite is at its own archive, as the host's apt sources say"
        );
        for package in &lock.packages {
            assert!(
                lock.repository_of(package).is_some(),
                "{} names a locked repository",
                package.name
            );
        }
        assert!(
            lock.source_date_epoch > 1_600_000_000,
            "defaults to the InRelease's Date"
        );
        let names: Vec<&str> = lock.packages.iter().map(|p| p.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "packages are sorted by name");
        for essential in ["apt", "base-files", "bash", "coreutils", "dpkg", "libc6"] {
            assert!(names.contains(&essential), "{name} lacks {essential}");
        }
        if name == "debian-cloud" {
            assert!(names.contains(&"openssh-server") && names.contains(&"sudo"));
            assert!(!names.contains(&"xauth"), "Recommends are not followed");
        }

        // Unchanged manifest: nothing to do, and the file is untouched.
        let (code, stderr) = run(
            temp.path(),
            &["lock", &format!("{name}.yaml"), "--cache-dir", cache],
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains("is up to date"), "{stderr}");
        // Resolving again against the same mirror gives the same bytes.
        let (code, stderr) = run(
            temp.path(),
            &[
                "lock",
                "--update",
                &format!("{name}.yaml"),
                "--cache-dir",
                cache,
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            std::fs::read(&lock_path).expect("read"),
            first,
            "{name}: locks differ"
        );
        for change in ["Upgrading", "Adding", "Removing", "changed ("] {
            assert!(!stderr.contains(change), "nothing changed: {stderr}");
        }
        assert!(stderr.contains("unchanged"), "{stderr}");
    }
}

#[test]
fn lock_update_says_what_changed_and_dry_run_writes_nothing() {
    let temp = tempfile::tempdir().expect("tempdir");
    let lock = minimal_lock(temp.path());
    let cache = shared_cache();
    let cache = cache.to_str().expect("UTF-8 path");
    let lock_path = temp.path().join("debian-minimal.lock");
    let bash = lock
        .packages
        .iter()
        .find(|p| p.name == "bash")
        .expect("bash is locked");
    let sed = lock
        .packages
        .iter()
        .find(|p| p.name == "sed")
        .expect("sed is locked");

    // As if the lock were older: bash at an older version, sed missing,
    // a package the resolution no longer needs.
    let text = std::fs::read_to_string(&lock_path).expect("lock");
    let older: String = text
        .lines()
        .filter(|line| !line.contains("{name: \"sed\""))
        .map(|line| {
            let line = line.replace(
                &format!("name: \"bash\", version: \"{}\"", bash.version),
                "name: \"bash\", version: \"5.0-1\"",
            );
            if line.contains("{name: \"coreutils\"") {
                format!(
                    "  - {{name: \"cowsay\", version: \"3.03+dfsg2-8\", arch: \"all\", size: 1, sha256: \"{}\", repository: \"debian/bookworm\", filename: \"pool/main/c/cowsay/cowsay_3.03+dfsg2-8_all.deb\"}}\n{line}\n",
                    "0".repeat(64)
                )
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(&lock_path, &older).expect("write");

    let expected = [
        format!(
            "Upgrading bash 5.0-1 -> {} ({})",
            bash.version, bash.repository
        ),
        "Removing cowsay 3.03+dfsg2-8".to_string(),
        format!("Adding sed {} ({})", sed.version, sed.repository),
        "3 packages changed (1 upgraded, 1 added, 1 removed)".to_string(),
    ];
    let update = [
        "lock",
        "--update",
        "debian-minimal.yaml",
        "--cache-dir",
        cache,
    ];
    let (code, stderr) = run(temp.path(), &[&update[..], &["--dry-run"]].concat());
    assert_eq!(code, 0, "{stderr}");
    for line in &expected {
        assert!(stderr.contains(line.as_str()), "{line}: {stderr}");
    }
    assert!(
        stderr.contains("would write debian-minimal.lock"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&lock_path).expect("lock"),
        older,
        "--dry-run writes nothing"
    );

    let (code, stderr) = run(temp.path(), &update);
    assert_eq!(code, 0, "{stderr}");
    for line in &expected {
        assert!(stderr.contains(line.as_str()), "{line}: {stderr}");
    }
    assert_eq!(
        read_lock(&lock_path),
        lock,
        "the lock is back to the mirror's"
    );
}

#[test]
fn locked_packages_match_the_mirror() {
    let temp = tempfile::tempdir().expect("tempdir");
    let lock = locked_example(temp.path(), "debian-minimal");
    // A sample spread over the alphabet, fetched by curl, not by kiln.
    let step = (lock.packages.len() / 5).max(1);
    for package in lock.packages.iter().step_by(step).take(5) {
        let url = lock.package_url(package, None);
        let output = std::process::Command::new("curl")
            .args(["--fail", "--silent", "--show-error", "--location", &url])
            .output()
            .expect("curl runs (scripts/install-test-deps installs it)");
        assert!(
            output.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.stdout.len() as u64, package.size, "{url}: size");
        assert_eq!(sha256_hex(&output.stdout), package.sha256, "{url}: sha256");
    }
}

/// The example `manifests/<name>.yaml` copied into `dir` and locked
/// there against the real mirror, with the shared cache.
fn locked_example(dir: &Path, name: &str) -> kiln::lock::Lock {
    example(dir, name);
    let cache = shared_cache();
    let imagefile = format!("{name}.yaml");
    let (code, stderr) = run(
        dir,
        &[
            "lock",
            &imagefile,
            "--cache-dir",
            cache.to_str().expect("UTF-8"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    read_lock(&dir.join(format!("{name}.lock")))
}

/// A lock for `debian-minimal` in `dir`, resolved against the real mirror.
fn minimal_lock(dir: &Path) -> kiln::lock::Lock {
    locked_example(dir, "debian-minimal")
}

#[test]
fn fetch_fills_the_cache_repairs_it_and_works_offline() {
    let temp = tempfile::tempdir().expect("tempdir");
    let lock = minimal_lock(temp.path());
    let cache = temp.path().join("cache");
    let cache_arg = cache.to_str().expect("UTF-8").to_string();

    // Offline with an empty cache: fails, naming what is missing.
    let (code, stderr) = run(
        temp.path(),
        &[
            "fetch",
            "--offline",
            "debian-minimal.yaml",
            "--cache-dir",
            &cache_arg,
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("not in the cache and kiln is offline"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&lock.packages[0].name),
        "names a missing package: {stderr}"
    );

    // Online: everything arrives, verified.
    let (code, stderr) = run(
        temp.path(),
        &["fetch", "debian-minimal.yaml", "--cache-dir", &cache_arg],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("{} downloaded", lock.packages.len())),
        "{stderr}"
    );

    // A damaged blob is noticed and fetched again.
    let victim = &lock.packages[lock.packages.len() / 2];
    let blob = cache
        .join("blobs/sha256")
        .join(&victim.sha256[..2])
        .join(&victim.sha256);
    let mut bytes = std::fs::read(&blob).expect("blob in the cache");
    bytes[100] ^= 0xff;
    std::fs::write(&blob, &bytes).expect("damage the blob");
    let (code, stderr) = run(
        temp.path(),
        &["fetch", "debian-minimal.yaml", "--cache-dir", &cache_arg],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("the cached {} {}", victim.name, victim.version)),
        "{stderr}"
    );
    assert!(
        stderr.contains("was corrupt; fetching it again"),
        "{stderr}"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&blob).expect("blob")),
        victim.sha256
    );

    // With the mirror unreachable (a closed loopback port) a full cache is
    // all that is needed, offline or not.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let lock_path = temp.path().join("debian-minimal.lock");
    let text = std::fs::read_to_string(&lock_path).expect("lock");
    let unreachable = text.replace(
        lock.base_url(),
        &format!("http://127.0.0.1:{closed_port}/debian"),
    );
    std::fs::write(&lock_path, unreachable).expect("point the lock at nothing");
    for args in [&["fetch", "--offline"][..], &["fetch"][..]] {
        let mut args = args.to_vec();
        args.extend(["debian-minimal.yaml", "--cache-dir", &cache_arg]);
        let (code, stderr) = run(temp.path(), &args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{} already there", lock.packages.len())),
            "{stderr}"
        );
    }
}

/// A `file://` copy of the parts of the mirror a lock of debian-minimal
/// reads: the InRelease and the xz index (by hash and by name).
fn local_mirror(dir: &Path, lock: &kiln::lock::Lock) -> PathBuf {
    let mirror = dir.join("mirror");
    let dists = mirror.join("dists/bookworm");
    let index_dir = dists.join("main/binary-amd64");
    std::fs::create_dir_all(index_dir.join("by-hash/SHA256")).expect("mkdir");
    let fetch = |url: &str| -> Vec<u8> {
        let output = std::process::Command::new("curl")
            .args(["--fail", "--silent", "--show-error", url])
            .output()
            .expect("curl runs");
        assert!(output.status.success(), "curl {url}");
        output.stdout
    };
    let in_release = fetch(&format!("{}/dists/bookworm/InRelease", lock.base_url()));
    std::fs::write(dists.join("InRelease"), &in_release).expect("write");
    let text = String::from_utf8_lossy(&in_release).into_owned();
    let xz_hash = text
        .lines()
        .filter(|l| l.ends_with(" main/binary-amd64/Packages.xz"))
        .filter_map(|l| l.split_whitespace().next())
        .find(|h| h.len() == 64)
        .expect("the InRelease lists Packages.xz")
        .to_string();
    let xz = fetch(&format!(
        "{}/dists/bookworm/main/binary-amd64/by-hash/SHA256/{xz_hash}",
        lock.base_url()
    ));
    std::fs::write(index_dir.join("by-hash/SHA256").join(&xz_hash), &xz).expect("write");
    std::fs::write(index_dir.join("Packages.xz"), &xz).expect("write");
    mirror
}

fn manifest_with_mirror(dir: &Path, mirror: &Path) -> PathBuf {
    let path = dir.join("imagefile.yaml");
    std::fs::write(
        &path,
        format!(
            "name: local\nbase:\n  distro: debian\n  release: bookworm\n  suites: []\n  mirror: file://{}\n",
            mirror.display()
        ),
    )
    .expect("write manifest");
    path
}

#[test]
fn tampered_inputs_are_refused_by_name() {
    let temp = tempfile::tempdir().expect("tempdir");
    let lock = minimal_lock(temp.path());
    let mirror = local_mirror(temp.path(), &lock);
    manifest_with_mirror(temp.path(), &mirror);
    let cache = temp.path().join("cache");
    let cache_arg = cache.to_str().expect("UTF-8").to_string();

    // The untouched local mirror (the release alone) locks to the same
    // packages, at the release's versions where the lock took an update.
    let (code, stderr) = run(temp.path(), &["lock", "--cache-dir", &cache_arg]);
    assert_eq!(code, 0, "{stderr}");
    let local = read_lock(&temp.path().join("imagefile.lock"));
    let names = |lock: &kiln::lock::Lock| -> Vec<String> {
        lock.packages.iter().map(|p| p.name.clone()).collect()
    };
    assert_eq!(names(&local), names(&lock));
    for (local, remote) in local.packages.iter().zip(&lock.packages) {
        assert_eq!(local.repository, "debian/bookworm");
        if remote.repository == "debian/bookworm" {
            assert_eq!(local, remote);
        }
    }

    // A lock edited by hand: `--locked` resolves the lock's own pinned
    // indexes again (from the cache, offline) and names every difference.
    // The lock as written passes that check: the build goes on to fetch
    // the packages, which `kiln lock` never downloads and this mirror
    // does not hold.
    let lock_path = temp.path().join("imagefile.lock");
    let written = std::fs::read_to_string(&lock_path).expect("read lock");
    let build = ["build", "--locked", "--offline", "--cache-dir", &cache_arg];
    let (code, stderr) = run(temp.path(), &build);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("cannot fetch"), "{stderr}");
    assert!(!stderr.contains("pinned ind"), "{stderr}");
    let mut edited = local.clone();
    let removed = edited.packages.remove(0);
    let changed = edited.packages[0].clone();
    let forged = "0".repeat(64);
    edited.packages[0].sha256.clone_from(&forged);
    edited.packages.push(kiln::lock::LockedPackage {
        name: "zz-kiln-extra".into(),
        ..changed.clone()
    });
    kiln::lock::write(&lock_path, &edited).expect("write lock");
    let (code, stderr) = run(temp.path(), &build);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "imagefile.lock is not what its pinned indexes give".to_string(),
        format!(
            "`{}` {} is missing: the pinned indexes resolve it, the lock has no entry",
            removed.name, removed.version
        ),
        format!(
            "`{}`: sha256 is {forged} in the lock, {} in the pinned index",
            changed.name, changed.sha256
        ),
        format!("`zz-kiln-extra` {} is an extra entry", changed.version),
        "help: the lock was changed by hand".to_string(),
    ] {
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }
    // A lock of a newer kiln's format: named as such, by build and fetch,
    // and not overwritten in the older format.
    let format = kiln::lock::LOCK_FORMAT_VERSION;
    let newer = written.replacen(
        &format!("version: {format}\n"),
        &format!("version: {}\nsomething_new: true\n", format + 1),
        1,
    );
    std::fs::write(&lock_path, &newer).expect("write lock");
    for args in [
        &build[..],
        &["build", "--cache-dir", &cache_arg],
        &["fetch", "--cache-dir", &cache_arg],
    ] {
        let (code, stderr) = run(temp.path(), args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "imagefile.lock was written by a newer kiln (lockfile format {}); this kiln reads up to format {format}: upgrade kiln",
                format + 1
            )),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("help: install the kiln that wrote the lock"),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_to_string(&lock_path).expect("read"), newer);
    std::fs::write(&lock_path, &written).expect("restore the lock");

    // A changed byte in the signed text: the signature no longer verifies.
    let in_release_path = mirror.join("dists/bookworm/InRelease");
    let original = std::fs::read_to_string(&in_release_path).expect("read");
    std::fs::write(
        &in_release_path,
        original.replacen("Origin: Debian", "Origin: Debiam", 1),
    )
    .expect("write");
    let (code, stderr) = run(
        temp.path(),
        &["lock", "--update", "--cache-dir", &cache_arg],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("does not verify against the keyring"),
        "{stderr}"
    );
    assert!(
        stderr.contains("dists/bookworm/InRelease"),
        "names the file: {stderr}"
    );
    std::fs::write(&in_release_path, &original).expect("restore");

    // A damaged index, with an empty cache so it must be read: its hash is
    // not the one the InRelease signs.
    let fresh_cache = temp.path().join("cache2");
    let fresh_arg = fresh_cache.to_str().expect("UTF-8").to_string();
    for entry in std::fs::read_dir(mirror.join("dists/bookworm/main/binary-amd64/by-hash/SHA256"))
        .expect("dir")
    {
        let path = entry.expect("entry").path();
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&path, bytes).expect("write");
    }
    let (code, stderr) = run(
        temp.path(),
        &["lock", "--update", "--cache-dir", &fresh_arg],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("by-hash/SHA256/"),
        "names the index: {stderr}"
    );
    assert!(
        stderr.contains("SHA-256") || stderr.contains("sha256"),
        "{stderr}"
    );

    // A damaged .deb on the mirror: fetch refuses it, naming package and URL.
    let package = &lock.packages[0];
    let deb = mirror.join(&package.filename);
    std::fs::create_dir_all(deb.parent().expect("parent")).expect("mkdir");
    let url = lock.package_url(package, None);
    let output = std::process::Command::new("curl")
        .args(["--fail", "--silent", &url])
        .output()
        .expect("curl");
    let mut bytes = output.stdout;
    bytes[0] ^= 0xff;
    std::fs::write(&deb, bytes).expect("write");
    let repository = kiln::lock::LockedRepository {
        url: format!("file://{}", mirror.display()),
        ..local.repositories[0].clone()
    };
    let one_package = kiln::lock::Lock {
        packages: vec![kiln::lock::LockedPackage {
            repository: repository.id(),
            ..package.clone()
        }],
        repositories: vec![repository],
        ..local.clone()
    };
    kiln::lock::write(&temp.path().join("imagefile.lock"), &one_package).expect("write lock");
    let (code, stderr) = run(temp.path(), &["fetch", "--cache-dir", &fresh_arg]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot fetch {}", package.name)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&package.filename),
        "names the URL: {stderr}"
    );
    assert!(
        stderr.contains(&package.sha256),
        "says what was expected: {stderr}"
    );
}

#[test]
fn lock_mistakes_point_into_the_manifest() {
    let temp = tempfile::tempdir().expect("tempdir");
    let cache = shared_cache();
    let cache = cache.to_str().expect("UTF-8");
    std::fs::write(
        temp.path().join("imagefile.yaml"),
        "name: typo\nbase:\n  distro: debian\n  release: bookwrom\n",
    )
    .expect("write");
    let (code, stderr) = run(temp.path(), &["lock", "--cache-dir", cache]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the mirror has no release `bookwrom`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("imagefile.yaml:4:12"),
        "points at the release: {stderr}"
    );
    assert!(
        stderr.contains("did you mean `bookworm`? (the mirror has it)")
            && stderr.contains("write `release: bookworm`"),
        "suggests the release the mirror has: {stderr}"
    );
    assert!(
        !temp.path().join("imagefile.lock").exists(),
        "no lock is written"
    );

    std::fs::write(
        temp.path().join("imagefile.yaml"),
        "name: typo\nbase:\n  distro: debian\n  release: bookworm\npackages:\n  - openssh-sever\n  - less\n  - no-such-package-zz\n",
    )
    .expect("write");
    let (code, stderr) = run(temp.path(), &["lock", "--cache-dir", cache]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no package called `openssh-sever`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("openssh-server"),
        "suggests the right name: {stderr}"
    );
    assert!(
        stderr.contains("imagefile.yaml:6:5"),
        "points at the package: {stderr}"
    );
    // Every unknown package at once, not one per `kiln lock`.
    assert!(
        stderr.contains("no package called `no-such-package-zz`")
            && stderr.contains("imagefile.yaml:8:5"),
        "the second unknown package is named and pointed at too: {stderr}"
    );
    assert!(
        !temp.path().join("imagefile.lock").exists(),
        "no lock is written"
    );
}

/// A `file://` archive laid out as Debian's (`pool/main/…`), holding the
/// locked `.deb`s copied from the shared cache: a local mirror.
fn pool_mirror(dir: &Path, lock: &kiln::lock::Lock) -> PathBuf {
    let mirror = dir.join("local-mirror");
    let cache = shared_cache();
    for package in &lock.packages {
        let blob = cache
            .join("blobs/sha256")
            .join(&package.sha256[..2])
            .join(&package.sha256);
        let target = mirror.join(&package.filename);
        std::fs::create_dir_all(target.parent().expect("a directory")).expect("mkdir");
        std::fs::copy(&blob, &target).expect("the shared cache holds every locked .deb");
    }
    mirror
}

#[test]
fn a_lock_whose_mirror_is_unreachable_fetches_from_another_by_hash() {
    let temp = tempfile::tempdir().expect("tempdir");
    let lock = minimal_lock(temp.path());
    let (code, stderr) = run(
        temp.path(),
        &[
            "fetch",
            "debian-minimal.yaml",
            "--cache-dir",
            shared_cache().to_str().expect("UTF-8"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let mirror = pool_mirror(temp.path(), &lock);

    // The lock names a mirror this machine cannot reach.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let lock_path = temp.path().join("debian-minimal.lock");
    let unreachable = format!("http://127.0.0.1:{closed_port}/debian");
    let text = std::fs::read_to_string(&lock_path)
        .expect("lock")
        .replace(lock.base_url(), &unreachable);
    std::fs::write(&lock_path, &text).expect("point the lock at nothing");

    let fresh = temp.path().join("fresh");
    let fresh_arg = fresh.to_str().expect("UTF-8");
    let (code, stderr) = run(
        temp.path(),
        &["fetch", "debian-minimal.yaml", "--cache-dir", fresh_arg],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&unreachable), "names the URL: {stderr}");

    // Another archive of the same distribution: every file checked
    // against the lock, the lock itself untouched.
    let local = format!("file://{}", mirror.display());
    let fetch_from = |mirror: &str, cache: &Path| {
        let cache = cache.to_str().expect("UTF-8");
        run(
            temp.path(),
            &[
                "fetch",
                "debian-minimal.yaml",
                "--mirror",
                mirror,
                "--cache-dir",
                cache,
            ],
        )
    };
    let (code, stderr) = fetch_from(&local, &fresh);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("{} downloaded", lock.packages.len())),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&lock_path).expect("lock"), text);

    // An archive that serves another file under a locked name is refused.
    let victim = &lock.packages[0];
    std::fs::write(mirror.join(&victim.filename), b"not the locked file").expect("write");
    let (code, stderr) = fetch_from(&local, &temp.path().join("other"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot fetch {} {}", victim.name, victim.version)),
        "{stderr}"
    );

    // Not a URL: the user's mistake, with what to give instead.
    let (code, stderr) = fetch_from("deb.example", &fresh);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("is not an http, https or file URL"),
        "{stderr}"
    );
    assert!(stderr.contains("help:"), "{stderr}");
}

/// The text of an index the lock pinned, from the cache `kiln lock` kept it
/// in (checked against the pinned hash on the way).
fn pinned_index(cache: &Path, index: &kiln::lock::LockedFile) -> String {
    let cache = kiln::cache::Cache::open(cache).expect("the cache opens");
    let digest = kiln::cache::Digest::new(&index.sha256, index.size).expect("a digest");
    match cache.get(&digest).expect("the cache reads") {
        kiln::cache::Lookup::Present(path) => std::fs::read_to_string(path).expect("UTF-8"),
        other => panic!("`kiln lock` keeps the indexes it read in the cache: {other:?}"),
    }
}

#[test]
fn debian_cloud_has_no_package_older_than_its_security_suite() {
    let temp = tempfile::tempdir().expect("tempdir");
    let cache = shared_cache();
    let lock = locked_example(temp.path(), "debian-cloud");
    let mut checked = 0;
    let mut from_security = 0;
    for suite in ["bookworm-security", "bookworm-updates"] {
        let repository = lock
            .repositories
            .iter()
            .find(|r| r.suite == suite)
            .unwrap_or_else(|| panic!("debian-cloud reads {suite} by default"));
        let mut index = kiln::apt::index::PackageIndex::new("amd64");
        for file in &repository.indexes {
            index
                .add_packages(suite, &pinned_index(&cache, file))
                .expect("the pinned index reads");
        }
        for package in &lock.packages {
            let Some(newest) = index.newest(&package.name) else {
                continue;
            };
            checked += 1;
            let locked = kiln::apt::version::Version::parse(&package.version).expect("a version");
            assert!(
                locked >= newest.version,
                "{} {} is older than {} in {suite}",
                package.name,
                package.version,
                newest.version
            );
            if locked == newest.version && package.repository == repository.id() {
                from_security += usize::from(suite == "bookworm-security");
            }
        }
    }
    assert!(
        checked > 10,
        "the suites have updates for the image: {checked}"
    );
    assert!(
        from_security > 5,
        "security updates come from the security suite: {from_security}"
    );
}

/// The `.deb`s of a lock, copied out of the shared cache (after `kiln fetch`
/// put them there) under their usual file names.
fn debs_of(dir: &Path, imagefile: &str, lock: &kiln::lock::Lock) -> Vec<(String, PathBuf)> {
    let cache = shared_cache();
    let (code, stderr) = run(
        dir,
        &[
            "fetch",
            imagefile,
            "--cache-dir",
            cache.to_str().expect("UTF-8"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs).expect("mkdir");
    lock.packages
        .iter()
        .map(|package| {
            let blob = cache
                .join("blobs/sha256")
                .join(&package.sha256[..2])
                .join(&package.sha256);
            let file = package.filename.rsplit('/').next().expect("a file name");
            let target = debs.join(file);
            std::fs::copy(&blob, &target).expect("the shared cache holds every locked .deb");
            (package.name.clone(), target)
        })
        .collect()
}

/// The packages kiln's `ubuntu` element names itself (its
/// `package-installs.yaml`); what it shares with `debian` comes through
/// the elements both bring.
fn ubuntu_element_packages() -> Vec<String> {
    let path = repo_path("elements/ubuntu/package-installs.yaml");
    let text = std::fs::read_to_string(&path).expect("package-installs.yaml");
    text.lines()
        .filter_map(|line| line.strip_suffix(':'))
        .filter(|name| !name.starts_with('#') && !name.contains(' '))
        .map(str::to_string)
        .collect()
}

/// A lock, resolved against the real mirror, of a Debian image with the
/// `debian` element and the packages the `ubuntu` element names: the real
/// `.deb`s an Ubuntu-shaped test archive is made of.
fn ubuntu_stand_in_lock(dir: &Path) -> kiln::lock::Lock {
    let packages = ubuntu_element_packages();
    assert!(packages.contains(&"netplan.io".to_string()), "{packages:?}");
    std::fs::write(
        dir.join("stand-in.yaml"),
        format!(
            "name: stand-in\nbase:\n  distro: debian\n  release: bookworm\nelements: [debian]\npackages: [{}]\n",
            packages.join(", ")
        ),
    )
    .expect("write");
    let cache = shared_cache();
    let (code, stderr) = run(
        dir,
        &[
            "lock",
            "stand-in.yaml",
            "--cache-dir",
            cache.to_str().expect("UTF-8"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    read_lock(&dir.join("stand-in.lock"))
}

/// Runs `script` with `sh` in a new mount namespace, chrooted into
/// `root` with the host's `/dev` and a `/proc`: the mounts end with the
/// namespace, so nothing is left mounted whatever happens.
fn in_chroot(root: &Path, script: &str) -> (i32, String) {
    let root = root.to_str().expect("UTF-8");
    let output = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec"])
        .arg(format!(
            "mount --rbind /dev {root}/dev; mount -t proc proc {root}/proc; exec chroot {root} sh -ec \"$0\"",
        ))
        .arg(script)
        .output()
        .expect("unshare runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn an_ubuntu_shaped_archive_locks_from_its_three_suites_and_builds_with_the_ubuntu_element() {
    use crate::apt_repo::{Suite, TestKey, deb_of_files, serve, with_version, write_archive};

    let temp = tempfile::tempdir().expect("tempdir");
    let lock = ubuntu_stand_in_lock(temp.path());
    let debs = debs_of(temp.path(), "stand-in.yaml", &lock);
    let key = TestKey::new(temp.path(), "ubuntu-test");
    // Ubuntu's keyring package, as Ubuntu lays it out, holding the test key.
    let keyring_deb = deb_of_files(
        temp.path(),
        "ubuntu-keyring",
        "2023.11.28.1",
        &[(
            "usr/share/keyrings/ubuntu-archive-keyring.gpg",
            &key.keyring,
        )],
    );
    // Laid out as Ubuntu's archive: one archive with `noble`,
    // `noble-updates` and `noble-security`, components `main` and
    // `universe`, by-hash indexes; one package has a security update.
    let updated = "sed";
    let original = debs
        .iter()
        .find(|(name, _)| name == updated)
        .map(|(_, path)| path.clone())
        .expect("sed is in the essential set");
    let version = lock
        .packages
        .iter()
        .find(|p| p.name == updated)
        .map(|p| format!("{}ubuntu0.1", p.version))
        .expect("sed is locked");
    let security_deb = with_version(&original, &version, temp.path());
    let (universe, mut main): (Vec<_>, Vec<_>) =
        debs.into_iter().partition(|(name, _)| name == "hostname");
    main.push(("ubuntu-keyring".to_string(), keyring_deb));
    let suite = |name: &str, main: Vec<PathBuf>, universe: Vec<PathBuf>| Suite {
        name: name.to_string(),
        codename: "noble".to_string(),
        origin: "Ubuntu".to_string(),
        label: "Ubuntu".to_string(),
        components: vec![
            ("main".to_string(), main),
            ("universe".to_string(), universe),
        ],
        architectures: vec!["amd64".to_string()],
        ..Suite::default()
    };
    let archive = temp.path().join("ubuntu");
    write_archive(
        &archive,
        &[
            suite(
                "noble",
                main.into_iter().map(|(_, p)| p).collect(),
                universe.into_iter().map(|(_, p)| p).collect(),
            ),
            suite("noble-updates", Vec::new(), Vec::new()),
            suite("noble-security", vec![security_deb], Vec::new()),
        ],
        &key,
    );
    let server = serve(&archive);
    let project = temp.path().join("project");
    std::fs::create_dir_all(&project).expect("mkdir");
    let imagefile = |distro: &str, keyring: &str| {
        format!(
            "name: noble\nbase:\n  distro: {distro}\n  release: noble\n  mirror: {}\n{keyring}elements: [ubuntu]\noutputs: [tar]\n",
            server.url
        )
    };
    let cache = temp.path().join("cache");
    let cache_arg = cache.to_str().expect("UTF-8");
    let keyring = format!("  keyring: {}\n", key.keyring.display());

    // Without a keyring (Debian does not package Ubuntu's): a clear error
    // saying which keyring, and no lock.
    std::fs::write(project.join("imagefile.yaml"), imagefile("ubuntu", "")).expect("write");
    let (code, stderr) = run(&project, &["lock", "--cache-dir", cache_arg]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("ubuntu-archive-keyring.gpg does not exist") && stderr.contains("keyring"),
        "{stderr}"
    );
    assert!(!project.join("imagefile.lock").exists());
    // The `ubuntu` element on a Debian base: pointed at, no lock.
    std::fs::write(project.join("imagefile.yaml"), imagefile("debian", "")).expect("write");
    let (code, stderr) = run(&project, &["lock", "--cache-dir", cache_arg]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("element `ubuntu` is for `ubuntu`, and this image's base is `debian`")
            && stderr.contains("help: use `debian` for a `base.distro: debian` image"),
        "{stderr}"
    );
    assert!(!project.join("imagefile.lock").exists());

    std::fs::write(
        project.join("imagefile.yaml"),
        imagefile("ubuntu", &keyring),
    )
    .expect("write");
    let (code, stderr) = run(&project, &["lock", "--cache-dir", cache_arg]);
    assert_eq!(code, 0, "{stderr}");
    let locked = read_lock(&project.join("imagefile.lock"));
    let ids: Vec<String> = locked.repositories.iter().map(|r| r.id()).collect();
    assert_eq!(
        ids,
        [
            "ubuntu/noble",
            "ubuntu/noble-updates",
            "ubuntu/noble-security"
        ]
    );
    for repository in &locked.repositories {
        assert_eq!(repository.components, ["main", "universe"]);
        assert_eq!(repository.url, server.url);
        assert_eq!(repository.signed_by, key.fingerprint);
    }
    let locked_package = |name: &str| {
        locked
            .packages
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} is locked"))
    };
    let sed = locked_package(updated);
    assert_eq!(sed.version, version);
    assert_eq!(sed.repository, "ubuntu/noble-security");
    assert_eq!(
        locked_package("hostname").filename.split('/').nth(1),
        Some("universe")
    );
    for name in [
        "ubuntu-keyring",
        "cloud-init",
        "netplan.io",
        "openssh-server",
    ] {
        assert_eq!(locked_package(name).repository, "ubuntu/noble", "{name}");
    }
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.contains("/by-hash/SHA256/") && r.ends_with(" 200")),
        "indexes are fetched by hash: {:?}",
        server.requests()
    );

    // And it builds: the security update is what the tree holds, and the
    // `ubuntu` element's apt sources, cloud-init user and hostname are
    // there.
    let out = project.join("out");
    let (code, stderr) = run(
        &project,
        &[
            "build",
            "-o",
            out.to_str().expect("UTF-8"),
            "--cache-dir",
            cache_arg,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let tree = temp.path().join("tree");
    std::fs::create_dir_all(&tree).expect("mkdir");
    crate::common::tool(
        "tar",
        &[
            "-xf",
            out.join("noble.tar").to_str().expect("UTF-8"),
            "-C",
            tree.to_str().expect("UTF-8"),
        ],
    );
    let read = |path: &str| {
        std::fs::read_to_string(tree.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let status = read("var/lib/dpkg/status");
    assert!(
        status.contains(&format!("Version: {version}")),
        "sed {version} from noble-security is installed"
    );
    for name in ["cloud-init", "netplan.io", "ubuntu-keyring"] {
        assert!(
            status.contains(&format!("Package: {name}\n")),
            "{name} is installed"
        );
    }
    let url = server.url.trim_end_matches('/');
    assert_eq!(
        read("etc/apt/sources.list.d/ubuntu.sources"),
        format!(
            "# Written by kiln's debootstrap element: the archive the image was locked from.\n\
             Types: deb\nURIs: {url}\nSuites: noble noble-updates\nComponents: main universe\n\
             Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n\n\
             Types: deb\nURIs: {url}\nSuites: noble-security\nComponents: main universe\n\
             Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n"
        )
    );
    let cloud = read("etc/cloud/cloud.cfg.d/95-kiln-cloud-image.cfg");
    assert!(
        cloud.contains("    name: ubuntu\n    gecos: Ubuntu\n"),
        "{cloud}"
    );
    assert_eq!(read("etc/hostname"), "ubuntu\n");
    // The image's own apt trusts and reads those sources: an update from
    // the archive verifies with the keyring package, and nothing is
    // waiting to be upgraded.
    let (code, text) = in_chroot(
        &tree,
        "apt-get update -q && apt-get -s upgrade && apt-cache policy sed",
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Installed: {version}")) && text.contains("noble-security"),
        "{text}"
    );
}

/// A vendor's archive (suite `stable`, component `main`) served from
/// 127.0.0.1, signed by `key`, holding `debs`.
fn vendor_archive(
    dir: &Path,
    name: &str,
    debs: Vec<PathBuf>,
    key: &crate::apt_repo::TestKey,
) -> crate::apt_repo::Server {
    let root = dir.join(name);
    crate::apt_repo::write_archive(
        &root,
        &[crate::apt_repo::Suite {
            name: "stable".to_string(),
            codename: "stable".to_string(),
            origin: name.to_string(),
            label: name.to_string(),
            components: vec![("main".to_string(), debs)],
            architectures: vec!["amd64".to_string()],
            ..crate::apt_repo::Suite::default()
        }],
        key,
    );
    crate::apt_repo::serve(&root)
}

#[test]
fn third_party_repositories_are_verified_pinned_and_their_mistakes_pointed_at() {
    use crate::apt_repo::{TestKey, with_version_compressed};

    let temp = tempfile::tempdir().expect("tempdir");
    let lock = minimal_lock(temp.path());
    let debs = debs_of(temp.path(), "debian-minimal.yaml", &lock);
    let sed_deb = |dir: &str, version: &str, compression: &str| {
        let out = temp.path().join(dir);
        std::fs::create_dir_all(&out).expect("mkdir");
        let original = debs
            .iter()
            .find(|(name, _)| name == "sed")
            .map(|(_, path)| path.clone())
            .expect("sed is in debian-minimal");
        with_version_compressed(&original, version, &out, compression)
    };
    let debian_sed = lock
        .packages
        .iter()
        .find(|p| p.name == "sed")
        .map(|p| p.version.clone())
        .expect("sed is locked");
    let vendor_version = format!("{debian_sed}+vendor1");
    let key = TestKey::new(temp.path(), "vendor");
    let other_key = TestKey::new(temp.path(), "other");
    let vendor = vendor_archive(
        temp.path(),
        "vendor",
        vec![sed_deb("v1", &vendor_version, "xz")],
        &key,
    );
    // The same version rebuilt (another file, same name and version) in a
    // second vendor's archive: compressed otherwise, so its bytes differ
    // whatever the clock says.
    let rebuilt = sed_deb("v2", &vendor_version, "gzip");
    let mirror = vendor_archive(temp.path(), "mirror", vec![rebuilt], &other_key);

    let project = temp.path().join("project");
    std::fs::create_dir_all(project.join("keys")).expect("mkdir");
    std::fs::copy(&key.armored, project.join("keys/vendor.asc")).expect("copy");
    std::fs::copy(&key.keyring, project.join("keys/vendor.gpg")).expect("copy");
    std::fs::copy(&other_key.keyring, project.join("keys/other.gpg")).expect("copy");
    std::fs::write(project.join("keys/not-a-key.asc"), "hello\n").expect("write");
    let cache = temp.path().join("cache");
    let cache_arg = cache.to_str().expect("UTF-8").to_string();
    let lock_with = |repositories: &str| {
        std::fs::write(
            project.join("imagefile.yaml"),
            format!(
                "name: vendor\nbase:\n  distro: debian\n  release: bookworm\n  suites: []\nrepositories:\n{repositories}packages: [sed]\n"
            ),
        )
        .expect("write");
        let _ = std::fs::remove_file(project.join("imagefile.lock"));
        run(&project, &["lock", "--cache-dir", &cache_arg])
    };
    let entry = |url: &str, extra: &str| {
        format!("  - name: vendor\n    url: {url}\n    suites: [stable]\n{extra}")
    };

    // Verified with its key (armored or binary, with or without the
    // fingerprint), the newer version wins at equal priority, and the lock
    // pins the repository and who signed it.
    for extra in [
        "    key: keys/vendor.asc\n".to_string(),
        "    key: keys/vendor.gpg\n".to_string(),
        format!(
            "    key: keys/vendor.gpg\n    fingerprint: \"{}\"\n",
            key.fingerprint
        ),
    ] {
        let (code, stderr) = lock_with(&entry(&vendor.url, &extra));
        assert_eq!(code, 0, "{extra}: {stderr}");
        let locked = read_lock(&project.join("imagefile.lock"));
        let repository = locked
            .repositories
            .iter()
            .find(|r| r.name == "vendor")
            .expect("the vendor's repository is locked");
        assert_eq!(repository.id(), "vendor/stable");
        assert_eq!(repository.signed_by, key.fingerprint);
        assert_eq!(repository.priority, 500);
        let sed = locked
            .packages
            .iter()
            .find(|p| p.name == "sed")
            .expect("sed");
        assert_eq!(
            (sed.version.as_str(), sed.repository.as_str()),
            (vendor_version.as_str(), "vendor/stable")
        );
    }
    // Below Debian's priority, Debian's version wins.
    let (code, stderr) = lock_with(&entry(
        &vendor.url,
        "    key: keys/vendor.asc\n    priority: 100\n",
    ));
    assert_eq!(code, 0, "{stderr}");
    let locked = read_lock(&project.join("imagefile.lock"));
    let sed = locked
        .packages
        .iter()
        .find(|p| p.name == "sed")
        .expect("sed");
    assert_eq!(
        (sed.version.as_str(), sed.repository.as_str()),
        (debian_sed.as_str(), "debian/bookworm")
    );

    // Each mistake: exit 1, the imagefile's line pointed at with a help
    // line, and no lock.
    let cases = [
        (
            entry(&vendor.url, "    key: keys/other.gpg\n"),
            "does not verify",
            "keys/other.gpg",
        ),
        (
            entry(
                &vendor.url,
                "    key: keys/vendor.asc\n    fingerprint: \"0123456789ABCDEF0123456789ABCDEF01234567\"\n",
            ),
            "not by the key",
            "fingerprint",
        ),
        (
            format!(
                "  - name: vendor\n    url: {}\n    suites: [nosuch]\n    key: keys/vendor.asc\n",
                vendor.url
            ),
            "dists/nosuch/InRelease",
            "nosuch",
        ),
        (
            entry(
                &vendor.url,
                "    key: keys/vendor.asc\n    components: [contrib]\n",
            ),
            "lists no `contrib`",
            "contrib",
        ),
        (
            entry(&vendor.url, "    key: keys/missing.asc\n"),
            "does not exist",
            "keys/missing.asc",
        ),
        (
            entry(&vendor.url, "    key: keys/not-a-key.asc\n"),
            "is not an OpenPGP public key",
            "keys/not-a-key.asc",
        ),
        (
            format!(
                "{}  - name: mirror\n    url: {}\n    suites: [stable]\n    key: keys/other.gpg\n",
                entry(&vendor.url, "    key: keys/vendor.asc\n"),
                mirror.url
            ),
            "with different contents",
            "name: mirror",
        ),
    ];
    for (repositories, message, pointed) in cases {
        let (code, stderr) = lock_with(&repositories);
        assert_eq!(code, 1, "{repositories}: {stderr}");
        assert!(stderr.contains(message), "{message}: {stderr}");
        assert!(
            stderr.contains("imagefile.yaml:"),
            "points into the imagefile: {stderr}"
        );
        assert!(stderr.contains(pointed), "shows `{pointed}`: {stderr}");
        assert!(stderr.contains("help:"), "{stderr}");
        assert!(
            !project.join("imagefile.lock").exists(),
            "no lock: {repositories}"
        );
    }
}

/// Against the real mirror's bookworm-backports (`NotAutomatic` and
/// `ButAutomaticUpgrades`): read, it changes nothing until a package is
/// asked for from it, as apt does; asked for, that package and what only
/// backports has come from there.
#[test]
fn backports_are_read_but_only_taken_when_asked_for() {
    let temp = tempfile::tempdir().expect("tempdir");
    let cache = shared_cache();
    let lock_with = |suites: &str, packages: &str| {
        std::fs::write(
            temp.path().join("imagefile.yaml"),
            format!(
                "name: bpo\nbase:\n  distro: debian\n  release: bookworm\n  suites: [{suites}]\npackages: [{packages}]\n"
            ),
        )
        .expect("write");
        let _ = std::fs::remove_file(temp.path().join("imagefile.lock"));
        let (code, stderr) = run(
            temp.path(),
            &["lock", "--cache-dir", cache.to_str().expect("UTF-8")],
        );
        (code, stderr)
    };
    let kernel = |lock: &kiln::lock::Lock| {
        let package = lock
            .packages
            .iter()
            .find(|p| p.name == "linux-image-amd64")
            .expect("the kernel's metapackage is locked");
        (package.version.clone(), package.repository.clone())
    };

    let (code, stderr) = lock_with("updates, security", "linux-image-amd64");
    assert_eq!(code, 0, "{stderr}");
    let without = kernel(&read_lock(&temp.path().join("imagefile.lock")));

    let (code, stderr) = lock_with("updates, security, backports", "linux-image-amd64");
    assert_eq!(code, 0, "{stderr}");
    let lock = read_lock(&temp.path().join("imagefile.lock"));
    let backports = lock
        .repositories
        .iter()
        .find(|r| r.suite == "bookworm-backports")
        .expect("backports is read and pinned");
    assert_eq!(backports.priority, 100);
    assert_eq!(kernel(&lock), without, "read, backports changes nothing");
    assert!(
        lock.packages
            .iter()
            .all(|p| p.repository != "debian/bookworm-backports"),
        "nothing comes from backports unasked"
    );

    let (code, stderr) = lock_with(
        "updates, security, backports",
        "linux-image-amd64/bookworm-backports",
    );
    assert_eq!(code, 0, "{stderr}");
    let lock = read_lock(&temp.path().join("imagefile.lock"));
    let (version, repository) = kernel(&lock);
    assert_eq!(repository, "debian/bookworm-backports");
    let newer = kiln::apt::version::Version::parse(&version).expect("a version")
        > kiln::apt::version::Version::parse(&without.0).expect("a version");
    assert!(newer, "{version} is newer than {}", without.0);
    // The kernel image it depends on exists only in backports.
    let image = lock
        .packages
        .iter()
        .find(|p| p.name.starts_with("linux-image-") && p.name != "linux-image-amd64")
        .expect("a kernel image");
    assert_eq!(
        image.repository, "debian/bookworm-backports",
        "{}",
        image.name
    );

    // Asked for from a suite the image does not read: pointed at.
    let (code, stderr) = lock_with("updates, security", "linux-image-amd64/bookworm-backports");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("is not a suite this image reads") && stderr.contains("help:"),
        "{stderr}"
    );
    assert!(!temp.path().join("imagefile.lock").exists());
}

/// `kiln fetch` with `KILN_HTTP_*` set for a fast test: many retries, a
/// 10 ms backoff, a 4 s read timeout and a progress line every second.
fn fetch_from_failing_mirror(dir: &Path, mirror: &str, cache: &Path) -> (i32, String) {
    let output = kiln()
        .current_dir(dir)
        .args([
            "fetch",
            "debian-minimal.yaml",
            "--mirror",
            mirror,
            "--cache-dir",
        ])
        .arg(cache)
        .env("KILN_HTTP_RETRIES", "8")
        .env("KILN_HTTP_BACKOFF_MS", "10")
        .env("KILN_HTTP_TIMEOUT_SECS", "4")
        .env("KILN_HTTP_PROGRESS_SECS", "1")
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code().unwrap_or(-1), stderr)
}

/// The temporary files a cache holds (a download in progress, or one a
/// failure left behind).
fn cache_temp_files(cache: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(cache.join("tmp"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_type().is_dir())
        .map(walkdir::DirEntry::into_path)
        .collect()
}

/// Issue 19's failing mirror, end to end: transient faults (503 with
/// `Retry-After` in seconds and as a date, 429, 500, a reset, a cut body,
/// a stall) are waited out with the retries logged and the stall reported
/// while it lasts; another file, a redirect loop and a 404 stop `kiln
/// fetch` at once, naming the package, the URL and why, with a `help:`
/// line and nothing kept; the same command succeeds once the mirror
/// serves the file.
#[test]
fn a_failing_mirror_is_retried_refused_named_and_recovered_from() {
    use crate::apt_repo::{Fault, rfc2822_utc, serve};

    let temp = tempfile::tempdir().expect("tempdir");
    let lock = minimal_lock(temp.path());
    let (code, stderr) = run(
        temp.path(),
        &[
            "fetch",
            "debian-minimal.yaml",
            "--cache-dir",
            shared_cache().to_str().expect("UTF-8"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let server = serve(&pool_mirror(temp.path(), &lock));
    let url_of = |package: &kiln::lock::LockedPackage| lock.package_url(package, Some(&server.url));
    assert!(
        lock.packages
            .iter()
            .all(|p| url_of(p).starts_with(&server.url)),
        "every package comes from the test mirror"
    );
    let digest_of = |package: &kiln::lock::LockedPackage| {
        kiln::cache::Digest::new(&package.sha256, package.size).expect("a locked digest")
    };

    // Transient faults on the first requests: every package arrives.
    let in_two_seconds = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    let transient = [
        Fault::Status(503, Some("1".to_string())),
        Fault::Reset,
        Fault::Truncate,
        Fault::Status(429, None),
        Fault::Stall,
        Fault::Status(500, None),
        Fault::Status(503, Some(rfc2822_utc(in_two_seconds).replace("UTC", "GMT"))),
    ];
    server.inject("", &transient);
    let cache = temp.path().join("cache");
    let started = std::time::Instant::now();
    let (code, stderr) = fetch_from_failing_mirror(temp.path(), &server.url, &cache);
    let took = started.elapsed();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("{} downloaded", lock.packages.len())),
        "{stderr}"
    );
    assert_eq!(server.pending_faults(), 0, "every fault was met");
    let requests = server.requests();
    for fault in [
        "503 retry-after 1",
        "reset",
        "truncate",
        "429",
        "stall",
        "500",
        "503 retry-after ",
    ] {
        assert!(
            requests
                .iter()
                .any(|r| r.ends_with(fault) || r.contains(&format!(" {fault}"))),
            "{fault} not served: {requests:?}"
        );
    }
    let retries = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("retrying {}/", server.url)))
        .count();
    assert!(
        retries >= transient.len() - 1,
        "{retries} retries: {stderr}"
    );
    assert!(
        stderr.contains("; the server asked for this wait with Retry-After): HTTP 503"),
        "{stderr}"
    );
    assert!(
        stderr.contains("timed out while reading the body"),
        "the stall ends in a timeout: {stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("downloading {}/", server.url))
                && l.contains(" of ")
                && l.ends_with("nothing received in the last 1 s")),
        "the stalled download is reported while it stalls: {stderr}"
    );
    assert!(cache_temp_files(&cache).is_empty());
    eprintln!(
        "fetch through {} transient faults took {took:?}",
        transient.len()
    );

    // Faults retrying cannot cure: kiln stops at once, names the URL and
    // why, keeps nothing; once the mirror serves the file, it arrives.
    let cache = temp.path().join("cache-2");
    let missing = |cache: &Path| -> Vec<&kiln::lock::LockedPackage> {
        let opened = kiln::cache::Cache::open(cache).expect("the cache opens");
        lock.packages
            .iter()
            .filter(|p| {
                opened.get(&digest_of(p)).expect("the cache reads") == kiln::cache::Lookup::Missing
            })
            .collect()
    };
    let other_deb = temp
        .path()
        .join("local-mirror")
        .join(&lock.packages[0].filename);
    let cases = [
        (
            Fault::OtherFile(other_deb.clone()),
            vec![
                "is not the file expected: it sent",
                "with SHA-256",
                "bytes with SHA-256",
                "sent another file",
            ],
        ),
        (
            Fault::RedirectLoop,
            vec![
                "cannot be downloaded: it redirects in a loop:",
                "redirects lead nowhere",
            ],
        ),
        (
            Fault::Status(404, None),
            vec![
                "was not found (the mirror has no such file)",
                "no longer has this file",
            ],
        ),
    ];
    for (fault, said) in cases {
        std::fs::create_dir_all(&cache).expect("mkdir");
        let victim = *missing(&cache)
            .iter()
            .rev()
            .find(|p| p.filename != lock.packages[0].filename)
            .expect("a package not fetched yet");
        server.inject(&victim.filename, std::slice::from_ref(&fault));
        let before = server.requests().len();
        let (code, stderr) = fetch_from_failing_mirror(temp.path(), &server.url, &cache);
        assert_eq!(code, 2, "{fault:?}: {stderr}");
        let flat = stderr
            .replace(['│', '×'], " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let url = url_of(victim);
        assert!(
            flat.contains(&format!(
                "cannot fetch {} {}: {url}",
                victim.name, victim.version
            )),
            "{fault:?}: names the package and URL: {flat}"
        );
        for part in said {
            assert!(flat.contains(part), "{fault:?}: `{part}` missing: {flat}");
        }
        assert!(flat.contains("help:"), "{flat}");
        if let Fault::OtherFile(other) = &fault {
            let other = std::fs::read(other).expect("read");
            assert!(
                flat.contains(&sha256_hex(&other)),
                "names what came: {flat}"
            );
            assert!(
                flat.contains(&victim.sha256),
                "names what was expected: {flat}"
            );
            assert!(flat.contains(&format!("{} bytes", victim.size)), "{flat}");
        }
        let asked = server.requests()[before..]
            .iter()
            .filter(|r| r.contains(&victim.filename))
            .count();
        assert_eq!(asked, 1, "{fault:?} is not retried");
        assert_eq!(server.pending_faults(), 0);
        let opened = kiln::cache::Cache::open(&cache).expect("the cache opens");
        assert_eq!(
            opened.get(&digest_of(victim)).expect("the cache reads"),
            kiln::cache::Lookup::Missing,
            "{fault:?}: nothing kept for {}",
            victim.name
        );
        assert!(cache_temp_files(&cache).is_empty(), "{fault:?}");
    }

    // The mirror recovered: the same command succeeds, every file checked.
    let (code, stderr) = fetch_from_failing_mirror(temp.path(), &server.url, &cache);
    assert_eq!(code, 0, "{stderr}");
    assert!(missing(&cache).is_empty(), "{stderr}");
    assert!(cache_temp_files(&cache).is_empty());
}

/// `kiln lock` from a copy of the mirror's release and index served from
/// 127.0.0.1 that fails on cue: the InRelease and the index are fetched
/// through transient faults (a 503 with `Retry-After`, a reset, a cut
/// body, a stall, a 429); an index that is another file stops the lock
/// naming its URL, and nothing of it is kept. (That the same command
/// succeeds once the mirror recovers is the first run here, and is shown
/// for `kiln fetch` above.)
#[test]
fn kiln_lock_waits_out_a_failing_mirror_and_refuses_another_index() {
    use crate::apt_repo::{Fault, serve};

    let temp = tempfile::tempdir().expect("tempdir");
    let lock = minimal_lock(temp.path());
    let mirror = local_mirror(temp.path(), &lock);
    let server = serve(&mirror);
    std::fs::write(
        temp.path().join("imagefile.yaml"),
        format!(
            "name: local\nbase:\n  distro: debian\n  release: bookworm\n  suites: []\n  mirror: {}\n",
            server.url
        ),
    )
    .expect("write manifest");
    let index_hash =
        std::fs::read_dir(mirror.join("dists/bookworm/main/binary-amd64/by-hash/SHA256"))
            .expect("by-hash")
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .next()
            .expect("the index by hash");
    let lock_with_faults = |cache: &str| {
        let output = kiln()
            .current_dir(temp.path())
            .args(["lock", "--update", "--cache-dir", cache])
            .env("KILN_HTTP_RETRIES", "6")
            .env("KILN_HTTP_BACKOFF_MS", "10")
            .env("KILN_HTTP_TIMEOUT_SECS", "2")
            .output()
            .expect("kiln runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        let flat = stderr
            .replace(['│', '×'], " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        (output.status.code().unwrap_or(-1), flat)
    };

    server.inject(
        "/InRelease",
        &[Fault::Status(503, Some("1".to_string())), Fault::Reset],
    );
    server.inject(
        &index_hash,
        &[Fault::Truncate, Fault::Stall, Fault::Status(429, None)],
    );
    let cache = temp.path().join("cache");
    let (code, stderr) = lock_with_faults(cache.to_str().expect("UTF-8"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(server.pending_faults(), 0, "{:?}", server.requests());
    assert!(
        stderr.contains(
            "(attempt 2 of 7; the server asked for this wait with Retry-After): HTTP 503"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("timed out while reading the body"),
        "{stderr}"
    );
    let locked = read_lock(&temp.path().join("imagefile.lock"));
    let names = |lock: &kiln::lock::Lock| -> Vec<String> {
        lock.packages.iter().map(|p| p.name.clone()).collect()
    };
    assert_eq!(names(&locked), names(&lock));

    // Another file served as the index: refused at once, named, not kept.
    let other = temp.path().join("other");
    std::fs::write(&other, b"<html>Please log in to use this network</html>\n").expect("write");
    server.inject(&index_hash, &[Fault::OtherFile(other)]);
    let lock_text = std::fs::read_to_string(temp.path().join("imagefile.lock")).expect("lock");
    let fresh = temp.path().join("fresh-cache");
    let (code, stderr) = lock_with_faults(fresh.to_str().expect("UTF-8"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}/dists/bookworm/main/binary-amd64/by-hash/SHA256/{index_hash} is not the file expected: it sent 47 bytes",
            server.url
        )),
        "names the URL and why: {stderr}"
    );
    assert!(
        stderr.contains("help: the mirror (or a proxy or captive portal in between) sent another file than its signed InRelease lists"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(temp.path().join("imagefile.lock")).expect("lock"),
        lock_text,
        "a failed lock leaves the lock as it was"
    );
    let opened = kiln::cache::Cache::open(&fresh).expect("the cache opens");
    let index_size = std::fs::metadata(
        mirror
            .join("dists/bookworm/main/binary-amd64/by-hash/SHA256")
            .join(&index_hash),
    )
    .expect("index")
    .len();
    assert_eq!(
        opened
            .get(&kiln::cache::Digest::new(&index_hash, index_size).expect("digest"))
            .expect("the cache reads"),
        kiln::cache::Lookup::Missing
    );
    assert!(cache_temp_files(&fresh).is_empty());
}
