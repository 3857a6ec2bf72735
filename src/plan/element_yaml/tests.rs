//! Tests of `element.yaml`: reading it, its own rules, the committed
//! schema, and how `with:` values are checked and reach the plan.

use std::path::Path;

use super::*;
use crate::manifest::{self, Source};
use crate::plan::tests::fixtures;
use crate::plan::{Plan, PlanError, SearchPath, plan};

fn yaml_error(text: &str) -> ElementYamlError {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(ELEMENT_YAML), text).expect("write");
    match read(dir.path()) {
        Err(PlanError::ElementYaml(error)) => *error,
        other => panic!("expected an element.yaml error, got {other:?}"),
    }
}

fn messages(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.message.as_str()).collect()
}

fn manifest(yaml: &str) -> Manifest {
    match manifest::parse(&Source::new("imagefile.yaml", yaml)) {
        Ok(m) => m,
        Err(problems) => panic!("fixture manifest does not parse: {problems:?}"),
    }
}

fn params_path() -> SearchPath {
    SearchPath::from_parts(&[], None, &fixtures("params"))
}

fn plan_with(elements: &str) -> Result<Plan, PlanError> {
    let text =
        format!("name: t\nbase: {{distro: debian, release: bookworm}}\nelements:\n{elements}");
    plan(&manifest(&text), &params_path())
}

/// The text of the manifest a problem's span points at.
fn pointed_at<'a>(text: &'a str, problem: &Problem) -> &'a str {
    let (span, _) = problem.span.as_ref().expect("a span");
    &text[span.offset()..span.offset() + span.len()]
}

#[test]
fn the_fixture_parses_into_the_documented_format() {
    let loaded = read(&fixtures("params").join("fixture-params"))
        .expect("reads")
        .expect("has element.yaml");
    let yaml = loaded.yaml;
    assert!(yaml.description.is_some());
    assert_eq!(yaml.dependencies[0].value.as_str(), "fixture-params-lib");
    assert_eq!(yaml.packages[0].value, "sudo");
    let params = yaml.parameters.expect("parameters");
    let name = |n: &str| -> EnvName { n.parse().expect("name") };
    let username = params
        .get(&Spanned::unplaced(name("username")))
        .expect("username");
    assert_eq!(username.kind.value, ParamType::String);
    assert_eq!(
        username.env_name(&name("username")).as_str(),
        "DIB_DEV_USER_USERNAME"
    );
    assert_eq!(
        username.default.as_ref().map(|d| d.value.0.as_str()),
        Some("devuser")
    );
    let shell = params
        .get(&Spanned::unplaced(name("shell")))
        .expect("shell");
    assert_eq!(shell.kind.value, ParamType::Enum);
    assert_eq!(shell.values.len(), 3);
    assert!(
        params
            .get(&Spanned::unplaced(name("ssh_key")))
            .expect("ssh_key")
            .required
            .value
    );
}

#[test]
fn no_file_and_an_empty_file_are_both_fine() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(read(dir.path()).expect("reads").is_none());
    std::fs::write(dir.path().join(ELEMENT_YAML), "# nothing yet\n").expect("write");
    let loaded = read(dir.path()).expect("reads").expect("present");
    assert!(loaded.yaml.parameters.is_none());
}

#[test]
fn a_misspelt_key_names_file_line_and_column_and_suggests() {
    let error = yaml_error("parameters:\n  mode:\n    tpye: string\n");
    let text = error.to_string();
    assert!(
        text.ends_with("element.yaml:3:5: unknown key `tpye`"),
        "{text}"
    );
    assert!(
        error.problems[0].help.starts_with("did you mean `type`?"),
        "{}",
        error.problems[0].help
    );
}

