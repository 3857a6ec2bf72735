//! Download progress (issue 23): `kiln fetch` into an empty cache shows
//! one bar on a terminal (run under `script`, which gives it a
//! pseudo-terminal) with the bytes, the rate and the packages done; shows
//! nothing when everything is cached or with `--quiet`; and writes plain
//! lines, never a bar, when stderr is a pipe. The archive is a signed
//! one of this test's own, served from 127.0.0.1: four packages of 1 MiB
//! of incompressible bytes each, so the download is small but real.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::apt_repo::{Fault, Server, Suite, TestKey, deb_of_files, serve, write_archive};
use crate::common::kiln;

/// The packages of the archive: `apt` (which every Debian lock has) and
/// three more.
const PACKAGES: [&str; 4] = ["apt", "blob-a", "blob-b", "blob-c"];

/// Bytes of each package's payload.
const PAYLOAD_BYTES: usize = 1 << 20;

/// `bytes` that no compressor shrinks, the same on every run.
fn incompressible(seed: &str, bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes);
    let mut counter = 0u64;
    while out.len() < bytes {
        let mut hasher = Sha256::new();
        hasher.update(seed.as_bytes());
        hasher.update(counter.to_le_bytes());
        out.extend_from_slice(&hasher.finalize());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// The archive (suite `bookworm`, as the imagefile's release) served from
/// 127.0.0.1, and its key.
fn archive(dir: &Path) -> (Server, TestKey) {
    let key = TestKey::new(dir, "progress");
    let debs_dir = dir.join("debs");
    std::fs::create_dir_all(&debs_dir).expect("mkdir");
    let debs: Vec<PathBuf> = PACKAGES
        .iter()
        .map(|name| {
            let payload = dir.join(format!("{name}.data"));
            std::fs::write(&payload, incompressible(name, PAYLOAD_BYTES)).expect("write");
            let inside = format!("/usr/share/{name}/data");
            deb_of_files(
                &debs_dir,
                name,
                "1.0",
                &[(inside.as_str(), payload.as_path())],
            )
        })
        .collect();
    let root = dir.join("archive");
    write_archive(
        &root,
        &[Suite {
            name: "bookworm".to_string(),
            codename: "bookworm".to_string(),
            origin: "Debian".to_string(),
            label: "Debian".to_string(),
            components: vec![("main".to_string(), debs)],
            architectures: vec!["amd64".to_string()],
            ..Suite::default()
        }],
        &key,
    );
    (serve(&root), key)
}

/// `kiln <args>` in `dir` with stderr on a pseudo-terminal (util-linux's
/// `script`) of 40 rows and 120 columns, returning its exit code and all
/// it wrote there.
fn on_a_terminal(dir: &Path, args: &[&str]) -> (i32, String) {
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_kiln"))
        .chain(args.iter().copied())
        .map(|arg| format!("'{}'", arg.replace('\'', r"'\''")))
        .collect();
    let output = Command::new("script")
        .current_dir(dir)
        .env("TERM", "xterm-256color")
        .env("NO_COLOR", "1")
        .env_remove("KILN_QUIET")
        .args([
            "--quiet",
            "--return",
            "--command",
            // Without a terminal of its own, script's has no size.
            &format!("stty rows 40 cols 120 && {}", quoted.join(" ")),
            "/dev/null",
        ])
        .output()
        .expect("script (util-linux) runs: scripts/install-test-deps installs it");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// `kiln <args>` in `dir` with stderr a pipe.
fn in_a_pipe(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = kiln()
        .current_dir(dir)
        .env_remove("KILN_QUIET")
        .args(args)
        .output()
        .expect("kiln runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn fetching_shows_one_bar_on_a_terminal_plain_lines_in_a_pipe_and_nothing_when_cached() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path();
    let (mirror, key) = archive(dir);
    let project = dir.join("project");
    std::fs::create_dir_all(&project).expect("mkdir");
    std::fs::copy(&key.keyring, project.join("progress.gpg")).expect("copy the key");
    std::fs::write(
        project.join("imagefile.yaml"),
        format!(
            "name: progress\n\
             base:\n  distro: debian\n  release: bookworm\n  mirror: {}\n  keyring: progress.gpg\n  suites: []\n\
             packages: [blob-a, blob-b, blob-c]\n",
            mirror.url
        ),
    )
    .expect("write the imagefile");
    let cache = |name: &str| dir.join(name).to_str().expect("UTF-8").to_string();

    // kiln lock downloads the archive's index: one file, summed up in a
    // pipe (fast, so without a periodic line), never drawn as a bar.
    let (code, stderr) = in_a_pipe(&project, &["lock", "--cache-dir", &cache("lock-cache")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("(1 file) in "), "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );
    let lock = kiln::lock::read(&project.join("imagefile.lock")).expect("the lock");
    let mut names: Vec<&str> = lock.packages.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, PACKAGES, "the lock holds the archive's packages");
    let total_bytes: u64 = lock.packages.iter().map(|p| p.size).sum();
    let total_mib = format!("{:.1} MiB", total_bytes as f64 / f64::from(1u32 << 20));

    // On a terminal, into an empty cache: the bar, with bytes in MiB, the
    // rate, the packages done of 4; then the summary.
    let fresh = cache("terminal-cache");
    let (code, screen) = on_a_terminal(&project, &["fetch", "--cache-dir", &fresh]);
    assert_eq!(code, 0, "{screen}");
    let frames: Vec<&str> = screen
        .split(['\r', '\n'])
        .filter(|frame| frame.contains("downloading "))
        .collect();
    assert!(!frames.is_empty(), "no bar was drawn:\n{screen:?}");
    let last = frames.last().expect("a frame");
    for part in [" MiB/", "/4 packages", "iB/s, ", "s left", "[="] {
        assert!(last.contains(part), "the bar lacks {part:?}: {last:?}");
    }
    assert!(
        last.contains("4/4 packages"),
        "the last frame is complete: {last:?}"
    );
    assert!(
        screen.contains(&format!("downloaded {total_mib} (4 packages) in ")),
        "{screen:?}"
    );
    assert!(
        screen.contains("0 already there, 4 downloaded"),
        "{screen:?}"
    );

    // Again, with everything cached: no bar, no line about downloading.
    let (code, screen) = on_a_terminal(&project, &["fetch", "--cache-dir", &fresh]);
    assert_eq!(code, 0, "{screen}");
    assert!(!screen.contains("downloading"), "{screen:?}");
    assert!(
        !screen.contains(&format!("downloaded {total_mib}")),
        "{screen:?}"
    );
    assert!(
        screen.contains("4 already there, 0 downloaded"),
        "{screen:?}"
    );

    // --quiet, into an empty cache: the summary only.
    let (code, screen) = on_a_terminal(&project, &["fetch", "-q", "--cache-dir", &cache("quiet")]);
    assert_eq!(code, 0, "{screen}");
    assert!(!screen.contains("downloading"), "{screen:?}");
    assert!(
        !screen.contains(&format!("downloaded {total_mib}")),
        "{screen:?}"
    );
    assert!(
        screen.contains("0 already there, 4 downloaded"),
        "{screen:?}"
    );

    // In a pipe, into an empty cache: no bar, and no periodic line before
    // 5 s (none at all for this download, which takes less), then the
    // summary.
    let started = Instant::now();
    let (code, stderr) = in_a_pipe(&project, &["fetch", "--cache-dir", &cache("pipe-cache")]);
    let took = started.elapsed();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );
    let lines = stderr
        .lines()
        .filter(|l| l.starts_with("downloading"))
        .count();
    let most = usize::try_from(took.as_secs() / 5).expect("a count");
    assert!(lines <= most, "{took:?}: {stderr}");
    assert!(
        stderr.contains(&format!("downloaded {total_mib} (4 packages) in ")),
        "{stderr}"
    );

    // From a slow mirror (each package over 7 s, all four at once): one
    // plain line after 5 s, when more than a tenth has come, and none
    // more (the next would be due at 10 s), then the summary.
    for _ in PACKAGES {
        mirror.inject(".deb", &[Fault::Slow(Duration::from_secs(7))]);
    }
    let started = Instant::now();
    let (code, stderr) = in_a_pipe(&project, &["fetch", "--cache-dir", &cache("slow-cache")]);
    let took = started.elapsed();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(mirror.pending_faults(), 0, "{:?}", mirror.requests());
    assert!(took < Duration::from_secs(10), "{took:?}: {stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("downloading"))
        .collect();
    assert_eq!(lines.len(), 1, "{took:?}: {stderr}");
    let line = lines[0];
    let of_total = format!(" of {total_mib}, ");
    assert!(
        line.starts_with("downloading: ")
            && line.contains(&of_total)
            && line.contains(" of 4 packages, ")
            && line.ends_with("iB/s"),
        "{line:?}"
    );
    assert!(
        stderr.contains(&format!("downloaded {total_mib} (4 packages) in ")),
        "{stderr}"
    );

    // Every package came from the mirror once per empty cache.
    let debs = mirror
        .requests()
        .iter()
        .filter(|request| request.contains(".deb"))
        .count();
    assert_eq!(debs, 4 * PACKAGES.len(), "{:?}", mirror.requests());
}
