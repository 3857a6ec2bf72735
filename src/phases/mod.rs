//! The phases stage: runs the plan's element hook scripts against the
//! bootstrapped root tree, phase by phase, as diskimage-builder does.
//!
//! The plan already decided which scripts run and in what order; this stage
//! executes them, and, as `dib-run-parts` would, also what an earlier hook
//! added to an in-chroot phase's directory of the hooks tree (DIB's
//! `install-types` links scripts into `install.d` at `extra-data.d`), in
//! its place by name. In-chroot phases get their scripts and every
//! `environment.d` file copied into the tree under [`HOOKS_DIR`] (DIB's
//! `/tmp/in_target.d`), DIB's helper commands first on `PATH`
//! ([`helpers`]), the kernel filesystems mounted and the build-time
//! resolv.conf/policy-rc.d in place, all as guards released after the phase
//! (or on failure). Outside-chroot phases run the scripts where the elements
//! are, beside the tree, with `TARGET_ROOT` pointing at it. Each script runs
//! on its own, through a shell that first sources every `environment.d` file
//! in order (`dib-run-parts` does the same before every phase), so that a
//! failure names the script.
//!
//! The elements' `package-installs` run as two steps of each in-chroot
//! phase that has packages, ordered among its scripts under the names of
//! DIB's `package-installs` element's own hooks ([`package_steps`]), so
//! that DIB's elements see their packages exactly when DIB installs them.
//!
//! `block-device.d` is skipped: its scripts work on `IMAGE_BLOCK_DEVICE`,
//! which exists only once image assembly makes a disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::chroot::{self, ChrootError, Finished};
use crate::manifest::ElementName;
use crate::plan::{Phase, PhaseName, Plan, Script, run_parts_order};

mod helpers;

/// Where the hooks are inside the tree while phases run: DIB's path, which
/// some elements name.
pub const HOOKS_DIR: &str = "/tmp/in_target.d";

/// The `PATH` of in-chroot hooks: kiln's helpers first.
const IN_CHROOT_PATH: &str =
    "/tmp/in_target.d/kiln/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a phase's package installs and removals run among its scripts:
/// the names of DIB's `package-installs` hooks (`pre-install.d/10`,
/// `install.d/01`, `post-install.d/00`; removals `99`, `99`, `95`). DIB
/// has none in other phases; there, kiln's `10`/`99`.
pub fn package_steps(phase: PhaseName) -> (&'static str, &'static str) {
    match phase {
        PhaseName::PreInstall => ("10-package-installs", "99-package-uninstalls"),
        PhaseName::Install => ("01-package-installs", "99-package-uninstalls"),
        PhaseName::PostInstall => ("00-package-installs", "95-package-uninstalls"),
        _ => ("10-package-installs", "99-package-uninstalls"),
    }
}

/// How many of a failed script's last output lines the error carries.
pub const FAILURE_TAIL_LINES: usize = 20;

/// The shell program each script is run through. Runs `set -eu` (as
/// `dib-run-parts` does), sources each argument after the first, then
/// execs the first. The variable names are unusual so that a sourced file
/// cannot clobber them by accident.
const RUN_HOOK: &str = r#"set -eu
kiln_hook_script=$1
shift
for kiln_env_file in "$@"; do
    . "$kiln_env_file"
done
exec "$kiln_hook_script""#;

/// Why the phases could not all run.
#[derive(Debug, thiserror::Error)]
pub enum PhaseError {
    /// A hook script exited non-zero or was killed.
    #[error(
        "element `{element}`: {phase} script `{script}` failed ({status}); its last lines were:\n{}",
        tail.join("\n")
    )]
    ScriptFailed {
        /// The element the script belongs to.
        element: ElementName,
        /// The phase.
        phase: PhaseName,
        /// The script's file name.
        script: String,
        /// How it ended, in words (`exit status 3`).
        status: String,
        /// Its last [`FAILURE_TAIL_LINES`] lines of output.
        tail: Vec<String>,
    },
    /// Mounting, running or cleaning up failed, or the build was
    /// interrupted.
    #[error("{phase}: {source}")]
    Chroot {
        /// The phase being run (or set up).
        phase: PhaseName,
        /// The failure.
        #[source]
        source: ChrootError,
    },
    /// Copying hooks into the tree failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What kiln was doing.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
}

impl PhaseError {
    /// The signal that stopped the build, when it was interrupted.
    pub fn interrupted_by(&self) -> Option<nix::sys::signal::Signal> {
        match self {
            PhaseError::Chroot {
                source: ChrootError::Interrupted { signal },
                ..
            } => Some(*signal),
            _ => None,
        }
    }
}

