//! The SBOMs and provenance of `manifests/debian-cloud.yaml` as committed,
//! as the boot tests' fixture has them (built once per kiln, its tree
//! kept): both SBOMs pass their formats' own validators (the SPDX
//! project's `pyspdxtools`, CycloneDX's published schema through
//! cyclonedx-python-lib, installed by `scripts/install-test-deps`), list
//! exactly what the built tree's dpkg database holds (read by the host's
//! `dpkg-query --admindir`, not kiln's word for it), and `kiln sbom` (the
//! lock alone) lists the same packages plus those the build removed.
//! That two builds of debian-cloud's lock write the same SBOMs and
//! provenance is `reproducible::debian_cloud_builds_to_the_same_bytes_…`'s
//! to check: it builds it twice anyway.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::{kiln, repo_path, shared_cache, test_cache, tool};

const NAME: &str = "debian-cloud";

/// A program of the validators' virtual environment.
fn venv_program(program: &str) -> PathBuf {
    let path = test_cache().join("sbom-venv/bin").join(program);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-deps",
        path.display()
    );
    path
}

/// stdout and stderr of a command that must have succeeded.
fn run_ok(output: std::io::Result<std::process::Output>, what: &str) -> String {
    let output = output.unwrap_or_else(|e| panic!("{what} runs: {e}"));
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON")
}

/// (name, version, arch) of every package an SPDX document lists.
fn spdx_packages(document: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    document["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| {
            p["SPDXID"]
                .as_str()
                .is_some_and(|id| id.starts_with("SPDXRef-Package-deb-"))
        })
        .map(|p| {
            let purl = p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .expect("purl");
            let arch = purl
                .split_once("?arch=")
                .and_then(|(_, q)| q.split('&').next())
                .expect("arch qualifier");
            (
                p["name"].as_str().expect("name").to_string(),
                p["versionInfo"].as_str().expect("version").to_string(),
                arch.to_string(),
            )
        })
        .collect()
}

/// (name, version, arch) of every package a CycloneDX document lists.
fn cyclonedx_packages(document: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    document["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| {
            let arch = c["properties"]
                .as_array()
                .expect("properties")
                .iter()
                .find(|p| p["name"] == "kiln:arch")
                .expect("kiln:arch")["value"]
                .as_str()
                .expect("arch")
                .to_string();
            (
                c["name"].as_str().expect("name").to_string(),
                c["version"].as_str().expect("version").to_string(),
                arch,
            )
        })
        .collect()
}

