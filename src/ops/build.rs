//! Building: from a current, fetched lock to the image files, inside the
//! build's own mount namespace (which the caller enters first).
//!
//! The tree is bootstrapped by the base's [`distro::Family`] (for Debian
//! and Ubuntu: installed and configured by the target's dpkg and apt,
//! checked with `dpkg-query`), the elements' phases run against it, the
//! tree is checked against the lock, normalised, assembled into a raw image (one
//! filesystem or a whole disk), and the outputs and `<name>.report.json`
//! are written to the output directory. Everything in between lives in
//! `<output>/.kiln-build-<name>/`, removed at the end, also on failure.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::chroot;
use crate::failure::Failure;
use crate::manifest::OutputFormat;
use crate::{
    assemble, distro, lock, manifest, normalise, output, phases, plan, report, reproducible, sbom,
    snapshot, terminal,
};

/// How [`current_lock`] may get a lock.
#[derive(Debug, Clone, Copy)]
pub struct LockPolicy<'a> {
    /// Refuse to lock: the lock must be there and current.
    pub locked: bool,
    /// No network: locking (which reads the mirror) is impossible.
    pub offline: bool,
    /// The cache directory, when not the default.
    pub cache_dir: Option<&'a PathBuf>,
}

/// Refuses to start `command` (`kiln build`, `disk-image-create`) unless
/// kiln runs as root, before anything is locked, downloaded or created:
/// without root the build could only fail later, at its first mount.
pub fn require_root(command: &str) -> Result<(), Failure> {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return Ok(());
    }
    let args: Vec<String> = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    Err(needs_root(command, uid.as_raw(), &args))
}

/// The diagnostic of [`require_root`]: why root, and the user's own
/// command line again under `sudo`.
fn needs_root(command: &str, uid: u32, args: &[String]) -> Failure {
    let line: Vec<String> = args.iter().map(|arg| terminal::shell_word(arg)).collect();
    let line = if line.is_empty() {
        command.to_string()
    } else {
        line.join(" ")
    };
    Failure::user(miette::miette!(
        help = format!("run it as root: sudo {line}"),
        "{command} needs root: it mounts /proc, /sys and /dev into the image's chroot, runs the packages' scripts there as root and gives the image's files their owners (kiln runs as uid {uid})"
    ))
}

/// Refuses, before anything is locked or downloaded, an image whose
/// architecture this host cannot run in the chroot: another architecture
/// needs QEMU's user-mode emulator and binfmt_misc
/// ([`chroot::emulation`]). The diagnostic points at `arch:`.
pub fn check_host_runs_arch(checked: &manifest::Checked) -> Result<(), Failure> {
    let arch = &checked.manifest.base.value.arch;
    match chroot::emulation::Emulation::for_target(arch.value.as_str()) {
        Ok(_) => Ok(()),
        Err(error) => Err(Failure::from(checked.source.problems(vec![
            manifest::Problem::error(
                error.to_string(),
                arch.span,
                "not runnable on this host",
                error.help(),
            ),
        ]))),
    }
}

/// The lock beside the imagefile at `path` when it still pins `checked`
/// and `plan`; otherwise, as cargo does, a new one made and written now
/// (unless `policy` forbids it: then a user failure saying what to run).
pub fn current_lock(
    path: &Path,
    checked: &manifest::Checked,
    plan: &plan::Plan,
    policy: LockPolicy<'_>,
) -> Result<lock::Lock, Failure> {
    let lock_path = lock::path_for(path);
    let read = lock::read(&lock_path);
    match read {
        Ok(lock) if super::lock::is_current(&lock, checked, plan) => {
            if policy.locked {
                refuse_hand_edits(&lock, &lock_path, path, checked, plan, policy.cache_dir)?;
            }
            Ok(lock)
        }
        // Locking again would write the lock back in this kiln's older
        // format, with or without --locked.
        Err(error) if error.is_newer_format() => Err(Failure::user(miette::miette!(
            help = lock::NEWER_FORMAT_HELP,
            "{error}"
        ))),
        read => {
            let why = match read {
                Err(lock::LockError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    format!("there is no lock at {}", lock_path.display())
                }
                Err(error) => error.to_string(),
                Ok(_) => format!(
                    "{} is older than {} or its elements",
                    lock_path.display(),
                    path.display()
                ),
            };
            if policy.locked {
                return Err(Failure::user(miette::miette!(
                    help = format!(
                        "run `kiln lock {}` and commit the lock, or build without --locked",
                        path.display()
                    ),
                    "{why}, and --locked forbids locking now"
                )));
            }
            if policy.offline {
                return Err(Failure::user(miette::miette!(
                    help = format!(
                        "run `kiln lock {0}` and `kiln fetch {0}` with the network first; then --offline builds",
                        path.display()
                    ),
                    "{why}, and --offline cannot lock: locking reads the mirror"
                )));
            }
            // As cargo does: a missing or stale lock is made before building.
            super::lock::lock_planned(
                checked,
                plan,
                &lock_path,
                policy.cache_dir,
                super::lock::Write::Yes,
            )
        }
    }
}

/// Refuses a lock that `kiln lock` did not write as it stands: its
/// packages are resolved again from the indexes it pins (read from the
/// cache, where `kiln lock` keeps them; nothing is downloaded) and every
/// package entry removed, added or changed is named with the lock's value
/// and the index's. When the cache does not hold those indexes, the
/// packages are still checked by hash as they are fetched.
fn refuse_hand_edits(
    lock: &lock::Lock,
    lock_path: &Path,
    path: &Path,
    checked: &manifest::Checked,
    plan: &plan::Plan,
    cache_dir: Option<&PathBuf>,
) -> Result<(), Failure> {
    let cache = super::fetch::open_cache(cache_dir)?;
    let resolved = lock::make::resolve_pinned(
        lock,
        &checked.manifest,
        &plan.packages_to_install(),
        &cache,
    )
    .map_err(|error| {
        Failure::user(miette::miette!(
            help = format!(
                "the lock was changed by hand: restore it from version control, or run `kiln lock --update {}` and review the diff",
                path.display()
            ),
            "{} does not resolve from the indexes it pins: {error}",
            lock_path.display()
        ))
    })?;
    let Some(resolved) = resolved else {
        return Ok(());
    };
    let edits = lock::diff::edited(&lock.packages, &resolved);
    if edits.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = edits.iter().map(|e| format!("  - {e}")).collect();
    Err(Failure::user(miette::miette!(
        help = format!(
            "the lock was changed by hand (or by a tool that is not `kiln lock`): restore it from version control, or run `kiln lock --update {}` and review the diff",
            path.display()
        ),
        "{} is not what its pinned indexes give, and --locked builds only a lock as `kiln lock` wrote it:\n{}",
        lock_path.display(),
        list.join("\n")
    )))
}

/// Every package the build installs by name: the imagefile's and the
/// elements' (pkg-map applied), sorted, each once.
pub fn planned_packages(checked: &manifest::Checked, plan: &plan::Plan) -> Vec<String> {
    let mut packages: Vec<String> = checked
        .manifest
        .packages
        .iter()
        .map(|p| p.value.name().to_string())
        .chain(plan.packages_to_install())
        .collect();
    packages.sort();
    packages.dedup();
    packages
}

/// A `ramdisk` output for an image that installs no kernel: the output is
/// a kernel and an initramfs, and would fail at the end of the build. An
/// image base brings its own kernel (checked when the ramdisk is written).
pub fn ramdisk_without_kernel(
    checked: &manifest::Checked,
    plan: &plan::Plan,
) -> Option<manifest::Problem> {
    let manifest = &checked.manifest;
    let output = manifest
        .outputs
        .iter()
        .find(|o| o.value == OutputFormat::Ramdisk)?;
    let has_kernel = manifest.base.value.from_image()
        || planned_packages(checked, plan)
            .iter()
            .any(|p| p.starts_with("linux-image-"));
    if has_kernel {
        return None;
    }
    Some(manifest::Problem::error(
        "a ramdisk needs a kernel, and this image installs none",
        output.span,
        "no kernel to boot",
        "add the `vm` element (kernel, initramfs tools, systemd), or a kernel package such as `linux-image-amd64` to `packages`",
    ))
}

