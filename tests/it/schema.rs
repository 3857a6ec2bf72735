//! The committed JSON schema: it equals what the code generates, and every
//! imagefile example in `manifests/`, `docs/` and `README.md` validates
//! against it, as an editor using yaml-language-server would check it.
//!
//! In Markdown, a fence tagged exactly `yaml` holds an imagefile or a part
//! of one (top-level keys without `name`/`base`, which are then filled in);
//! YAML that is not an imagefile is tagged with its kind, such as
//! `yaml package-installs`, and is not checked here.

use serde_json::{Value, json};

use crate::common::{committed_schema, files_with_extension, kiln, repo, repo_path};

fn validator() -> jsonschema::Validator {
    jsonschema::draft7::new(&committed_schema())
        .expect("the committed schema is a valid draft-07 schema")
}

/// Errors of `instance` against the schema, one per line.
fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> String {
    validator
        .iter_errors(instance)
        .map(|e| format!("  {} at {}", e, e.instance_path()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn yaml_to_json(text: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

#[test]
fn committed_schema_equals_generated() {
    let output = kiln().arg("schema").output().expect("kiln runs");
    assert_eq!(output.status.code(), Some(0));
    let generated = String::from_utf8(output.stdout).expect("UTF-8");
    let committed = std::fs::read_to_string(repo_path("schema/imagefile.schema.json"))
        .expect("committed schema");
    assert!(
        generated == committed,
        "schema/imagefile.schema.json is stale: run `cargo run -q -- schema > schema/imagefile.schema.json`"
    );
    let schema: Value = serde_json::from_str(&generated).expect("JSON");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
}

#[test]
fn committed_lock_schema_equals_generated() {
    let output = kiln()
        .args(["schema", "--lock"])
        .output()
        .expect("kiln runs");
    assert_eq!(output.status.code(), Some(0));
    let generated = String::from_utf8(output.stdout).expect("UTF-8");
    let committed = std::fs::read_to_string(repo_path("schema/lock.schema.json"))
        .expect("committed lock schema");
    assert!(
        generated == committed,
        "schema/lock.schema.json is stale: run `cargo run -q -- schema --lock > schema/lock.schema.json`"
    );
}

#[test]
fn example_manifests_validate_against_the_schema() {
    let validator = validator();
    let manifests = files_with_extension(&repo_path("manifests"), &[".yaml"]);
    assert!(!manifests.is_empty());
    for path in manifests {
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schema/imagefile.schema.json\n"),
            "{} starts with the schema modeline",
            path.display()
        );
        let errors = schema_errors(&validator, &yaml_to_json(&text));
        assert!(errors.is_empty(), "{}:\n{errors}", path.display());
    }
}

/// The YAML fences tagged exactly `yaml` in a Markdown text, with the line
/// each starts on.
fn yaml_fences(markdown: &str) -> Vec<(usize, String)> {
    let mut fences = Vec::new();
    // The open fence: whether it is a `yaml` one, where it starts, its body.
    let mut open: Option<(bool, usize, String)> = None;
    for (number, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let is_fence = trimmed.starts_with("```");
        match open.take() {
            None if is_fence => {
                let info = trimmed.trim_start_matches('`').trim();
                open = Some((info == "yaml", number + 1, String::new()));
            }
            None => {}
            Some((is_yaml, start, body)) if is_fence && is_yaml => {
                fences.push((start, body));
            }
            Some((is_yaml, start, mut body)) => {
                body.push_str(line);
                body.push('\n');
                open = Some((is_yaml, start, body));
            }
        }
    }
    fences
}

#[test]
fn yaml_examples_in_the_docs_validate_against_the_schema() {
    let validator = validator();
    let mut docs = files_with_extension(&repo_path("docs"), &[".md"]);
    docs.push(repo().join("README.md"));
    let mut checked = 0;
    for path in docs {
        let markdown = std::fs::read_to_string(&path).expect("read");
        for (line, body) in yaml_fences(&markdown) {
            let mut value = yaml_to_json(&body);
            let object = value.as_object_mut().unwrap_or_else(|| {
                panic!(
                    "{}:{line}: a `yaml` fence holds an imagefile (a mapping)",
                    path.display()
                )
            });
            // A fragment shows some keys; complete it into an imagefile.
            object.entry("name").or_insert(json!("doc-example"));
            object
                .entry("base")
                .or_insert(json!({"distro": "debian", "release": "bookworm"}));
            let errors = schema_errors(&validator, &value);
            assert!(
                errors.is_empty(),
                "{}:{line}: example does not validate:\n{errors}\n{body}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "the docs hold YAML examples");
}

#[test]
fn the_schema_rejects_what_kiln_rejects() {
    let validator = validator();
    let base = json!({"distro": "debian", "release": "bookworm"});
    for (case, instance) in [
        (
            "unknown key",
            json!({"name": "x", "base": base, "nmae": "y"}),
        ),
        (
            "decimal size",
            json!({"name": "x", "base": base, "disk": {"table": "gpt", "partitions": [{"name": "r", "size": "2GB", "mountpoint": "/"}]}}),
        ),
        (
            "long label",
            json!({"name": "x", "base": base, "disk": {"label": "a-label-of-twenty-chars"}}),
        ),
        (
            "unknown output",
            json!({"name": "x", "base": base, "outputs": ["qcow3"]}),
        ),
        (
            "table without partitions",
            json!({"name": "x", "base": base, "disk": {"table": "gpt"}}),
        ),
        (
            "image without url",
            json!({"name": "x", "base": {"distro": "image"}}),
        ),
        (
            "debian without release",
            json!({"name": "x", "base": {"distro": "debian"}}),
        ),
        (
            "null value",
            json!({"name": "x", "base": base, "outputs": null}),
        ),
    ] {
        assert!(
            !validator.is_valid(&instance),
            "the schema accepts a manifest with {case}"
        );
    }
    let minimal =
        json!({"name": "x", "base": {"distro": "debian", "release": 12}, "environment": {"N": 1}});
    let errors = schema_errors(&validator, &minimal);
    assert!(
        errors.is_empty(),
        "numbers are accepted where kiln reads them as text:\n{errors}"
    );
}

/// Every key path of the schema (`base.distro`, `disk.partitions[].label`),
/// found by walking properties through `$ref`, `allOf`, `anyOf` and `items`.
fn key_paths(schema: &Value, node: &Value, prefix: &str, paths: &mut Vec<String>) {
    if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/definitions/");
        key_paths(schema, &schema["definitions"][name], prefix, paths);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for sub in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            key_paths(schema, sub, prefix, paths);
        }
    }
    if let Some(items) = node.get("items") {
        key_paths(schema, items, &format!("{prefix}[]"), paths);
    }
    for (key, sub) in node
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        paths.push(path.clone());
        key_paths(schema, sub, &path, paths);
    }
}

#[test]
fn every_schema_key_is_in_the_reference() {
    let schema = committed_schema();
    let mut paths = Vec::new();
    key_paths(&schema, &schema, "", &mut paths);
    paths.sort();
    paths.dedup();
    assert!(paths.len() > 25, "found the nested keys: {paths:?}");
    let reference = std::fs::read_to_string(repo_path("docs/user-guide/imagefile-reference.md"))
        .expect("reference");
    let missing: Vec<&String> = paths
        .iter()
        .filter(|path| !reference.contains(&format!("\n### `{path}`\n")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/user-guide/imagefile-reference.md lacks a `### `KEY`` section for {missing:?}"
    );
}
