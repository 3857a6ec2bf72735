//! Tests of the chroot runner against the real kernel: a tiny tree with a
//! static busybox, real mounts, real namespaces, real signals. They need
//! root and `/bin/busybox` (Debian package `busybox-static`), and fail,
//! saying so, without them.
//!
//! Anything that changes the process's namespaces or signal state runs in
//! a child: the test re-runs its own test binary on itself with
//! `KILN_CHROOT_TEST_CHILD` set, so the harness never ends up inside a
//! build namespace, and a SIGKILL test can kill a whole kiln-like process.

#![allow(clippy::disallowed_methods)]

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::mounts::{parse_mount_points, unmount_all_under};
use super::namespace::current_mount_namespace;
use super::*;
use crate::host::signals;

const CHILD_ENV: &str = "KILN_CHROOT_TEST_CHILD";
const TREE_ENV: &str = "KILN_CHROOT_TEST_TREE";
const BUSYBOX: &str = "/bin/busybox";
const APPLETS: [&str; 8] = ["sh", "sleep", "cat", "ls", "mount", "env", "kill", "ps"];

/// These tests need root and busybox; without them they fail (never skip),
/// saying what is missing: `scripts/test` runs as root and installs
/// busybox-static.
fn can_run() -> bool {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the chroot tests need root: run the suite as root (scripts/test)"
    );
    assert!(
        Path::new(BUSYBOX).is_file(),
        "the chroot tests need {BUSYBOX}: apt-get install busybox-static (scripts/install-test-deps does)"
    );
    true
}

/// A temporary image tree holding busybox. Not a `TempDir`: deletion goes
/// through `remove_dir_all_checked`, as kiln's would.
struct Tree {
    path: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::Builder::new()
            .prefix("kiln-chroot-test-")
            .tempdir()
            .unwrap();
        let path = std::fs::canonicalize(dir.keep()).unwrap();
        for sub in ["bin", "etc", "usr/sbin", "proc", "sys", "dev", "tmp"] {
            std::fs::create_dir_all(path.join(sub)).unwrap();
        }
        std::fs::copy(BUSYBOX, path.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            symlink("busybox", path.join("bin").join(applet)).unwrap();
        }
        Tree { path }
    }

    /// The tree a parent test made, handed to its child.
    fn from_env() -> Tree {
        Tree {
            path: PathBuf::from(std::env::var(TREE_ENV).unwrap()),
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if std::env::var_os(CHILD_ENV).is_none()
            && let Err(error) = remove_dir_all_checked(&self.path)
        {
            eprintln!("{error}");
        }
    }
}

fn child_command(name: &str, tree: &Tree) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            &format!("chroot::tests::{name}"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, name)
        .env(TREE_ENV, &tree.path);
    command
}

fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(name)
}

/// Runs the named test's body in a child process and checks it passed.
fn run_in_child(name: &str, tree: &Tree) {
    let output = child_command(name, tree).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child test failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn strings(argv: &[&str]) -> Vec<String> {
    argv.iter().map(ToString::to_string).collect()
}

/// Every process whose `/proc/PID/<link>` (`root`, `cwd`) points where
/// `wanted` says, with its command name.
fn processes_whose(link: &str, wanted: impl Fn(&Path) -> bool) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join(link)).is_ok_and(|to| wanted(&to)) {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push((pid, comm.trim().to_string()));
        }
    }
    found
}

/// Every process whose root directory is `tree` (or below it).
fn processes_rooted_in(tree: &Path) -> Vec<(i32, String)> {
    processes_whose("root", |root| root.starts_with(tree))
}

/// Processes working in `dir` (host programs started there).
fn processes_working_in(dir: &Path) -> Vec<(i32, String)> {
    processes_whose("cwd", |cwd| cwd == dir)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The host's view (this test process's main thread) of mounts under `tree`.
fn host_mounts_under(tree: &Path) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    parse_mount_points(&mountinfo)
        .into_iter()
        .filter(|mount| mount.starts_with(tree))
        .collect()
}

#[test]
fn mountinfo_escapes_are_decoded() {
    let mountinfo = "36 35 98:0 /mnt1 /mnt/with\\040space\\011tab rw - ext3 /dev/root rw\n\
                     37 35 98:0 / /back\\134slash rw - ext3 /dev/root rw\n";
    assert_eq!(
        parse_mount_points(mountinfo),
        vec![
            PathBuf::from("/mnt/with space\ttab"),
            PathBuf::from("/back\\slash")
        ]
    );
}

