//! The provenance of a build (`<image>.provenance.json`): one in-toto
//! Statement v1 with a SLSA Provenance v1 predicate, unsigned.
//!
//! One statement names every file the build wrote (the image files and
//! the two SBOMs) as its subjects, rather than one statement per file:
//! SLSA describes a build, and one build made them all from the same
//! inputs, so a verifier holding any one of the files finds its digest
//! among the subjects of the one statement. Its resolved dependencies are
//! the imagefile and the lock (which pins every package, element tree
//! and base image by hash); the builder is kiln at its version. Nothing
//! in it varies between two builds of one lock (no start or end time, no
//! invocation id), so it is reproducible like the image. Signing is left
//! to existing tools (`cosign attest-blob`, `cosign sign-blob`): the user
//! guide shows how.

use serde_json::{Value, json};

/// in-toto's statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1's predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What the build's parameters mean: kiln's own build type.
pub const BUILD_TYPE: &str = "urn:kiln:build-type:imagefile:v1";

/// One file a build wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Its file name.
    pub name: String,
    /// Its SHA-256 (hex).
    pub sha256: String,
}

/// What the statement says about the build.
#[derive(Debug, Clone)]
pub struct Build<'a> {
    /// The image's name.
    pub image: &'a str,
    /// The imagefile's file name as given to kiln.
    pub imagefile: &'a str,
    /// The imagefile's SHA-256 (hex).
    pub imagefile_sha256: &'a str,
    /// The lock's file name.
    pub lock_file: &'a str,
    /// The lock's SHA-256 (hex).
    pub lock_sha256: &'a str,
    /// The output formats asked for, in the imagefile's order.
    pub outputs: Vec<String>,
    /// Whether the qcow2 was compressed (`--compress`).
    pub compress: bool,
    /// `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: u64,
    /// The files written, in order.
    pub subjects: Vec<Subject>,
}

/// The statement.
pub fn statement(build: &Build<'_>) -> Value {
    let subjects: Vec<Value> = build
        .subjects
        .iter()
        .map(|s| json!({"name": s.name, "digest": {"sha256": s.sha256}}))
        .collect();
    let version = env!("CARGO_PKG_VERSION");
    json!({
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "imagefile": build.imagefile,
                    "image": build.image,
                    "outputs": build.outputs,
                    "compress": build.compress,
                },
                "internalParameters": {
                    "source_date_epoch": build.source_date_epoch,
                },
                "resolvedDependencies": [
                    {"name": build.imagefile, "digest": {"sha256": build.imagefile_sha256}},
                    {"name": build.lock_file, "digest": {"sha256": build.lock_sha256}},
                ],
            },
            "runDetails": {
                "builder": {
                    "id": format!("urn:kiln:builder:kiln@{version}"),
                    "version": {"kiln": version},
                },
                "metadata": {},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_is_a_subject_and_the_inputs_are_the_imagefile_and_lock() {
        let build = Build {
            image: "demo",
            imagefile: "demo.yaml",
            imagefile_sha256: &"1".repeat(64),
            lock_file: "demo.lock",
            lock_sha256: &"2".repeat(64),
            outputs: vec!["qcow2".to_string()],
            compress: false,
            source_date_epoch: 1,
            subjects: vec![
                Subject {
                    name: "demo.qcow2".to_string(),
                    sha256: "3".repeat(64),
                },
                Subject {
                    name: "demo.spdx.json".to_string(),
                    sha256: "4".repeat(64),
                },
            ],
        };
        let statement = statement(&build);
        assert_eq!(statement["_type"], STATEMENT_TYPE);
        assert_eq!(statement["predicateType"], PREDICATE_TYPE);
        assert_eq!(statement["subject"][1]["name"], "demo.spdx.json");
        assert_eq!(statement["subject"][0]["digest"]["sha256"], "3".repeat(64));
        let dependencies = &statement["predicate"]["buildDefinition"]["resolvedDependencies"];
        assert_eq!(dependencies[0]["name"], "demo.yaml");
        assert_eq!(dependencies[1]["digest"]["sha256"], "2".repeat(64));
        assert_eq!(
            statement["predicate"]["runDetails"]["builder"]["version"]["kiln"],
            env!("CARGO_PKG_VERSION")
        );
    }
}
