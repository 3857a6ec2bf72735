//! Editor completion, proven with a real language server: the imagefile
//! schema, found through the `# yaml-language-server: $schema=` line at the
//! top of an imagefile, makes yaml-language-server complete keys and values
//! and show the doc comments on hover, both for the committed schema (by a
//! path relative to the document) and for the `.kiln/` copy `kiln init`
//! writes. `tests/editor/complete.mjs` plays the editor; this module says
//! what the user must be offered.
//!
//! The server comes from `scripts/install-test-deps`, which `scripts/test`
//! runs; `KILN_YAML_LANGUAGE_SERVER` names its binary. Without it these tests
//! fail rather than skip, so a missing server never reads as a pass.

// Clippy's allow-panic-in-tests covers `#[test]` functions only; in this
// module's helpers too, a failed expectation is a failed test.
#![allow(clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::common::{committed_schema, kiln, repo, repo_path, test_cache};

/// What the server answered, by case name: completion labels, or the hover
/// text as a one-element list.
type Answers = BTreeMap<String, Vec<String>>;

const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "base",
    "elements",
    "packages",
    "environment",
    "disk",
    "outputs",
    "source_date_epoch",
];
const BASE_KEYS: &[&str] = &[
    "distro", "release", "arch", "mirror", "keyring", "url", "sha256",
];
const PARTITION_KEYS: &[&str] = &[
    "name",
    "size",
    "type",
    "filesystem",
    "label",
    "mountpoint",
    "options",
];
const DISTROS: &[&str] = &[
    "debian", "ubuntu", "fedora", "centos", "rhel", "opensuse", "image",
];

/// The yaml-language-server binary the test scripts installed.
fn yaml_language_server() -> Result<PathBuf, String> {
    const HOW: &str = "run `scripts/install-test-deps` (or the whole suite with `scripts/test`), \
                       then set KILN_YAML_LANGUAGE_SERVER to \
                       $KILN_TEST_CACHE/npm/node_modules/.bin/yaml-language-server";
    // Without the variable, the place scripts/install-test-deps uses.
    let path = std::env::var_os("KILN_YAML_LANGUAGE_SERVER").map_or_else(
        || test_cache().join("npm/node_modules/.bin/yaml-language-server"),
        PathBuf::from,
    );
    if !path.is_file() {
        return Err(format!(
            "yaml-language-server is not at {} (KILN_YAML_LANGUAGE_SERVER or the test cache): {HOW}",
            path.display()
        ));
    }
    Ok(path)
}