/// What the phases need besides the plan.
#[derive(Debug, Clone, Copy)]
pub struct PhaseRun<'a> {
    /// The root tree.
    pub root: &'a Path,
    /// The build's work directory (`TMP_BUILD_DIR`).
    pub work: &'a Path,
    /// The output directory: outside-chroot hooks run there, as DIB's run
    /// where `disk-image-create` was started (DIB's `manifests` element
    /// writes `<image>.d/` beside the image).
    pub output: &'a Path,
    /// From the lock.
    pub source_date_epoch: u64,
    /// What the base's family tells hooks of the lock's archives
    /// ([`crate::distro::Family::phase_environment`]: for apt,
    /// `DIB_DISTRIBUTION_MIRROR` and the others); the plan's own values
    /// win unless empty.
    pub base_environment: &'a [(String, String)],
    /// The names of the locked packages, which `install-packages` may
    /// install.
    pub locked: &'a [String],
    /// Open a shell in the chroot when an in-chroot script fails.
    pub shell_on_failure: bool,
}

/// Which of the plan's phases one [`run_phases`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseSpan {
    /// Those that make the tree, `root.d` to `post-root.d`.
    MakeTree,
    /// Those that finish the image, `block-device.d` on
    /// ([`PhaseName::finishes_image`]).
    FinishImage,
}

impl PhaseSpan {
    fn holds(self, phase: PhaseName) -> bool {
        phase.finishes_image() == (self == PhaseSpan::FinishImage)
    }
}

/// Runs every phase of `plan` in `span` that has scripts or packages, in
/// order, against the tree. Script output goes to `log`. Returns how long each
/// phase took, named `phase <dir>`, each in-chroot phase followed by its
/// steps (`  <dir>/<script> (<element>)`, package installs included), so
/// `--timings` shows where a phase's time goes.
pub fn run_phases(
    plan: &Plan,
    run: &PhaseRun<'_>,
    span: PhaseSpan,
    log: &mut dyn Write,
) -> Result<Vec<(String, Duration)>, PhaseError> {
    let PhaseRun { root, work, .. } = *run;
    let hooks = HooksTree::create(root, plan, run.locked)?;
    let host_bin = work.join("host-bin");
    helpers::write_outside(&host_bin).map_err(|source| PhaseError::Io {
        action: "write",
        path: host_bin.clone(),
        source,
    })?;
    // What elements mount and leave mounted (DIB's `pip-cache` binds a
    // host directory into the tree) is unmounted after the phases, also
    // when one fails, as DIB's cleanup does; kiln's own mounts stay.
    let kiln_mounts =
        chroot::mounts_under(root).map_err(|source| chroot_error(PhaseName::Root, source))?;
    let result = run_each_phase(plan, run, span, &hooks, &host_bin, log);
    let unmounted = unmount_left_behind(root, &kiln_mounts, log);
    let timings = result?;
    unmounted?;
    hooks.remove()?;
    Ok(timings)
}

/// Runs every phase with something to do, in order.
fn run_each_phase(
    plan: &Plan,
    run: &PhaseRun<'_>,
    span: PhaseSpan,
    hooks: &HooksTree,
    host_bin: &Path,
    log: &mut dyn Write,
) -> Result<Vec<(String, Duration)>, PhaseError> {
    let root = run.root;
    let mut timings = Vec::new();
    let element_files = hooks.element_files.clone();
    for phase in plan.phases.iter().filter(|p| span.holds(p.name)) {
        // Read when the phase comes: an earlier phase's hook may have
        // added scripts to it.
        let added = if phase.in_chroot {
            hooks.added(plan, phase.name)
        } else {
            Vec::new()
        };
        let runs = !phase.scripts.is_empty()
            || !added.is_empty()
            || (phase.name == PhaseName::Install && !element_files.is_empty())
            || (phase.in_chroot && plan.phase_packages(phase.name).is_some());
        if !runs {
            continue;
        }
        for script in &added {
            let _ = writeln!(
                log,
                "kiln: {}/{} was added by an earlier hook; it runs as element {}'s",
                phase.name, script.name, script.element
            );
        }
        if phase.name == PhaseName::BlockDevice {
            let _ = writeln!(
                log,
                "kiln: skipping {}: no block device before image assembly",
                phase.name
            );
            continue;
        }
        let started = Instant::now();
        let mut scripts: Vec<(String, Duration)> = Vec::new();
        if phase.in_chroot {
            let before = if phase.name == PhaseName::Install {
                element_files.as_slice()
            } else {
                &[]
            };
            scripts = run_in_chroot_phase(plan, phase, &added, run, before, log)?;
        } else {
            let env = outside_environment(plan, run, &hooks.host_path, host_bin);
            for script in &phase.scripts {
                let argv = hook_argv(
                    &script.path,
                    plan.environment_files.iter().map(|f| f.path.clone()),
                );
                crate::host::signals::check()
                    .map_err(|source| chroot_error(phase.name, source.into()))?;
                log_start(log, phase.name, script);
                let finished = chroot::run_outside_chroot(root, run.output, &argv, &env, log)
                    .map_err(|source| chroot_error(phase.name, source))?;
                judge(phase.name, script, finished)?;
            }
        }
        timings.push((format!("phase {}", phase.name), started.elapsed()));
        timings.extend(scripts);
    }
    Ok(timings)
}