/// What one build needs that does not change between two builds of it.
pub struct Context<'a> {
    /// The imagefile, read and checked.
    pub checked: &'a manifest::Checked,
    /// Its elements, planned.
    pub plan: &'a plan::Plan,
    /// Its lock, current and fetched.
    pub lock: &'a lock::Lock,
    /// The cache holding the locked packages.
    pub cache: &'a crate::cache::Cache,
    /// When the build started (the total in the timings counts from here).
    pub started: Instant,
    /// Open a shell in the chroot when an in-chroot script fails.
    pub shell_on_failure: bool,
    /// Compress the qcow2 output.
    pub compress: bool,
    /// Where the tree's snapshots are kept; `None` (`--no-cache`) builds
    /// from scratch and keeps none.
    pub snapshots: Option<&'a snapshot::Snapshots>,
    /// Make the tree in a tmpfs when the host's memory has room for it
    /// (not with `--no-tmpfs`); see [`tree_tmpfs_size`].
    pub tmpfs: bool,
    /// Run the lock's native twins in place of emulating the same
    /// programs of a foreign tree (not with `--emulate-all`).
    pub native_twins: bool,
}

/// What one build made.
pub struct Built {
    /// The output directory, absolute.
    pub output: PathBuf,
    /// The image's name.
    pub name: String,
    /// What `<name>.report.json` holds.
    pub report: report::Report,
    /// Where the report is.
    pub report_path: PathBuf,
    /// Where the build log is.
    pub log_path: PathBuf,
    /// Locked packages a hook removed during the build.
    pub removed: Vec<String>,
    /// Each stage and how long it took, `total` last.
    pub timings: Vec<(String, std::time::Duration)>,
    /// The kept root tree, when asked for.
    pub tree: Option<PathBuf>,
}