/// Writes a starter imagefile with `kiln init` into a temporary project, and
/// runs the editor script on its own cases and on that imagefile.
fn run_editor_script() -> Result<Answers, String> {
    let server = yaml_language_server()?;

    // A project as `kiln init` leaves it: the imagefile, with the schema
    // copy in `.kiln/` that its first line names.
    let project = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let output = kiln()
        .arg("init")
        .arg(project.path())
        .output()
        .map_err(|e| format!("cannot run kiln: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "kiln init failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let imagefile = project.path().join("imagefile.yaml");

    let output = Command::new("node")
        .arg(repo_path("tests/editor/complete.mjs"))
        .arg(&server)
        .arg(&imagefile)
        .current_dir(repo())
        .output()
        .map_err(|e| {
            format!("cannot run node ({e}); run `scripts/install-test-deps`, which installs it")
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "tests/editor/complete.mjs failed ({}):\n{}\n{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_str(&stdout)
        .map_err(|e| format!("complete.mjs printed no JSON answers ({e}):\n{stdout}"))
}

/// The script's answers, from one run shared by every test in this module:
/// starting the server dominates the cost. A failed run fails every test
/// with its reason, without running again.
fn answers() -> &'static Answers {
    static ANSWERS: OnceLock<Result<Answers, String>> = OnceLock::new();
    match ANSWERS.get_or_init(run_editor_script) {
        Ok(answers) => answers,
        Err(reason) => panic!("{reason}"),
    }
}

/// The answer to one case; the script must have run it.
fn answer(case: &str) -> &'static [String] {
    answers()
        .get(case)
        .unwrap_or_else(|| panic!("complete.mjs gave no answer for case `{case}`"))
}

/// Asserts that completion at `case` offers every one of `expected`.
#[track_caller]
fn assert_offers(case: &str, expected: &[&str]) {
    let labels = answer(case);
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|want| !labels.iter().any(|label| label == want))
        .collect();
    assert!(
        missing.is_empty(),
        "completion at `{case}` does not offer {missing:?}; it offered {labels:?}"
    );
}

/// The hover text of `case`, with markdown escapes (`\``, `\[`) undone.
fn hover(case: &str) -> String {
    let answer = answer(case);
    assert_eq!(answer.len(), 1, "no hover at `{case}`: {answer:?}");
    answer[0].replace('\\', "")
}

/// The first line of a property's description in the committed schema: the
/// first line of its doc comment.
fn first_line_of_description(pointer: &str) -> String {
    let schema = committed_schema();
    let description = schema
        .pointer(pointer)
        .and_then(|property| property.get("description"))
        .and_then(|d| d.as_str())
        .unwrap_or_else(|| panic!("the schema has no description at {pointer}"));
    description.lines().next().unwrap_or_default().to_string()
}

#[test]
fn top_level_keys_are_completed() {
    assert_offers("top-level", TOP_LEVEL_KEYS);
    let rest: Vec<&str> = TOP_LEVEL_KEYS
        .iter()
        .copied()
        .filter(|k| *k != "name")
        .collect();
    assert_offers("top-level-after-name", &rest);
}

#[test]
fn base_keys_are_completed() {
    assert_offers("base-keys", BASE_KEYS);
    let rest: Vec<&str> = BASE_KEYS
        .iter()
        .copied()
        .filter(|k| *k != "distro")
        .collect();
    assert_offers("base-keys-after-distro", &rest);
}

#[test]
fn partition_keys_are_completed() {
    assert_offers("partition-keys", PARTITION_KEYS);
    let rest: Vec<&str> = PARTITION_KEYS
        .iter()
        .copied()
        .filter(|k| *k != "name")
        .collect();
    assert_offers("partition-keys-after-name", &rest);
}

#[test]
fn values_are_completed() {
    assert_offers("distro-value", DISTROS);
    assert_offers("arch-value", &["amd64", "arm64"]);
    assert_offers("table-value", &["gpt", "mbr"]);
    assert_offers("filesystem-value", &["ext4", "xfs", "vfat", "swap", "none"]);
    assert_offers(
        "partition-type-value",
        &[
            "linux",
            "esp",
            "bios-boot",
            "swap",
            "xbootldr",
            "home",
            "srv",
            "var",
            "tmp",
            "lvm",
            "raid",
        ],
    );
    assert_offers(
        "outputs-item",
        &["raw", "qcow2", "tar", "vhd", "vhdx", "vmdk", "squashfs"],
    );
}

#[test]
fn hover_shows_the_doc_comment_from_the_schema_beside_the_document() {
    for (case, pointer) in [
        ("hover-source-date-epoch", "/properties/source_date_epoch"),
        ("hover-mirror", "/properties/base/properties/mirror"),
    ] {
        let text = hover(case);
        let doc = first_line_of_description(pointer);
        assert!(
            text.contains(&doc),
            "hover at `{case}` lacks {doc:?}:\n{text}"
        );
        // The cases sit in tests/editor/ and name `../../schema/...`: the
        // server resolved that against the document, not its working
        // directory (the repository root).
        assert!(
            text.contains("/schema/imagefile.schema.json)"),
            "hover at `{case}` does not come from the committed schema:\n{text}"
        );
    }
}

#[test]
fn a_modeline_naming_a_missing_schema_completes_nothing() {
    // The control: without the schema, none of kiln's keys appear, so the
    // answers above come from the schema the modeline names.
    let labels = answer("control-missing-schema");
    let found: Vec<&str> = TOP_LEVEL_KEYS
        .iter()
        .copied()
        .filter(|key| labels.iter().any(|label| label == key))
        .collect();
    assert!(
        found.is_empty(),
        "kiln keys offered without a schema: {found:?}"
    );
}

#[test]
fn a_starter_imagefile_completes_through_its_kiln_schema_copy() {
    // `kiln init` writes name, base, elements, packages and outputs; the
    // server offers only what is left.
    assert_offers(
        "init-top-level",
        &["disk", "environment", "source_date_epoch"],
    );
    assert_offers("init-distro-value", DISTROS);
    let text = hover("init-hover-name");
    assert!(
        text.contains("/.kiln/imagefile.schema.json)"),
        "hover in the starter does not come from its .kiln/ schema copy:\n{text}"
    );
}