#[test]
fn a_bad_type_and_a_bad_dependency_name_are_reported() {
    let error = yaml_error("parameters:\n  mode:\n    type: text\n");
    assert_eq!(messages(&error.problems), ["`text` is not allowed here"]);
    assert!(error.problems[0].help.contains("`string`"));
    let error = yaml_error("dependencies: ['not an element']\n");
    assert!(
        error.problems[0].message.contains("not an element"),
        "{:?}",
        error.problems
    );
}

#[test]
fn contradictions_in_the_file_are_all_reported() {
    let text = std::fs::read_to_string(
        fixtures("params-broken")
            .join("fixture-bad")
            .join(ELEMENT_YAML),
    )
    .expect("fixture");
    let error = yaml_error(&text);
    assert_eq!(
        messages(&error.problems),
        [
            "parameter `mode` is an enum without `values`",
            "the default of parameter `size` is an integer, but `large` is not a whole number",
            "parameter `flag` is required and has a default",
        ]
    );
    assert_eq!(pointed_at(&text, &error.problems[1]), "large");
}

#[test]
fn values_belong_to_enums_and_variables_to_one_parameter() {
    let error = yaml_error(
        "packages: ['two words']\nparameters:\n  a: {env: DIB_X, values: [x]}\n  b: {env: DIB_X}\n  c: {env: ARCH}\n",
    );
    assert_eq!(
        messages(&error.problems),
        [
            "`two words` is not a package name",
            "parameter `a` has `values`, but only an enum takes them",
            "parameters `a` and `b` both set `DIB_X`",
            "parameter `c` would set `ARCH`, which kiln sets itself",
        ]
    );
}

#[test]
fn values_are_checked_and_booleans_normalised() {
    let param = |kind: ParamType, values: &[&str]| Parameter {
        kind: Spanned::unplaced(kind),
        description: None,
        default: None,
        env: None,
        required: Spanned::unplaced(false),
        values: values
            .iter()
            .map(|v| Spanned::unplaced(ParamValue((*v).to_string())))
            .collect(),
    };
    let int = param(ParamType::Integer, &[]);
    assert_eq!(value_for(&int, "0755"), Ok("0755".to_string()));
    assert_eq!(value_for(&int, "-3"), Ok("-3".to_string()));
    assert_eq!(value_for(&int, "1.5"), Err(Mismatch::Integer));
    assert_eq!(value_for(&int, ""), Err(Mismatch::Integer));
    let flag = param(ParamType::Boolean, &[]);
    assert_eq!(value_for(&flag, "True"), Ok("true".to_string()));
    assert_eq!(value_for(&flag, "false"), Ok("false".to_string()));
    assert_eq!(value_for(&flag, "yes"), Err(Mismatch::Boolean));
    let choice = param(ParamType::Enum, &["a", "b"]);
    assert_eq!(value_for(&choice, "b"), Ok("b".to_string()));
    assert_eq!(value_for(&choice, "c"), Err(Mismatch::Choice));
    let text = param(ParamType::String, &[]);
    assert_eq!(value_for(&text, "any thing"), Ok("any thing".to_string()));
}

#[test]
fn defaults_and_given_values_reach_the_plan_environment() {
    let plan = plan_with(
        "  - name: fixture-params\n    with:\n      ssh_key: ssh-ed25519 AAAA\n      uid: 0755\n      passwordless_sudo: True\n",
    )
    .expect("plans");
    // Given, under the parameter's `env` name, integers as written and
    // booleans normalised.
    assert_eq!(
        plan.env("DIB_DEV_USER_AUTHORIZED_KEYS"),
        Some("ssh-ed25519 AAAA")
    );
    assert_eq!(plan.env("DIB_DEV_USER_UID"), Some("0755"));
    assert_eq!(plan.env("DIB_DEV_USER_PWDLESS_SUDO"), Some("true"));
    // Left out: the defaults.
    assert_eq!(plan.env("DIB_DEV_USER_USERNAME"), Some("devuser"));
    assert_eq!(plan.env("DIB_DEV_USER_SHELL"), Some("bash"));
    // A dependency's default, under the parameter's own name.
    assert_eq!(plan.env("FIXTURE_PARAMS_LEVEL"), Some("3"));
    // The parameter names themselves are not variables.
    assert_eq!(plan.env("uid"), None);
    assert_eq!(plan.env("ssh_key"), None);

    let element = &plan.elements[0];
    assert_eq!(element.params.len(), 3);
    assert_eq!(element.defaults.len(), 2);
}

