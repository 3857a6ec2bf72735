//! Writing a file so that readers see the old content or the new, never
//! half of it: a temporary file beside it, synced, then renamed over it.
//! And copying a whole tree as it is.

use std::io::Write;
use std::path::Path;

use super::command::Program;

/// Writes `bytes` to `path` atomically, readable by all (mode 0644, as a
/// plain `File::create` would make it; a temporary file is 0600).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Copies the tree at `from` to `to` (which must not exist), keeping
/// owners, modes, times, hard links, xattrs, devices and holes: `cp -a`,
/// with a reflink where the filesystem has them. The error is cp's own
/// words.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    let finished = Program::new("cp", "coreutils")
        .args(["-a", "--reflink=auto", "--no-target-directory"])
        .arg(from)
        .arg(to)
        .run()
        .map_err(|error| error.to_string())?;
    if !finished.success() {
        return Err(finished.stderr.trim().to_string());
    }
    Ok(())
}

/// What the ELF header of the file at `path` says: its class (1 for
/// 32-bit, 2 for 64-bit), byte order (1 little-endian, 2 big-endian) and
/// machine (`e_machine`, in that byte order); `None` if it is not an ELF
/// file (or cannot be read).
pub fn elf_identity(path: &Path) -> Option<(u8, u8, u16)> {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    if &header[..4] != b"\x7fELF" {
        return None;
    }
    let bytes = [header[18], header[19]];
    let machine = match header[5] {
        2 => u16::from_be_bytes(bytes),
        _ => u16::from_le_bytes(bytes),
    };
    Some((header[4], header[5], machine))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.json");
        std::fs::write(&path, "old").expect("write");
        write_atomic(&path, b"new").expect("write_atomic");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }
}
