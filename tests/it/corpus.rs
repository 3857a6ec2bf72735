//! The corpus of broken imagefiles: each must make `kiln validate` exit 1
//! with a diagnostic (checked against a snapshot), never panic, and finish
//! promptly. The committed files live in `tests/corpus/`; inputs too large
//! or too odd to commit (10 MB, 10,000-deep nesting, binary garbage, a
//! directory, a missing file) are made here.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{files_with_extension, kiln, repo_path};

/// Far above the one second a case may take, so only a hang fails here;
/// the real figures are measured with the release binary (see the closing
/// notes and `docs/developer/testing.md`).
const HANG_GUARD: Duration = Duration::from_secs(20);

/// Runs `kiln validate ARG` in `dir` and returns its stderr, after checking
/// the exit code, that stdout is empty and that nothing panicked.
fn rejected(dir: &Path, arg: &str) -> String {
    let started = Instant::now();
    let output = kiln()
        .current_dir(dir)
        .args(["validate", arg])
        .timeout(HANG_GUARD)
        .output()
        .expect("kiln runs");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{arg}: expected exit code 1, got {:?}\n{stderr}",
        output.status
    );
    assert!(
        output.stdout.is_empty(),
        "{arg}: a failed validation prints nothing on stdout"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("internal error"),
        "{arg}: {stderr}"
    );
    assert!(
        stderr.contains("help:"),
        "{arg}: every diagnostic has a help line:\n{stderr}"
    );
    assert!(elapsed < HANG_GUARD, "{arg}: took {elapsed:?}");
    stderr
}

#[test]
fn every_broken_manifest_is_rejected_with_a_diagnostic() {
    let dir = repo_path("tests/corpus");
    let files = files_with_extension(&dir, &[".yaml"]);
    assert!(
        files.len() >= 30,
        "the corpus has at least 30 files, found {}",
        files.len()
    );
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 file name");
        let stderr = rejected(&dir, name);
        // Every diagnostic that points into the file names it with a line
        // and column, like `[name.yaml:3:11]`.
        if stderr.contains("╭─[") {
            assert!(
                stderr.contains(&format!("╭─[{name}:")),
                "{name}: no file:line:column in\n{stderr}"
            );
        }
        let stem = name.trim_end_matches(".yaml");
        insta::assert_snapshot!(format!("corpus-{stem}"), stderr);
    }
}

/// Inputs made on the fly, with the temporary directory filtered out of
/// the snapshots.
#[test]
fn pathological_inputs_are_rejected_quickly() {
    let temp = tempfile::tempdir().expect("temporary directory");
    let dir = temp.path();

    // Ten megabytes of plausible YAML.
    let mut huge =
        String::from("name: huge\nbase: {distro: debian, release: bookworm}\npackages:\n");
    while huge.len() < 10_000_000 {
        huge.push_str("  - some-package-name\n");
    }
    std::fs::write(dir.join("huge.yaml"), &huge).expect("write");

    // Nesting 10,000 deep, in a key kiln does not know and in one it does.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    std::fs::write(dir.join("deep.yaml"), format!("x: {deep}\n")).expect("write");
    std::fs::write(
        dir.join("deep-in-elements.yaml"),
        format!("name: deep\nbase: {{distro: debian, release: bookworm}}\nelements: {deep}\n"),
    )
    .expect("write");

    // Binary garbage from a fixed seed (a linear congruential generator),
    // so the snapshot is stable.
    let mut state: u32 = 0x2545_f491;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (state >> 16) as u8
        })
        .collect();
    std::fs::write(dir.join("garbage.bin"), garbage).expect("write");

    // Text with a NUL byte: valid UTF-8, but not a text file.
    std::fs::write(dir.join("nul.yaml"), "name: demo\0\nbase: {}\n").expect("write");

    std::fs::create_dir(dir.join("a-directory")).expect("mkdir");

    for (case, arg) in [
        ("huge", "huge.yaml"),
        ("deep", "deep.yaml"),
        ("deep-in-elements", "deep-in-elements.yaml"),
        ("garbage", "garbage.bin"),
        ("nul", "nul.yaml"),
        ("directory", "a-directory"),
        ("missing", "no-such-imagefile.yaml"),
    ] {
        let stderr = rejected(dir, arg);
        insta::assert_snapshot!(format!("generated-{case}"), stderr);
    }
}

#[test]
fn a_directory_holding_an_imagefile_is_pointed_at() {
    let temp = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(temp.path().join("project")).expect("mkdir");
    std::fs::write(
        temp.path().join("project/imagefile.yaml"),
        "name: demo\nbase: {distro: debian, release: bookworm}\n",
    )
    .expect("write");
    let stderr = rejected(temp.path(), "project");
    assert!(
        stderr.contains("give the imagefile inside it: `project/imagefile.yaml`"),
        "{stderr}"
    );
}
