//! `kiln build`: from the lock to the image files. The plan is made
//! first (a bad element set fails before any download), the lock made or
//! refreshed unless `--locked`, the packages fetched, then
//! [`crate::ops::build`] builds (twice with `--check`) and this prints
//! what it made.

use std::path::PathBuf;
use std::time::Instant;

use crate::chroot;
use crate::failure::Failure;
use crate::ops::build::{Built, Context, LockPolicy, build_into, check_reproducible};
use crate::ops::fetch::{download_mirror, fetch_failure, open_cache};
use crate::{fetch, manifest, plan, terminal};

/// Settings of `kiln build`.
#[derive(Debug)]
pub struct BuildSettings {
    /// The imagefile to build (its lock sits beside it).
    pub path: PathBuf,
    /// Where the result goes.
    pub output: PathBuf,
    /// The cache directory, when not the default.
    pub cache_dir: Option<PathBuf>,
    /// Use only the cache (`kiln fetch --offline` rules).
    pub offline: bool,
    /// Where to download the locked `.deb`s from instead of the lock's
    /// mirror.
    pub mirror: Option<String>,
    /// Refuse to build when the lock is missing or older than the
    /// imagefile, instead of locking first.
    pub locked: bool,
    /// Open a shell in the chroot when an in-chroot script fails.
    pub shell_on_failure: bool,
    /// Print the per-stage timings table.
    pub timings: bool,
    /// Keep the root tree as `<output>/<name>.root/`.
    pub keep_tree: bool,
    /// Build twice and compare the outputs.
    pub check: bool,
    /// Compress the qcow2 output.
    pub compress: bool,
    /// Make the tree from scratch: no snapshot is restored or kept.
    pub no_cache: bool,
    /// Make the tree on disk, never in a tmpfs.
    pub no_tmpfs: bool,
    /// Emulate every program of a foreign tree; run no native twin.
    pub emulate_all: bool,
    /// Element directories from the command line, highest precedence
    /// first.
    pub elements_path: Vec<PathBuf>,
}

