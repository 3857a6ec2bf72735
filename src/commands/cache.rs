//! `kiln cache list` and `kiln cache prune`: the tree snapshots kept for
//! incremental builds ([`crate::snapshot`]).

use std::io::Write;
use std::path::PathBuf;

use crate::failure::Failure;
use crate::ops::fetch::open_cache;
use crate::snapshot::Snapshots;
use crate::terminal;

/// Settings of `kiln cache`.
#[derive(Debug)]
pub struct CacheSettings {
    /// The cache directory, when not the default.
    pub cache_dir: Option<PathBuf>,
    /// `Some(bytes)` to prune the snapshots to that size; `None` to list
    /// them.
    pub prune: Option<u64>,
}

/// Lists the snapshots, or prunes them.
pub fn run(settings: &CacheSettings) -> Result<(), Failure> {
    let cache = open_cache(settings.cache_dir.as_ref())?;
    // Listing and pruning by hand do not depend on the automatic limit.
    let snapshots = Snapshots::in_cache(cache.dir(), crate::snapshot::DEFAULT_LIMIT);
    let text = match settings.prune {
        None => list(&snapshots)?,
        Some(keep) => {
            let removed = snapshots.prune(keep).map_err(Failure::internal)?;
            let freed: u64 = removed.iter().map(|s| s.bytes).sum();
            format!(
                "removed {} snapshots ({}); {} kept\n",
                removed.len(),
                terminal::human_bytes(freed),
                snapshots.list().map_err(Failure::internal)?.len()
            )
        }
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(Failure::internal)
}

fn list(snapshots: &Snapshots) -> Result<String, Failure> {
    let all = snapshots.list().map_err(Failure::internal)?;
    if all.is_empty() {
        return Ok(format!("no snapshots in {}\n", snapshots.dir().display()));
    }
    let now = std::time::SystemTime::now();
    let mut text = format!(
        "{:<14} {:<24} {:>10}  last used\n",
        "snapshot", "image", "size"
    );
    let mut total = 0;
    for snapshot in &all {
        total += snapshot.bytes;
        let ago = now.duration_since(snapshot.used).unwrap_or_default();
        text.push_str(&format!(
            "{:<14} {:<24} {:>10}  {}\n",
            &snapshot.key[..12.min(snapshot.key.len())],
            snapshot.image,
            terminal::human_bytes(snapshot.bytes),
            ago_text(ago)
        ));
    }
    text.push_str(&format!(
        "{} snapshots, {} in {}\n",
        all.len(),
        terminal::human_bytes(total),
        snapshots.dir().display()
    ));
    Ok(text)
}

fn ago_text(ago: std::time::Duration) -> String {
    let seconds = ago.as_secs();
    match seconds {
        0..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86400),
    }
}