/// Builds the image into `output_dir` (the work directory beside the
/// outputs), from the fetched lock.
pub fn build_into(
    context: &Context<'_>,
    output_dir: &Path,
    keep_tree: bool,
    mut timings: Vec<(String, std::time::Duration)>,
) -> Result<Built, Failure> {
    let Context {
        checked,
        plan,
        lock,
        cache,
        started,
        shell_on_failure,
        compress,
        snapshots,
        tmpfs,
        native_twins,
    } = *context;
    let name = checked.manifest.name.value.as_str().to_string();
    fs_err::create_dir_all(output_dir).map_err(Failure::internal)?;
    // Absolute: the chroot runner changes directories before it uses it.
    let output = fs_err::canonicalize(output_dir).map_err(Failure::internal)?;
    // Held until the build returns: a second build into the directory
    // would mix its files with this one's.
    let _directory_lock = lock_output_dir(&output)?;
    // A build killed with SIGKILL left its half-written outputs' staging;
    // under the directory's lock no live build owns any.
    output::remove_abandoned_staging(&output).map_err(Failure::internal)?;
    let work = output.join(format!(".kiln-build-{name}"));
    if work.exists() {
        remove_work(&work).map_err(Failure::internal)?;
    }
    let log_path = output.join(format!("{name}.build.log"));
    let mut log = fs_err::File::create(&log_path).map_err(Failure::internal)?;
    let (root, where_made) = place_tree(&work, tmpfs, lock);
    {
        use std::io::Write as _;
        writeln!(log, "kiln: {where_made}").map_err(Failure::internal)?;
    }
    let in_memory = root.starts_with(work.join(TREE_TMPFS));
    fs_err::create_dir_all(&root).map_err(Failure::internal)?;
    if native_twins && !lock.native_twins.is_empty() {
        let step = Instant::now();
        if let Some(line) = unpack_native_twins(lock, cache, &root)? {
            use std::io::Write as _;
            writeln!(log, "kiln: {line}").map_err(Failure::internal)?;
            terminal::status(&line);
            timings.push(("unpack the native twins".to_string(), step.elapsed()));
        }
    }

    let manifest_dir = manifest_dir(checked);
    let family = super::lock::base_family(checked);
    let packages = planned_packages(checked, plan);
    let request = distro::BootstrapRequest {
        lock,
        cache,
        manifest: &checked.manifest,
        manifest_dir,
        packages: &packages,
        root: &root,
        work: &work,
    };
    let lock_text = lock::to_text(lock);
    let identity_text = lock::identity_text(lock);
    let uses_vm = plan.elements.iter().any(|e| e.name.as_str() == "vm");
    let fstab = match assemble::fstab_text(
        &checked.manifest.disk.value,
        uses_vm,
        checked.manifest.base.value.arch.value,
        &identity_text,
    ) {
        Ok(text) => text,
        Err(error) => return Err(failed(&work, &log_path, &error, None)),
    };
    let base_environment = family.phase_environment(lock);
    let locked: Vec<String> = lock.packages.iter().map(|p| p.name.clone()).collect();
    let run = phases::PhaseRun {
        root: &root,
        work: &work,
        output: &output,
        source_date_epoch: lock.source_date_epoch,
        base_environment: &base_environment,
        locked: &locked,
        shell_on_failure,
    };

    // The tree: from a snapshot when one of the same inputs is kept, else
    // made (and snapshotted); either way staged again for what follows.
    let snapshot = match snapshots {
        Some(snapshots) if family.takes_snapshots() => {
            match snapshot_key(checked, plan, lock, &run, &fstab) {
                Ok(key) => Some((snapshots, key)),
                Err(error) => {
                    terminal::warning(&format!("building without a snapshot: {error}"));
                    None
                }
            }
        }
        _ => None,
    };
    let restored = match &snapshot {
        Some((snapshots, key)) if snapshots.find(key).is_some() => {
            let step = Instant::now();
            terminal::status(&format!(
                "restoring the tree from snapshot {} (its inputs are unchanged)",
                &key.as_str()[..12]
            ));
            fs_err::remove_dir(&root).map_err(Failure::internal)?;
            match snapshots.restore(key, &root) {
                Ok(()) => {
                    timings.push(("restore the snapshot".to_string(), step.elapsed()));
                    true
                }
                Err(error) => {
                    terminal::warning(&format!(
                        "cannot restore the snapshot, making the tree: {error}"
                    ));
                    if root.exists() {
                        chroot::remove_dir_all_checked(&root).map_err(Failure::internal)?;
                    }
                    fs_err::create_dir_all(&root).map_err(Failure::internal)?;
                    false
                }
            }
        }
        _ => false,
    };
    // A family that takes no snapshots keeps the staging of its bootstrap;
    // otherwise the tree, restored or just snapshotted, is staged again.
    let mut snapshot_writer = None;
    let kept = if restored {
        None
    } else {
        let (staged, made) = make_tree(family, &request, plan, &run, &fstab, &mut log)
            .map_err(|error| failed(&work, &log_path, &error, error.interrupted_by()))?;
        timings.extend(made);
        if family.takes_snapshots() {
            // Taken and restored without the staging: a snapshot holds only
            // what the image will, and both paths stage again below.
            let step = Instant::now();
            if let Err(error) = staged.remove() {
                return Err(failed(&work, &log_path, &error, None));
            }
            if let Some((snapshots, key)) = &snapshot {
                terminal::progress("snapshot: keeping the tree for the next build");
                if in_memory {
                    snapshot_writer =
                        Some(SnapshotWriter::start(snapshots, key, &name, &root, &work));
                } else {
                    let saved = snapshots.save(key, &name, &root, &mut log);
                    report_snapshot(snapshots, saved);
                }
                timings.push(("save the snapshot".to_string(), step.elapsed()));
            }
            None
        } else {
            Some(staged)
        }
    };
    let staged = match kept {
        Some(staged) => staged,
        None => {
            let step = Instant::now();
            match family.restage(&request, &mut log) {
                Ok(staged) => {
                    timings.push(("stage the packages".to_string(), step.elapsed()));
                    staged
                }
                Err(error) => {
                    return Err(failed(&work, &log_path, &error, error.interrupted_by()));
                }
            }
        }
    };

    match phases::run_phases(plan, &run, phases::PhaseSpan::FinishImage, &mut log) {
        Ok(phase_timings) => timings.extend(phase_timings),
        Err(error) => {
            drop(staged);
            return Err(failed(&work, &log_path, &error, error.interrupted_by()));
        }
    }
    let step = Instant::now();
    let checked_tree = staged
        .remove()
        .and_then(|()| family.check_finished_tree(lock, &root));
    let distro::TreeCheck { removed, installed } = match checked_tree {
        Ok(check) => check,
        Err(error) => return Err(failed(&work, &log_path, &error, None)),
    };
    timings.push(("check the finished tree".to_string(), step.elapsed()));

    stop_if_interrupted(&work, &log_path, "normalising the tree")?;
    let step = Instant::now();
    if let Err(error) =
        normalise::normalise(&root, lock.source_date_epoch, family.volatile(), &mut log)
    {
        return Err(failed(&work, &log_path, &error, None));
    }
    timings.push(("normalise".to_string(), step.elapsed()));

    let formats: Vec<OutputFormat> = checked.manifest.outputs.iter().map(|o| o.value).collect();
    // The tree formats (tar, squashfs, ramdisk) are written from the tree:
    // without a disk format there is no disk to assemble.
    // Beside the tree: in memory when it is, so the image is not written
    // to disk twice (once here, once as each output).
    let raw = root.parent().unwrap_or(&work).join(format!("{name}.raw"));
    let needs_disk = formats.iter().any(|f| output::is_disk_format(*f));
    if let Err(error) = check_output_space(&root, &output, &name, &formats) {
        terminal::progress_done();
        remove_work(&work).map_err(Failure::internal)?;
        return Err(error);
    }
    if needs_disk {
        stop_if_interrupted(&work, &log_path, "assembling the disk")?;
        let step = Instant::now();
        terminal::progress("assemble: making the filesystems and the disk");
        let request = assemble::AssembleRequest {
            disk: &checked.manifest.disk.value,
            arch: checked.manifest.base.value.arch.value,
            uses_vm,
            lock_text: &identity_text,
            source_date_epoch: lock.source_date_epoch,
            root: &root,
            work: &work,
            raw: &raw,
        };
        let assembled = match assemble::assemble(&request, &mut log) {
            Ok(assembled) => assembled,
            Err(assemble::AssembleError::TooSmall(too_small)) => {
                terminal::progress_done();
                remove_work(&work).map_err(Failure::internal)?;
                return Err(Failure::from(checked.source.problems(vec![
                    manifest::Problem::error(
                        too_small.message(),
                        too_small.span(),
                        too_small.label(),
                        too_small.help(),
                    ),
                ])));
            }
            Err(error) => return Err(failed(&work, &log_path, &error, None)),
        };
        timings.extend(
            assembled
                .timings
                .iter()
                .map(|(stage, duration)| (format!("assemble: {stage}"), *duration)),
        );
        timings.push(("assemble".to_string(), step.elapsed()));
    }

    stop_if_interrupted(&work, &log_path, "writing the outputs")?;
    terminal::progress("outputs: writing the image files");
    let outputs = output::write_outputs(&output::OutputRequest {
        image: &name,
        dir: &output,
        formats: &formats,
        raw: needs_disk.then_some(raw.as_path()),
        raw_placement: output::convert::RawPlacement::Move,
        tree: Some(&root),
        source_date_epoch: lock.source_date_epoch,
        disk: output::convert::DiskOptions {
            compress_qcow2: compress,
        },
        ramdisk: checked.manifest.ramdisk.as_ref().map(|r| &r.value),
    });
    let outputs = match outputs {
        Ok(outputs) => outputs,
        Err(output::OutputError::RamdiskTooLarge {
            bytes,
            limit,
            biggest,
            ..
        }) => {
            terminal::progress_done();
            remove_work(&work).map_err(Failure::internal)?;
            return Err(ramdisk_too_large(checked, bytes, limit, &biggest));
        }
        Err(error) => return Err(failed(&work, &log_path, &error, None)),
    };
    for written in &outputs {
        // By the file's extension: a ramdisk is a `kernel` and an
        // `initramfs`.
        let extension = written.path.extension().map_or_else(
            || output::extension(written.format).into(),
            |e| e.to_string_lossy(),
        );
        timings.push((format!("output {extension}"), written.duration));
    }
    let mut described = Vec::new();
    for written in &outputs {
        match report::describe_output(written.format, &written.path) {
            Ok(output) => described.push(output),
            Err(error) => return Err(failed(&work, &log_path, &error, None)),
        }
    }

    // From the finished tree, which is still there: its package database
    // is what the image holds.
    stop_if_interrupted(&work, &log_path, "writing the SBOMs")?;
    terminal::progress("sbom: the bills of materials and the provenance");
    let documents = Documents {
        checked,
        lock,
        lock_text: lock_text.as_bytes(),
        dir: &output,
        compress,
    };
    let written_documents = match documents.write(&root, installed.as_deref(), &described) {
        Ok((written, steps)) => {
            timings.extend(steps);
            written
        }
        Err(error) => return Err(failed(&work, &log_path, &error, None)),
    };

    if let Some(writer) = snapshot_writer.take() {
        let step = Instant::now();
        writer.finish(&mut log);
        timings.push(("finish writing the snapshot".to_string(), step.elapsed()));
    }
    let kept_tree = if keep_tree {
        let tree = output.join(format!("{name}.root"));
        if tree.exists() {
            chroot::remove_dir_all_checked(&tree).map_err(Failure::internal)?;
        }
        if in_memory {
            // Out of the tmpfs, which goes with the work directory.
            crate::host::file::copy_tree(&root, &tree)
                .map_err(|detail| Failure::internal(format!("cannot keep the tree: {detail}")))?;
        } else {
            fs_err::rename(&root, &tree).map_err(Failure::internal)?;
        }
        Some(tree)
    } else {
        None
    };
    remove_work(&work).map_err(Failure::internal)?;
    // Outputs already renamed are whole; without a new report the next
    // build checks them against the old one and makes them again. After
    // this point the build is done but for the report, and finishes.
    stop_if_interrupted(&work, &log_path, "writing the report")?;
    let total = started.elapsed();
    timings.push(("total".to_string(), total));

    let mut report = report::Report::new(&name, lock, lock_text.as_bytes());
    report.inputs = inputs_digest(context).ok();
    report.packages.retain(|p| !removed.contains(&p.name));
    if let Some(installed) = installed {
        report.packages = installed;
        report.notes.push(
            "the base came from an image: its packages, and those the build installed, are listed as the tree holds them; the lock pins the image, not them"
                .to_string(),
        );
    }
    if !removed.is_empty() {
        report.notes.push(format!(
            "locked but removed during the build: {}",
            removed.join(", ")
        ));
    }
    for summary in outputs.iter().filter_map(|w| w.ramdisk.as_ref()) {
        report.notes.extend(ramdisk_notes(summary, checked));
    }
    report.outputs = described;
    report.documents = written_documents;
    report.timings = timings
        .iter()
        .map(|(stage, duration)| report::Timing::new(stage, *duration))
        .collect();
    let report_path = output.join(format!("{name}.report.json"));
    report::write_report(&report_path, &report).map_err(Failure::internal)?;

    terminal::progress_done();
    Ok(Built {
        output,
        name,
        report,
        report_path,
        log_path,
        removed,
        timings,
        tree: kept_tree,
    })
}

/// What the SBOMs and the provenance of a build are written from.
pub struct Documents<'a> {
    /// The imagefile: its name, its `sbom` formats.
    pub checked: &'a manifest::Checked,
    /// The lock the image was built from.
    pub lock: &'a lock::Lock,
    /// The lock's text.
    pub lock_text: &'a [u8],
    /// The output directory.
    pub dir: &'a Path,
    /// Whether the qcow2 was compressed (a parameter of the build).
    pub compress: bool,
}

