//! `kiln test`: boot the built image and check that it came up as a cloud
//! image should, then run the imagefile's own `tests:`.
//!
//! The built-in checks, in order: ssh login as the default user with the
//! key from the NoCloud seed (within `--timeout`, which also covers the
//! boot), systemd reaching `running` with no failed unit, password login
//! not offered; for a disk image the root filesystem grown to the disk
//! and its label at `/`, for a ramdisk `/` in RAM; and sshd's host keys
//! absent from the image. When ssh never comes up, the rest are skipped.
//! The serial console goes to a file; on a failure its last lines are
//! shown. QEMU is stopped on every way out (see [`crate::machine`]). The
//! checks themselves are [`crate::machine::checks`].

use std::io::Write;
use std::time::{Duration, Instant};

use crate::failure::Failure;
use crate::machine::checks::{
    Outcome, host_keys_fresh, outcome, password_refused, root_grown, root_has_room, root_in_ram,
    root_label, run_test, serial_tail, system_running, wait_for_login,
};
use crate::machine::{Boot, Machine, MachineSpec, Serial, SshTarget};
use crate::ops::machine::{MachineOptions, Target, absolute, find_target, machine_spec};
use crate::terminal;

/// Settings of `kiln test`.
#[derive(Debug, Clone)]
pub struct TestSettings {
    /// The machine.
    pub machine: MachineOptions,
    /// How long the machine gets to boot and accept the ssh login.
    pub timeout: Duration,
}

/// Lines of the serial console shown after a failure.
pub const SERIAL_TAIL_LINES: usize = 40;

/// A built-in check run once ssh works.
type BuiltIn = Box<dyn Fn(&SshTarget) -> Outcome>;

/// Boots the image and runs every check; fails (exit 1) if any fails.
pub fn run(settings: &TestSettings) -> Result<(), Failure> {
    crate::host::signals::install().map_err(Failure::internal)?;
    // Dropped last: the machine's files and the serial log are inside.
    let _temp = crate::host::temp::Session::start().map_err(Failure::internal)?;
    let options = &settings.machine;
    let target = find_target(options)?;
    let started = Instant::now();
    let scratch = tempfile::Builder::new()
        .prefix("kiln-test-")
        .tempdir_in(crate::host::temp::dir())
        .map_err(Failure::internal)?;
    let serial_log = match &options.serial_log {
        Some(path) => absolute(path)?,
        None => scratch.path().join("serial.log"),
    };
    let spec = machine_spec(options, &target, Serial::File(serial_log.clone()))?;
    let machine = Machine::start(&spec).map_err(Failure::internal)?;
    terminal::status(&format!(
        "{}; serial console: {}",
        testing(&target, &spec, &machine),
        serial_log.display()
    ));

    let mut outcomes = Vec::new();
    let deadline = started + settings.timeout;
    let login = wait_for_login(&machine, &serial_log, deadline, started);
    report(&login);
    let logged_in = login.passed;
    outcomes.push(login);
    if logged_in {
        terminal::status(&format!(
            "ssh login after {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        let mut checks: Vec<BuiltIn> = vec![
            Box::new(move |ssh| system_running(ssh, deadline)),
            Box::new(password_refused),
        ];
        if target.files.is_ramdisk() {
            checks.push(Box::new(root_in_ram));
        } else {
            checks.push(Box::new(root_grown));
            checks.push(Box::new(root_has_room));
            checks.push(Box::new({
                let label = target.root_label();
                move |ssh| root_label(ssh, &label)
            }));
        }
        checks.push(Box::new({
            let files = target.files.clone();
            move |ssh| host_keys_fresh(ssh, &files)
        }));
        for check in checks {
            interrupted()?;
            let outcome = check(&machine.ssh);
            report(&outcome);
            outcomes.push(outcome);
        }
        for outcome in manifest_tests(&target, &machine.ssh)? {
            outcomes.push(outcome);
        }
    }
    interrupted()?;
    drop(machine);

    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed).collect();
    if failed.is_empty() {
        terminal::status(&format!(
            "all {} checks passed in {:.1} s",
            outcomes.len(),
            started.elapsed().as_secs_f64()
        ));
        return Ok(());
    }
    let tail = serial_tail(&serial_log, SERIAL_TAIL_LINES);
    terminal::status(&format!(
        "last {SERIAL_TAIL_LINES} lines of the serial console ({}):\n{}",
        serial_log.display(),
        if tail.is_empty() {
            "(nothing)".to_string()
        } else {
            tail
        }
    ));
    let names: Vec<String> = failed.iter().map(|o| format!("`{}`", o.name)).collect();
    let mut help = String::from("the serial console's end is above");
    if options.serial_log.is_none() {
        help.push_str("; keep all of it with --serial-log FILE");
    }
    if !logged_in {
        help.push_str("; a slow host may need a longer --timeout");
    }
    Err(Failure::user(miette::miette!(
        help = help,
        "{} of {} checks failed: {}",
        failed.len(),
        outcomes.len(),
        names.join(", ")
    )))
}

/// What is tested, and how, as the first line `kiln test` prints.
fn testing(target: &Target, spec: &MachineSpec, machine: &Machine) -> String {
    match &spec.boot {
        Boot::Disk { .. } => format!(
            "testing {} ({}) on the overlay {}",
            target.files.tree_file().display(),
            spec.shown(),
            machine.files.overlay_shown(),
        ),
        Boot::Ramdisk(ramdisk) => format!(
            "testing the ramdisk {} with the kernel {} ({}, memory {} MiB, \
             kernel command line `{}`)",
            ramdisk.initramfs.display(),
            ramdisk.kernel.display(),
            spec.shown(),
            spec.memory_mib,
            ramdisk.kernel_cmdline(spec.platform)
        ),
    }
}

fn interrupted() -> Result<(), Failure> {
    match crate::host::signals::received() {
        Some(signal) => Err(Failure::Internal(miette::miette!(
            "interrupted by {signal:?}; the machine was stopped"
        ))),
        None => Ok(()),
    }
}

/// Prints one check's line on stdout: ✓ or ✗, its name, its seconds, and
/// why it failed.
fn report(outcome: &Outcome) {
    let mut stdout = std::io::stdout().lock();
    let mark = if outcome.passed { '✓' } else { '✗' };
    let _ = writeln!(
        stdout,
        "{mark} {} ({:.1} s)",
        outcome.name,
        outcome.took.as_secs_f64()
    );
    if !outcome.detail.is_empty() {
        for line in outcome.detail.lines() {
            let _ = writeln!(stdout, "    {line}");
        }
    }
    let _ = stdout.flush();
}

/// Runs the imagefile's `tests:`, printing each.
fn manifest_tests(target: &Target, ssh: &SshTarget) -> Result<Vec<Outcome>, Failure> {
    let Some(checked) = &target.manifest else {
        return Ok(Vec::new());
    };
    let mut outcomes = Vec::new();
    for test in &checked.manifest.tests {
        interrupted()?;
        let started = Instant::now();
        let result = match test.check() {
            Some(check) => run_test(ssh, &check),
            None => Err("this test names no check".to_string()),
        };
        let outcome = outcome(test.display_name(), started, result);
        report(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