#[test]
fn the_manifest_environment_wins_over_a_default() {
    let text = "name: t\nbase: {distro: debian, release: bookworm}\nelements:\n  - name: fixture-params\n    with: {ssh_key: k}\nenvironment:\n  DIB_DEV_USER_SHELL: zsh\n  FIXTURE_PARAMS_LEVEL: 9\n";
    let plan = plan(&manifest(text), &params_path()).expect("plans");
    assert_eq!(plan.env("DIB_DEV_USER_SHELL"), Some("zsh"));
    assert_eq!(plan.env("FIXTURE_PARAMS_LEVEL"), Some("9"));
}

#[test]
fn dependencies_and_packages_of_element_yaml_join_the_plan() {
    let plan = plan_with("  - name: fixture-params\n    with: {ssh_key: k}\n").expect("plans");
    let names: Vec<&str> = plan.elements.iter().map(|e| e.name.as_str()).collect();
    // Listed in both element-deps and element.yaml: once.
    assert_eq!(names, ["fixture-params", "fixture-params-lib"]);
    assert_eq!(plan.packages_to_install(), ["sudo"]);
    let install = plan
        .packages
        .iter()
        .find(|p| p.phase == crate::plan::PhaseName::Install)
        .expect("install.d packages");
    assert_eq!(install.install[0].element.as_str(), "fixture-params");
}

#[test]
fn without_declared_parameters_with_is_passed_unchecked() {
    let plan = plan_with("  - name: fixture-params-untyped\n    with: {ANY_THING: 1, lower: x}\n")
        .expect("plans");
    assert_eq!(plan.env("ANY_THING"), Some("1"));
    assert_eq!(plan.env("lower"), Some("x"));
}

#[test]
fn every_problem_of_the_manifest_is_reported_at_its_key_or_value() {
    let elements = "  - name: fixture-params\n    with:\n      usrname: bob\n      uid: abc\n      passwordless_sudo: yes\n      shell: zsh2\n  - name: fixture-params-lib\n    with: {FIXTURE_PARAMS_LEVEL: high, other: 1}\n";
    let text =
        format!("name: t\nbase: {{distro: debian, release: bookworm}}\nelements:\n{elements}");
    let Err(PlanError::Parameters(problems)) = plan(&manifest(&text), &params_path()) else {
        panic!("expected parameter problems");
    };
    let found: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.message.as_str(), pointed_at(&text, p)))
        .collect();
    assert_eq!(
        found,
        [
            (
                "element `fixture-params` needs parameter `ssh_key`",
                "fixture-params"
            ),
            (
                "element `fixture-params` has no parameter `usrname`",
                "usrname"
            ),
            (
                "parameter `uid` of element `fixture-params` is an integer, but `abc` is not a whole number",
                "abc"
            ),
            (
                "parameter `passwordless_sudo` of element `fixture-params` is a boolean, but `yes` is not `true` or `false`",
                "yes"
            ),
            (
                "parameter `shell` of element `fixture-params` is one of `bash`, `zsh`, `sh`, but not `zsh2`",
                "zsh2"
            ),
            (
                "parameter `FIXTURE_PARAMS_LEVEL` of element `fixture-params-lib` is an integer, but `high` is not a whole number",
                "high"
            ),
            (
                "element `fixture-params-lib` has no parameter `other`",
                "other"
            ),
        ]
    );
    assert!(problems[1].help.starts_with("did you mean `username`?"));
    assert!(problems[4].help.starts_with("did you mean `zsh`?"));
}

