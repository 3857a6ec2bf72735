//! A full disk (issue 19): the cache, then the output directory, on a
//! tmpfs too small for them. Each failure must say which directory ran
//! out of space (and, where kiln can know it beforehand, how much was
//! needed and how much is free), exit 2 with a `help:` line, leave no
//! partial work (no temporary file in the cache, no work directory, no
//! image that looks finished) and a cache that verifies; and once space
//! is freed, the next fetch and build succeed.

use std::path::Path;
use std::process::Output;

use crate::common::{
    SmallFilesystem, cache_blobs, cache_problems, kiln, mirror_from_shared_cache, mounts_under,
    processes_rooted_in, repo_path, shared_cache,
};

/// Runs `kiln <args>` in `dir`.
fn run(dir: &Path, args: &[&str]) -> Output {
    kiln()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("kiln runs")
}

/// Asserts that `output` is a failure of the host (exit 2) whose message
/// holds each of `expected` and a `help:` line holding `help`; returns
/// its stderr.
fn assert_out_of_space(output: &Output, expected: &[&str], help: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    // The diagnostic is wrapped to the terminal's width.
    let flat = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = flat.replace("│ ", "");
    for text in expected {
        assert!(flat.contains(text), "no `{text}` in:\n{stderr}");
    }
    let help_at = flat
        .find("help:")
        .unwrap_or_else(|| panic!("no help: in {stderr}"));
    assert!(
        flat[help_at..].contains(help),
        "no `{help}` in the help:\n{stderr}"
    );
    stderr
}

/// Asserts that a failed build into `out` left nothing but its log: no
/// work directory, no output, no mount, no process.
fn assert_no_partial_work(out: &Path) {
    let mut left: Vec<String> = std::fs::read_dir(out)
        .expect("the output directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["debian-minimal.build.log"],
        "left in {}",
        out.display()
    );
    assert_eq!(mounts_under(out), Vec::<String>::new());
    assert_eq!(processes_rooted_in(out), Vec::<String>::new());
}

#[test]
fn a_full_cache_or_output_directory_fails_clearly_and_cleanly() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "mounting a tmpfs and kiln build need root: run the suite as root (scripts/test)"
    );
    let started = std::time::Instant::now();
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path();
    std::fs::copy(
        repo_path("manifests/debian-minimal.yaml"),
        dir.join("imagefile.yaml"),
    )
    .expect("copy");
    let shared = shared_cache();
    let shared = shared.to_str().expect("UTF-8");
    for command in ["lock", "fetch"] {
        let output = run(dir, &[command, "--cache-dir", shared]);
        assert!(output.status.success(), "{command}: {output:?}");
    }
    let lock = kiln::lock::read(&dir.join("imagefile.lock")).expect("the lock");
    let debs_bytes: u64 = lock.packages.iter().map(|p| p.size).sum();
    let count = lock.packages.len();
    let mirror_dir = dir.join("mirror");
    mirror_from_shared_cache(&[&dir.join("imagefile.lock")], &mirror_dir);
    let mirror = format!("file://{}", mirror_dir.display());

    // The cache, too small for the locked .debs: the build is refused
    // before a byte is written, with the sizes.
    let cache_fs = SmallFilesystem::mount("16m");
    let cache = cache_fs.path.join("cache");
    let cache_arg = cache.to_str().expect("UTF-8");
    assert!(debs_bytes > 16 << 20, "the .debs fill 16 MiB");
    let unused_out = dir.join("out-never-made");
    let unused_out_arg = unused_out.to_str().expect("UTF-8");
    let output = run(
        dir,
        &[
            "build",
            "--locked",
            "--mirror",
            &mirror,
            "--cache-dir",
            cache_arg,
            "-o",
            unused_out_arg,
        ],
    );
    assert_out_of_space(
        &output,
        &[
            &format!("not enough space on {cache_arg} for {count} download(s)"),
            &format!(
                "they need {:.1} MiB",
                debs_bytes as f64 / f64::from(1u32 << 20)
            ),
            "free (of 16.0 MiB)",
        ],
        "--cache-dir",
    );
    assert_eq!(cache_blobs(&cache), Vec::<std::path::PathBuf>::new());
    assert_eq!(cache_problems(&cache, |_| false), Vec::<String>::new());
    assert!(
        !unused_out.exists(),
        "the build stopped before making its work"
    );

    // The cache filling up halfway (here in `kiln fetch`, which a build
    // runs the same way): empty files where the blobs go look
    // present to the space check, are found damaged when read, and are
    // fetched again until the disk is full.
    for package in &lock.packages {
        let digest = kiln::cache::Digest::new(&package.sha256, package.size).expect("digest");
        let blob = kiln::cache::Cache::open(&cache)
            .expect("open")
            .blob_path(&digest);
        std::fs::create_dir_all(blob.parent().expect("parent")).expect("mkdir");
        std::fs::write(&blob, b"").expect("a damaged blob");
    }
    let fetch = ["fetch", "--mirror", &mirror, "--cache-dir", cache_arg];
    let output = run(dir, &fetch);
    assert_out_of_space(
        &output,
        &[
            &format!("no space left on {cache_arg} ("),
            "free of 16.0 MiB), the cache",
            "No space left on device",
        ],
        "--cache-dir",
    );
    // Nothing half-written: every blob but the empty ones not reached
    // yet is whole, and no temporary file is left.
    let empty = |blob: &Path| std::fs::metadata(blob).is_ok_and(|m| m.len() == 0);
    assert_eq!(cache_problems(&cache, empty), Vec::<String>::new());
    assert!(
        cache_blobs(&cache).iter().any(|blob| !empty(blob)),
        "some blobs were fetched before the disk was full"
    );

    // The output directory, too small for the tree (made on disk: in
    // memory it would not be there): the build stops where the disk
    // filled, names the directory, and removes its work.
    let out_fs = SmallFilesystem::mount("40m");
    let out = out_fs.path.join("out");
    let out_arg = out.to_str().expect("UTF-8");
    let build = ["build", "--locked", "--cache-dir", shared, "-o", out_arg];
    let on_disk: Vec<&str> = build.iter().copied().chain(["--no-tmpfs"]).collect();
    let output = run(dir, &on_disk);
    assert_out_of_space(
        &output,
        &[
            &format!("no space left on {out_arg} ("),
            "free of 40.0 MiB), the output directory",
            "No space left on device",
        ],
        "-o DIR",
    );
    assert_no_partial_work(&out);

    // Room for the tree but not for the image and the tarball: refused
    // before they are written, with what they need and what is free.
    out_fs.resize("256m");
    let output = run(dir, &build);
    assert_out_of_space(
        &output,
        &[
            &format!(
                "not enough space on {out_arg} for debian-minimal.raw, debian-minimal.tar: needs at least"
            ),
            "free (of 256.0 MiB)",
        ],
        "-o DIR",
    );
    assert_no_partial_work(&out);

    // Space freed: the build fetches what the cache lacks and succeeds,
    // and the cache verifies whole.
    cache_fs.resize("256m");
    out_fs.resize("1g");
    let output = run(
        dir,
        &[
            "build",
            "--locked",
            "--mirror",
            &mirror,
            "--cache-dir",
            cache_arg,
            "-o",
            out_arg,
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in ["debian-minimal.raw", "debian-minimal.tar"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    assert_eq!(cache_problems(&cache, |_| false), Vec::<String>::new());
    assert_eq!(cache_blobs(&cache).len(), count);
    assert_eq!(mounts_under(&out), Vec::<String>::new());
    eprintln!(
        "full disk: 2 cache cases, 2 output cases and the build after, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
