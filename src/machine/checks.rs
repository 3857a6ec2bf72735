//! The checks `kiln test` runs on a booted machine: ssh login as the
//! default user with the key from the NoCloud seed (within the deadline,
//! which also covers the boot), systemd reaching `running` with no failed
//! unit, password login not offered, the root filesystem grown to the
//! disk with room left for users, and its label at `/` (for a disk
//! image), `/` in RAM (for a ramdisk), sshd's host keys made on the
//! machine; and the imagefile's own `tests:` ([`run_test`]). Each ends in
//! an [`Outcome`]; the command prints them.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::machine::{ImageFiles, Machine, SshTarget};
use crate::manifest::TestCheck;
use crate::terminal;

/// Longest a single check's command may run.
pub const CHECK_LIMIT: Duration = Duration::from_secs(120);

/// Lines of failures quoted from the console when the boot fails.
const CONSOLE_FAILURES: usize = 10;

/// What marks a console line as a failure worth quoting: systemd's unit
/// states, and the kernel's reasons for a panic (a ramdisk that did not
/// unpack, often for want of memory, ends in one).
const CONSOLE_FAILURE_MARKS: [&str; 6] = [
    "[FAILED]",
    "[ TIME ]",
    "[DEPEND]",
    "Initramfs unpacking failed",
    "Kernel panic - not syncing",
    "No working init found",
];

/// The filesystem types of a `/` held in RAM, as `stat -f` names them:
/// the kernel's rootfs is a tmpfs (a ramfs when the command line names a
/// `root=`), and a system that copies itself into RAM uses a tmpfs.
const RAM_FILESYSTEMS: [&str; 2] = ["tmpfs", "ramfs"];

/// How often ssh is tried while the machine boots.
const SSH_POLL: Duration = Duration::from_secs(2);

/// The allowed gap between the disk and the root filesystem: the larger
/// of this share of the disk and [`GROW_SLACK_BYTES`] (filesystem
/// metadata, other partitions).
const GROW_SLACK_PERCENT: u64 = 5;

/// See [`GROW_SLACK_PERCENT`].
const GROW_SLACK_BYTES: u64 = 100 << 20;

/// Serial console lines that mean the boot has failed for good, and why.
const FATAL_CONSOLE: [(&str, &str); 4] = [
    (
        "You are in emergency mode",
        "the machine entered emergency mode",
    ),
    ("Kernel panic", "the kernel panicked"),
    (
        "Give root password for maintenance",
        "the machine entered emergency mode",
    ),
    (
        "Cannot open access to console, the root account is locked",
        "the machine entered emergency mode",
    ),
];

/// How one check ended.
#[derive(Debug)]
pub struct Outcome {
    /// What was checked, as shown to the user.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// How long checking took.
    pub took: Duration,
    /// Why it failed (empty when it passed).
    pub detail: String,
}

/// The [`Outcome`] of check `name` that started at `started`.
pub fn outcome(name: impl Into<String>, started: Instant, result: Result<(), String>) -> Outcome {
    let (passed, detail) = match result {
        Ok(()) => (true, String::new()),
        Err(detail) => (false, detail),
    };
    Outcome {
        name: name.into(),
        passed,
        took: started.elapsed(),
        detail,
    }
}