impl Documents<'_> {
    /// Writes the SBOMs the imagefile asks for, from the finished tree at
    /// `root` (`rpm_packages`: what an RPM image base's tree holds), and
    /// the provenance naming `outputs` and the SBOMs. Returns the files
    /// written and how long each part took.
    pub fn write(
        &self,
        root: &Path,
        rpm_packages: Option<&[report::ReportPackage]>,
        outputs: &[report::ReportOutput],
    ) -> Result<(Vec<report::ReportDocument>, Timings), sbom::SbomError> {
        let name = self.checked.manifest.name.value.as_str();
        let step = Instant::now();
        let mut documents = Vec::new();
        let mut timings = Vec::new();
        let formats: Vec<manifest::SbomFormat> =
            self.checked.manifest.sbom.iter().map(|f| f.value).collect();
        if !formats.is_empty() {
            let origin = sbom::Origin {
                image: name,
                lock: self.lock,
                lock_text: self.lock_text,
            };
            let inventory = sbom::Inventory::from_tree(origin, root, rpm_packages)?;
            for format in formats {
                let (suffix, document) = match format {
                    manifest::SbomFormat::Spdx => {
                        (sbom::SPDX_SUFFIX, sbom::spdx::document(&inventory))
                    }
                    manifest::SbomFormat::Cyclonedx => (
                        sbom::CYCLONEDX_SUFFIX,
                        sbom::cyclonedx::document(&inventory),
                    ),
                };
                documents.push(write_document(self.dir, name, suffix, &document)?);
            }
            timings.push(("sbom".to_string(), step.elapsed()));
        }
        let step = Instant::now();
        let lock_path = lock::path_for(Path::new(self.checked.source.name()));
        let file_name = |path: &Path| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let imagefile = file_name(Path::new(self.checked.source.name()));
        let lock_file = file_name(&lock_path);
        let imagefile_sha256 =
            crate::cache::Digest::of_bytes(self.checked.source.text().as_bytes()).sha256;
        let lock_sha256 = crate::cache::Digest::of_bytes(self.lock_text).sha256;
        let subjects = outputs
            .iter()
            .map(|o| (o.file.clone(), o.sha256.clone()))
            .chain(documents.iter().map(|d| (d.file.clone(), d.sha256.clone())))
            .map(|(name, sha256)| sbom::provenance::Subject { name, sha256 })
            .collect();
        let statement = sbom::provenance::statement(&sbom::provenance::Build {
            image: name,
            imagefile: &imagefile,
            imagefile_sha256: &imagefile_sha256,
            lock_file: &lock_file,
            lock_sha256: &lock_sha256,
            outputs: self
                .checked
                .manifest
                .outputs
                .iter()
                .map(|o| output::extension(o.value).to_string())
                .collect(),
            compress: self.compress,
            source_date_epoch: self.lock.source_date_epoch,
            subjects,
        });
        documents.push(write_document(
            self.dir,
            name,
            sbom::PROVENANCE_SUFFIX,
            &statement,
        )?);
        timings.push(("provenance".to_string(), step.elapsed()));
        Ok((documents, timings))
    }
}

/// Writes one document beside the outputs and describes it for the report.
fn write_document(
    dir: &Path,
    name: &str,
    suffix: &str,
    document: &serde_json::Value,
) -> Result<report::ReportDocument, sbom::SbomError> {
    let text = sbom::to_text(document);
    let path = sbom::write_document(dir, name, suffix, &text)?;
    Ok(report::ReportDocument {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256: crate::cache::Digest::of_bytes(text.as_bytes()).sha256,
    })
}

/// `--check`: builds into the output directory and again into a second
/// directory below it (another path, another work directory), compares
/// every output, and on a difference names the files of the tree, or the
/// partitions, that differ.
///
/// Returns the first build and the number of outputs compared.
pub fn check_reproducible(
    context: &Context<'_>,
    output_dir: &Path,
    keep_tree: bool,
    timings: Vec<(String, std::time::Duration)>,
) -> Result<(Built, usize), Failure> {
    let first = build_into(context, output_dir, true, timings.clone())?;
    let second_dir = first.output.join(format!(".kiln-check-{}", first.name));
    // On disk when the first was in memory: the same bytes either way.
    let on_disk = Context {
        tmpfs: false,
        ..*context
    };
    let second = build_into(&on_disk, &second_dir, true, timings)?;
    let by_format = |built: &Built| -> Vec<(String, String, String)> {
        built
            .report
            .outputs
            .iter()
            .map(|o| {
                (
                    format!("{:?}", o.format).to_lowercase(),
                    o.file.clone(),
                    o.sha256.clone(),
                )
            })
            // The SBOMs and the provenance are outputs too.
            .chain(
                built
                    .report
                    .documents
                    .iter()
                    .map(|d| ("document".to_string(), d.file.clone(), d.sha256.clone())),
            )
            .collect()
    };
    let (a, b) = (by_format(&first), by_format(&second));
    let differing: Vec<&(String, String, String)> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.2 != y.2)
        .map(|(x, _)| x)
        .collect();
    let mut findings = Vec::new();
    if !differing.is_empty() {
        if let (Some(tree_a), Some(tree_b)) = (&first.tree, &second.tree) {
            let differences =
                reproducible::diff_trees(tree_a, tree_b).map_err(Failure::internal)?;
            for difference in differences.iter().take(MAX_SHOWN_DIFFERENCES) {
                findings.push(difference.to_string());
            }
            if differences.len() > MAX_SHOWN_DIFFERENCES {
                findings.push(format!(
                    "… and {} more",
                    differences.len() - MAX_SHOWN_DIFFERENCES
                ));
            }
        }
        let raw_a = first.output.join(format!("{}.raw", first.name));
        let raw_b = second.output.join(format!("{}.raw", second.name));
        if let Some(partitions) = partitions_of(&raw_a)
            && raw_b.exists()
        {
            let names = reproducible::differing_partitions(&raw_a, &raw_b, &partitions)
                .map_err(Failure::internal)?;
            if !names.is_empty() {
                findings.push(format!("partitions that differ: {}", names.join(", ")));
            }
        }
        if findings.is_empty() {
            findings.push(
                "the trees are identical: the difference is in what a tool wrote around the files (filesystem metadata)"
                    .to_string(),
            );
        }
    }
    // The second build and the kept trees are only for the comparison.
    chroot::remove_dir_all_checked(&second_dir).map_err(Failure::internal)?;
    let mut first = first;
    if !keep_tree && let Some(tree) = first.tree.take() {
        chroot::remove_dir_all_checked(&tree).map_err(Failure::internal)?;
    }
    if differing.is_empty() {
        return Ok((first, a.len()));
    }
    let files: Vec<String> = differing.iter().map(|(_, file, _)| file.clone()).collect();
    Err(Failure::user(miette::miette!(
        help = "make the element that writes this honour SOURCE_DATE_EPOCH and write no random data; see the user guide's reproducibility page",
        "not reproducible: {} differ between two builds of the same lock:\n{}",
        files.join(", "),
        findings.join("\n")
    )))
}

/// How many differences `--check` lists.
const MAX_SHOWN_DIFFERENCES: usize = 20;

/// (name, start, size) in bytes of each partition of a raw disk, read
/// with sfdisk; `None` for a filesystem image or when it cannot be read.
fn partitions_of(raw: &Path) -> Option<Vec<(String, u64, u64)>> {
    let finished = crate::host::command::run(
        "sfdisk",
        &[std::ffi::OsStr::new("--json"), raw.as_os_str()],
        "fdisk",
    )
    .ok()?;
    if !finished.success() {
        return None;
    }
    let table: serde_json::Value = serde_json::from_slice(&finished.stdout).ok()?;
    let sector = table["partitiontable"]["sectorsize"]
        .as_u64()
        .unwrap_or(512);
    table["partitiontable"]["partitions"]
        .as_array()?
        .iter()
        .map(|p| {
            Some((
                p["name"].as_str().unwrap_or("?").to_string(),
                p["start"].as_u64()? * sector,
                p["size"].as_u64()? * sector,
            ))
        })
        .collect()
}

