//! The `squashfs` output: the finished root tree as a compressed read-only
//! filesystem, made by `mksquashfs` (squashfs-tools).
//!
//! The tree is stored as it is: owners, modes and extended attributes are
//! kept (no `-all-root`), and so are modification times up to
//! `SOURCE_DATE_EPOCH`; a later time becomes the epoch, as in the tar
//! output. mksquashfs 4.5 does exactly that, and also takes the epoch as the
//! filesystem's creation time, when `SOURCE_DATE_EPOCH` is in its
//! environment; it has no option that clamps (`-all-time` sets every time),
//! and it refuses `-mkfs-time` when the variable is set, which a user who
//! exports it would otherwise hit. So kiln runs it as
//! `env SOURCE_DATE_EPOCH=<epoch> mksquashfs ...`. With `-reproducible`
//! (the default of 4.5, said anyway) inodes are numbered in tree order
//! whatever the number of threads, and the same tree gives the same bytes.
//!
//! Compression is xz: every kernel since 2.6.38 mounts it and it is the
//! smallest; zstd would unpack faster but needs Linux 4.14.

use std::ffi::OsString;
use std::path::Path;

use super::{OutputError, Staged, check_tool};
use crate::host::command::{self, CommandError};

/// The Debian package that provides `mksquashfs`.
const SQUASHFS_PACKAGE: &str = "squashfs-tools";

/// The exit code of `env` when the program it should run is not installed.
const ENV_NOT_FOUND_CODE: i32 = 127;

/// Writes the tree at `tree` as a squashfs to `out`, replacing `out` only
/// once the new file is complete.
pub fn write_squashfs(tree: &Path, source_date_epoch: u64, out: &Path) -> Result<(), OutputError> {
    let staged = Staged::beside(out)?;
    run_mksquashfs(tree, source_date_epoch, staged.path())?;
    staged.commit()
}

/// The arguments of `mksquashfs` after the tree and output paths. The
/// epoch goes in its environment (see the module documentation).
pub fn mksquashfs_args() -> Vec<&'static str> {
    vec![
        "-noappend",
        "-comp",
        "xz",
        "-xattrs",
        "-reproducible",
        "-no-progress",
        "-quiet",
    ]
}

/// Runs `mksquashfs` (through `env`, to set `SOURCE_DATE_EPOCH` for it) to
/// write `tree` to `dest`, overwriting `dest`.
pub fn run_mksquashfs(tree: &Path, source_date_epoch: u64, dest: &Path) -> Result<(), OutputError> {
    let mut args: Vec<OsString> = vec![
        format!("SOURCE_DATE_EPOCH={source_date_epoch}").into(),
        "mksquashfs".into(),
        tree.as_os_str().to_owned(),
        dest.as_os_str().to_owned(),
    ];
    args.extend(mksquashfs_args().into_iter().map(OsString::from));
    let finished = command::run("env", &args, "coreutils")?;
    // `env` exits with 127 when it cannot find the program it runs.
    if finished.code == Some(ENV_NOT_FOUND_CODE) {
        return Err(CommandError::NotFound {
            program: "mksquashfs".to_string(),
            package: SQUASHFS_PACKAGE.to_string(),
        }
        .into());
    }
    check_tool("mksquashfs", dest, finished)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::output::test_fixture::{self, Fixture, run_tool, sha256_of};

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn the_listing_keeps_modes_and_owners() {
        let fixture = Fixture::build();
        let out = fixture.dir.path().join("image.squashfs");
        let started = std::time::Instant::now();
        write_squashfs(&fixture.tree, test_fixture::EPOCH, &out).expect("squashfs");
        eprintln!(
            "squashfs: {:?}, {} bytes",
            started.elapsed(),
            fs::metadata(&out).expect("stat").len()
        );
        let listing = run_tool("unsquashfs", &["-lln", &out.to_string_lossy()]);
        let line = |path: &str| {
            listing
                .lines()
                .find(|l| l.ends_with(path) || l.contains(&format!("{path} -> ")))
                .unwrap_or_else(|| panic!("{path} not listed:\n{listing}"))
                .to_string()
        };
        let expectations = [
            ("/usr/bin/su", "-rwsr-xr-x 0/0 "),
            ("/var/mail", "drwxrwsr-x 0/8 "),
            ("/tmp", "drwxrwxrwt 0/0 "),
            ("/srv/owned", "-rw-r----- 1234/5678 "),
            ("/etc/localtime", "lrwxrwxrwx 0/0 "),
            ("/srv/long-link", "lrwxrwxrwx 42/43 "),
            ("/dev/null", "crw-rw-rw- 0/0 "),
            ("/dev/loop9", "brw-rw---- 0/6 "),
            ("/dev/initctl", "prw------- 0/0 "),
            ("/run/kiln.sock", "srw"),
        ];
        for (path, start) in expectations {
            let found = line(path);
            assert!(found.starts_with(start), "{path}: {found}");
        }
        assert!(
            line("/dev/null").contains(" 1,  3 "),
            "{}",
            line("/dev/null")
        );
        assert!(line("/etc/localtime").ends_with("-> ../usr/share/zoneinfo/UTC"));
        line(&format!("/{}", test_fixture::long_path()));

        // The superblock's creation time (bytes 8..12) is the epoch.
        let image = fs::read(&out).expect("read");
        let mkfs_time = u32::from_le_bytes([image[8], image[9], image[10], image[11]]);
        assert_eq!(u64::from(mkfs_time), test_fixture::EPOCH);

        // Everything extracts back as it was, later times clamped, extended attributes included.
        let extracted = fixture.dir.path().join("extracted");
        run_tool(
            "unsquashfs",
            &[
                "-no-progress",
                "-d",
                &extracted.to_string_lossy(),
                &out.to_string_lossy(),
            ],
        );
        let mut expected = test_fixture::describe_tree(&fixture.tree);
        for entry in expected.values_mut() {
            entry.mtime = entry.mtime.min(test_fixture::EPOCH as i64);
        }
        let found = test_fixture::describe_tree(&extracted);
        for (path, want) in &expected {
            assert_eq!(found.get(path), Some(want), "entry {path}");
        }
        assert_eq!(found.len(), expected.len());
    }

    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "host tier: needs root and host tools (cargo test --features host-tests)"
    )]
    fn the_same_tree_gives_the_same_bytes() {
        let fixture = Fixture::build();
        let first = fixture.dir.path().join("first.squashfs");
        let second = fixture.dir.path().join("second.squashfs");
        write_squashfs(&fixture.tree, test_fixture::EPOCH, &first).expect("squashfs");
        write_squashfs(&fixture.tree, test_fixture::EPOCH, &second).expect("squashfs");
        assert_eq!(sha256_of(&first), sha256_of(&second));
    }
}