/// Polls ssh until the key logs in, the machine fails for good (QEMU
/// ended, emergency mode, a kernel panic), a signal arrives, or the
/// deadline passes.
pub fn wait_for_login(
    machine: &Machine,
    serial_log: &std::path::Path,
    deadline: Instant,
    started: Instant,
) -> Outcome {
    let name = format!(
        "boots, and `{}` logs in over ssh with the key from the seed",
        machine.ssh.user
    );
    let mut last_error = String::new();
    let result = loop {
        if let Some(signal) = crate::host::signals::received() {
            break Err(format!("interrupted by {signal:?}"));
        }
        if machine.has_exited() {
            let output = machine.qemu_output();
            break Err(format!(
                "QEMU ended before ssh came up{}",
                if output.is_empty() {
                    String::new()
                } else {
                    format!(": {output}")
                }
            ));
        }
        let console = std::fs::read_to_string(serial_log).unwrap_or_default();
        if let Some((_, why)) = FATAL_CONSOLE
            .iter()
            .find(|(line, _)| console.contains(line))
        {
            let failures = console_failures(&console);
            break Err(if failures.is_empty() {
                format!("{why} (see the serial console below)")
            } else {
                format!("{why}; the console said:\n{}", failures.join("\n"))
            });
        }
        if Instant::now() >= deadline {
            break Err(format!(
                "no ssh login within {} s{}",
                deadline.duration_since(started).as_secs(),
                if last_error.is_empty() {
                    String::new()
                } else {
                    format!("; ssh said: {last_error}")
                }
            ));
        }
        let limit = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(20));
        match machine.ssh.run_once("true", limit) {
            Ok(finished) if finished.success() => break Ok(()),
            Ok(finished) => last_error = finished.stderr.trim().to_string(),
            Err(error) => break Err(error.to_string()),
        }
        std::thread::sleep(SSH_POLL);
    };
    outcome(name, started, result)
}

/// The console's lines where systemd reports a unit that failed, timed out
/// or could not start for a failed dependency, or the kernel says why it
/// panicked (at most [`CONSOLE_FAILURES`]), so the cause stays in view
/// when the console tail has scrolled past it.
fn console_failures(console: &str) -> Vec<String> {
    let plain = plain_text(console);
    let mut lines: Vec<String> = plain
        .lines()
        .filter(|l| CONSOLE_FAILURE_MARKS.iter().any(|m| l.contains(m)))
        // The panic's closing line repeats its first.
        .filter(|l| !l.contains("---[ end Kernel panic"))
        .map(|l| l.trim().to_string())
        .collect();
    lines.dedup();
    lines.truncate(CONSOLE_FAILURES);
    lines
}

/// Runs `remote`, returning its stdout, or why it failed.
fn remote_output(ssh: &SshTarget, remote: &str, limit: Duration) -> Result<String, String> {
    let finished = ssh.run(remote, limit).map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&finished.stdout).trim().to_string();
    if finished.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`{remote}` failed ({}): {}{}",
            finished
                .code
                .map_or_else(|| "killed".to_string(), |c| format!("exit status {c}")),
            stdout,
            finished.stderr.trim()
        ))
    }
}

/// systemd reaches `running` (by `deadline`) with no failed unit.
pub fn system_running(ssh: &SshTarget, deadline: Instant) -> Outcome {
    let started = Instant::now();
    let limit = deadline
        .saturating_duration_since(started)
        .max(Duration::from_secs(60));
    let result = (|| {
        // Exits non-zero when degraded: the state is what matters.
        let finished = ssh
            .run(&as_root(ssh, "systemctl is-system-running --wait"), limit)
            .map_err(|e| e.to_string())?;
        let state = String::from_utf8_lossy(&finished.stdout).trim().to_string();
        let failed = remote_output(
            ssh,
            &as_root(ssh, "systemctl --failed --no-legend --plain"),
            CHECK_LIMIT,
        )?;
        let units: Vec<&str> = failed
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        if !units.is_empty() {
            return Err(format!(
                "system is {state}; failed units: {}",
                units.join(", ")
            ));
        }
        if state != "running" {
            return Err(format!("system is `{state}`, not `running`"));
        }
        Ok(())
    })();
    outcome(
        "systemd reaches `running` with no failed unit",
        started,
        result,
    )
}

/// sshd does not offer password or keyboard-interactive logins.
pub fn password_refused(ssh: &SshTarget) -> Outcome {
    let started = Instant::now();
    let result = match ssh.offered_methods() {
        Err(error) => Err(error.to_string()),
        Ok(None) => Err("a login without a key succeeded".to_string()),
        Ok(Some(methods)) => {
            let weak: Vec<&String> = methods
                .iter()
                .filter(|m| *m == "password" || *m == "keyboard-interactive")
                .collect();
            if weak.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "sshd offers {}; set `PasswordAuthentication no` and `KbdInteractiveAuthentication no`",
                    methods.join(", ")
                ))
            }
        }
    };
    outcome("ssh refuses password logins", started, result)
}

