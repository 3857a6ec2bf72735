//! `kiln build`: from the lock to a root tree, inside the build's own
//! mount namespace.
//!
//! Today the build stops at the bootstrapped tree (every locked package
//! installed and configured, checked with `dpkg-query`), written to
//! `<output>/<name>.root/`; element phases and image assembly come next.

use std::path::PathBuf;
use std::time::Instant;

use crate::bootstrap;
use crate::chroot;
use crate::commands::fetch::{fetch_failure, open_cache, read_lock};
use crate::failure::Failure;
use crate::host::http::{Http, HttpOptions};
use crate::{fetch, lock, manifest, terminal};

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
    /// Refuse to build when the lock is missing or older than the
    /// imagefile, instead of locking first.
    pub locked: bool,
}

fn internal(error: impl std::fmt::Display) -> Failure {
    Failure::Internal(miette::miette!("{error}"))
}

/// Builds the root tree of the imagefile's lock.
pub fn run(settings: &BuildSettings) -> Result<(), Failure> {
    // Before anything starts a thread: a mount namespace belongs to the
    // thread that creates it.
    chroot::enter_build_namespace().map_err(internal)?;
    chroot::signals::install().map_err(internal)?;

    let started = Instant::now();
    let checked = manifest::read(&settings.path)?;
    let lock_path = lock::path_for(&settings.path);
    let current = lock::read(&lock_path)
        .is_ok_and(|lock| lock.manifest == lock::sha256_tag(checked.source.text().as_bytes()));
    if !current {
        if settings.locked {
            return Err(Failure::user(miette::miette!(
                help = format!(
                    "run `kiln lock {}` and commit the lock, or build without --locked",
                    settings.path.display()
                ),
                "{} is missing or older than {}, and --locked forbids locking now",
                lock_path.display(),
                settings.path.display()
            )));
        }
        // As cargo does: a missing or stale lock is made before building.
        crate::commands::lock::run(&crate::commands::lock::LockSettings {
            path: settings.path.clone(),
            update: false,
            cache_dir: settings.cache_dir.clone(),
        })?;
    }
    let lock = read_lock(&settings.path)?;
    let mut timings = vec![("lock", started.elapsed())];

    let cache = open_cache(settings.cache_dir.as_ref())?;
    let http = Http::new(HttpOptions {
        offline: settings.offline,
        ..HttpOptions::default()
    })
    .map_err(internal)?;
    let step = Instant::now();
    fetch::fetch(&lock, &cache, &http).map_err(fetch_failure)?;
    timings.push(("fetch", step.elapsed()));

    let name = checked.manifest.name.value.as_str().to_string();
    std::fs::create_dir_all(&settings.output).map_err(internal)?;
    // Absolute: the chroot runner changes directories before it uses it.
    let output = std::fs::canonicalize(&settings.output).map_err(internal)?;
    let work = output.join(format!(".kiln-build-{name}"));
    if work.exists() {
        chroot::remove_dir_all_checked(&work).map_err(internal)?;
    }
    let root = work.join("root");
    std::fs::create_dir_all(&root).map_err(internal)?;
    let log_path = output.join(format!("{name}.build.log"));
    let mut log = std::fs::File::create(&log_path).map_err(internal)?;

    terminal::status(&format!(
        "bootstrapping {} packages into {}",
        lock.packages.len(),
        root.display()
    ));
    let result = bootstrap::bootstrap(&lock, &cache, &root, &work, &mut log);
    let bootstrapped = match result {
        Ok(done) => done,
        Err(error) => {
            // Leave nothing that looks like a result; the mounts are gone
            // with the guards, and removal refuses if any remain.
            let cleanup = chroot::remove_dir_all_checked(&work);
            let mut message = format!("{error}\nbuild log: {}", log_path.display());
            if let Err(e) = cleanup {
                message.push_str(&format!("\nleft {} in place: {e}", work.display()));
            }
            return Err(match error {
                bootstrap::InstallError::Chroot(chroot::ChrootError::Interrupted { signal }) => {
                    Failure::Internal(miette::miette!("interrupted by {signal:?}: {message}"))
                }
                _ => Failure::Internal(miette::miette!("{message}")),
            });
        }
    };
    timings.extend(bootstrapped.timings.iter().cloned());

    let tree = output.join(format!("{name}.root"));
    if tree.exists() {
        chroot::remove_dir_all_checked(&tree).map_err(internal)?;
    }
    std::fs::rename(&root, &tree).map_err(internal)?;
    chroot::remove_dir_all_checked(&work).map_err(internal)?;

    let total = started.elapsed();
    let mut table = String::from("stage                        seconds\n");
    for (stage, duration) in &timings {
        table.push_str(&format!("{stage:<28} {:>8.2}\n", duration.as_secs_f64()));
    }
    table.push_str(&format!("{:<28} {:>8.2}", "total", total.as_secs_f64()));
    terminal::status(&table);
    terminal::status(&format!(
        "built {}: {} packages, exactly the lock's (log: {})",
        tree.display(),
        bootstrapped.packages,
        log_path.display()
    ));
    Ok(())
}
