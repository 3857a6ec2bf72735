//! Embeds the built-in elements (`elements/`) in the binary, so that an
//! installed kiln finds them from any directory: writes
//! `$OUT_DIR/builtin_elements.rs` with every directory and file (path,
//! mode, contents via `include_bytes!`), which `src/plan/builtin.rs`
//! unpacks on first use.
//!
//! And compiles the binfmt_misc handler for emulated builds
//! (`src/chroot/binfmt_dispatch.c`) into a static program,
//! `$OUT_DIR/kiln-binfmt-dispatch`, which `src/chroot/emulation.rs`
//! embeds: it runs inside the image's chroot, where none of the host's
//! libraries are, so it cannot be kiln itself.

// A build script reports a broken checkout by failing the build, which is
// what a panic with a message does.
#![allow(clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir.join("elements");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut entries = Vec::new();
    walk(&root, Path::new(""), &mut entries);
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::from(
        "/// Every entry of the built-in elements: relative path, mode, and\n\
         /// contents (`None` for a directory), directories before their contents.\n\
         pub(crate) const BUILTIN_ENTRIES: &[(&str, u32, Option<&[u8]>)] = &[\n",
    );
    for (relative, mode, is_dir) in &entries {
        if *is_dir {
            writeln!(out, "    ({relative:?}, 0o{mode:o}, None),").expect("string");
        } else {
            let absolute = root.join(relative);
            writeln!(
                out,
                "    ({relative:?}, 0o{mode:o}, Some(include_bytes!({:?}))),",
                absolute.display().to_string()
            )
            .expect("string");
        }
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out_dir.join("builtin_elements.rs"), out).expect("write builtin_elements.rs");
    compile_dispatch(&manifest_dir, &out_dir);
}

/// Compiles the binfmt_misc handler with the C compiler cargo links with
/// (`$CC`, else `cc`), statically against the C library (Debian's
/// `libc6-dev` has the static one).
// The build script runs the compiler itself: there is no host seam here.
#[allow(clippy::disallowed_methods)]
fn compile_dispatch(manifest_dir: &Path, out_dir: &Path) {
    let source = manifest_dir.join("src/chroot/binfmt_dispatch.c");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-env-changed=CC");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let output = out_dir.join("kiln-binfmt-dispatch");
    let status = std::process::Command::new(&compiler)
        .args(["-static", "-Os", "-s", "-Wall", "-Wextra", "-o"])
        .arg(&output)
        .arg(&source)
        .status()
        .unwrap_or_else(|error| panic!("cannot run the C compiler `{compiler}`: {error}"));
    assert!(
        status.success(),
        "`{compiler} -static` failed on {} ({status}): kiln needs a C compiler and a static C library (Debian: gcc, libc6-dev)",
        source.display()
    );
}

/// Collects (relative path, permission bits, is directory), refusing
/// anything but files and directories: an embedded element cannot carry a
/// symlink or a device.
fn walk(dir: &Path, relative: &Path, entries: &mut Vec<(String, u32, bool)>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    children.sort();
    for path in children {
        let name = path.file_name().expect("a name").to_owned();
        let child = relative.join(&name);
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        let mode = meta.permissions().mode() & 0o7777;
        let text = child.to_str().expect("UTF-8 element paths").to_string();
        if meta.is_dir() {
            entries.push((text, mode, true));
            walk(&path, &child, entries);
        } else if meta.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
            entries.push((text, mode, false));
        } else {
            panic!(
                "{}: built-in elements hold only files and directories",
                path.display()
            );
        }
    }
}