/// Unmounts, deepest first, whatever is mounted under `root` now that was
/// not in `kept`, naming each in the log.
fn unmount_left_behind(
    root: &Path,
    kept: &[PathBuf],
    log: &mut dyn Write,
) -> Result<(), PhaseError> {
    let now =
        chroot::mounts_under(root).map_err(|source| chroot_error(PhaseName::Cleanup, source))?;
    for target in now.into_iter().rev().filter(|t| !kept.contains(t)) {
        let _ = writeln!(
            log,
            "kiln: unmounting {} (left mounted by a hook)",
            target.display()
        );
        chroot::unmount_all_under(&target)
            .map_err(|source| chroot_error(PhaseName::Cleanup, source))?;
    }
    Ok(())
}

fn run_in_chroot_phase(
    plan: &Plan,
    phase: &Phase,
    added: &[Script],
    run: &PhaseRun<'_>,
    before: &[Vec<String>],
    log: &mut dyn Write,
) -> Result<Vec<(String, Duration)>, PhaseError> {
    let in_tree = Path::new(HOOKS_DIR);
    let mut timings = Vec::new();
    let PhaseRun {
        root,
        shell_on_failure,
        ..
    } = *run;
    let env = inside_environment(plan, run);
    let env_files: Vec<PathBuf> = plan
        .environment_files
        .iter()
        .map(|f| in_tree.join("environment.d").join(&f.name))
        .collect();
    let mounts =
        chroot::mount_dib_filesystems(root).map_err(|source| chroot_error(phase.name, source))?;
    let setup = chroot::prepare_tree(root).map_err(|source| chroot_error(phase.name, source))?;
    // install-bin and install-static: kiln's own code, run before the
    // phase's scripts, inside the chroot so links in the image resolve
    // within it.
    for argv in before {
        crate::host::signals::check().map_err(|source| chroot_error(phase.name, source.into()))?;
        crate::terminal::progress(&format!("{}: {}", phase.name, argv.join(" ")));
        let finished = chroot::run_in_chroot(root, argv, &env, log)
            .map_err(|source| chroot_error(phase.name, source))?;
        finished
            .check()
            .map_err(|source| chroot_error(phase.name, source))?;
    }
    for step in steps(plan, phase, added) {
        let (argv, script) = match step {
            Step::Script(script) => {
                let path = in_tree.join(phase.name.dir_name()).join(&script.name);
                (hook_argv(&path, env_files.iter().cloned()), script.clone())
            }
            Step::Packages {
                name,
                remove,
                names,
                element,
            } => {
                let mut argv = vec![format!("{HOOKS_DIR}/kiln/bin/install-packages")];
                if remove {
                    argv.push("-e".to_string());
                }
                argv.extend(names);
                let script = Script {
                    name: name.to_string(),
                    element,
                    path: PathBuf::from(&argv[0]),
                };
                (argv, script)
            }
        };
        crate::host::signals::check().map_err(|source| chroot_error(phase.name, source.into()))?;
        log_start(log, phase.name, &script);
        let started = Instant::now();
        let finished = chroot::run_in_chroot(root, &argv, &env, log)
            .map_err(|source| chroot_error(phase.name, source))?;
        timings.push((
            format!("  {}/{} ({})", phase.name, script.name, script.element),
            started.elapsed(),
        ));
        let verdict = judge(phase.name, &script, finished);
        if let Err(error) = &verdict
            && shell_on_failure
        {
            // DIB's break=after-error: the tree as the script left it, with
            // the chroot's mounts still in place; cleanup follows the shell.
            crate::terminal::progress_done();
            crate::terminal::status(&format!(
                "{error}\nopening a shell in the chroot to look around; leave it (exit) to clean up"
            ));
            chroot::shell_in_chroot(root, &env)
                .map_err(|source| chroot_error(phase.name, source))?;
        }
        verdict?;
    }
    setup
        .finish()
        .map_err(|source| chroot_error(phase.name, source))?;
    mounts
        .unmount()
        .map_err(|source| chroot_error(phase.name, source))?;
    Ok(timings)
}

/// One thing an in-chroot phase runs.
enum Step<'a> {
    /// An element's script.
    Script(&'a Script),
    /// `install-packages` for the phase's `package-installs`.
    Packages {
        name: &'static str,
        remove: bool,
        names: Vec<String>,
        /// The first element asking, which a failure names.
        element: crate::manifest::ElementName,
    },
}