/// The root filesystem fills its disk (growroot ran).
pub fn root_grown(ssh: &SshTarget) -> Outcome {
    let started = Instant::now();
    // Sizes in bytes: the filesystem at `/`, its partition, and the disk
    // space after the partition (the filesystem's own device and 0 when
    // the image has no partition table), read from sysfs.
    let script = "src=$(findmnt -n -o SOURCE /); part=$(basename \"$(readlink -f \"$src\")\"); \
                  parent=$(lsblk -n -o PKNAME \"$src\" | head -n 1); fs=$(findmnt -n -b -o SIZE /); \
                  size=$(cat /sys/class/block/$part/size); \
                  if [ -n \"$parent\" ]; then start=$(cat /sys/class/block/$part/start); \
                  disk=$(cat /sys/class/block/$parent/size); gap=$((disk - start - size)); \
                  else gap=0; fi; echo \"$fs $((size * 512)) $((gap * 512)) $src\"";
    let result = remote_output(ssh, script, CHECK_LIMIT).and_then(|text| {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let (Some(fs), Some(partition), Some(gap)) = (number(0), number(1), number(2)) else {
            return Err(format!("cannot read the sizes from `{text}`"));
        };
        root_fills_disk(fs, partition, gap).map_err(|why| {
            format!(
                "{why} ({}): it was not grown",
                fields.get(3).unwrap_or(&"?")
            )
        })
    });
    outcome("the root filesystem fills the disk", started, result)
}

/// Whether a root filesystem of `fs` bytes on a partition of `partition`
/// bytes, followed by `gap` free bytes on the disk, was grown to the disk:
/// the gap within [`GROW_SLACK_BYTES`], and the filesystem's shortfall (its
/// metadata) within the larger of [`GROW_SLACK_PERCENT`] of the partition
/// and [`GROW_SLACK_BYTES`].
fn root_fills_disk(fs: u64, partition: u64, gap: u64) -> Result<(), String> {
    let slack = (partition / 100 * GROW_SLACK_PERCENT).max(GROW_SLACK_BYTES);
    if gap > GROW_SLACK_BYTES {
        return Err(format!(
            "{} MiB of the disk lie unused after the root partition",
            gap >> 20
        ));
    }
    if fs.saturating_add(slack) < partition {
        return Err(format!(
            "`/` is {} MiB on a partition of {} MiB",
            fs >> 20,
            partition >> 20
        ));
    }
    Ok(())
}

/// Users other than root can still write to `/` once the machine has
/// booted: free space beyond root's reserved blocks, as `df` shows it to
/// the (unprivileged) login user. A root filesystem that is not grown
/// (a disk no larger than the image, a filesystem-only output) keeps only
/// what `disk.headroom` left it, less what the first boot wrote.
pub fn root_has_room(ssh: &SshTarget) -> Outcome {
    let started = Instant::now();
    let free =
        remote_output(ssh, "df --output=avail -B1 / | tail -n 1", CHECK_LIMIT).and_then(|text| {
            text.trim()
                .parse::<u64>()
                .map_err(|_| format!("cannot read the free space from `{text}`"))
        });
    match free {
        Ok(bytes) if bytes > 0 => outcome(
            format!("`/` has room for users ({} MiB free)", bytes >> 20),
            started,
            Ok(()),
        ),
        Ok(_) => outcome(
            "`/` has room for users",
            started,
            Err(
                "no space is free on `/` for users other than root: raise `disk.headroom` \
                 or let the root grow (the `growroot` element)"
                    .to_string(),
            ),
        ),
        Err(why) => outcome("`/` has room for users", started, Err(why)),
    }
}

/// The filesystem mounted at `/` carries `label`.
pub fn root_label(ssh: &SshTarget, label: &str) -> Outcome {
    let started = Instant::now();
    let result = remote_output(ssh, "findmnt -n -o LABEL /", CHECK_LIMIT).and_then(|found| {
        if found == label {
            Ok(())
        } else {
            Err(format!("`/` is labelled `{found}`"))
        }
    });
    outcome(format!("`{label}` is mounted at `/`"), started, result)
}

