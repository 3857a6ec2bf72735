//! The Zuul roles under `zuul/roles/`, run by a real `ansible-playbook`
//! (ansible-core from PyPI, installed by `scripts/install-test-deps`) on
//! localhost, as a Zuul job's run playbook would run them on its node.
//!
//! Zuul's own `zuul_return` exists only inside Zuul's executor: the tests
//! put a stand-in of the same name on Ansible's module path
//! (`tests/zuul/library/zuul_return.py`) that records the `data` it is
//! given, and check that data as Zuul's image reporter would read it.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{kiln, repo_path, test_cache, tool};

/// ansible-playbook from the virtual environment `scripts/install-test-deps`
/// fills.
fn ansible_playbook() -> PathBuf {
    let program = test_cache().join("ansible-venv/bin/ansible-playbook");
    assert!(
        program.is_file(),
        "{} is missing: run scripts/install-test-deps (scripts/test does)",
        program.display()
    );
    program
}

/// Runs `tests/zuul/<playbook>` on localhost with `vars` as extra
/// variables; what the role returned to Zuul goes to `returned`, one JSON
/// document per `zuul_return` call.
fn run_playbook(
    playbook: &str,
    vars: &serde_json::Value,
    scratch: &Path,
    returned: &Path,
) -> Output {
    let vars_file = scratch.join(format!("{playbook}.vars.json"));
    std::fs::write(&vars_file, vars.to_string()).expect("write the variables");
    std::process::Command::new(ansible_playbook())
        .arg("-i")
        .arg("localhost,")
        .arg(repo_path("tests/zuul").join(playbook))
        .arg("--extra-vars")
        .arg(format!("@{}", vars_file.display()))
        .env("ANSIBLE_ROLES_PATH", repo_path("zuul/roles"))
        .env("ANSIBLE_LIBRARY", repo_path("tests/zuul/library"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", scratch.join("ansible-tmp"))
        .env("ANSIBLE_REMOTE_TEMP", scratch.join("ansible-tmp"))
        .env("KILN_TEST_ZUUL_RETURN", returned)
        .output()
        .expect("ansible-playbook runs")
}

/// What the role returned to Zuul: one document per `zuul_return` call.
fn returned(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON document"))
        .collect()
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The first word of `<tool> <file>`'s output: the file's digest.
fn digest(program: &str, file: &Path) -> String {
    let line = tool(program, &[&file.to_string_lossy()]);
    line.split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

const IMAGEFILE: &str = "\
name: zuul-image
base:
  distro: debian
  release: bookworm
outputs: [qcow2, raw, tar]
";

/// build-kiln-image builds the committed imagefile with `--locked` into
/// the job's `zuul-output/artifacts` and returns every disk image as a
/// `zuul_image` artifact (Zuul's image name, format, url, SHA-256, MD5),
/// the report, the SBOMs and the other outputs as artifacts of their own;
/// an unchanged rebuild is up to date and returns the same; an imagefile
/// that no longer matches its lock fails the job with kiln's words and
/// returns nothing.
#[test]
fn the_build_role_returns_each_disk_image_as_a_zuul_image_artifact() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let project = scratch.path().join("src/example.org/images");
    std::fs::create_dir_all(&project).expect("mkdir");
    std::fs::write(project.join("imagefile.yaml"), IMAGEFILE).expect("write");
    // A cache of the job's own, with incremental builds on (the suite
    // turns them off with KILN_SNAPSHOT_LIMIT=0, and with them the "up to
    // date" check this test needs): the job's node keeps it between runs.
    let cache = scratch.path().join("kiln-cache");
    // The lock is committed beside the imagefile.
    let lock = kiln()
        .current_dir(&project)
        .args(["lock", "--cache-dir"])
        .arg(&cache)
        .output()
        .expect("kiln runs");
    assert!(lock.status.success(), "kiln lock: {}", text(&lock));

    let output_dir = scratch.path().join("zuul-output");
    let vars = serde_json::json!({
        "zuul_work_dir": project,
        "zuul_output_dir": output_dir,
        "kiln_executable": env!("CARGO_BIN_EXE_kiln"),
        "kiln_environment": {"KILN_CACHE_DIR": cache, "KILN_SNAPSHOT_LIMIT": "2G"},
        "kiln_image_name": "debian-bookworm",
    });
    let returned_file = scratch.path().join("returned.jsonl");
    let run = run_playbook("build.yaml", &vars, scratch.path(), &returned_file);
    assert!(
        run.status.success(),
        "the build role failed:\n{}",
        text(&run)
    );

    let calls = returned(&returned_file);
    assert_eq!(calls.len(), 1, "one zuul_return call: {calls:?}");
    let artifacts = calls[0]["zuul"]["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("zuul.artifacts is a list: {}", calls[0]))
        .clone();
    let artifacts_dir = output_dir.join("artifacts");
    let mut images = Vec::new();
    let mut others = Vec::new();
    for artifact in &artifacts {
        let url = artifact["url"].as_str().expect("a url");
        // Relative: Zuul reads it against the build's log url, where the
        // job's logs (zuul-output) are uploaded.
        let file = url
            .strip_prefix("artifacts/")
            .unwrap_or_else(|| panic!("{url} is not under artifacts/"));
        let path = artifacts_dir.join(file);
        assert!(path.is_file(), "{url}: no {}", path.display());
        let metadata = &artifact["metadata"];
        if let Some(sha256) = metadata["sha256"].as_str() {
            assert_eq!(sha256, digest("sha256sum", &path), "{url}: sha256");
        }
        if metadata["type"] == "zuul_image" {
            assert_eq!(metadata["image_name"], "debian-bookworm", "{artifact}");
            assert_eq!(
                metadata["md5sum"].as_str(),
                Some(digest("md5sum", &path).as_str()),
                "{url}: md5sum"
            );
            assert_eq!(
                file,
                format!(
                    "zuul-image.{}",
                    metadata["format"].as_str().expect("a format")
                ),
                "{artifact}"
            );
            images.push(metadata["format"].as_str().expect("format").to_string());
        } else {
            others.push(format!(
                "{} {}",
                metadata["type"].as_str().expect("a type"),
                file
            ));
        }
    }
    images.sort();
    others.sort();
    assert_eq!(images, ["qcow2", "raw"], "{artifacts:?}");
    assert_eq!(
        others,
        [
            "kiln_document zuul-image.cdx.json",
            "kiln_document zuul-image.provenance.json",
            "kiln_document zuul-image.spdx.json",
            "kiln_output zuul-image.tar",
            "kiln_report zuul-image.report.json",
        ],
        "{artifacts:?}"
    );

    // Unchanged: kiln says it is up to date, the task is not `changed`, and
    // the same artifacts are returned.
    let again = run_playbook("build.yaml", &vars, scratch.path(), &returned_file);
    let again_text = text(&again);
    assert!(
        again.status.success(),
        "the second run failed:\n{again_text}"
    );
    assert!(
        again_text.contains("changed=0"),
        "an up-to-date build changes nothing:\n{again_text}"
    );
    let calls = returned(&returned_file);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1], calls[0], "an unchanged rebuild returns the same");

    // The imagefile changed but not its lock: `--locked` refuses, the job
    // fails with kiln's diagnostic, and nothing more is returned.
    std::fs::write(
        project.join("imagefile.yaml"),
        format!("{IMAGEFILE}packages: [less]\n"),
    )
    .expect("write");
    let stale = run_playbook("build.yaml", &vars, scratch.path(), &returned_file);
    let stale_text = text(&stale);
    assert!(
        !stale.status.success(),
        "a stale lock passed:\n{stale_text}"
    );
    assert!(
        stale_text.contains("imagefile.lock") && stale_text.contains("help:"),
        "the job's output shows kiln's diagnostic:\n{stale_text}"
    );
    assert_eq!(returned(&returned_file).len(), 2, "nothing returned");
}

/// What validate-kiln-image did with an image handed to it as Zuul hands
/// a dependent job the build job's artifacts: the playbook's output, and
/// `kiln test`'s report as the role keeps it with the job's logs.
pub(crate) struct Validated {
    pub output: Output,
    pub report: String,
    pub serial_log: String,
}

/// Runs validate-kiln-image on localhost with `zuul.artifacts` naming
/// `image` (served over HTTP from its directory) as a `zuul_image` of
/// `format` with the SHA-256 `sha256`, as the build job returned it.
pub(crate) fn validate_with_role(image: &Path, format: &str, sha256: &str) -> Validated {
    let dir = image.parent().expect("the image's directory");
    let file = image
        .file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned();
    let server = crate::apt_repo::serve(dir);
    let scratch = tempfile::tempdir().expect("tempdir");
    let output_dir = scratch.path().join("zuul-output");
    let vars = serde_json::json!({
        "zuul": {"artifacts": [
            {"name": "kiln build report", "url": format!("{}/report.json", server.url),
             "metadata": {"type": "kiln_report"}},
            {"name": format!("{file} image"), "url": format!("{}/{file}", server.url),
             "metadata": {"type": "zuul_image", "image_name": "debian-bookworm",
                          "format": format, "sha256": sha256}},
        ]},
        "zuul_output_dir": output_dir,
        "kiln_test_dir": scratch.path().join("kiln-test"),
        "kiln_executable": env!("CARGO_BIN_EXE_kiln"),
    });
    let returned_file = scratch.path().join("returned.jsonl");
    let output = run_playbook("validate.yaml", &vars, scratch.path(), &returned_file);
    let logs = output_dir.join("logs");
    let validated = Validated {
        report: std::fs::read_to_string(logs.join("kiln-test.txt")).unwrap_or_default(),
        serial_log: std::fs::read_to_string(logs.join("kiln-test-serial.log")).unwrap_or_default(),
        output,
    };
    assert!(
        returned(&returned_file).is_empty(),
        "validation returns nothing"
    );
    if validated.output.status.success() {
        assert_eq!(
            digest("sha256sum", &scratch.path().join("kiln-test").join(&file)),
            sha256,
            "the image booted is the one the build job returned"
        );
    }
    validated
}

/// validate-kiln-image refuses a download whose SHA-256 is not the one the
/// build job returned, before anything boots. (Its boot of a good image is
/// the end of `dib_cli::nodepools_command_line_…`: the image Nodepool's
/// command line built, handed to the role as a build job would.)
#[test]
fn the_validate_role_refuses_an_image_whose_sha256_differs() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let image = scratch.path().join("debian-bookworm.qcow2");
    std::fs::write(&image, b"not the image the build job returned").expect("write");
    let validated = validate_with_role(&image, "qcow2", &"0".repeat(64));
    let text = text(&validated.output);
    assert!(
        !validated.output.status.success(),
        "a wrong SHA-256 passed:\n{text}"
    );
    assert!(
        text.contains("checksum"),
        "the download's checksum is named:\n{text}"
    );
    assert!(
        validated.report.is_empty(),
        "kiln test ran after a failed download: {}",
        validated.report
    );
}
