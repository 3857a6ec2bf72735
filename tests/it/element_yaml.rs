//! Element parameters (`element.yaml`) as a user meets them in `kiln
//! validate`: a manifest whose `with:` fits the fixture element
//! `fixture-params` (in `tests/fixtures/elements/params/`) is valid; each
//! kind of mistake is a diagnostic pointing at the `with:` key or value
//! (snapshotted); a broken `element.yaml` is a diagnostic pointing into
//! that file; and the fixtures follow `schema/element.schema.json`.

use std::path::Path;

use serde_json::Value;

use crate::common::{files_with_extension, kiln, repo, repo_path};

const HEAD: &str = "name: demo\nbase: {distro: debian, release: bookworm}\nelements:\n";

/// Runs `kiln validate imagefile.yaml --elements-path DIR` on `elements`
/// (the body of the manifest's `elements:` list) in a temporary directory
/// and returns the exit code and stderr, with the repository's path
/// replaced by `[REPO]`.
fn validate(elements: &str, dir: &str) -> (Option<i32>, String) {
    let temp = tempfile::tempdir().expect("temporary directory");
    std::fs::write(
        temp.path().join("imagefile.yaml"),
        format!("{HEAD}{elements}"),
    )
    .expect("write");
    let output = kiln()
        .current_dir(temp.path())
        .args(["validate", "imagefile.yaml", "--elements-path"])
        .arg(repo_path(dir))
        .output()
        .expect("kiln runs");
    let stderr =
        String::from_utf8_lossy(&output.stderr).replace(&repo().display().to_string(), "[REPO]");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code(), stderr)
}

fn rejected(elements: &str, dir: &str) -> String {
    let (code, stderr) = validate(elements, dir);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("help:"), "{stderr}");
    stderr
}

const PARAMS: &str = "tests/fixtures/elements/params";
const BROKEN: &str = "tests/fixtures/elements/params-broken";

#[test]
fn a_manifest_that_fits_the_parameters_is_valid() {
    let (code, stderr) = validate(
        "  - name: fixture-params\n    with:\n      username: alice\n      uid: 1001\n      passwordless_sudo: true\n      shell: zsh\n      ssh_key: ssh-ed25519 AAAA alice@example\n",
        PARAMS,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("imagefile.yaml: valid"), "{stderr}");
    assert!(stderr.contains("2 element(s)"), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn defaults_make_only_required_parameters_necessary() {
    let (code, stderr) = validate("  - name: fixture-params\n    with: {ssh_key: k}\n", PARAMS);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn an_element_without_declared_parameters_takes_any_with() {
    let (code, stderr) = validate(
        "  - name: fixture-params-untyped\n    with: {WHATEVER: 1}\n",
        PARAMS,
    );
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn an_unknown_parameter_suggests_the_closest() {
    let stderr = rejected(
        "  - name: fixture-params\n    with:\n      ssh_key: k\n      usrname: bob\n",
        PARAMS,
    );
    assert!(stderr.contains("did you mean `username`?"), "{stderr}");
    insta::assert_snapshot!("params-unknown", stderr);
}

#[test]
fn a_value_of_the_wrong_type_is_pointed_at() {
    let stderr = rejected(
        "  - name: fixture-params\n    with:\n      ssh_key: k\n      uid: one-thousand\n      passwordless_sudo: yes\n",
        PARAMS,
    );
    insta::assert_snapshot!("params-wrong-type", stderr);
}

#[test]
fn an_enum_value_outside_its_values_is_pointed_at() {
    let stderr = rejected(
        "  - name: fixture-params\n    with: {ssh_key: k, shell: ZSH}\n",
        PARAMS,
    );
    assert!(stderr.contains("did you mean `zsh`?"), "{stderr}");
    insta::assert_snapshot!("params-enum", stderr);
}

#[test]
fn a_missing_required_parameter_points_at_the_element() {
    let stderr = rejected("  - fixture-params\n", PARAMS);
    insta::assert_snapshot!("params-missing-required", stderr);
}

#[test]
fn every_problem_of_a_manifest_is_reported_together() {
    let stderr = rejected(
        "  - name: fixture-params\n    with:\n      usrname: bob\n      uid: 1.5\n      shell: fish\n  - name: fixture-params-lib\n    with: {FIXTURE_PARAMS_LEVEL: high}\n",
        PARAMS,
    );
    assert_eq!(stderr.matches("help:").count(), 5, "{stderr}");
    insta::assert_snapshot!("params-all-together", stderr);
}

#[test]
fn a_broken_element_yaml_is_pointed_at_in_its_file() {
    let stderr = rejected("  - fixture-bad-syntax\n", BROKEN);
    assert!(
        stderr.contains(
            "╭─[[REPO]/tests/fixtures/elements/params-broken/fixture-bad-syntax/element.yaml:4:5]"
        ),
        "{stderr}"
    );
    insta::assert_snapshot!("element-yaml-syntax", stderr);
    let stderr = rejected("  - fixture-bad\n", BROKEN);
    insta::assert_snapshot!("element-yaml-contradictions", stderr);
}

fn element_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_path("schema/element.schema.json"))
        .expect("schema/element.schema.json exists");
    let schema: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    jsonschema::draft7::new(&schema).expect("a valid draft-07 schema")
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read");
    serde_saphyr::from_str::<Option<Value>>(&text)
        .expect("YAML")
        .unwrap_or(Value::Object(serde_json::Map::new()))
}

#[test]
fn fixture_element_yaml_files_follow_the_schema() {
    let validator = element_validator();
    let files = files_with_extension(&repo_path(PARAMS), &["element.yaml"]);
    assert_eq!(files.len(), 3, "{files:?}");
    for path in files {
        let errors: Vec<String> = validator
            .iter_errors(&yaml_file(&path))
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
    // What the schema can see of the broken fixtures, it rejects: a
    // misspelt key, an enum without values.
    for name in ["fixture-bad-syntax", "fixture-bad"] {
        let path = repo_path(BROKEN).join(name).join("element.yaml");
        assert!(
            !validator.is_valid(&yaml_file(&path)),
            "{} should not validate",
            path.display()
        );
    }
}

#[test]
fn elements_show_lists_the_parameters() {
    let output = kiln()
        .args(["elements", "show", "fixture-params", "--elements-path"])
        .arg(repo_path(PARAMS))
        .output()
        .expect("kiln runs");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "  parameter shell (enum of bash, zsh, sh, default `bash`) -> $DIB_DEV_USER_SHELL: The user's login shell.\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("  parameter ssh_key (string, required) -> $DIB_DEV_USER_AUTHORIZED_KEYS"),
        "{stdout}"
    );
    assert!(stdout.contains("  installs: sudo\n"), "{stdout}");
}
