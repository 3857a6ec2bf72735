//! The user guide, checked as a reader would use it: the first-image
//! chapter's commands run as written, and every imagefile snippet in the
//! documentation is one `kiln validate` accepts.
//!
//! Two conventions in the Markdown make this possible, both invisible when
//! the page is rendered on a code forge or by mdBook:
//!
//! - **Runnable blocks.** In `docs/user-guide/first-image.md`, a fenced
//!   ` ```sh ` block on the line right after the HTML comment
//!   `<!-- first-image: run -->` is part of the chapter's script. The
//!   blocks run in order, as one bash script (`set -euo pipefail`, so a
//!   `cd` in one block holds for the next), in a fresh temporary
//!   directory, with `kiln` on `PATH` and `KILN_CACHE_DIR` pointing at the
//!   suite's shared cache. Blocks without the comment (such as the
//!   interactive `kiln boot`) are not run.
//! - **Shown output.** A ` ```text ` block right after the comment
//!   `<!-- first-image: output -->` is output the chapter shows: each of
//!   its lines must be in what the script printed. Other output blocks
//!   (with times, paths or sizes that vary) are illustrations.
//! - **YAML snippets.** A fence whose info string is exactly `yaml` holds
//!   an imagefile or a part of one; YAML that is not an imagefile names
//!   its kind after `yaml` (` ```yaml element.yaml `,
//!   ` ```yaml package-installs `, ` ```yaml cloud-config `), which
//!   renderers ignore for highlighting and this test skips. A whole
//!   imagefile (with `name` and `base`) is validated as it is; a fragment
//!   gets the missing `name` and `base` of a minimal imagefile first.
//!   (`schema.rs` checks the same fences against the JSON schema.)

use std::path::{Path, PathBuf};

use crate::common::{files_with_extension, kiln, repo, repo_path, shared_cache};

/// The marker before a runnable block of the first-image chapter.
const RUN_MARKER: &str = "<!-- first-image: run -->";
/// The marker before output the first-image chapter shows as kiln prints it.
const OUTPUT_MARKER: &str = "<!-- first-image: output -->";

