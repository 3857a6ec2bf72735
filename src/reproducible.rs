//! `kiln build --check`: two builds of one lock compared, and when their
//! outputs differ, where and how.
//!
//! The trees are compared entry by entry (type, content, mode, owner,
//! mtime, extended attributes), because a file that varies is the usual
//! cause and the one a contributor can fix; when the trees agree but an
//! image does not, the difference is in what a tool wrote around the files
//! (filesystem metadata), and for a whole disk the partition that differs
//! is named.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::host::walk;

/// (year, month, day, hour, minute, second) in UTC of `epoch` seconds
/// since 1970: how timestamps derived from `SOURCE_DATE_EPOCH` are written
/// (a Release file's date, the SBOMs' creation time) without the clock.
pub fn utc_fields(epoch: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = epoch / 86_400;
    let seconds = epoch % 86_400;
    // Howard Hinnant's days-to-civil algorithm, for non-negative days.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (
        year,
        month,
        day,
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
    )
}

/// One way two trees differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDifference {
    /// The path, relative to the tree.
    pub path: PathBuf,
    /// What differs: `only in the first build`, `content`, `mode`,
    /// `owner`, `mtime`, `xattr`, `type`, `link target`.
    pub what: &'static str,
    /// The two values, as far as they can be shown.
    pub detail: String,
}

impl std::fmt::Display for TreeDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "/{}: {} ({})",
            self.path.display(),
            self.what,
            self.detail
        )
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    mtime: i64,
    content: String,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Compares two trees; the differences come sorted by path.
pub fn diff_trees(first: &Path, second: &Path) -> std::io::Result<Vec<TreeDifference>> {
    let a = inventory(first)?;
    let b = inventory(second)?;
    let mut differences = Vec::new();
    for (path, left) in &a {
        let Some(right) = b.get(path) else {
            differences.push(TreeDifference {
                path: path.clone(),
                what: "only in the first build",
                detail: left.kind.to_string(),
            });
            continue;
        };
        let mut differ = |what, l: String, r: String| {
            if l != r {
                differences.push(TreeDifference {
                    path: path.clone(),
                    what,
                    detail: format!("{l} vs {r}"),
                });
            }
        };
        differ("type", left.kind.to_string(), right.kind.to_string());
        if left.kind == right.kind {
            let what = if left.kind == "symlink" {
                "link target"
            } else {
                "content"
            };
            differ(what, left.content.clone(), right.content.clone());
        }
        differ(
            "mode",
            format!("{:o}", left.mode),
            format!("{:o}", right.mode),
        );
        differ(
            "owner",
            format!("{}:{}", left.owner.0, left.owner.1),
            format!("{}:{}", right.owner.0, right.owner.1),
        );
        differ("mtime", left.mtime.to_string(), right.mtime.to_string());
        differ(
            "xattr",
            format!("{:?}", left.xattrs.keys().collect::<Vec<_>>()),
            format!("{:?}", right.xattrs.keys().collect::<Vec<_>>()),
        );
        if left.xattrs.keys().eq(right.xattrs.keys()) && left.xattrs != right.xattrs {
            differences.push(TreeDifference {
                path: path.clone(),
                what: "xattr",
                detail: "the values differ".to_string(),
            });
        }
    }
    for (path, right) in &b {
        if !a.contains_key(path) {
            differences.push(TreeDifference {
                path: path.clone(),
                what: "only in the second build",
                detail: right.kind.to_string(),
            });
        }
    }
    differences.sort_by(|x, y| x.path.cmp(&y.path));
    Ok(differences)
}

fn inventory(root: &Path) -> std::io::Result<BTreeMap<PathBuf, Entry>> {
    let mut entries = BTreeMap::new();
    for entry in walk::tree(root).follow_root_links(false) {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        let kind = meta.file_type();
        let (kind_name, content) = if kind.is_dir() {
            ("directory", String::new())
        } else if kind.is_symlink() {
            ("symlink", std::fs::read_link(path)?.display().to_string())
        } else if kind.is_file() {
            ("file", sha256_of(path)?)
        } else {
            ("special", format!("rdev {}", meta.rdev()))
        };
        let mut xattrs = BTreeMap::new();
        if let Ok(names) = xattr::list(path) {
            for name in names {
                if let Ok(Some(value)) = xattr::get(path, &name) {
                    xattrs.insert(name.to_string_lossy().into_owned(), value);
                }
            }
        }
        entries.insert(
            walk::relative(&entry, root).to_path_buf(),
            Entry {
                kind: kind_name,
                mode: meta.mode(),
                owner: (meta.uid(), meta.gid()),
                mtime: meta.mtime(),
                content,
                xattrs,
            },
        );
    }
    Ok(entries)
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    Ok(crate::cache::Digest::of_reader(std::fs::File::open(path)?)?.sha256)
}

/// The partitions (by name) whose bytes differ between two disks of the
/// same layout, read from `partitions` as (name, start, size) in bytes.
pub fn differing_partitions(
    first: &Path,
    second: &Path,
    partitions: &[(String, u64, u64)],
) -> std::io::Result<Vec<String>> {
    use std::io::{Seek, SeekFrom};
    let mut a = std::fs::File::open(first)?;
    let mut b = std::fs::File::open(second)?;
    let mut differing = Vec::new();
    let mut left = vec![0u8; 1 << 20];
    let mut right = vec![0u8; 1 << 20];
    for (name, start, size) in partitions {
        a.seek(SeekFrom::Start(*start))?;
        b.seek(SeekFrom::Start(*start))?;
        let mut remaining = *size;
        while remaining > 0 {
            let n = usize::try_from(remaining.min(1 << 20)).unwrap_or(1 << 20);
            a.read_exact(&mut left[..n])?;
            b.read_exact(&mut right[..n])?;
            if left[..n] != right[..n] {
                differing.push(name.clone());
                break;
            }
            remaining -= n as u64;
        }
    }
    Ok(differing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_named_with_how_it_differs() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        for dir in [a.path(), b.path()] {
            std::fs::create_dir(dir.join("etc")).expect("mkdir");
            std::fs::write(dir.join("etc/same"), "same").expect("write");
        }
        std::fs::write(a.path().join("etc/date"), "Mon").expect("write");
        std::fs::write(b.path().join("etc/date"), "Tue").expect("write");
        std::fs::write(a.path().join("only-a"), "x").expect("write");
        for dir in [a.path(), b.path()] {
            let time = nix::sys::time::TimeVal::new(1_000, 0);
            for entry in ["", "etc", "etc/same", "etc/date"] {
                nix::sys::stat::lutimes(&dir.join(entry), &time, &time).expect("utimes");
            }
        }
        let time = nix::sys::time::TimeVal::new(1_000, 0);
        nix::sys::stat::lutimes(&a.path().join("only-a"), &time, &time).expect("utimes");
        nix::sys::stat::lutimes(a.path(), &time, &time).expect("utimes");
        let differences = diff_trees(a.path(), b.path()).expect("diff");
        let shown: Vec<String> = differences
            .iter()
            .map(|d| format!("{} {}", d.path.display(), d.what))
            .collect();
        assert_eq!(
            shown,
            ["etc/date content", "only-a only in the first build"]
        );
    }
}