#[test]
fn debian_cloud_sboms_validate_and_match_the_tree_and_the_lock() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let pyspdxtools = venv_program("pyspdxtools");
    let python = venv_program("python");
    let fixture = crate::boot::fixture();
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path();
    for file in ["imagefile.yaml", "imagefile.lock"] {
        std::fs::copy(fixture.join(file), dir.join(file)).expect("copy");
    }
    let cache = shared_cache().to_str().expect("UTF-8").to_string();
    let out1 = fixture.join("out");
    let spdx_path = out1.join(format!("{NAME}.spdx.json"));
    let cdx_path = out1.join(format!("{NAME}.cdx.json"));

    // The formats' own validators.
    run_ok(
        std::process::Command::new(&pyspdxtools)
            .arg("-i")
            .arg(&spdx_path)
            .output(),
        "pyspdxtools",
    );
    let checked = run_ok(
        std::process::Command::new(&python)
            .arg("-c")
            .arg(CYCLONEDX_CHECK)
            .arg(&cdx_path)
            .output(),
        "the CycloneDX validator",
    );
    assert!(checked.contains("valid CycloneDX 1.5"), "{checked}");

    // Exactly the tree's installed packages, at their versions.
    let tree = out1.join(format!("{NAME}.root"));
    let admindir = tree.join("var/lib/dpkg");
    let listed = tool(
        "dpkg-query",
        &[
            &format!("--admindir={}", admindir.display()),
            "-W",
            "-f",
            "${db:Status-Status}\\t${Package}\\t${Version}\\t${Architecture}\\n",
        ],
    );
    let installed: BTreeSet<(String, String, String)> = listed
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (fields.len() == 4 && fields[0] == "installed").then(|| {
                (
                    fields[1].to_string(),
                    fields[2].to_string(),
                    fields[3].to_string(),
                )
            })
        })
        .collect();
    assert!(installed.len() > 200, "{listed}");
    let spdx = json(&spdx_path);
    let cdx = json(&cdx_path);
    assert_eq!(spdx_packages(&spdx), installed, "SPDX against the tree");
    assert_eq!(
        cyclonedx_packages(&cdx),
        installed,
        "CycloneDX against the tree"
    );
    // Licences come from the tree's copyright files: most of Debian's are
    // machine-readable.
    let declared = spdx["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["licenseDeclared"] != "NOASSERTION")
        .count();
    assert!(
        declared > installed.len() / 2,
        "{declared} licences declared"
    );
    let provenance = json(&out1.join(format!("{NAME}.provenance.json")));
    let subjects: Vec<&str> = provenance["subject"]
        .as_array()
        .expect("subjects")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        subjects,
        [
            format!("{NAME}.qcow2"),
            format!("{NAME}.spdx.json"),
            format!("{NAME}.cdx.json")
        ]
    );
    let lock_sha256 = tool(
        "sha256sum",
        &[dir.join("imagefile.lock").to_str().expect("UTF-8")],
    );
    assert_eq!(
        provenance["predicate"]["buildDefinition"]["resolvedDependencies"][1]["digest"]["sha256"],
        lock_sha256.split_whitespace().next().expect("hash")
    );

    // What writing them cost, as the build timed it.
    let report = json(&out1.join(format!("{NAME}.report.json")));
    let sbom_seconds = report["timings"]
        .as_array()
        .expect("timings")
        .iter()
        .find(|t| t["stage"] == "sbom")
        .unwrap_or_else(|| panic!("no sbom timing in {report}"));
    eprintln!("the fixture build's SBOM step: {sbom_seconds}");

    // `kiln sbom`: the lock's packages, which are the build's plus any a
    // hook removed (the report names them).
    let stdout = run_ok(
        kiln()
            .current_dir(dir)
            .args(["sbom", "--cache-dir", &cache, "-o", "lock-sbom"])
            .output(),
        "kiln sbom",
    );
    assert!(stdout.contains("from the lock"), "{stdout}");
    let from_lock = json(&dir.join(format!("lock-sbom/{NAME}.spdx.json")));
    run_ok(
        std::process::Command::new(&pyspdxtools)
            .arg("-i")
            .arg(dir.join(format!("lock-sbom/{NAME}.spdx.json")))
            .output(),
        "pyspdxtools on kiln sbom's",
    );
    let removed: BTreeSet<String> = report["notes"]
        .as_array()
        .map(|notes| {
            notes
                .iter()
                .filter_map(|n| {
                    n.as_str()?
                        .strip_prefix("locked but removed during the build: ")
                })
                .flat_map(|list| list.split(", ").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let locked = spdx_packages(&from_lock);
    let built = spdx_packages(&spdx);
    let only_in_lock: BTreeSet<String> = locked.difference(&built).map(|p| p.0.clone()).collect();
    assert_eq!(only_in_lock, removed, "kiln sbom against the build");
    assert!(
        built.is_subset(&locked),
        "the build installed nothing the lock does not pin"
    );
    // The locked .debs' control files give the dependencies the tree's
    // database does: the same relationships among the packages both list.
    let depends_on = |document: &serde_json::Value| -> BTreeSet<(String, String)> {
        document["relationships"]
            .as_array()
            .expect("relationships")
            .iter()
            .filter(|r| r["relationshipType"] == "DEPENDS_ON")
            .map(|r| {
                (
                    r["spdxElementId"].as_str().expect("from").to_string(),
                    r["relatedSpdxElement"].as_str().expect("to").to_string(),
                )
            })
            .collect()
    };
    let (built_depends, locked_depends) = (depends_on(&spdx), depends_on(&from_lock));
    assert!(built_depends.len() > installed.len(), "{built_depends:?}");
    if removed.is_empty() {
        assert_eq!(
            built_depends, locked_depends,
            "DEPENDS_ON, build against lock"
        );
    } else {
        assert!(built_depends.is_subset(&locked_depends));
    }
    // And on stdout, CycloneDX when asked.
    let output = kiln()
        .current_dir(dir)
        .args(["sbom", "--cache-dir", &cache, "--format", "cyclonedx"])
        .output()
        .expect("kiln runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("CycloneDX on stdout");
    assert_eq!(cyclonedx_packages(&document).len(), locked.len());
}

/// Validates the CycloneDX file named by the first argument against the
/// published CycloneDX 1.5 JSON schema (strict), printing every error.
const CYCLONEDX_CHECK: &str = "
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read(), all_errors=True)
if errors:
    for error in errors:
        print(error)
    sys.exit(1)
print('valid CycloneDX 1.5')
";

#[test]
fn kiln_sbom_without_a_lock_says_what_to_run() {
    let temp = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        repo_path("manifests/debian-minimal.yaml"),
        temp.path().join("imagefile.yaml"),
    )
    .expect("copy");
    let output = kiln()
        .current_dir(temp.path())
        .arg("sbom")
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("there is no lock at imagefile.lock"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: run `kiln lock imagefile.yaml` first"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no half document on stdout");
}