/// The lines of the first-image chapter's blocks marked [`OUTPUT_MARKER`].
fn first_image_shown_output() -> Vec<String> {
    let markdown = std::fs::read_to_string(repo_path("docs/user-guide/first-image.md"))
        .expect("read first-image.md");
    fences(&markdown)
        .into_iter()
        .filter(|fence| fence.previous == OUTPUT_MARKER)
        .inspect(|fence| {
            assert_eq!(
                fence.info, "text",
                "first-image.md:{}: shown output is a ```text fence",
                fence.line
            );
        })
        .flat_map(|fence| {
            fence
                .body
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A fenced block of a Markdown file: its info string, the line its
/// opening fence is on (1-based), the line before it, and its body.
struct Fence {
    info: String,
    line: usize,
    previous: String,
    body: String,
}

fn fences(markdown: &str) -> Vec<Fence> {
    let mut found = Vec::new();
    let mut open: Option<Fence> = None;
    let mut previous = String::new();
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let is_fence = trimmed.starts_with("```");
        match open.take() {
            None if is_fence => {
                open = Some(Fence {
                    info: trimmed.trim_start_matches('`').trim().to_string(),
                    line: index + 1,
                    previous: previous.trim().to_string(),
                    body: String::new(),
                });
            }
            None => {}
            Some(fence) if is_fence && trimmed.trim_start_matches('`').trim().is_empty() => {
                found.push(fence);
            }
            Some(mut fence) => {
                fence.body.push_str(line);
                fence.body.push('\n');
                open = Some(fence);
            }
        }
        previous = line.to_string();
    }
    assert!(open.is_none(), "a fence is never closed");
    found
}

/// The first-image chapter's runnable blocks, as one bash script that
/// says which block it is in before running each.
fn first_image_script() -> (String, Vec<String>) {
    let path = repo_path("docs/user-guide/first-image.md");
    let markdown = std::fs::read_to_string(&path).expect("read first-image.md");
    let mut script = String::from("set -euo pipefail\n");
    let mut blocks = Vec::new();
    for fence in fences(&markdown) {
        if fence.previous != RUN_MARKER {
            continue;
        }
        assert_eq!(
            fence.info, "sh",
            "first-image.md:{}: a runnable block is a ```sh fence",
            fence.line
        );
        script.push_str(&format!(
            "printf '\\n### first-image.md:{} ###\\n' >&2\n{}",
            fence.line, fence.body
        ));
        blocks.push(fence.body);
    }
    (script, blocks)
}

#[test]
fn first_image_chapter_has_every_step_marked_runnable() {
    let (_, blocks) = first_image_script();
    let all = blocks.concat();
    for step in [
        "kiln init",
        "cat > imagefile.yaml",
        "kiln validate",
        "kiln lock",
        "kiln build",
        "kiln test",
    ] {
        assert!(
            all.contains(step),
            "first-image.md runs `{step}` in a block marked `{RUN_MARKER}`"
        );
    }
    assert!(
        !all.contains("kiln boot"),
        "`kiln boot` is interactive: leave its block unmarked"
    );
}

#[test]
fn first_image_chapter_runs_as_written() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the first-image chapter builds and boots an image, which needs root: run the suite as root (scripts/test)"
    );
    let (script, _) = first_image_script();
    let _guest = crate::common::one_boot_at_a_time();
    let kiln_dir = Path::new(env!("CARGO_BIN_EXE_kiln"))
        .parent()
        .expect("the kiln binary is in a directory")
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(kiln_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let reader = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(reader.path())
        .env("PATH", path)
        .env("KILN_CACHE_DIR", shared_cache())
        .env("NO_COLOR", "1")
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "the first-image chapter failed ({}); the last `###` line names the block:\n\
         --- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let image = reader.path().join("web-server/out/web-server.qcow2");
    assert!(image.is_file(), "the chapter built {}", image.display());
    // What the chapter shows kiln printing, kiln printed.
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = first_image_shown_output();
    assert!(
        !shown.is_empty(),
        "first-image.md marks the output it shows with `{OUTPUT_MARKER}`"
    );
    for line in shown {
        assert!(
            printed.contains(&line),
            "first-image.md shows `{line}`, which kiln did not print:\n{printed}"
        );
    }
}

/// The Markdown files whose YAML snippets readers copy.
fn documentation() -> Vec<PathBuf> {
    let mut files = files_with_extension(&repo_path("docs"), &[".md"]);
    files.push(repo().join("README.md"));
    files.extend(
        files_with_extension(&repo_path("elements"), &["README.md"])
            .into_iter()
            .filter(|path| path.file_name().is_some_and(|name| name == "README.md")),
    );
    files
}

/// `body` as a whole imagefile: as it is when it has `name` and `base`,
/// else with a minimal imagefile's `name` and `base` put before it.
fn as_imagefile(body: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_saphyr::from_str(body).map_err(|e| format!("not YAML: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err(
            "a ```yaml fence holds an imagefile (a mapping); other YAML is \
                    tagged with its kind, such as ```yaml element.yaml"
                .to_string(),
        );
    };
    let mut text = String::new();
    if !object.contains_key("name") {
        text.push_str("name: doc-example\n");
    }
    if !object.contains_key("base") {
        text.push_str("base: {distro: debian, release: bookworm}\n");
    }
    text.push_str(body);
    Ok(text)
}

#[test]
fn every_imagefile_snippet_in_the_docs_validates() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in documentation() {
        let markdown = std::fs::read_to_string(&path).expect("read");
        let shown = path
            .strip_prefix(repo())
            .unwrap_or(&path)
            .display()
            .to_string();
        for fence in fences(&markdown) {
            if fence.info != "yaml" {
                continue;
            }
            let imagefile = match as_imagefile(&fence.body) {
                Ok(text) => text,
                Err(problem) => {
                    failures.push(format!("{shown}:{}: {problem}", fence.line));
                    continue;
                }
            };
            let file = scratch.path().join(format!("snippet-{checked}.yaml"));
            std::fs::write(&file, &imagefile).expect("write snippet");
            let output = kiln()
                .arg("validate")
                .arg(&file)
                .output()
                .expect("kiln runs");
            if !output.status.success() {
                failures.push(format!(
                    "{shown}:{}: `kiln validate` refuses this snippet:\n{}{}",
                    fence.line,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            checked += 1;
        }
    }
    assert!(checked > 10, "the docs hold imagefile snippets ({checked})");
    assert!(
        failures.is_empty(),
        "{} snippet(s) fail (tag YAML that is not an imagefile with its kind, \
         such as ```yaml element.yaml):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_guide_links_every_page_from_its_summary() {
    let guide = repo_path("docs/user-guide");
    let summary = std::fs::read_to_string(guide.join("SUMMARY.md")).expect("SUMMARY.md");
    for page in files_with_extension(&guide, &[".md"]) {
        let name = page.file_name().expect("name").to_string_lossy();
        if name == "SUMMARY.md" {
            continue;
        }
        assert!(
            summary.contains(&format!("]({name})")),
            "docs/user-guide/SUMMARY.md links {name}"
        );
    }
    for link in summary
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
    {
        assert!(
            guide.join(link).is_file(),
            "SUMMARY.md links {link}, which does not exist"
        );
    }
}

#[test]
fn relative_links_in_the_docs_point_at_files() {
    let mut broken = Vec::new();
    for path in documentation() {
        let markdown = std::fs::read_to_string(&path).expect("read");
        let dir = path.parent().expect("in a directory");
        for rest in markdown.split("](").skip(1) {
            let Some(target) = rest.split(')').next() else {
                continue;
            };
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() || file.contains("://") || file.contains(' ') {
                continue;
            }
            if !dir.join(file).exists() {
                broken.push(format!("{}: ({target})", path.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
}