/// Real SIGTERMs sent to a kiln-like process (every thread blocks them,
/// as `kiln build`'s do) every few milliseconds while it starts one chroot
/// command after another: each must be taken by the watcher, never by the
/// thread that is spawning (which would end the process on the spot), and
/// each command must start with the signals unblocked.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "host tier: needs root and busybox-static (cargo test --features host-tests)"
)]
fn signals_during_spawns_are_all_taken_by_the_watcher() {
    const NAME: &str = "signals_during_spawns_are_all_taken_by_the_watcher";
    const SPAWNS: usize = 150;
    if !can_run() {
        return;
    }
    if !is_child(NAME) {
        let tree = Tree::new();
        // The whole child blocks the signals from its first instruction
        // on, the harness's threads too, as kiln's main thread does.
        let inner = child_command(NAME, &tree);
        let mut command = Command::new("/usr/bin/env");
        command
            .arg("--block-signal=INT,TERM")
            .arg(inner.get_program())
            .args(inner.get_args())
            .envs(
                inner
                    .get_envs()
                    .filter_map(|(name, value)| value.map(|value| (name, value))),
            );
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child test failed: {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(processes_rooted_in(&tree.path).is_empty());
        return;
    }
    let tree = Tree::from_env();
    enter_build_namespace().unwrap();
    let _mounts = mount_dib_filesystems(&tree.path).unwrap();
    signals::install().unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u32;
            let mut delay_us = 300u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                kill(Pid::this(), Signal::SIGTERM).unwrap();
                sent += 1;
                // Spread over the spawn's steps: 0.3 to 3 ms apart.
                delay_us = 300 + (delay_us * 7919 + 13) % 2700;
                std::thread::sleep(Duration::from_micros(delay_us));
            }
            sent
        })
    };
    let (mut finished, mut interrupted) = (0, 0);
    for _ in 0..SPAWNS {
        let mut log = Vec::new();
        match run_in_chroot(
            &tree.path,
            &strings(&["/bin/sh", "-c", "grep SigBlk /proc/self/status"]),
            &[],
            &mut log,
        ) {
            Ok(done) => {
                done.check().unwrap();
                assert_eq!(String::from_utf8_lossy(&log), "SigBlk:\t0000000000000000\n");
                finished += 1;
            }
            Err(ChrootError::Interrupted {
                signal: Signal::SIGTERM,
            }) => interrupted += 1,
            Err(error) => panic!("{error}"),
        }
        signals::forget_received();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = sender.join().unwrap();
    eprintln!("{SPAWNS} spawns: {finished} finished, {interrupted} interrupted by {sent} SIGTERMs");
    assert!(interrupted > 0 && sent > 0);
    assert!(processes_rooted_in(&tree.path).is_empty());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "host tier: needs root and busybox-static (cargo test --features host-tests)"
)]
fn mounts_appear_inside_and_vanish_after_the_guards() {
    const NAME: &str = "mounts_appear_inside_and_vanish_after_the_guards";
    if !can_run() {
        return;
    }
    if !is_child(NAME) {
        let tree = Tree::new();
        run_in_child(NAME, &tree);
        assert_eq!(host_mounts_under(&tree.path), Vec::<PathBuf>::new());
        return;
    }
    let tree = Tree::from_env();
    let host_namespace = current_mount_namespace().unwrap();
    enter_build_namespace().unwrap();
    assert_ne!(current_mount_namespace().unwrap(), host_namespace);

    let mounts = mount_dib_filesystems(&tree.path).unwrap();
    let expected: Vec<PathBuf> = ["proc", "dev", "dev/pts", "dev/shm", "sys"]
        .iter()
        .map(|sub| tree.path.join(sub))
        .collect();
    assert_eq!(mounts_under(&tree.path).unwrap(), expected);
    assert!(tree.path.join("proc/self/status").exists());
    assert!(tree.path.join("dev/null").exists());
    assert!(tree.path.join("dev/pts/ptmx").exists());
    // A private /dev: the nodes a build needs and nothing of the host's
    // (no disks, no loop devices).
    let mut names: Vec<String> = std::fs::read_dir(tree.path.join("dev"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
            "tty", "urandom", "zero"
        ]
    );
    std::fs::write(tree.path.join("dev/null"), b"discarded").unwrap();
    assert_eq!(std::fs::read(tree.path.join("dev/null")).unwrap(), b"");
    assert!(tree.path.join("sys/kernel").exists());

    // The host never sees the build's mounts.
    let host_view = std::fs::read_to_string("/proc/1/mountinfo").unwrap();
    assert!(
        !parse_mount_points(&host_view)
            .iter()
            .any(|mount| mount.starts_with(&tree.path))
    );

    // Deleting now would delete through the mounts (proc, sysfs).
    let refused = remove_dir_all_checked(&tree.path);
    assert!(
        matches!(&refused, Err(ChrootError::StillMounted { mounts, .. }) if mounts.len() == 5),
        "{refused:?}"
    );
    assert!(tree.path.join("bin/busybox").exists());
    assert!(Path::new("/dev/null").exists());

    // A failing chroot command, then the guards drop.
    let mut log = Vec::new();
    let failed = run_in_chroot(
        &tree.path,
        &strings(&["/bin/sh", "-c", "echo oops; exit 7"]),
        &[],
        &mut log,
    )
    .unwrap()
    .check();
    assert!(
        matches!(&failed, Err(ChrootError::Failed { status, tail, .. }) if status == "exit status 7" && tail == "oops"),
        "{failed:?}"
    );
    drop(mounts);
    assert_eq!(mounts_under(&tree.path).unwrap(), Vec::<PathBuf>::new());

    // Explicit unmount reports, and the fallback sweeps.
    let mounts = mount_dib_filesystems(&tree.path).unwrap();
    mounts.unmount().unwrap();
    let _again = mount_dib_filesystems(&tree.path).unwrap();
    unmount_all_under(&tree.path).unwrap();
    assert_eq!(mounts_under(&tree.path).unwrap(), Vec::<PathBuf>::new());
    // `_again` now finds its mounts gone and logs; nothing is left.
}