/// The phase's scripts, and those a hook `added`, with its package steps
/// placed among them by name.
fn steps<'a>(plan: &Plan, phase: &'a Phase, added: &'a [Script]) -> Vec<Step<'a>> {
    let mut steps: Vec<(String, Step<'a>)> = phase
        .scripts
        .iter()
        .chain(added)
        .map(|s| (s.name.clone(), Step::Script(s)))
        .collect();
    if let Some(packages) = plan.phase_packages(phase.name) {
        let (installs, uninstalls) = package_steps(phase.name);
        for (name, remove, requests) in [
            (installs, false, &packages.install),
            (uninstalls, true, &packages.uninstall),
        ] {
            if let Some(first) = requests.first() {
                let names = requests.iter().map(|r| r.name.clone()).collect();
                let element = first.element.clone();
                steps.push((
                    name.to_string(),
                    Step::Packages {
                        name,
                        remove,
                        names,
                        element,
                    },
                ));
            }
        }
    }
    // Stable: a script of the same name as a package step runs after it.
    steps.sort_by(|a, b| run_parts_order(&a.0, &b.0));
    steps.into_iter().map(|(_, step)| step).collect()
}

fn chroot_error(phase: PhaseName, source: ChrootError) -> PhaseError {
    PhaseError::Chroot { phase, source }
}

fn log_start(log: &mut dyn Write, phase: PhaseName, script: &Script) {
    crate::terminal::progress(&format!(
        "{phase}/{} of element {}",
        script.name, script.element
    ));
    let _ = writeln!(
        log,
        "kiln: running {phase}/{} of element {}",
        script.name, script.element
    );
}

/// `/bin/bash -c RUN_HOOK kiln-hook SCRIPT ENV_FILE...`: bash, as DIB's
/// dib-run-parts uses, because environment.d files written for DIB may
/// use bash syntax.
fn hook_argv(script: &Path, env_files: impl Iterator<Item = PathBuf>) -> Vec<String> {
    let mut argv = vec![
        "/bin/bash".to_string(),
        "-c".to_string(),
        RUN_HOOK.to_string(),
        "kiln-hook".to_string(),
        script.display().to_string(),
    ];
    argv.extend(env_files.map(|p| p.display().to_string()));
    argv
}

fn judge(phase: PhaseName, script: &Script, finished: Finished) -> Result<(), PhaseError> {
    if finished.status.success() {
        return Ok(());
    }
    let skip = finished.tail.len().saturating_sub(FAILURE_TAIL_LINES);
    Err(PhaseError::ScriptFailed {
        element: script.element.clone(),
        phase,
        script: script.name.clone(),
        status: describe(finished.status),
        tail: finished.tail.into_iter().skip(skip).collect(),
    })
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// The variables of the build's host environment that hooks see, as
/// diskimage-builder passes them on: the proxies (in and outside the
/// chroot, for `local-config` and the image's package tools).
const PROXY_VARIABLES: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// Who runs the build, for outside hooks such as `local-config` that copy
/// the building user's ssh keys (`HOME`, or `SUDO_USER` under sudo).
const USER_VARIABLES: &[&str] = &["HOME", "USER", "SUDO_USER"];

fn passed_through(names: &[&str]) -> impl Iterator<Item = (String, String)> {
    names
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
}

/// What of the host's own environment reaches the hooks: the proxies and
/// the building user ([`hook_environment`] holds them too).
pub fn host_environment() -> Vec<(String, String)> {
    passed_through(PROXY_VARIABLES)
        .chain(passed_through(USER_VARIABLES))
        .collect()
}

/// Every variable the hooks see that is not a path of this one build
/// (which [`crate::snapshot`] keys on): the plan's, the base's, the
/// proxies and the building user, as the phases set them.
pub fn hook_environment(plan: &Plan, run: &PhaseRun<'_>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = passed_through(USER_VARIABLES).collect();
    env.extend(plan_environment(plan, run));
    env
}

fn plan_environment(plan: &Plan, run: &PhaseRun<'_>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = passed_through(PROXY_VARIABLES).collect();
    env.extend(
        plan.environment
            .iter()
            .map(|v| (v.name.clone(), v.value.clone())),
    );
    // After the plan's, so they win over an empty default; a value the
    // imagefile or an element gives wins over them.
    env.extend(
        run.base_environment
            .iter()
            .filter(|(name, _)| plan.env(name).is_none_or(str::is_empty))
            .cloned(),
    );
    env.push((
        "SOURCE_DATE_EPOCH".to_string(),
        run.source_date_epoch.to_string(),
    ));
    // What `disk-image-create` exports for DIB's `manifests` element,
    // which keeps both in the image: its arguments (here the elements)
    // and `declare -p` of every `DIB_` variable (sorted; the host paths
    // kiln adds for outside hooks are not among them).
    let elements = plan.env("IMAGE_ELEMENT").unwrap_or_default().to_string();
    env.push(("DIB_ARGS".to_string(), elements));
    env.push(("DIB_ENV".to_string(), declare_dib_variables(&env)));
    env
}

/// `declare -x NAME="value"` for each `DIB_` variable of `env`, sorted, as
/// bash's `declare -p` prints them; the last value of a name wins, as it
/// does when `env` is applied.
fn declare_dib_variables(env: &[(String, String)]) -> String {
    let mut dib: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for (name, value) in env.iter().filter(|(name, _)| name.starts_with("DIB_")) {
        dib.insert(name, value);
    }
    dib.iter()
        .map(|(name, value)| {
            let mut quoted = String::with_capacity(value.len());
            for c in value.chars() {
                if matches!(c, '"' | '\\' | '$' | '`') {
                    quoted.push('\\');
                }
                quoted.push(c);
            }
            format!("declare -x {name}=\"{quoted}\"")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn inside_environment(plan: &Plan, run: &PhaseRun<'_>) -> Vec<(String, String)> {
    let mut env = plan_environment(plan, run);
    env.push(("TMP_HOOKS_PATH".to_string(), HOOKS_DIR.to_string()));
    env.push(("PATH".to_string(), IN_CHROOT_PATH.to_string()));
    env.push(("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string()));
    env
}

/// `TARGET_ROOT` is added by [`chroot::run_outside_chroot`].
fn outside_environment(
    plan: &Plan,
    run: &PhaseRun<'_>,
    hooks: &Path,
    host_bin: &Path,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = passed_through(USER_VARIABLES).collect();
    env.extend(plan_environment(plan, run));
    env.push(("TMP_MOUNT_PATH".to_string(), run.root.display().to_string()));
    env.push(("TMP_BUILD_DIR".to_string(), run.work.display().to_string()));
    // DIB's download cache (`~/.cache/image-create` by default), for
    // hooks such as `cache-url` and `pip-cache`: one per build, so that
    // nothing a hook downloads outlives it or reaches another build.
    env.push((
        "DIB_IMAGE_CACHE".to_string(),
        run.work.join("image-cache").display().to_string(),
    ));
    env.push(("TMP_HOOKS_PATH".to_string(), hooks.display().to_string()));
    env.push((
        "PATH".to_string(),
        format!("{}:{}", host_bin.display(), chroot::CHROOT_PATH),
    ));
    env.push(("_LIB".to_string(), host_bin.display().to_string()));
    env.extend(helpers::exported_functions(plan));
    env
}

/// [`HOOKS_DIR`] in the tree, filled with the in-chroot phases' scripts and
/// the `environment.d` files. Outside phases see it as `TMP_HOOKS_PATH`
/// (as DIB's `extra-data.d` scripts expect, to add files for later
/// phases). Removed by [`HooksTree::remove`]; on failure the whole tree
/// goes with the work directory.
struct HooksTree {
    host_path: PathBuf,
    /// Commands that install elements' `bin/` and `static/` files, run in
    /// the chroot at the start of `install.d`.
    element_files: Vec<Vec<String>>,
    /// Each in-chroot phase directory's entries as the plan filled it, so
    /// that what a hook adds later is told apart ([`HooksTree::added`]).
    planned: Vec<(PhaseName, Vec<std::ffi::OsString>)>,
}

impl HooksTree {
    fn create(root: &Path, plan: &Plan, locked: &[String]) -> Result<HooksTree, PhaseError> {
        let host_path = root.join(HOOKS_DIR.trim_start_matches('/'));
        if host_path.exists() {
            chroot::remove_dir_all_checked(&host_path).map_err(|source| PhaseError::Chroot {
                phase: PhaseName::Root,
                source,
            })?;
        }
        create_dir_in_tree(root, &host_path)?;
        let env_dir = host_path.join("environment.d");
        create_dir_in_tree(root, &env_dir)?;
        for file in &plan.environment_files {
            copy(&file.path, &env_dir.join(&file.name))?;
        }
        for phase in plan.phases.iter().filter(|p| p.in_chroot) {
            let dir = host_path.join(phase.name.dir_name());
            create_dir_in_tree(root, &dir)?;
            for script in &phase.scripts {
                copy(&script.path, &dir.join(&script.name))?;
            }
        }
        merge_element_trees(root, plan, &host_path)?;
        helpers::write_in_chroot(&host_path, plan, locked).map_err(|source| PhaseError::Io {
            action: "write",
            path: host_path.join(helpers::KILN_DIR),
            source,
        })?;
        let element_files = copy_element_files(root, plan, &host_path)?;
        let planned = plan
            .phases
            .iter()
            .filter(|p| p.in_chroot)
            .map(|p| (p.name, entry_names(&host_path.join(p.name.dir_name()))))
            .collect();
        Ok(HooksTree {
            host_path,
            element_files,
            planned,
        })
    }

    fn remove(self) -> Result<(), PhaseError> {
        chroot::remove_dir_all_checked(&self.host_path).map_err(|source| PhaseError::Chroot {
            phase: PhaseName::Cleanup,
            source,
        })
    }

    /// The scripts an earlier hook added to `phase`'s directory of the
    /// hooks tree, as DIB's `install-types` does at `extra-data.d` (it
    /// links `install.d/<prefix>-<type>-install/*` into `install.d`):
    /// DIB's `dib-run-parts` runs whatever the directory holds when the
    /// phase starts, so kiln does too. Each is named after the element
    /// whose `<phase>.d/<subdir>/` it points into, else the first element
    /// with an `extra-data.d` hook.
    fn added(&self, plan: &Plan, phase: PhaseName) -> Vec<Script> {
        let Some((_, planned)) = self.planned.iter().find(|(name, _)| *name == phase) else {
            return Vec::new();
        };
        let dir = self.host_path.join(phase.dir_name());
        let mut added: Vec<Script> = entry_names(&dir)
            .into_iter()
            .filter(|name| !planned.contains(name))
            .filter_map(|name| {
                let name = name.into_string().ok()?;
                let path = dir.join(&name);
                if !crate::plan::runs_as_hook(&path, &name) {
                    return None;
                }
                // A plan with hooks has elements, so there is always one.
                let element = added_by(plan, phase, &path)?;
                Some(Script {
                    element,
                    name,
                    path,
                })
            })
            .collect();
        added.sort_by(|a, b| run_parts_order(&a.name, &b.name));
        added
    }
}

/// The names in `dir` (none when it cannot be read).
fn entry_names(dir: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// The element a script added to `phase`'s directory belongs to: the one
/// whose `<phase>.d/` holds the subdirectory a relative link points into
/// (`74-nova -> nova-package-install/74-nova`), else the first element
/// with an `extra-data.d` hook, else the plan's first element (none only
/// for a plan without elements).
fn added_by(plan: &Plan, phase: PhaseName, path: &Path) -> Option<crate::manifest::ElementName> {
    let subdir = std::fs::read_link(path).ok().and_then(|target| {
        target
            .components()
            .next()
            .map(|c| c.as_os_str().to_os_string())
    });
    let owner = subdir.and_then(|subdir| {
        plan.elements
            .iter()
            .find(|e| e.dir.join(phase.dir_name()).join(&subdir).is_dir())
    });
    let extra_data = || {
        plan.phases
            .iter()
            .find(|p| p.name == PhaseName::ExtraData)
            .and_then(|p| p.scripts.first())
            .and_then(|s| plan.elements.iter().find(|e| e.name == s.element))
    };
    owner
        .or_else(extra_data)
        .or_else(|| plan.elements.first())
        .map(|e| e.name.clone())
}

/// What of an element DIB leaves out of the hooks tree: its tests, Python
/// bytecode, and (kiln) the `environment.d` files, which the plan has
/// already placed in order.
const NOT_MERGED: &[&str] = &["tests", "__pycache__", "environment.d"];

/// Merges every planned element's subdirectories into the hooks tree, as
/// DIB's `generate_hooks` does, so that a script reaches its siblings
/// (`$(dirname $0)/../init-scripts/…`, a library beside it in its phase
/// directory, `$TMP_HOOKS_PATH/static`). Elements are merged in plan
/// order and the first file at a path stays (the phases' hooks, already
/// copied, are never replaced); symbolic links are copied as what they
/// point at, so a link into its own element still works in the merged tree.
fn merge_element_trees(root: &Path, plan: &Plan, hooks: &Path) -> Result<(), PhaseError> {
    for element in &plan.elements {
        let entries = match std::fs::read_dir(&element.dir) {
            Ok(entries) => entries,
            Err(source) => {
                return Err(PhaseError::Io {
                    action: "read",
                    path: element.dir.clone(),
                    source,
                });
            }
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_dir())
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_none_or(|name| !NOT_MERGED.contains(&name))
            })
            .collect();
        dirs.sort();
        for dir in dirs {
            let Some(name) = dir.file_name() else {
                continue;
            };
            let into = hooks.join(name);
            create_dir_in_tree(root, &into)?;
            let mut source = dir.clone().into_os_string();
            source.push("/.");
            run_cp(
                &[
                    "--recursive",
                    "--dereference",
                    "--no-clobber",
                    "--preserve=mode,timestamps",
                ],
                &source,
                &into,
            )?;
        }
    }
    Ok(())
}

/// Runs `cp OPTIONS FROM TO` on the host.
fn run_cp(options: &[&str], from: &std::ffi::OsStr, to: &Path) -> Result<(), PhaseError> {
    let mut args: Vec<&std::ffi::OsStr> = options.iter().map(std::ffi::OsStr::new).collect();
    args.extend([from, to.as_os_str()]);
    let failed = |detail: String| PhaseError::Io {
        action: "copy",
        path: PathBuf::from(from),
        source: std::io::Error::other(detail),
    };
    let finished =
        crate::host::command::run("cp", &args, "coreutils").map_err(|e| failed(e.to_string()))?;
    if !finished.success() {
        return Err(failed(finished.stderr));
    }
    Ok(())
}

/// For DIB's `install-bin` and `install-static` elements: copies every
/// planned element's `bin/` and `static/` into the hooks tree and returns
/// the commands that install them in the chroot (`bin/*` to
/// `/usr/local/bin` with mode 0755; `static/` copied over `/`, elements in
/// plan order).
fn copy_element_files(
    root: &Path,
    plan: &Plan,
    hooks: &Path,
) -> Result<Vec<Vec<String>>, PhaseError> {
    let uses = |name: &str| plan.elements.iter().any(|e| e.name.as_str() == name);
    let mut commands = Vec::new();
    let copy_tree = |from: &Path, to: &Path| -> Result<(), PhaseError> {
        create_dir_in_tree(root, to)?;
        let mut source = from.as_os_str().to_os_string();
        source.push("/.");
        run_cp(&["-a"], &source, to)
    };
    // Every element's `bin/` is in the hooks tree's `bin/` already
    // ([`merge_element_trees`]).
    if uses("install-bin") {
        let any = plan.elements.iter().any(|e| e.dir.join("bin").is_dir());
        if any {
            commands.push(vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                format!(
                    "mkdir -p /usr/local/bin && install -m 0755 {HOOKS_DIR}/bin/* /usr/local/bin/"
                ),
            ]);
        }
    }
    if uses("install-static") {
        for element in &plan.elements {
            let dir = element.dir.join("static");
            if dir.is_dir() {
                // Apart from the merged `static/` DIB's own
                // `install-static` reads: kiln's copies element by element.
                let into = hooks
                    .join(helpers::KILN_DIR)
                    .join("static")
                    .join(element.name.as_str());
                copy_tree(&dir, &into)?;
                commands.push(vec![
                    "cp".to_string(),
                    "-a".to_string(),
                    format!(
                        "{HOOKS_DIR}/{}/static/{}/.",
                        helpers::KILN_DIR,
                        element.name
                    ),
                    "/".to_string(),
                ]);
            }
        }
    }
    Ok(commands)
}

/// Creates `dir` and checks it resolves inside `root`: an image whose
/// `/tmp` is an absolute symlink must not make kiln write to the host.
fn create_dir_in_tree(root: &Path, dir: &Path) -> Result<(), PhaseError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| PhaseError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let resolved = std::fs::canonicalize(dir).map_err(io("resolve", dir))?;
    let root = std::fs::canonicalize(root).map_err(io("resolve", root))?;
    if !resolved.starts_with(&root) {
        return Err(PhaseError::Chroot {
            phase: PhaseName::Root,
            source: ChrootError::OutsideTree {
                path: dir.to_path_buf(),
                resolved,
            },
        });
    }
    Ok(())
}

/// Copies a hook, following a symlink as `dib-run-parts` does and keeping
/// its mode (`fs::copy` copies permissions).
fn copy(from: &Path, to: &Path) -> Result<(), PhaseError> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|source| PhaseError::Io {
            action: "copy",
            path: from.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan of one element, `dibby`, made of `files` (path, text); the
    /// directory holding it lives as long as the plan is used.
    fn plan_of(files: &[(&str, &str)]) -> (tempfile::TempDir, Plan) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let path = dir.path().join("dibby").join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, text).expect("write");
            if path.to_string_lossy().contains(".d/") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        }
        let source = crate::manifest::Source::new(
            "imagefile.yaml",
            "name: x\nbase: {distro: debian, release: bookworm, arch: amd64}\nelements: [dibby]\n",
        );
        let manifest = crate::manifest::parse(&source).expect("parses");
        let empty = tempfile::tempdir().expect("builtin");
        let search =
            crate::plan::SearchPath::from_parts(&[dir.path().to_path_buf()], None, empty.path());
        let plan = crate::plan::plan(&manifest, &search).expect("plans");
        (dir, plan)
    }

    fn names(steps: Vec<Step<'_>>) -> Vec<String> {
        steps
            .into_iter()
            .map(|step| match step {
                Step::Script(script) => script.name.clone(),
                Step::Packages { name, .. } => name.to_string(),
            })
            .collect()
    }

    /// The order of one phase's steps, by name, for a plan of one element
    /// made of `files` (path, text).
    fn step_names(files: &[(&str, &str)], phase: PhaseName) -> Vec<String> {
        let (_dir, plan) = plan_of(files);
        let Some(phase) = plan.phases.iter().find(|p| p.name == phase) else {
            return Vec::new();
        };
        names(steps(&plan, phase, &[]))
    }

    #[test]
    fn scripts_a_hook_links_into_a_phase_run_there_as_dib_install_types_needs() {
        let (_dir, plan) = plan_of(&[
            ("install.d/10-plain", "#!/bin/sh\n"),
            ("install.d/dibby-package-install/50-typed", "#!/bin/sh\n"),
            ("install.d/dibby-source-install/50-typed", "#!/bin/sh\n"),
        ]);
        let hooks = tempfile::tempdir().expect("hooks");
        let install = hooks.path().join("install.d");
        std::fs::create_dir(&install).expect("mkdir");
        std::fs::write(install.join("10-plain"), "#!/bin/sh\n").expect("write");
        for kind in ["package", "source"] {
            let typed = install.join(format!("dibby-{kind}-install"));
            std::fs::create_dir(&typed).expect("mkdir");
            std::fs::write(typed.join("50-typed"), "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(
                typed.join("50-typed"),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .expect("chmod");
        }
        let tree = HooksTree {
            host_path: hooks.path().to_path_buf(),
            element_files: Vec::new(),
            planned: vec![(PhaseName::Install, entry_names(&install))],
        };
        assert_eq!(tree.added(&plan, PhaseName::Install), Vec::new());

        // What install-types does at extra-data.d for DIB_INSTALLTYPE_dibby=package.
        std::os::unix::fs::symlink("dibby-package-install/50-typed", install.join("50-typed"))
            .expect("link");
        // Data beside the hooks is not a script.
        std::fs::write(install.join("notes.txt"), "").expect("write");
        let added = tree.added(&plan, PhaseName::Install);
        assert_eq!(added.len(), 1, "{added:?}");
        assert_eq!(added[0].name, "50-typed");
        assert_eq!(added[0].element.as_str(), "dibby");

        let phase = plan
            .phases
            .iter()
            .find(|p| p.name == PhaseName::Install)
            .expect("install.d");
        assert_eq!(names(steps(&plan, phase, &added)), ["10-plain", "50-typed"]);
    }

    #[test]
    fn package_installs_run_where_dib_runs_them_among_the_scripts() {
        let files = [
            (
                "package-installs.yaml",
                "rsync:\nold:\n  uninstall: true\nfirst:\n  phase: pre-install.d\nlast:\n  phase: post-install.d\n",
            ),
            ("pre-install.d/05-early", ""),
            ("pre-install.d/50-repos", ""),
            ("install.d/00-before", ""),
            ("install.d/10-install-static-files", ""),
            ("post-install.d/01-after", ""),
            ("post-install.d/96-late", ""),
        ];
        // DIB's `install-static` uses rsync at install.d/10: the package is
        // there by then (install.d/01-package-installs).
        assert_eq!(
            step_names(&files, PhaseName::Install),
            [
                "00-before",
                "01-package-installs",
                "10-install-static-files",
                "99-package-uninstalls"
            ]
        );
        assert_eq!(
            step_names(&files, PhaseName::PreInstall),
            ["05-early", "10-package-installs", "50-repos"]
        );
        assert_eq!(
            step_names(&files, PhaseName::PostInstall),
            ["00-package-installs", "01-after", "96-late"]
        );
    }

    #[test]
    fn img_functions_select_the_newest_kernel_and_its_initramfs() {
        let root = tempfile::tempdir().expect("tempdir");
        let boot = root.path().join("boot");
        std::fs::create_dir(&boot).expect("mkdir");
        for name in [
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-10-amd64",
            "initrd.img-6.1.0-9-amd64",
            "initrd.img-6.1.0-10-amd64",
            "config-6.1.0-10-amd64",
        ] {
            std::fs::write(boot.join(name), "").expect("write");
        }
        let script = format!(
            "{}\nselect_boot_kernel_initrd \"$1\"\necho \"$KERNEL $RAMDISK\"",
            helpers::IMG_FUNCTIONS
        );
        let select = || {
            #[allow(clippy::disallowed_methods)]
            std::process::Command::new("bash")
                .args(["-euc", &script, "test"])
                .arg(root.path())
                .output()
                .expect("bash runs")
        };
        let output = select();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "vmlinuz-6.1.0-10-amd64 initrd.img-6.1.0-10-amd64\n",
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::remove_file(boot.join("initrd.img-6.1.0-10-amd64")).expect("rm");
        assert!(
            !select().status.success(),
            "a kernel without initramfs fails"
        );
    }

    #[test]
    fn dib_env_is_what_bash_declare_p_prints() {
        let env = [
            ("DIB_RELEASE", "bookworm"),
            ("PATH", "/bin"),
            ("DIB_ODD", "a \"b\" $c `d` \\e"),
            ("DIB_RELEASE", "trixie"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()));
        let declared = declare_dib_variables(&env);
        assert_eq!(
            declared,
            "declare -x DIB_ODD=\"a \\\"b\\\" \\$c \\`d\\` \\\\e\"\ndeclare -x DIB_RELEASE=\"trixie\""
        );
        // bash reads it back to the same values.
        #[allow(clippy::disallowed_methods)]
        let output = std::process::Command::new("bash")
            .args([
                "-c",
                &format!("{declared}\nprintf '%s|' \"$DIB_ODD\" \"$DIB_RELEASE\""),
            ])
            .output()
            .expect("bash runs");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "a \"b\" $c `d` \\e|trixie|"
        );
    }

    #[test]
    fn the_hook_shell_sources_then_execs() {
        let argv = hook_argv(
            Path::new("/tmp/in_target.d/install.d/10-x"),
            [PathBuf::from("/e/05-a"), PathBuf::from("/e/10-b.bash")].into_iter(),
        );
        assert_eq!(argv[0], "/bin/bash");
        assert_eq!(argv[1], "-c");
        assert_eq!(
            &argv[3..],
            [
                "kiln-hook",
                "/tmp/in_target.d/install.d/10-x",
                "/e/05-a",
                "/e/10-b.bash"
            ]
        );
    }

    #[test]
    fn a_failure_names_element_phase_script_and_status() {
        let error = PhaseError::ScriptFailed {
            element: "fixture-fail".parse().expect("name"),
            phase: PhaseName::Install,
            script: "50-fixture-fail".to_string(),
            status: "exit code 3".to_string(),
            tail: vec!["about to fail".to_string()],
        };
        let text = error.to_string();
        for part in [
            "fixture-fail",
            "install.d",
            "50-fixture-fail",
            "exit code 3",
            "about to fail",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }
}