/// `/` is held in RAM (a ramdisk's machine runs from its initramfs, with
/// no root filesystem on a disk).
pub fn root_in_ram(ssh: &SshTarget) -> Outcome {
    let started = Instant::now();
    let result = remote_output(ssh, "stat -f -c %T /", CHECK_LIMIT).and_then(|found| {
        if RAM_FILESYSTEMS.contains(&found.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "`/` is on {found}, not in RAM: the machine is not running from its ramdisk"
            ))
        }
    });
    outcome("`/` is in RAM", started, result)
}

/// sshd's host keys must be made by the machine on its first boot: an
/// image that carries them gives every machine made from it the same
/// identity. Each public key the machine serves is looked for in the
/// image's tree ([`ImageFiles::tree_bytes`]: an uncompressed disk image
/// holds the key files' text as it is, an initramfs once decompressed),
/// and the keys are printed so that two boots can be compared.
pub fn host_keys_fresh(ssh: &SshTarget, image: &ImageFiles) -> Outcome {
    let started = Instant::now();
    let result =
        remote_output(ssh, "cat /etc/ssh/ssh_host_*_key.pub", CHECK_LIMIT).and_then(|text| {
            let blobs: Vec<&str> = text
                .lines()
                .filter_map(|line| line.split_whitespace().nth(1))
                .collect();
            if blobs.is_empty() {
                return Err("the machine serves no host key".to_string());
            }
            for line in text.lines() {
                let mut fields = line.split_whitespace();
                if let (Some(kind), Some(blob)) = (fields.next(), fields.next()) {
                    terminal::status(&format!("host key: {kind} {blob}"));
                }
            }
            let path = image.tree_file();
            let found = image
                .tree_bytes()
                .and_then(|bytes| contains_any(bytes, &blobs))
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            match found {
                Some(blob) => Err(format!(
                    "{} holds the host key {}…: the image was built with its host keys",
                    if image.is_ramdisk() {
                        "the initramfs"
                    } else {
                        "the image file"
                    },
                    &blob[..blob.len().min(24)]
                )),
                None => Ok(()),
            }
        });
    outcome(
        "sshd's host keys were made on this machine, not taken from the image",
        started,
        result,
    )
}

/// The first of `needles` that occurs in what `reader` yields, read in
/// large chunks that overlap by the longest needle (a decompressor's
/// small reads are gathered into a whole chunk before it is searched).
fn contains_any<'a>(
    mut reader: impl Read,
    needles: &[&'a str],
) -> std::io::Result<Option<&'a str>> {
    const CHUNK_BYTES: usize = 8 << 20;
    let overlap = needles.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut buffer = vec![0u8; CHUNK_BYTES + overlap];
    let mut kept = 0;
    loop {
        let mut filled = kept;
        while filled < buffer.len() {
            match reader.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        let window = &buffer[..filled];
        for needle in needles {
            if memchr::memmem::find(window, needle.as_bytes()).is_some() {
                return Ok(Some(needle));
            }
        }
        if filled < buffer.len() {
            return Ok(None);
        }
        kept = overlap.min(filled);
        buffer.copy_within(filled - kept..filled, 0);
    }
}