#[test]
fn remove_dir_all_checked_deletes_an_unmounted_tree() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("tree");
    std::fs::create_dir_all(inner.join("a/b")).unwrap();
    remove_dir_all_checked(&inner).unwrap();
    assert!(!inner.exists());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "host tier: needs root and busybox-static (cargo test --features host-tests)"
)]
fn background_processes_die_with_the_command() {
    if !can_run() {
        return;
    }
    let tree = Tree::new();
    let mut log = Vec::new();
    let finished = run_in_chroot(
        &tree.path,
        &strings(&[
            "/bin/sh",
            "-c",
            "sleep 1000 & sleep 1000 & echo started; exit 0",
        ]),
        &[],
        &mut log,
    )
    .unwrap();
    assert!(finished.status.success());
    // (The bare tree has no /dev/null for the shell's background jobs.)
    assert!(String::from_utf8_lossy(&log).contains("started\n"));
    wait_until(
        "no process is rooted in the tree",
        Duration::from_secs(5),
        || processes_rooted_in(&tree.path).is_empty(),
    );
    assert_eq!(mounts_under(&tree.path).unwrap(), Vec::<PathBuf>::new());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "host tier: needs root and busybox-static (cargo test --features host-tests)"
)]
fn environment_is_clean_and_exit_codes_are_relayed() {
    if !can_run() {
        return;
    }
    let tree = Tree::new();
    let mut log = Vec::new();
    let env = [("DIB_TEST".to_string(), "yes".to_string())];
    let finished = run_in_chroot(&tree.path, &strings(&["/bin/env"]), &env, &mut log).unwrap();
    assert!(finished.status.success());
    let mut lines: Vec<String> = String::from_utf8_lossy(&log)
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "DEBIAN_FRONTEND=noninteractive",
            "DIB_TEST=yes",
            "DPKG_FORCE=security-mac,downgrade,unsafe-io",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
        ]
    );

    // cwd is / and the command sees its own PID namespace's /proc: the
    // shell (PID 1), ls and grep.
    let mut log = Vec::new();
    let finished = run_in_chroot(
        &tree.path,
        &strings(&[
            "/bin/sh",
            "-c",
            "pwd; echo $$; ls /proc | grep -c '^[0-9]'; echo err >&2; exit 3",
        ]),
        &[],
        &mut log,
    )
    .unwrap();
    assert_eq!(finished.status.code(), Some(3));
    // `ls` may list /proc before the pipeline's `grep` has started, so the
    // namespace shows 2 or 3 processes; the host's hundreds are never seen.
    let log = String::from_utf8_lossy(&log);
    assert!(
        log == "/\n1\n3\nerr\n" || log == "/\n1\n2\nerr\n",
        "{log:?}"
    );
    assert_eq!(finished.tail.len(), 4);
    assert_eq!(finished.tail[..2], ["/", "1"]);
    assert_eq!(finished.tail[3], "err");

    // Outside the chroot: the host's filesystem, TARGET_ROOT, same rules.
    let mut log = Vec::new();
    let finished = run_outside_chroot(
        &tree.path,
        Path::new("/"),
        &strings(&[
            "/bin/sh",
            "-c",
            "test -x \"$TARGET_ROOT/bin/busybox\" && echo $$ && exit 4",
        ]),
        &[],
        &mut log,
    )
    .unwrap();
    assert_eq!(finished.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&log), "1\n");

    // PID 1 killed from outside: reported as a failure, never as success.
    let tree_path = tree.path.clone();
    let killer = std::thread::spawn(move || {
        wait_until("sleep runs in the tree", Duration::from_secs(10), || {
            !processes_rooted_in(&tree_path).is_empty()
        });
        for (pid, _) in processes_rooted_in(&tree_path) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    });
    let mut log = Vec::new();
    let finished =
        run_in_chroot(&tree.path, &strings(&["/bin/sleep", "1000"]), &[], &mut log).unwrap();
    killer.join().unwrap();
    assert!(!finished.status.success(), "{:?}", finished.status);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "host tier: needs root and busybox-static (cargo test --features host-tests)"
)]
fn interrupt_kills_the_command_and_reports_the_signal() {
    const NAME: &str = "interrupt_kills_the_command_and_reports_the_signal";
    if !can_run() {
        return;
    }
    if !is_child(NAME) {
        let tree = Tree::new();
        run_in_child(NAME, &tree);
        assert!(processes_rooted_in(&tree.path).is_empty());
        return;
    }
    let tree = Tree::from_env();
    enter_build_namespace().unwrap();
    let mounts = mount_dib_filesystems(&tree.path).unwrap();
    signals::install().unwrap();

    // The blocked mask is not inherited by commands.
    let mut log = Vec::new();
    run_in_chroot(
        &tree.path,
        &strings(&["/bin/sh", "-c", "grep SigBlk /proc/self/status"]),
        &[],
        &mut log,
    )
    .unwrap()
    .check()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&log), "SigBlk:\t0000000000000000\n");

    let tree_path = tree.path.clone();
    let sender = std::thread::spawn(move || {
        wait_until("sleep runs in the tree", Duration::from_secs(10), || {
            processes_rooted_in(&tree_path)
                .iter()
                .any(|(_, comm)| comm == "sleep")
        });
        // What the watcher does when SIGTERM arrives. (A real SIGTERM to
        // this process would be taken by the test harness's main thread,
        // which does not block it, and end the process.)
        signals::interrupt(Signal::SIGTERM);
    });
    let started = Instant::now();
    let mut log = Vec::new();
    let result = run_in_chroot(
        &tree.path,
        &strings(&["/bin/sh", "-c", "sleep 1000 & sleep 1000"]),
        &[],
        &mut log,
    );
    sender.join().unwrap();
    assert!(
        matches!(
            result,
            Err(ChrootError::Interrupted {
                signal: Signal::SIGTERM
            })
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(processes_rooted_in(&tree.path).is_empty());
    assert!(matches!(
        signals::check(),
        Err(signals::Interrupted {
            signal: Signal::SIGTERM
        })
    ));
    assert_eq!(signals::exit_code(Signal::SIGTERM), 143);
    // No new command starts after the signal.
    let refused = run_in_chroot(
        &tree.path,
        &strings(&["/bin/sh", "-c", "true"]),
        &[],
        &mut log,
    );
    assert!(matches!(refused, Err(ChrootError::Interrupted { .. })));
    drop(mounts);
    assert_eq!(mounts_under(&tree.path).unwrap(), Vec::<PathBuf>::new());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "host tier: needs root and busybox-static (cargo test --features host-tests)"
)]
fn sigkill_of_kiln_leaves_the_host_clean() {
    const NAME: &str = "sigkill_of_kiln_leaves_the_host_clean";
    if !can_run() {
        return;
    }
    if is_child(NAME) {
        // The kiln-like process: namespace, mounts, tree setup, and a
        // chroot command (install.d, say) that never ends.
        let tree = Tree::from_env();
        enter_build_namespace().unwrap();
        let _mounts = mount_dib_filesystems(&tree.path).unwrap();
        let _setup = prepare_tree(&tree.path).unwrap();
        let mut log = Vec::new();
        let _ = run_in_chroot(
            &tree.path,
            &strings(&["/bin/sh", "-c", "sleep 1000 & sleep 1000"]),
            &[],
            &mut log,
        );
        panic!("the chroot command should never end");
    }
    let tree = Tree::new();
    let mut kiln = child_command(NAME, &tree)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "both sleeps run in the tree",
        Duration::from_secs(20),
        || {
            processes_rooted_in(&tree.path)
                .iter()
                .filter(|(_, comm)| comm == "sleep")
                .count()
                == 2
        },
    );

    // Find the build's mount namespace through the thread that entered it,
    // and see the mounts there.
    let own_namespace = std::fs::read_link("/proc/thread-self/ns/mnt").unwrap();
    let tasks = PathBuf::from(format!("/proc/{}/task", kiln.id()));
    let (build_task, build_namespace) = std::fs::read_dir(&tasks)
        .unwrap()
        .flatten()
        .find_map(|task| {
            let namespace = std::fs::read_link(task.path().join("ns/mnt")).ok()?;
            (namespace != own_namespace).then(|| (task.path(), namespace))
        })
        .unwrap();
    let inside = std::fs::read_to_string(build_task.join("mountinfo")).unwrap();
    let inside_mounts: Vec<PathBuf> = parse_mount_points(&inside)
        .into_iter()
        .filter(|mount| mount.starts_with(&tree.path))
        .collect();
    assert_eq!(inside_mounts.len(), 5, "{inside_mounts:?}");
    assert!(host_mounts_under(&tree.path).is_empty());

    kill(
        Pid::from_raw(i32::try_from(kiln.id()).unwrap()),
        Signal::SIGKILL,
    )
    .unwrap();
    kiln.wait().unwrap();

    wait_until(
        "no process is rooted in the tree",
        Duration::from_secs(5),
        || processes_rooted_in(&tree.path).is_empty(),
    );
    wait_until(
        "no process is in the build's namespace",
        Duration::from_secs(5),
        || {
            !std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .any(|process| {
                    std::fs::read_link(process.path().join("ns/mnt"))
                        .is_ok_and(|ns| ns == build_namespace)
                })
        },
    );
    assert!(host_mounts_under(&tree.path).is_empty());
    assert!(
        Command::new("losetup")
            .arg("-a")
            .output()
            .is_ok_and(|out| out.stdout.is_empty())
    );
    // What a SIGKILL leaves in the tree itself is the tree's business
    // (it is discarded); the host's /dev was never touched.
    assert!(Path::new("/dev/null").exists());
}