/// Builds the root tree of the imagefile's lock.
pub fn run(settings: &BuildSettings) -> Result<(), Failure> {
    // Before anything is locked, downloaded or created.
    crate::ops::build::require_root("kiln build")?;
    // Before anything starts a thread: a mount namespace belongs to the
    // thread that creates it.
    chroot::enter_build_namespace().map_err(Failure::internal)?;
    crate::host::signals::install().map_err(Failure::internal)?;
    // Dropped last: assembly's scratch files are inside.
    let _temp = crate::host::temp::Session::start().map_err(Failure::internal)?;

    let started = Instant::now();
    let checked = manifest::read(&settings.path)?;
    crate::ops::build::check_host_runs_arch(&checked)?;
    let plan = crate::ops::lock::plan_elements(
        &checked,
        &settings.elements_path,
        settings.cache_dir.as_deref(),
    )?;
    let lock = crate::ops::build::current_lock(
        &settings.path,
        &checked,
        &plan,
        LockPolicy {
            locked: settings.locked,
            offline: settings.offline,
            cache_dir: settings.cache_dir.as_ref(),
        },
    )?;
    let mut timings = vec![("lock".to_string(), started.elapsed())];
    // Locking and fetching run no command the signal watcher could kill:
    // a signal that arrived meanwhile stops the build here.
    crate::host::signals::check().map_err(Failure::internal)?;
    if settings.offline && lock.base.image.is_some() {
        let packages = crate::ops::build::planned_packages(&checked, &plan);
        if !packages.is_empty() {
            return Err(Failure::user(miette::miette!(
                help = "build without --offline, or leave the packages out (`packages:` and the elements' package-installs.yaml)",
                "--offline cannot install {} on a base taken out of an image: they come from the image's own package sources, which the lock does not pin",
                packages.join(", ")
            )));
        }
    }

    let cache = open_cache(settings.cache_dir.as_ref())?;
    let http = crate::ops::fetch::http_client(settings.offline)?;
    let limit = crate::snapshot::limit_from_environment().map_err(|error| {
        Failure::user(miette::miette!(
            help = "give a size such as 8G, or 0 to build without snapshots",
            "{error}"
        ))
    })?;
    let snapshots = (!settings.no_cache && limit > 0)
        .then(|| crate::snapshot::Snapshots::in_cache(cache.dir(), limit));
    let context = Context {
        checked: &checked,
        plan: &plan,
        lock: &lock,
        cache: &cache,
        started,
        shell_on_failure: settings.shell_on_failure,
        compress: settings.compress,
        snapshots: snapshots.as_ref(),
        tmpfs: !settings.no_tmpfs,
        native_twins: !settings.emulate_all,
    };
    // Nothing to do when the last build into the output directory had the
    // same inputs and its outputs are all there, unchanged (unless
    // incremental builds are off: `--no-cache`, `KILN_SNAPSHOT_LIMIT=0`).
    if !settings.check && !settings.keep_tree && snapshots.is_some() {
        let inputs = crate::ops::build::inputs_digest(&context).map_err(Failure::internal)?;
        if let Some(report) = crate::ops::build::up_to_date(&checked, &settings.output, &inputs) {
            let files: Vec<&str> = report.outputs.iter().map(|o| o.file.as_str()).collect();
            terminal::status(&format!(
                "{} is up to date: {} built from the same inputs, unchanged (checked in {:.1} s); nothing to do",
                report.image,
                files.join(", "),
                started.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
    }
    let step = Instant::now();
    let mirror = download_mirror(settings.mirror.as_deref())?;
    fetch::fetch(&lock, mirror, &cache, &http).map_err(fetch_failure(&cache))?;
    timings.push(("fetch".to_string(), step.elapsed()));
    crate::host::signals::check().map_err(Failure::internal)?;

    if settings.check {
        let (built, compared) =
            check_reproducible(&context, &settings.output, settings.keep_tree, timings)?;
        print_result(settings, &context, &built);
        terminal::status(&format!(
            "reproducible: a second build in another directory gave the same {compared} outputs (SBOMs and provenance included) byte for byte"
        ));
        return Ok(());
    }
    let built = build_into(&context, &settings.output, settings.keep_tree, timings)?;
    print_result(settings, &context, &built);
    Ok(())
}

/// Tells the user what the build made.
fn print_result(settings: &BuildSettings, context: &Context<'_>, built: &Built) {
    let Context { plan, lock, .. } = *context;
    let Built {
        output,
        name,
        report,
        report_path,
        log_path,
        removed,
        timings,
        ..
    } = built;
    let total = timings.last().map(|(_, d)| *d).unwrap_or_default();
    if let Some(phase) = plan.phase(plan::PhaseName::BlockDevice)
        && !phase.scripts.is_empty()
    {
        terminal::status(&format!(
            "warning: skipped {} block-device.d scripts: kiln makes disks without block devices",
            phase.scripts.len()
        ));
    }
    if settings.timings {
        let width = timings
            .iter()
            .map(|(stage, _)| stage.chars().count())
            .max()
            .unwrap_or(0)
            .max(38);
        let mut table = format!("{:<width$} {:>8}\n", "stage", "seconds");
        for (stage, duration) in timings {
            table.push_str(&format!(
                "{stage:<width$} {:>8.2}\n",
                duration.as_secs_f64()
            ));
        }
        terminal::status(table.trim_end());
    }
    let removed_note = if removed.is_empty() {
        String::new()
    } else {
        format!("; removed during the build: {}", removed.join(", "))
    };
    let files: Vec<String> = report
        .outputs
        .iter()
        .map(|o| {
            format!(
                "{} ({})",
                output.join(&o.file).display(),
                terminal::human_bytes(o.bytes)
            )
        })
        .collect();
    let packages = match &lock.base.image {
        Some(image) => format!(
            "from the image {} ({} packages in the tree, not locked)",
            image.url,
            report.packages.len()
        ),
        None => format!("{} locked packages", lock.packages.len() - removed.len()),
    };
    terminal::status(&format!(
        "built {name} in {:.1} s: {packages}{removed_note}\n{}\nreport: {}\nlog: {}",
        total.as_secs_f64(),
        files.join("\n"),
        report_path.display(),
        log_path.display()
    ));
}