/// Runs one of the imagefile's `tests:` over ssh; why it failed, if it did.
pub fn run_test(ssh: &SshTarget, check: &TestCheck<'_>) -> Result<(), String> {
    match check {
        TestCheck::File(path) => {
            let finished = ssh
                .run(&format!("test -e {}", quoted(path)), CHECK_LIMIT)
                .map_err(|e| e.to_string())?;
            match finished.code {
                Some(0) => Ok(()),
                Some(1) => Err(format!("{path} does not exist")),
                _ => Err(format!("cannot look: {}", finished.stderr.trim())),
            }
        }
        TestCheck::Unit(unit) => {
            let finished = ssh
                .run(
                    &as_root(ssh, &format!("systemctl is-active {}", quoted(unit))),
                    CHECK_LIMIT,
                )
                .map_err(|e| e.to_string())?;
            let state = String::from_utf8_lossy(&finished.stdout).trim().to_string();
            if finished.success() {
                Ok(())
            } else {
                Err(format!("{unit} is `{state}`"))
            }
        }
        TestCheck::Run {
            command,
            exit,
            output,
            sudo,
        } => {
            let remote = if *sudo {
                format!("sudo -n sh -c {}", quoted(command))
            } else {
                (*command).to_string()
            };
            let finished = ssh.run(&remote, CHECK_LIMIT).map_err(|e| e.to_string())?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&finished.stdout),
                finished.stderr
            );
            let shown = last_lines(&text, 10);
            if finished.code == Some(255) {
                return Err(format!("ssh failed: {}", finished.stderr.trim()));
            }
            if finished.code != Some(i32::from(*exit)) {
                return Err(format!(
                    "exited {}, expected {exit}{}",
                    finished
                        .code
                        .map_or_else(|| "by a signal".to_string(), |c| c.to_string()),
                    if shown.is_empty() {
                        String::new()
                    } else {
                        format!("; output ends:\n{shown}")
                    }
                ));
            }
            if let Some(wanted) = output
                && !text.contains(wanted)
            {
                return Err(format!(
                    "the output does not contain `{wanted}`; it ends:\n{shown}"
                ));
            }
            Ok(())
        }
    }
}

/// `command` run as root: through `sudo` unless the user is root. A user's
/// `systemctl` asks systemd over D-Bus, which a minimal image may lack;
/// root's uses systemd's private socket.
fn as_root(ssh: &SshTarget, command: &str) -> String {
    if ssh.user == "root" {
        command.to_string()
    } else {
        format!("sudo -n {command}")
    }
}

/// `text` as one single-quoted shell word.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// The last `count` lines of the serial log, without terminal escape
/// sequences (systemd colours its status) or other control characters.
pub fn serial_tail(path: &std::path::Path, count: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    last_lines(&plain_text(&String::from_utf8_lossy(&bytes)), count)
}