/// An initramfs over `ramdisk.max_size`: the user's limit, so a diagnostic
/// at it, naming the directories that hold the most.
fn ramdisk_too_large(
    checked: &manifest::Checked,
    bytes: u64,
    limit: u64,
    biggest: &[(String, u64)],
) -> Failure {
    let listed: Vec<String> = biggest
        .iter()
        .map(|(dir, size)| format!("  {dir}  {}", terminal::human_bytes(*size)))
        .collect();
    let message = format!(
        "the initramfs would be {}, over `ramdisk.max_size` ({}); the directories holding the most, unpacked:\n{}",
        terminal::human_bytes(bytes),
        terminal::human_bytes(limit),
        listed.join("\n")
    );
    let help = "leave out what the ramdisk does not need with `ramdisk.exclude` (the image's other outputs keep it), or raise `ramdisk.max_size`";
    let span = checked
        .manifest
        .ramdisk
        .as_ref()
        .and_then(|r| r.value.max_size.as_ref())
        .map(|m| m.span);
    match span {
        Some(span) => Failure::from(checked.source.problems(vec![manifest::Problem::error(
            message,
            span,
            format!("the initramfs is {}", terminal::human_bytes(bytes)),
            help,
        )])),
        None => Failure::user(miette::miette!(help = help, "{message}")),
    }
}

/// What the report says about a ramdisk beyond its two files.
fn ramdisk_notes(
    summary: &output::ramdisk::RamdiskSummary,
    checked: &manifest::Checked,
) -> Vec<String> {
    let mut notes = vec![format!(
        "ramdisk: kernel {} ({}); the initramfs ({}) is {} and unpacks to {} in RAM, {} entries; left out: {} (`ramdisk.exclude`, the kernel file, the disk boot's initramfs)",
        summary.kernel.version,
        summary.kernel.path.display(),
        summary.compression.as_str(),
        terminal::human_bytes(summary.compressed_bytes),
        terminal::human_bytes(summary.unpacked_bytes),
        summary.entries,
        terminal::human_bytes(summary.excluded_bytes),
    )];
    let cmdline = checked
        .manifest
        .ramdisk
        .as_ref()
        .and_then(|r| r.value.cmdline.as_ref())
        .map_or("", |c| c.value.as_str());
    notes.push(format!(
        "ramdisk: boot it with the kernel command line `{}`",
        format!("console=ttyS0 {cmdline}").trim_end()
    ));
    if !summary.lost_capabilities.is_empty() {
        let paths: Vec<String> = summary
            .lost_capabilities
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        notes.push(format!(
            "ramdisk: a cpio archive holds no extended attributes, so these files lost their capabilities and work for root only: {}",
            paths.join(", ")
        ));
    }
    if !summary.skipped_sockets.is_empty() {
        notes.push(format!(
            "ramdisk: {} socket(s) left out (no archive holds one)",
            summary.skipped_sockets.len()
        ));
    }
    notes
}

/// The failure of a build step after the work directory exists: leave
/// nothing that looks like a result (the mounts are gone with the guards,
/// and removal refuses if any remain) and name the log.
/// Locks the output directory for this build (an exclusive `flock` on the
/// directory itself, so no file is left behind; released when the returned
/// handle is dropped, also when kiln is killed). Another build holding it
/// is a user error naming the directory.
fn lock_output_dir(output: &Path) -> Result<std::fs::File, Failure> {
    let dir = fs_err::File::open(output)
        .map_err(Failure::internal)?
        .into_parts()
        .0;
    match dir.try_lock() {
        Ok(()) => Ok(dir),
        Err(std::fs::TryLockError::WouldBlock) => Err(Failure::user(miette::miette!(
            help = "wait for that build to finish, or build into another directory with -o",
            "another kiln build is writing into {} right now",
            output.display()
        ))),
        Err(std::fs::TryLockError::Error(source)) => Err(Failure::internal(source)),
    }
}

/// Stages and how long each took, in order.
type Timings = Vec<(String, std::time::Duration)>;

/// Makes the tree: bootstraps the base, writes `/etc/fstab` and runs the
/// phases that make the tree. Returns the staging and the timings.
fn make_tree(
    family: &dyn distro::Family,
    request: &distro::BootstrapRequest<'_>,
    plan: &plan::Plan,
    run: &phases::PhaseRun<'_>,
    fstab: &str,
    log: &mut fs_err::File,
) -> Result<(Box<dyn distro::Staged>, Timings), MakeTreeError> {
    match &request.lock.base.image {
        Some(image) => {
            terminal::status(&format!(
                "taking the base tree out of {} into {}",
                image.url,
                request.root.display()
            ));
            terminal::progress("bootstrap: copying the image's tree, installing the packages");
        }
        None => {
            terminal::status(&format!(
                "bootstrapping {} packages into {}",
                request.lock.packages.len(),
                request.root.display()
            ));
            terminal::progress(
                "bootstrap: unpacking, configuring and installing the locked packages",
            );
        }
    }
    let distro::Bootstrapped {
        timings: steps,
        staged,
    } = family.bootstrap(request, log)?;
    let mut timings: Timings = steps
        .iter()
        .map(|(stage, duration)| (stage.to_string(), *duration))
        .collect();
    assemble::write_fstab(request.root, fstab)?;
    if plan.phases.iter().any(|p| !p.scripts.is_empty()) {
        terminal::status(&format!(
            "running the phases of {} elements",
            plan.elements.len()
        ));
    }
    timings.extend(phases::run_phases(
        plan,
        run,
        phases::PhaseSpan::MakeTree,
        log,
    )?);
    Ok((staged, timings))
}

