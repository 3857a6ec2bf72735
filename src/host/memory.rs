//! The host's memory: how much a build may take for a tree in a tmpfs.
//!
//! `MemAvailable` in `/proc/meminfo` is the kernel's own estimate of what
//! can be allocated without swapping (free memory plus the page cache and
//! slab it can drop), the figure `free` shows as "available".

use std::io;

const MEMINFO: &str = "/proc/meminfo";

/// Bytes of memory available to new allocations (`MemAvailable`).
pub fn available() -> io::Result<u64> {
    let text = fs_err::read_to_string(MEMINFO)?;
    available_in(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no MemAvailable line in {MEMINFO}"),
        )
    })
}

/// `MemAvailable` of a meminfo text, in bytes.
fn available_in(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available_in_bytes() {
        let text = "MemTotal:       24589016 kB\nMemFree:         1000000 kB\nMemAvailable:   23317148 kB\n";
        assert_eq!(available_in(text), Some(23_317_148 * 1024));
        assert_eq!(available_in("MemTotal: 1 kB\n"), None);
        assert_eq!(available_in("MemAvailable: x kB\n"), None);
    }

    #[test]
    fn this_host_has_some_memory_available() {
        assert!(available().expect("meminfo") > 0);
    }
}