/// `text` without ANSI escape sequences (`ESC [ … final byte`) and control
/// characters other than newline and tab.
fn plain_text(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, up to the final byte.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if !c.is_control() || c == '\n' || c == '\t' {
            plain.push(c);
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::machine::initramfs::tests::{gzip, newc, zstd};

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIkeyblob";

    /// Whether the tree of `image` holds one of `needles`.
    fn search(image: &ImageFiles, needles: &[&'static str]) -> Option<&'static str> {
        contains_any(image.tree_bytes().expect("open"), needles).expect("read")
    }

    #[test]
    fn a_key_across_a_chunk_boundary_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("image");
        let mut bytes = vec![0u8; (8 << 20) - 10];
        bytes.extend_from_slice(KEY.as_bytes());
        bytes.extend(vec![0u8; 100]);
        std::fs::write(&path, &bytes).expect("write");
        let image = ImageFiles::Disk(path);
        assert_eq!(search(&image, &["nothere", KEY]), Some(KEY));
        assert_eq!(search(&image, &["absent"]), None);
    }

    /// A compressor of a test's initramfs.
    type Compress = fn(&[u8]) -> Vec<u8>;

    /// An initramfs with a host key in `/etc/ssh`, as each compression
    /// writes it, and one without.
    fn initramfs_with_key(compress: Compress) -> (Vec<u8>, Vec<u8>) {
        let filler: Vec<u8> = (0..(3u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
        let with = newc(&[
            ("usr/lib/filler", &filler),
            (
                "etc/ssh/ssh_host_ed25519_key.pub",
                format!("ssh-ed25519 {KEY} root@build\n").as_bytes(),
            ),
        ]);
        let without = newc(&[("usr/lib/filler", &filler)]);
        (compress(&with), compress(&without))
    }

    #[test]
    fn a_key_inside_a_compressed_initramfs_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kernel = dir.path().join("ipa.kernel");
        let initramfs = dir.path().join("ipa.initramfs");
        let image = ImageFiles::Ramdisk {
            kernel,
            initramfs: initramfs.clone(),
        };
        let compressions: [(&str, Compress); 2] = [("zstd", zstd), ("gzip", gzip)];
        for (name, compress) in compressions {
            let (with, without) = initramfs_with_key(compress);
            assert!(
                memchr::memmem::find(&with, KEY.as_bytes()).is_none(),
                "{name}: the key is not in the compressed bytes as they are"
            );
            std::fs::write(&initramfs, &with).expect("write");
            assert_eq!(search(&image, &["nothere", KEY]), Some(KEY), "{name}");
            std::fs::write(&initramfs, &without).expect("write");
            assert_eq!(search(&image, &["nothere", KEY]), None, "{name}");
            // Behind early microcode, as distributions ship them.
            let mut early = newc(&[("kernel/x86/microcode/AuthenticAMD.bin", b"ucode")]);
            early.extend(&with);
            std::fs::write(&initramfs, &early).expect("write");
            assert_eq!(search(&image, &[KEY]), Some(KEY), "{name} after microcode");
        }
    }

    #[test]
    fn an_initramfs_kiln_cannot_read_is_an_error_not_a_pass() {
        let dir = tempfile::tempdir().expect("tempdir");
        let initramfs = dir.path().join("ipa.initramfs");
        std::fs::write(&initramfs, b"\xfd7zXZ\0\0 xz-compressed").expect("write");
        let image = ImageFiles::Ramdisk {
            kernel: dir.path().join("ipa.kernel"),
            initramfs,
        };
        let error = contains_any(image.tree_bytes().expect("open"), &[KEY]).expect_err("xz");
        assert!(
            error.to_string().contains("neither a newc cpio archive"),
            "{error}"
        );
    }

    #[test]
    fn a_kernel_panic_and_its_cause_are_picked_from_the_console() {
        let console = "[    1.80] Initramfs unpacking failed: write error\r\n\
                       [    2.29] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n\
                       [    2.30]  panic+0x118/0x2f4\r\n\
                       [    2.31] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0) ]---\r\n";
        assert_eq!(
            console_failures(console),
            [
                "[    1.80] Initramfs unpacking failed: write error",
                "[    2.29] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
            ]
        );
    }

    #[test]
    fn shell_words_survive_quotes() {
        assert_eq!(quoted("it's"), r"'it'\''s'");
        assert_eq!(quoted("/etc/x y"), "'/etc/x y'");
    }

    #[test]
    fn the_serial_tail_drops_control_characters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("serial.log");
        let text: String = (1..=50)
            .map(|i| format!("[\x1b[0;32m  OK  \x1b[0m] line {i}\r\n"))
            .collect();
        std::fs::write(&path, text).expect("write");
        let tail = serial_tail(&path, 40);
        assert_eq!(tail.lines().count(), 40);
        assert!(tail.starts_with("[  OK  ] line 11\n"), "{tail}");
        assert!(tail.ends_with("[  OK  ] line 50"));
    }

    #[test]
    fn systemd_failures_are_picked_from_the_console() {
        let console = "[\x1b[0;32m  OK  \x1b[0m] Started a.service\r\n\
                       [\x1b[0;1;31m TIME \x1b[0m] Timed out waiting for device dev-x.device\r\n\
                       [\x1b[0;1;33mDEPEND\x1b[0m] Dependency failed for mnt-x.mount\r\n";
        assert_eq!(
            console_failures(console),
            [
                "[ TIME ] Timed out waiting for device dev-x.device",
                "[DEPEND] Dependency failed for mnt-x.mount"
            ]
        );
    }

    #[test]
    fn a_grown_root_leaves_little_of_the_disk() {
        const MIB: u64 = 1 << 20;
        // 1835 MiB of ext4 on a 1900 MiB partition that ends the disk.
        assert!(root_fills_disk(1835 * MIB, 1900 * MIB, MIB).is_ok());
        assert!(root_fills_disk(700 * MIB, 1900 * MIB, MIB).is_err());
        assert!(root_fills_disk(700 * MIB, 750 * MIB, 1024 * MIB).is_err());
    }
}