/// Why [`make_tree`] failed.
#[derive(Debug, thiserror::Error)]
enum MakeTreeError {
    #[error(transparent)]
    Base(#[from] distro::BaseError),
    #[error(transparent)]
    Fstab(#[from] assemble::AssembleError),
    #[error(transparent)]
    Phases(#[from] phases::PhaseError),
}

impl MakeTreeError {
    fn interrupted_by(&self) -> Option<nix::sys::signal::Signal> {
        match self {
            MakeTreeError::Base(error) => error.interrupted_by(),
            MakeTreeError::Fstab(_) => None,
            MakeTreeError::Phases(error) => error.interrupted_by(),
        }
    }
}

/// The key of the tree this build makes before the finishing phases
/// ([`snapshot::key`]), `/etc/fstab` and the files the imagefile names
/// included.
fn snapshot_key(
    checked: &manifest::Checked,
    plan: &plan::Plan,
    lock: &lock::Lock,
    run: &phases::PhaseRun<'_>,
    fstab: &str,
) -> Result<snapshot::Key, snapshot::SnapshotError> {
    let kiln = snapshot::kiln_digest()?;
    let mut environment = phases::hook_environment(plan, run);
    environment.push(("kiln: /etc/fstab".to_string(), fstab.to_string()));
    environment.extend(named_files(checked));
    let elements: Vec<(&str, &Path)> = plan
        .elements
        .iter()
        .map(|e| (e.name.as_str(), e.dir.as_path()))
        .collect();
    snapshot::key(&snapshot::KeyInputs {
        kiln: &kiln,
        lock,
        manifest: &checked.manifest,
        elements: &elements,
        environment: &environment,
    })
}

/// The files the imagefile names whose contents reach the image (the
/// repositories' keys), each with its SHA-256 (or why it cannot be read,
/// which the build then reports).
fn named_files(checked: &manifest::Checked) -> Vec<(String, String)> {
    let dir = manifest_dir(checked);
    checked
        .manifest
        .repositories
        .iter()
        .filter_map(|r| r.key.as_ref())
        .map(|key| {
            let path = dir.join(key.value.as_str());
            let digest = crate::cache::Digest::of_file(&path)
                .map_or_else(|e| format!("unreadable: {e}"), |d| d.sha256);
            (format!("kiln: file {}", key.value), digest)
        })
        .collect()
}

/// The directory of the imagefile, which its relative paths start from.
fn manifest_dir(checked: &manifest::Checked) -> &Path {
    Path::new(checked.source.name())
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The SHA-256 of everything a build's outputs are made of: kiln's own
/// executable, the lock's text (which pins the packages, the imagefile's
/// text and each element's tree), the files the imagefile names, how the
/// qcow2 is written, and what of the host's environment hooks see. Kept in
/// the report: see [`up_to_date`].
pub fn inputs_digest(context: &Context<'_>) -> Result<String, snapshot::SnapshotError> {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    part(b"kiln-inputs-v1");
    part(snapshot::kiln_digest()?.as_bytes());
    part(lock::to_text(context.lock).as_bytes());
    part(&[u8::from(context.compress)]);
    for (name, value) in named_files(context.checked)
        .into_iter()
        .chain(phases::host_environment())
    {
        part(name.as_bytes());
        part(value.as_bytes());
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The report of the last build into `output_dir` when it was built from
/// `inputs` and every output the imagefile asks for is still there, as the
/// report recorded it (size and SHA-256): nothing to do. `None` when
/// anything differs or is missing.
pub fn up_to_date(
    checked: &manifest::Checked,
    output_dir: &Path,
    inputs: &str,
) -> Option<report::Report> {
    let name = checked.manifest.name.value.as_str();
    let text = std::fs::read_to_string(output_dir.join(format!("{name}.report.json"))).ok()?;
    let report: report::Report = serde_json::from_str(&text).ok()?;
    if report.inputs.as_deref() != Some(inputs) || report.image != name {
        return None;
    }
    let wanted: std::collections::BTreeSet<String> = checked
        .manifest
        .outputs
        .iter()
        .map(|o| format!("{:?}", o.value))
        .collect();
    let recorded: std::collections::BTreeSet<String> = report
        .outputs
        .iter()
        .map(|o| format!("{:?}", o.format))
        .collect();
    if wanted != recorded {
        return None;
    }
    let unchanged = report.outputs.iter().all(|o| {
        let path = output_dir.join(&o.file);
        std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == o.bytes)
            && crate::cache::Digest::of_file(&path).is_ok_and(|d| d.sha256 == o.sha256)
    }) && report.documents.iter().all(|d| {
        crate::cache::Digest::of_file(&output_dir.join(&d.file)).is_ok_and(|h| h.sha256 == d.sha256)
    });
    unchanged.then_some(report)
}

/// Normalising, assembly and the outputs run no command the signal
/// watcher stops, and take seconds: a SIGINT or SIGTERM that arrived
/// meanwhile stops the build before `next` (removing the work directory).
fn stop_if_interrupted(work: &Path, log_path: &Path, next: &str) -> Result<(), Failure> {
    match crate::host::signals::received() {
        Some(signal) => Err(failed(
            work,
            log_path,
            &format!("stopped before {next}"),
            Some(signal),
        )),
        None => Ok(()),
    }
}

/// The directory in the work directory the tree's tmpfs is mounted on,
/// when the tree is made in memory.
const TREE_TMPFS: &str = "memory";

/// How much bigger what the build keeps in memory is than the packages it
/// is made from, at most: the installed tree (with what a build writes
/// beside it in the tree: the initramfs's scratch copy, apt's lists), the
/// copy of it written to the snapshots, and the raw image. Measured:
/// debian-cloud's 146 MiB of `.deb`s make a 784 MiB tree (5.4 times), and
/// the copy and the image hold as much each.
const TREE_PER_PACKAGE_BYTE: u64 = 24;

/// The tmpfs the tree is made in: half the memory available now, as DIB's
/// `--min-tmpfs` check has it, when that holds [`TREE_PER_PACKAGE_BYTE`]
/// times the locked packages (and base image) and 1 GiB beside; why the
/// tree goes on disk otherwise. A tmpfs takes memory only for what is
/// written to it, so its size is a limit, not a reservation.
///
/// The tree and the raw image in memory save the disk writes of
/// unpacking, configuring, making the initramfs and assembling; the image
/// is the same bytes either way, which `--check` proves by making its
/// second build on disk.
fn tree_tmpfs_size(lock: &lock::Lock) -> Result<u64, String> {
    let packages: u64 = lock
        .packages
        .iter()
        .chain(&lock.native_twins)
        .map(|p| p.size)
        .sum();
    let image = lock.base.image.as_ref().map_or(0, |i| i.size);
    let available = crate::host::memory::available().map_err(|e| e.to_string())?;
    tmpfs_size(packages.saturating_add(image), available)
}

/// [`tree_tmpfs_size`] for `inputs` bytes of packages and image and
/// `available` bytes of memory.
fn tmpfs_size(inputs: u64, available: u64) -> Result<u64, String> {
    let needed = inputs
        .saturating_mul(TREE_PER_PACKAGE_BYTE)
        .saturating_add(1 << 30);
    let half = available / 2;
    if half < needed {
        return Err(format!(
            "the tree may need {}, and half the memory available is {}",
            terminal::human_bytes(needed),
            terminal::human_bytes(half)
        ));
    }
    Ok(half)
}

/// Tells the user when the tree's snapshot was not kept.
fn report_snapshot(snapshots: &snapshot::Snapshots, saved: Result<bool, snapshot::SnapshotError>) {
    match saved {
        Ok(true) => {}
        Ok(false) => terminal::warning(&format!(
            "the tree's snapshot alone is larger than the snapshot limit ({}, {}); it was not kept",
            terminal::human_bytes(snapshots.limit()),
            snapshot::LIMIT_VARIABLE
        )),
        Err(error) => terminal::warning(&format!("the tree's snapshot was not kept: {error}")),
    }
}

/// A snapshot of a tree made in memory, written to the cache while the
/// build goes on: the tree is first copied within the tmpfs (a second,
/// against 1.5 to 5 seconds for the disk), and that copy, which nothing
/// else touches, is written out by a thread of its own and removed.
struct SnapshotWriter {
    snapshots: snapshot::Snapshots,
    thread: std::thread::JoinHandle<(Result<bool, snapshot::SnapshotError>, Vec<u8>)>,
}

impl SnapshotWriter {
    /// Copies `root` beside it and starts writing the copy to
    /// `snapshots` under `key`. A failed copy is a snapshot not kept.
    fn start(
        snapshots: &snapshot::Snapshots,
        key: &snapshot::Key,
        image: &str,
        root: &Path,
        work: &Path,
    ) -> SnapshotWriter {
        let copy = work.join(TREE_TMPFS).join("snapshot");
        let (snapshots, key, image) = (snapshots.clone(), key.clone(), image.to_string());
        let copied = crate::host::file::copy_tree(root, &copy).map_err(|detail| {
            snapshot::SnapshotError::Copy {
                from: root.to_path_buf(),
                to: copy.clone(),
                detail,
            }
        });
        let writer = snapshots.clone();
        let thread = std::thread::spawn(move || {
            let mut log = Vec::new();
            let saved = copied.and_then(|()| writer.save(&key, &image, &copy, &mut log));
            // Only memory: the tmpfs goes with the work directory anyway.
            let _ = fs_err::remove_dir_all(&copy);
            (saved, log)
        });
        SnapshotWriter { snapshots, thread }
    }

    /// Waits for the snapshot to be written, and says if it was not kept.
    fn finish(self, log: &mut dyn std::io::Write) {
        match self.thread.join() {
            Ok((saved, lines)) => {
                let _ = log.write_all(&lines);
                report_snapshot(&self.snapshots, saved);
            }
            Err(_) => terminal::warning("the tree's snapshot was not kept: its writer panicked"),
        }
    }
}

/// Unpacks the lock's native twins (its fetched `.deb`s) into the emulation
/// directory beside the tree `root` ([`chroot::twins`]) when this host
/// emulates the tree's architecture, and writes there which of the image's
/// files they stand in for: those of [`lock::make::is_native_twin_package`]
/// whose twin has the image's version, by the MD5 sums the image's own
/// `.deb` ships. The twins' dependencies are there only to run them.
/// Returns a line for the user, or `None` when the host runs the tree
/// natively.
fn unpack_native_twins(
    lock: &lock::Lock,
    cache: &crate::cache::Cache,
    root: &Path,
) -> Result<Option<String>, Failure> {
    let emulation = chroot::emulation::Emulation::for_target(&lock.base.arch)
        .map_err(|error| Failure::Internal(miette::miette!(help = error.help(), "{error}")))?;
    if emulation.is_none() || chroot::emulation::host_arch() != "amd64" {
        return Ok(None);
    }
    let deb_of = |package: &lock::LockedPackage| -> Result<PathBuf, Failure> {
        let digest =
            crate::cache::Digest::new(&package.sha256, package.size).map_err(Failure::internal)?;
        Ok(cache.blob_path(&digest))
    };
    let unreadable = |package: &lock::LockedPackage, error: &dyn std::fmt::Display| {
        Failure::Internal(miette::miette!(
            help = "run `kiln fetch` again, or build with --emulate-all",
            "cannot read {} {} ({}), a native twin: {error}",
            package.name,
            package.version,
            package.arch
        ))
    };
    let dir = chroot::emulation::emulation_dir(root);
    let native = dir.join("native");
    fs_err::create_dir_all(&native).map_err(Failure::internal)?;
    let mut manifest = String::new();
    let mut names = Vec::new();
    for twin in &lock.native_twins {
        crate::bootstrap::unpack_data(&deb_of(twin)?, &native)
            .map_err(|error| unreadable(twin, &error))?;
        let Some(image_package) = lock.packages.iter().find(|p| {
            p.name == twin.name
                && p.version == twin.version
                && lock::make::is_native_twin_package(&p.name)
        }) else {
            continue;
        };
        let image_deb = deb_of(image_package)?;
        let md5sums = crate::bootstrap::read_control_file(&image_deb, "md5sums")
            .map_err(|error| unreadable(image_package, &error))?
            .unwrap_or_default();
        let files: Vec<(String, u64, u64)> = crate::bootstrap::list_files(&image_deb)
            .map_err(|error| unreadable(image_package, &error))?
            .into_iter()
            .map(|file| (file.path, file.size, file.mtime))
            .collect();
        manifest.push_str(&chroot::twins::manifest_lines(&twin.name, &md5sums, &files));
        names.push(match chroot::twins::purpose(&twin.name) {
            Some(purpose) => format!("{} ({purpose})", twin.name),
            None => twin.name.clone(),
        });
    }
    fs_err::write(dir.join(chroot::twins::TWINS_MANIFEST), manifest).map_err(Failure::internal)?;
    Ok(Some(format!(
        "running the programs of {} natively (their amd64 builds, pinned in the lock as native twins) and the rest under QEMU; --emulate-all runs all under QEMU",
        names.join(", ")
    )))
}

/// Where the tree is made: in a tmpfs on `<work>/memory` when `tmpfs` is
/// allowed and memory has room ([`tree_tmpfs_size`]), else in
/// `<work>/root` on disk; with a line saying which, and why.
fn place_tree(work: &Path, tmpfs: bool, lock: &lock::Lock) -> (PathBuf, String) {
    let on_disk = work.join("root");
    if !tmpfs {
        return (on_disk, "making the tree on disk (--no-tmpfs)".to_string());
    }
    let size = match tree_tmpfs_size(lock) {
        Ok(size) => size,
        Err(why) => {
            let line = format!("making the tree on disk, not in memory: {why}");
            terminal::status(&line);
            return (on_disk, line);
        }
    };
    let memory = work.join(TREE_TMPFS);
    match chroot::mount_tmpfs(&memory, size) {
        Ok(()) => (
            memory.join("root"),
            format!(
                "making the tree in memory, a tmpfs of at most {} (--no-tmpfs makes it on disk)",
                terminal::human_bytes(size)
            ),
        ),
        Err(error) => {
            let line = format!("making the tree on disk, not in memory: {error}");
            terminal::warning(&line);
            (on_disk, line)
        }
    }
}

/// Removes the work directory, unmounting the tree's tmpfs (and whatever
/// a lost guard left mounted in it) first.
fn remove_work(work: &Path) -> Result<(), chroot::ChrootError> {
    let memory = work.join(TREE_TMPFS);
    if memory.exists() {
        chroot::unmount_all_under(&memory)?;
    }
    chroot::remove_dir_all_checked(work)
}

fn failed(
    work: &Path,
    log_path: &Path,
    error: &dyn std::fmt::Display,
    interrupted: Option<nix::sys::signal::Signal>,
) -> Failure {
    terminal::progress_done();
    // A host program a signal stopped fails as "killed by a signal":
    // the signal is the reason.
    let interrupted = interrupted.or_else(crate::host::signals::received);
    let error = error.to_string();
    let out_of_space = interrupted.is_none() && crate::host::space::mentions_out_of_space(&error);
    // Measured before the cleanup frees the work directory's space: what
    // the build met. A full tmpfs first: the tree was in memory.
    let memory = work.join(TREE_TMPFS);
    let tmpfs_full = (out_of_space
        && !chroot::mounts_under(&memory).unwrap_or_default().is_empty())
    .then(|| crate::host::space::space_of(&memory).ok())
    .flatten()
    .filter(|space| space.free_bytes < space.total_bytes / 20);
    let full = (out_of_space && tmpfs_full.is_none()).then(|| {
        let output = work.parent().unwrap_or(work);
        let space = crate::host::space::space_of(output).ok();
        (output.to_path_buf(), space)
    });
    let cleanup = if work.exists() {
        remove_work(work)
    } else {
        Ok(())
    };
    let mut message = format!("{error}\nbuild log: {}", log_path.display());
    if let Err(e) = cleanup {
        message.push_str(&format!("\nleft {} in place: {e}", work.display()));
    }
    if let Some(space) = tmpfs_full {
        return Failure::Internal(miette::miette!(
            help = "build with --no-tmpfs (or KILN_NO_TMPFS=1) to make the tree on disk in the output directory, or free memory",
            "no space left in the tmpfs the tree was made in ({} free of {}; its size is half the memory available when the build started): {message}",
            terminal::human_bytes(space.free_bytes),
            terminal::human_bytes(space.total_bytes)
        ));
    }
    if let Some((output, space)) = full {
        let space = space.map_or_else(String::new, |s| {
            format!(
                " ({} free of {})",
                terminal::human_bytes(s.free_bytes),
                terminal::human_bytes(s.total_bytes)
            )
        });
        return Failure::Internal(miette::miette!(
            help = output_space_help(&output),
            "no space left on {}{space}, the output directory: {message}",
            output.display()
        ));
    }
    match interrupted {
        // The step's own error says so when the signal stopped it.
        Some(signal) if !message.starts_with("interrupted by ") => {
            Failure::Internal(miette::miette!("interrupted by {signal:?}: {message}"))
        }
        _ => Failure::Internal(miette::miette!("{message}")),
    }
}

/// What to do about an output directory without room.
fn output_space_help(output: &Path) -> String {
    format!(
        "the tree, the image and the outputs are all made in the output directory: free space on the filesystem of {} (the build's partial work was removed), or build elsewhere with -o DIR",
        output.display()
    )
}

/// Refuses to assemble and write the outputs when the output directory's
/// filesystem has less free space than they will surely take: the tree's
/// data (as ext4 stores it) once for the raw image and once more for each
/// other disk format, and its file contents for a tar. A lower bound,
/// known before anything is written (filesystem metadata, and squashfs
/// and ramdisk outputs, which compress, come on top), so a build that
/// would fit is never refused, and one that cannot fit fails now with the
/// sizes instead of halfway through writing an image.
fn check_output_space(
    root: &Path,
    output: &Path,
    name: &str,
    formats: &[OutputFormat],
) -> Result<(), Failure> {
    let Ok(space) = crate::host::space::space_of(output) else {
        return Ok(());
    };
    let usage = assemble::filesystem::TreeUsage::measure(root).map_err(Failure::internal)?;
    let data_bytes = usage.blocks * assemble::filesystem::EXT4_BLOCK_BYTES;
    let mut needed_bytes = 0;
    let mut what = Vec::new();
    if formats.iter().any(|f| output::is_disk_format(*f)) {
        needed_bytes += data_bytes;
        what.push(format!("{name}.raw"));
    }
    for format in formats {
        if output::is_disk_format(*format) && *format != OutputFormat::Raw {
            needed_bytes += data_bytes;
        } else if *format == OutputFormat::Tar {
            needed_bytes += usage.content_bytes;
        } else {
            continue;
        }
        what.push(format!("{name}.{}", output::extension(*format)));
    }
    if space.free_bytes >= needed_bytes {
        return Ok(());
    }
    Err(Failure::Internal(miette::miette!(
        help = output_space_help(output),
        "not enough space on {} for {}: needs at least {} (the tree holds {}), and {} is free (of {})",
        output.display(),
        what.join(", "),
        terminal::human_bytes(needed_bytes),
        terminal::human_bytes(data_bytes),
        terminal::human_bytes(space.free_bytes),
        terminal::human_bytes(space.total_bytes)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root to mount a tmpfs (cargo test --features host-tests)"
    )]
    fn a_full_tmpfs_says_so_with_no_tmpfs_as_the_help_and_is_unmounted() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "mounting a tmpfs needs root: run the suite as root (scripts/test)"
        );
        // This test's thread only: the mount never reaches the host.
        chroot::enter_build_namespace().expect("a mount namespace");
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join(".kiln-build-x");
        let memory = work.join(TREE_TMPFS);
        chroot::mount_tmpfs(&memory, 1 << 20).expect("tmpfs");
        let filled = fs_err::write(memory.join("fill"), vec![1u8; 2 << 20]);
        assert!(filled.is_err(), "1 MiB of tmpfs holds no 2 MiB");
        let failure = failed(
            &work,
            &dir.path().join("x.build.log"),
            &"cannot unpack cloud-init: No space left on device",
            None,
        );
        let text = rendered(&failure);
        assert!(
            text.contains("no space left in the tmpfs the tree was made in"),
            "{text}"
        );
        assert!(text.contains("help: build with --no-tmpfs"), "{text}");
        assert!(!text.contains(", the output directory:"), "{text}");
        assert!(!work.exists(), "the work directory is removed");
        assert_eq!(
            chroot::mounts_under(dir.path()).expect("mountinfo"),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn the_tree_goes_in_memory_when_half_the_available_memory_holds_it() {
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        // debian-cloud's 146 MiB of packages on this 24 GiB machine.
        assert_eq!(tmpfs_size(146 * MIB, 22 * GIB), Ok(11 * GIB));
        // 24 times the packages and 1 GiB: 4.42 GiB, against 4 GiB.
        let refused = tmpfs_size(146 * MIB, 8 * GIB).expect_err("too little memory");
        assert!(refused.contains("4.4 GiB"), "{refused}");
        assert!(refused.contains("4.0 GiB"), "{refused}");
        assert!(tmpfs_size(u64::MAX, u64::MAX).is_err());
    }

    fn checked(text: &str) -> manifest::Checked {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("imagefile.yaml");
        fs_err::write(&path, text).expect("write");
        manifest::read(&path).expect("valid")
    }

    /// Every diagnostic of `failure`, rendered as miette prints it.
    fn rendered(failure: &Failure) -> String {
        failure
            .reports()
            .iter()
            .map(|report| {
                let mut text = String::new();
                miette::GraphicalReportHandler::new_themed(
                    miette::GraphicalTheme::unicode_nocolor(),
                )
                .render_report(&mut text, report.as_ref())
                .expect("render");
                text
            })
            .collect()
    }

    #[test]
    fn a_build_without_root_says_so_and_gives_the_command_again_under_sudo() {
        let args = ["kiln", "build", "-o", "out dir", "imagefile.yaml"].map(String::from);
        let failure = needs_root("kiln build", 65534, &args);
        assert_eq!(failure.exit_code(), crate::failure::USER_EXIT_CODE);
        let shown = rendered(&failure);
        for expected in [
            "kiln build needs root: it mounts /proc, /sys and /dev into the image's chroot",
            "(kiln runs as uid 65534)",
            "help: run it as root: sudo kiln build -o 'out dir' imagefile.yaml",
        ] {
            assert!(shown.contains(expected), "no `{expected}` in:\n{shown}");
        }
    }

    #[test]
    fn a_ramdisk_over_its_limit_points_at_max_size_and_names_the_directories() {
        let text = "name: demo\nbase: {distro: debian, release: bookworm}\nelements: [vm]\n\
                    outputs: [ramdisk]\nramdisk:\n  max_size: 100MiB\n";
        let biggest = [
            (
                "/usr/lib/modules/6.1.0-28-amd64/kernel/drivers".to_string(),
                158 << 20,
            ),
            ("/usr/lib/x86_64-linux-gnu".to_string(), 93 << 20),
        ];
        let failure = ramdisk_too_large(&checked(text), 120 << 20, 100 << 20, &biggest);
        assert_eq!(failure.exit_code(), crate::failure::USER_EXIT_CODE);
        let shown = rendered(&failure);
        for expected in [
            "the initramfs would be 120.0 MiB, over `ramdisk.max_size` (100.0 MiB)",
            "/usr/lib/modules/6.1.0-28-amd64/kernel/drivers  158.0 MiB",
            "/usr/lib/x86_64-linux-gnu  93.0 MiB",
            "6 │   max_size: 100MiB",
            "the initramfs is 120.0 MiB",
            "help: leave out what the ramdisk does not need with `ramdisk.exclude`",
        ] {
            assert!(shown.contains(expected), "no `{expected}` in:\n{shown}");
        }
    }

    #[test]
    fn ramdisk_notes_give_sizes_cmdline_and_lost_capabilities() {
        let text = "name: demo\nbase: {distro: debian, release: bookworm}\nelements: [vm]\n\
                    outputs: [ramdisk]\nramdisk:\n  cmdline: ipa-debug=1\n";
        let summary = output::ramdisk::RamdiskSummary {
            kernel: output::ramdisk::Kernel {
                path: PathBuf::from("boot/vmlinuz-6.1.0-28-amd64"),
                version: "6.1.0-28-amd64".to_string(),
            },
            compression: manifest::RamdiskCompression::Zstd,
            entries: 15_000,
            hardlinks: 3,
            clamped_mtimes: 0,
            skipped_sockets: Vec::new(),
            files_with_xattrs: 1,
            lost_capabilities: vec![PathBuf::from("/usr/bin/ping")],
            init_added: true,
            unpacked_bytes: 500 << 20,
            excluded_bytes: 280 << 20,
            compressed_bytes: 130 << 20,
        };
        let notes = ramdisk_notes(&summary, &checked(text));
        assert_eq!(
            notes,
            [
                "ramdisk: kernel 6.1.0-28-amd64 (boot/vmlinuz-6.1.0-28-amd64); the initramfs (zstd) is 130.0 MiB and unpacks to 500.0 MiB in RAM, 15000 entries; left out: 280.0 MiB (`ramdisk.exclude`, the kernel file, the disk boot's initramfs)",
                "ramdisk: boot it with the kernel command line `console=ttyS0 ipa-debug=1`",
                "ramdisk: a cpio archive holds no extended attributes, so these files lost their capabilities and work for root only: /usr/bin/ping",
            ]
        );
    }

    #[test]
    fn a_stop_by_a_signal_says_so_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        let log = dir.path().join("demo.build.log");
        let signal = nix::sys::signal::Signal::SIGINT;
        for (error, said) in [
            // A step stopped by the signal says so itself…
            ("interrupted by SIGINT", "× interrupted by SIGINT\n"),
            // …one that failed another way while the signal came gets it said.
            (
                "dpkg failed (exit status 2)",
                "× interrupted by SIGINT: dpkg failed (exit status 2)\n",
            ),
        ] {
            let text = rendered(&failed(&work, &log, &error, Some(signal)));
            assert!(text.contains(said), "{text}");
            assert_eq!(text.matches("interrupted by").count(), 1, "{text}");
        }
    }
}