#[test]
fn resolv_conf_and_policy_rc_d_are_restored_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let host_resolv = std::fs::read(setup::HOST_RESOLV_CONF).unwrap_or_default();

    // An absolute symlink (systemd-resolved style) that must not be
    // followed to the host, and a pre-existing policy-rc.d.
    let link_target = Path::new("/run/systemd/resolve/stub-resolv.conf");
    symlink(link_target, root.join("etc/resolv.conf")).unwrap();
    std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
    std::fs::write(root.join("usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(
        root.join("usr/sbin/policy-rc.d"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let host_link_target_before = std::fs::read(link_target).ok();

    let setup = prepare_tree(&root).unwrap();
    let resolv = std::fs::symlink_metadata(root.join("etc/resolv.conf")).unwrap();
    assert!(resolv.file_type().is_file());
    assert_eq!(
        std::fs::read(root.join("etc/resolv.conf")).unwrap(),
        host_resolv
    );
    let policy = root.join("usr/sbin/policy-rc.d");
    assert_eq!(std::fs::read(&policy).unwrap(), setup::POLICY_RC_D);
    assert_eq!(
        std::fs::metadata(&policy).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    setup.finish().unwrap();

    assert_eq!(
        std::fs::read_link(root.join("etc/resolv.conf")).unwrap(),
        link_target
    );
    assert_eq!(
        std::fs::read_to_string(&policy).unwrap(),
        "#!/bin/sh\nexit 0\n"
    );
    assert_eq!(
        std::fs::metadata(&policy).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    assert_eq!(std::fs::read(link_target).ok(), host_link_target_before);
    let mut left: Vec<_> = std::fs::read_dir(root.join("etc"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["resolv.conf"]);

    // A tree with neither: both absent again afterwards, even on drop,
    // and directories made for them removed.
    let bare = tempfile::tempdir().unwrap();
    let setup = prepare_tree(bare.path()).unwrap();
    assert!(bare.path().join("etc/resolv.conf").is_file());
    assert!(bare.path().join("usr/sbin/policy-rc.d").is_file());
    drop(setup);
    assert_eq!(std::fs::read_dir(bare.path()).unwrap().count(), 0);

    // A regular file keeps its inode and contents.
    let plain = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(plain.path().join("etc")).unwrap();
    std::fs::write(
        plain.path().join("etc/resolv.conf"),
        "nameserver 192.0.2.1\n",
    )
    .unwrap();
    let inode =
        |path: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap());
    let before = inode(&plain.path().join("etc/resolv.conf"));
    prepare_tree(plain.path()).unwrap().finish().unwrap();
    assert_eq!(inode(&plain.path().join("etc/resolv.conf")), before);
    assert_eq!(
        std::fs::read_to_string(plain.path().join("etc/resolv.conf")).unwrap(),
        "nameserver 192.0.2.1\n"
    );
}

#[test]
fn an_absolute_symlink_directory_is_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::create_dir_all(dir.path().join("usr")).unwrap();
    symlink(elsewhere.path(), dir.path().join("usr/sbin")).unwrap();
    let result = prepare_tree(dir.path());
    assert!(
        matches!(result, Err(ChrootError::OutsideTree { .. })),
        "{result:?}"
    );
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    // The resolv.conf already installed was rolled back.
    assert!(!dir.path().join("etc/resolv.conf").exists());
}

/// Whether a host `sleep` works in `dir`.
fn sleeps_in(dir: &Path) -> bool {
    processes_working_in(dir)
        .iter()
        .any(|(_, comm)| comm == "sleep")
}

/// Host programs (mke2fs, cp, qemu-img…) start through the same guard as
/// chroot commands: a SIGINT or SIGTERM stops the one kiln waits for at
/// once, and one still running when kiln ends dies with it.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "host tier: needs root and busybox-static (cargo test --features host-tests)"
)]
fn a_signal_stops_a_host_program_and_kiln_ending_takes_one_along() {
    const NAME: &str = "a_signal_stops_a_host_program_and_kiln_ending_takes_one_along";
    if !can_run() {
        return;
    }
    if !is_child(NAME) {
        let tree = Tree::new();
        run_in_child(NAME, &tree);
        // The child left a `sleep` running when it ended.
        wait_until("the child's sleep is gone", Duration::from_secs(5), || {
            processes_working_in(&tree.path).is_empty()
        });
        return;
    }
    let tree = Tree::from_env();
    signals::install().unwrap();
    let dir = tree.path.clone();
    let sender = std::thread::spawn(move || {
        wait_until("sleep runs", Duration::from_secs(10), || sleeps_in(&dir));
        signals::interrupt(Signal::SIGTERM);
    });
    let started = Instant::now();
    let finished = crate::host::command::Program::new("sleep", "coreutils")
        .arg("1000")
        .current_dir(&tree.path)
        .run()
        .unwrap();
    sender.join().unwrap();
    assert_eq!(finished.code, None, "killed, not ended: {finished:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    signals::forget_received();
    let left = crate::host::command::Program::new("sleep", "coreutils")
        .arg("1000")
        .current_dir(&tree.path)
        // Not the pipes the parent test reads to its end.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the second sleep runs", Duration::from_secs(10), || {
        sleeps_in(&tree.path)
    });
    // Not waited for: this process ends with it running.
    std::mem::forget(left);
}