#[test]
fn a_required_parameter_of_a_dependency_points_at_what_pulled_it_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let make = |name: &str, files: &[(&str, &str)]| {
        let element = dir.path().join(name);
        std::fs::create_dir(&element).expect("mkdir");
        for (file, text) in files {
            std::fs::write(element.join(file), text).expect("write");
        }
    };
    make("top", &[(ELEMENT_YAML, "dependencies: [needs-key]\n")]);
    make(
        "needs-key",
        &[(ELEMENT_YAML, "parameters:\n  KEY: {required: true}\n")],
    );
    let text = "name: t\nbase: {distro: debian, release: bookworm}\nelements: [top]\n";
    let search = SearchPath::from_parts(&[], None, dir.path());
    let Err(PlanError::Parameters(problems)) = plan(&manifest(text), &search) else {
        panic!("expected parameter problems");
    };
    assert_eq!(
        messages(&problems),
        ["element `needs-key` (required by top -> needs-key) needs parameter `KEY`"]
    );
    assert_eq!(pointed_at(text, &problems[0]), "top");
}

fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("JSON");
    text.push('\n');
    text
}

/// Set to rewrite `schema/element.schema.json` from the code.
const BLESS_VAR: &str = "KILN_BLESS_ELEMENT_SCHEMA";

#[test]
fn committed_element_schema_equals_generated() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/element.schema.json");
    let generated = schema_text();
    if std::env::var_os(BLESS_VAR).is_some() {
        std::fs::write(&path, &generated).expect("write the schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == committed,
        "schema/element.schema.json is stale: run `{BLESS_VAR}=1 cargo test --lib element_schema`"
    );
}

#[test]
fn an_element_for_another_distro_is_pointed_at_where_the_manifest_brings_it_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let element = |name: &str, files: &[(&str, &str)]| {
        std::fs::create_dir_all(dir.path().join(name)).expect("mkdir");
        for (file, text) in files {
            std::fs::write(dir.path().join(name).join(file), text).expect("write");
        }
    };
    element("deb-only", &[(ELEMENT_YAML, "distros: [debian]\n")]);
    element("both", &[(ELEMENT_YAML, "distros: [debian, ubuntu]\n")]);
    element("app", &[("element-deps", "deb-only\n")]);
    element("debian", &[(ELEMENT_YAML, "distros: [debian]\n")]);
    let search = SearchPath::from_parts(&[], None, dir.path());
    let planned = |distro: &str, elements: &str| {
        let text = format!(
            "name: t\nbase: {{distro: {distro}, release: noble}}\nelements: [{elements}]\n"
        );
        (plan(&manifest(&text), &search), text)
    };

    assert!(planned("debian", "deb-only, app, both").0.is_ok());
    assert!(planned("ubuntu", "both").0.is_ok());

    let problems = |elements: &str| {
        let (result, text) = planned("ubuntu", elements);
        let Err(PlanError::Parameters(problems)) = result else {
            panic!("expected problems, got {result:?}");
        };
        problems
            .iter()
            .map(|p| {
                (
                    p.message.clone(),
                    pointed_at(&text, p).to_string(),
                    p.help.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        problems("both, deb-only"),
        [(
            "element `deb-only` is for `debian`, and this image's base is `ubuntu`".to_string(),
            "deb-only".to_string(),
            "remove the element, or change `base.distro` to `debian`; `deb-only` is for `debian` only"
                .to_string()
        )]
    );
    assert_eq!(
        problems("app"),
        [(
            "element `deb-only` (required by app -> deb-only) is for `debian`, and this image's base is `ubuntu`"
                .to_string(),
            "app".to_string(),
            "remove the element, or change `base.distro` to `debian`; `deb-only` is for `debian` only"
                .to_string()
        )]
    );
    // kiln's own distribution elements name their counterpart.
    assert_eq!(
        problems("debian")[0].2,
        "use `ubuntu` for a `base.distro: ubuntu` image, or change `base.distro` to `debian`"
    );
}
