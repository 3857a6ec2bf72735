//! Kill anywhere: SIGKILL, SIGINT and SIGTERM at seeded random moments
//! across a whole `kiln build` of a VM image (lock, fetch, bootstrap, the
//! phases, the snapshot, its restore, finalise.d, normalise, assembly, the
//! outputs, the report) and across `kiln test`. After each kill: no mount,
//! loop device or process of the build or the machine is left, nothing but
//! finished files (and, after SIGKILL, what the next run removes) in the
//! output and temporary directories, no output that is not whole, a cache
//! that passes `kiln fetch`'s check, and at the end a build with the same
//! bytes as the uninterrupted one.
//!
//! The seed is printed; `KILN_KILL_SEED=<n>` replays a run's kill moments
//! (the stage hit still depends on the machine's speed, and is printed).
//! Bounded: ten kills, two whole builds of which one restores the tree
//! from a snapshot, in a private cache whose package blobs are hard links
//! to the shared cache's.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::common::{
    loop_devices_under, mounts_under, one_boot_at_a_time, processes_rooted_in, shared_cache,
};

/// The cheapest VM image: a kernel, an init and GRUB for BIOS and UEFI on a
/// partitioned disk, in two disk formats and one tree format.
const IMAGEFILE: &str = "name: kill-vm
base:
  distro: debian
  release: bookworm
elements: [vm]
outputs: [raw, qcow2, tar]
";
const NAME: &str = "kill-vm";
const OUTPUTS: [&str; 3] = ["raw", "qcow2", "tar"];
/// What a build writes beside its outputs, after them.
const DOCUMENTS: [&str; 3] = ["spdx.json", "cdx.json", "provenance.json"];

/// What a kill waits for before its random delay starts.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// The process starting.
    Start,
    /// A line on stderr starting with this.
    Line(&'static str),
    /// A download being written into the cache's `tmp/`.
    Download,
}

/// One kill: where it aims, and the window its delay is drawn from.
#[derive(Debug, Clone, Copy)]
struct Aim {
    stage: &'static str,
    trigger: Trigger,
    window_ms: u64,
}

/// Kills of builds that make the tree (before the reference build).
const BEFORE_REFERENCE: [Aim; 4] = [
    Aim {
        stage: "lock",
        trigger: Trigger::Start,
        window_ms: 2500,
    },
    Aim {
        stage: "fetch",
        trigger: Trigger::Download,
        window_ms: 400,
    },
    Aim {
        stage: "bootstrap",
        trigger: Trigger::Line("bootstrapping"),
        window_ms: 20_000,
    },
    Aim {
        stage: "phases, snapshot",
        trigger: Trigger::Line("running the phases"),
        window_ms: 50_000,
    },
];

/// Kills of builds that restore the tree (after the reference build).
const AFTER_REFERENCE: [Aim; 4] = [
    Aim {
        stage: "restore",
        trigger: Trigger::Line("restoring the tree"),
        window_ms: 4000,
    },
    Aim {
        stage: "finalise.d, normalise",
        trigger: Trigger::Line("→ finalise.d/"),
        window_ms: 1500,
    },
    Aim {
        stage: "assemble",
        trigger: Trigger::Line("→ assemble:"),
        window_ms: 6000,
    },
    Aim {
        stage: "outputs, report",
        trigger: Trigger::Line("→ outputs:"),
        window_ms: 10_000,
    },
];

/// Kills of `kiln test`: while it prepares the machine, and while it boots.
const DURING_TEST: [Aim; 2] = [
    Aim {
        stage: "test: overlay, seed",
        trigger: Trigger::Start,
        window_ms: 1500,
    },
    Aim {
        stage: "test: boot",
        trigger: Trigger::Line("testing "),
        window_ms: 20_000,
    },
];

/// splitmix64: enough randomness to spread kills, and replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// The test's directories and what it knows so far.
struct Scene {
    dir: PathBuf,
    out: PathBuf,
    cache: PathBuf,
    tmp: PathBuf,
    seed: u64,
    /// A SIGKILL left the work directory or a staged output, and no run
    /// has started a build since (which removes them).
    killed_hard: bool,
    /// Outputs seen after kills, with their hashes: checked against the
    /// reference build's report once it exists.
    seen: Vec<(String, String)>,
    /// Each output of the reference build: its sha256 and identity.
    reference: Vec<(String, String, (u64, u64, i64))>,
    /// One line per kill, printed at the end.
    tried: Vec<String>,
}

fn identity(path: &Path) -> Option<(u64, u64, i64)> {
    std::fs::metadata(path).ok().map(|m| {
        (
            m.ino(),
            m.size(),
            m.mtime_nsec() + m.mtime() * 1_000_000_000,
        )
    })
}

fn sha256sum(path: &Path) -> String {
    crate::common::tool("sha256sum", &[path.to_str().expect("UTF-8")])
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

/// Processes (other than this one) whose command line names `path`: QEMU,
/// qemu-img, mke2fs and the like working on the test's files.
fn processes_naming(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) {
                found.push(format!("{pid}: {cmdline}"));
            }
        }
    }
    found
}

impl Scene {
    fn new(seed: u64) -> (tempfile::TempDir, Scene) {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = std::fs::canonicalize(temp.path()).expect("canonical");
        std::fs::write(dir.join("imagefile.yaml"), IMAGEFILE).expect("write");
        // A private cache (its snapshots and temporary files are this
        // test's), holding the shared cache's blobs as hard links.
        let cache = dir.join("cache");
        std::fs::create_dir_all(cache.join("blobs")).expect("mkdir");
        let shared = shared_cache().join("blobs/sha256");
        if shared.is_dir() {
            crate::common::tool(
                "cp",
                &[
                    "-al",
                    shared.to_str().expect("UTF-8"),
                    cache.join("blobs").to_str().expect("UTF-8"),
                ],
            );
        }
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("mkdir");
        let scene = Scene {
            out: dir.join("out"),
            dir,
            cache,
            tmp,
            seed,
            killed_hard: false,
            seen: Vec::new(),
            reference: Vec::new(),
            tried: Vec::new(),
        };
        (temp, scene)
    }

    fn context(&self) -> String {
        format!("(replay with KILN_KILL_SEED={})", self.seed)
    }

    fn kiln(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE")
            .env("KILN_SNAPSHOT_LIMIT", "4G")
            .env("TMPDIR", &self.tmp)
            .current_dir(&self.dir)
            .args(args);
        command
    }

    fn build_args(&self) -> Vec<String> {
        vec![
            "build".into(),
            "--timings".into(),
            "--cache-dir".into(),
            self.cache.display().to_string(),
            "-o".into(),
            self.out.display().to_string(),
        ]
    }

    /// Runs a build to the end; returns its stderr.
    fn build(&mut self) -> String {
        let args = self.build_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = self.kiln(&args).output().expect("kiln runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}\n{}", self.context());
        self.killed_hard = false;
        stderr
    }

    /// Starts `args`, waits for the trigger, sleeps the drawn delay and
    /// sends `signal`; returns the lines kiln printed before the signal and
    /// its exit status.
    fn kill(&mut self, args: &[&str], aim: Aim, delay: Duration, signal: Signal) {
        let started = Instant::now();
        let mut child = self
            .kiln(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kiln starts");
        let (lines_tx, lines) = mpsc::channel::<String>();
        let stderr = child.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut printed: Vec<String> = Vec::new();
        let deadline = started + Duration::from_secs(300);
        let mut ended_first = false;
        // Wait for the trigger.
        loop {
            while let Ok(line) = lines.try_recv() {
                printed.push(line);
            }
            let fired = match aim.trigger {
                Trigger::Start => true,
                Trigger::Line(prefix) => printed.iter().any(|l| l.starts_with(prefix)),
                Trigger::Download => std::fs::read_dir(self.cache.join("tmp"))
                    .is_ok_and(|mut entries| entries.next().is_some()),
            };
            if fired {
                break;
            }
            if child.try_wait().expect("wait").is_some() {
                ended_first = true;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: never triggered; printed:\n{}\n{}",
                aim.stage,
                printed.join("\n"),
                self.context()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let triggered = started.elapsed();
        if !ended_first {
            std::thread::sleep(delay);
        }
        while let Ok(line) = lines.try_recv() {
            printed.push(line);
        }
        let last = printed
            .iter()
            .rev()
            .find(|l| {
                l.starts_with('→') || l.starts_with("bootstrapping") || l.starts_with("restoring")
            })
            .cloned()
            .unwrap_or_else(|| "(nothing yet)".to_string());
        // Past the last step that stops on a signal: the work directory
        // is removed and the report being written; the build finishes.
        let past_the_last_step = printed.iter().any(|l| l.starts_with("→ outputs:"))
            && !self.out.join(format!(".kiln-build-{NAME}")).exists();
        let at = started.elapsed();
        let sent = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
            signal,
        )
        .is_ok();
        let status = wait_bounded(&mut child, Duration::from_secs(60));
        let rest: Vec<String> = lines.into_iter().collect();
        reader.join().expect("reader");
        let stopped_in = started.elapsed() - at;
        // How the run ended: on its own before the signal, by the signal's
        // default action (SIGKILL; or SIGINT/SIGTERM before kiln set up
        // its handling, when there is nothing to clean up yet), or by
        // kiln's orderly stop.
        assert!(
            ended_first || !status.success() || past_the_last_step,
            "{}: kiln ignored {signal} and finished {}",
            aim.stage,
            self.context()
        );
        let outcome = if ended_first {
            "had already finished".to_string()
        } else if status.success() {
            "finished: the signal came after the last step, with the report".to_string()
        } else if status.signal() == Some(signal as i32) {
            self.killed_hard = true;
            format!("ended by {signal}")
        } else {
            // kiln reports "interrupted by" as a failure of the host: 2.
            let expected = 2;
            assert!(
                sent && status.code() == Some(expected),
                "{} by {signal}: {status}, expected exit {expected}; said:\n{}\n{}",
                aim.stage,
                rest.join("\n"),
                self.context()
            );
            assert!(
                stopped_in < Duration::from_secs(30),
                "{}: {signal} took {stopped_in:?} to stop kiln {}",
                aim.stage,
                self.context()
            );
            // It got as far as the build (or the machine), whose start
            // removes what an earlier SIGKILL left.
            if printed.iter().any(|l| {
                l.starts_with("bootstrapping")
                    || l.starts_with("restoring")
                    || l.starts_with("testing ")
            }) {
                self.killed_hard = false;
            }
            format!(
                "exit {}, stopped in {:.1} s",
                expected,
                stopped_in.as_secs_f64()
            )
        };
        let line = format!(
            "{:<22} {:<7} at {:>5.1} s ({:>5.1} s after the trigger), last `{}`: {outcome}",
            aim.stage,
            format!("{signal}"),
            at.as_secs_f64(),
            (at - triggered).as_secs_f64(),
            last.chars().take(48).collect::<String>(),
        );
        eprintln!("kill: {line}");
        self.tried.push(line);
    }

    /// Everything the brief promises after a kill.
    fn assert_clean(&mut self, stage: &str) {
        let what = format!("after the kill in {stage} {}", self.context());
        // Everything kiln starts dies with it (host tools such as mke2fs
        // and cp too): nothing runs on to its end.
        let deadline = Instant::now() + Duration::from_secs(5);
        while (!mounts_under(&self.dir).is_empty()
            || !processes_rooted_in(&self.dir).is_empty()
            || !processes_naming(&self.dir).is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            mounts_under(&self.dir),
            Vec::<String>::new(),
            "mounts {what}"
        );
        assert_eq!(
            loop_devices_under(&self.dir),
            Vec::<String>::new(),
            "loop devices {what}"
        );
        assert_eq!(
            processes_rooted_in(&self.dir),
            Vec::<String>::new(),
            "processes {what}"
        );
        assert_eq!(
            processes_naming(&self.dir),
            Vec::<String>::new(),
            "processes {what}"
        );

        // Only finished files, or (after SIGKILL) what the next build removes.
        let finished: Vec<String> = OUTPUTS
            .iter()
            .map(|ext| format!("{NAME}.{ext}"))
            .chain([format!("{NAME}.report.json"), format!("{NAME}.build.log")])
            .chain(DOCUMENTS.iter().map(|suffix| format!("{NAME}.{suffix}")))
            .collect();
        for entry in std::fs::read_dir(&self.out).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let left_by_sigkill =
                name == format!(".kiln-build-{NAME}") || name.starts_with(".kiln-output-");
            assert!(
                finished.contains(&name) || (self.killed_hard && left_by_sigkill),
                "{name} left in the output directory {what}"
            );
        }
        let temporary: Vec<String> = std::fs::read_dir(&self.tmp)
            .expect("tmp")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !(self.killed_hard && name.starts_with("kiln-run-")))
            .collect();
        assert_eq!(temporary, Vec::<String>::new(), "temporary files {what}");

        // An output is there only whole: the reference's bytes.
        for ext in OUTPUTS {
            let path = self.out.join(format!("{NAME}.{ext}"));
            let Some(now) = identity(&path) else { continue };
            let unchanged = self
                .reference
                .iter()
                .any(|(file, _, id)| *file == format!("{NAME}.{ext}") && *id == now);
            if !unchanged {
                self.seen.push((format!("{NAME}.{ext}"), sha256sum(&path)));
            }
        }
        self.check_seen();
        // The SBOMs and the provenance: whole JSON, or not there.
        for suffix in DOCUMENTS {
            let path = self.out.join(format!("{NAME}.{suffix}"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or_else(|e| panic!("{} is not whole: {e} {what}", path.display()));
            }
        }
        let report = self.out.join(format!("{NAME}.report.json"));
        if report.exists() {
            let text = std::fs::read_to_string(&report).expect("read the report");
            let json: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("report {e} {what}"));
            assert_eq!(json["outputs"].as_array().map(Vec::len), Some(3), "{what}");
        }

        // The cache: every locked blob whole (fetch checks each one's hash,
        // fetching what a kill before the fetch left missing) and none
        // found corrupt.
        let cache = self.cache.display().to_string();
        if self.dir.join("imagefile.lock").exists() {
            let output = self
                .kiln(&["fetch", "--cache-dir", &cache])
                .output()
                .expect("kiln fetch runs");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "kiln fetch {what}: {stderr}");
            assert!(!stderr.contains("corrupt"), "{stderr} {what}");
        }
    }

    fn check_seen(&self) {
        if self.reference.is_empty() {
            return;
        }
        for (file, sha) in &self.seen {
            let expected = self
                .reference
                .iter()
                .find(|(name, _, _)| name == file)
                .map(|(_, sha, _)| sha.as_str());
            assert_eq!(
                Some(sha.as_str()),
                expected,
                "{file} is not the whole output {}",
                self.context()
            );
        }
    }

    /// Reads the reference build's report: each output's hash and identity.
    fn take_reference(&mut self) {
        let text = std::fs::read_to_string(self.out.join(format!("{NAME}.report.json")))
            .expect("the report");
        let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        self.reference = json["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .map(|o| {
                let file = o["file"].as_str().expect("file").to_string();
                let id = identity(&self.out.join(&file)).expect("the output exists");
                (file, o["sha256"].as_str().expect("sha256").to_string(), id)
            })
            .collect();
        assert_eq!(self.reference.len(), 3, "{text}");
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kiln did not stop within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kills_anywhere_in_build_and_test_leave_nothing_and_the_next_build_has_the_same_bytes() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kiln build needs root: run the suite as root (scripts/test)"
    );
    let began = Instant::now();
    let seed = std::env::var("KILN_KILL_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(19, |d| d.as_nanos() as u64)
        },
        |text| text.parse().expect("KILN_KILL_SEED is a number"),
    );
    eprintln!("kill: KILN_KILL_SEED={seed}");
    let mut rng = Rng(seed);
    // Each signal at least three times over the ten kills; the second kill
    // of `kiln test` is never SIGKILL, so its check also proves that the
    // first's leftovers were removed.
    let mut signals = vec![
        Signal::SIGKILL,
        Signal::SIGKILL,
        Signal::SIGKILL,
        Signal::SIGINT,
        Signal::SIGINT,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGTERM,
        Signal::SIGTERM,
    ];
    for i in (1..signals.len()).rev() {
        let j = usize::try_from(rng.below(i as u64 + 1)).expect("small");
        signals.swap(i, j);
    }
    let last_test_signal = if rng.below(2) == 0 {
        Signal::SIGINT
    } else {
        Signal::SIGTERM
    };
    let (_temp, mut scene) = Scene::new(seed);

    // The lock first, kept: each build is of the same inputs.
    let output = scene
        .kiln(&["lock", "--cache-dir", &scene.cache.display().to_string()])
        .output()
        .expect("kiln lock runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lock_path = scene.dir.join("imagefile.lock");
    let lock = std::fs::read_to_string(&lock_path).expect("the lock");
    // The kernel package's blob is left out of the cache, so the fetch has
    // something to download when it is killed.
    let kernel_blobs: Vec<String> = lock
        .lines()
        .filter(|l| l.contains("name: \"linux-image-"))
        .filter_map(|l| l.split("sha256: \"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect();
    assert!(!kernel_blobs.is_empty(), "the lock has a kernel");

    let build_args = scene.build_args();
    let build_args: Vec<&str> = build_args.iter().map(String::as_str).collect();
    let mut signal_of = signals.into_iter();
    for aim in BEFORE_REFERENCE {
        match aim.stage {
            "lock" => std::fs::remove_file(&lock_path).expect("remove the lock"),
            "fetch" => {
                for blob in &kernel_blobs {
                    let path = scene.cache.join("blobs/sha256").join(&blob[..2]).join(blob);
                    let _ = std::fs::remove_file(path);
                }
            }
            _ => {}
        }
        let delay = Duration::from_millis(rng.below(aim.window_ms));
        let signal = signal_of.next().expect("a signal");
        scene.kill(&build_args, aim, delay, signal);
        // The lock is whole or absent, never half written.
        match std::fs::read_to_string(&lock_path) {
            Ok(text) => assert_eq!(text, lock, "the lock after a kill {}", scene.context()),
            Err(_) => std::fs::write(&lock_path, &lock).expect("restore the lock"),
        }
        scene.assert_clean(aim.stage);
    }

    // The reference: uninterrupted, over what the kills left, making the
    // tree from scratch (a killed run may have got as far as keeping a
    // snapshot: the reference must not come from it); it keeps the tree's
    // snapshot that the next builds restore.
    let _ = std::fs::remove_dir_all(scene.cache.join("snapshots"));
    // A kill that came after the last step left a finished build, which
    // kiln would find up to date (seed 1796556876866800093).
    let _ = std::fs::remove_file(scene.out.join(format!("{NAME}.report.json")));
    let reference_started = Instant::now();
    let stderr = scene.build();
    assert!(stderr.contains("snapshot: keeping the tree"), "{stderr}");
    let reference_took = reference_started.elapsed();
    scene.take_reference();
    scene.check_seen();
    scene.assert_clean("none (the reference build)");

    for aim in AFTER_REFERENCE {
        // Otherwise kiln finds the outputs up to date and does nothing.
        let _ = std::fs::remove_file(scene.out.join(format!("{NAME}.report.json")));
        let delay = Duration::from_millis(rng.below(aim.window_ms));
        let signal = signal_of.next().expect("a signal");
        scene.kill(&build_args, aim, delay, signal);
        scene.assert_clean(aim.stage);
    }

    // The next build restores the tree and makes the same bytes.
    let _ = std::fs::remove_file(scene.out.join(format!("{NAME}.report.json")));
    let final_started = Instant::now();
    let stderr = scene.build();
    assert!(stderr.contains("restoring the tree"), "{stderr}");
    let final_took = final_started.elapsed();
    let text =
        std::fs::read_to_string(scene.out.join(format!("{NAME}.report.json"))).expect("the report");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    for (file, sha, _) in &scene.reference {
        let now = json["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .find(|o| o["file"] == file.as_str())
            .and_then(|o| o["sha256"].as_str())
            .unwrap_or_default();
        assert_eq!(
            now,
            sha,
            "{file} differs from the uninterrupted build's {}",
            scene.context()
        );
        assert_eq!(
            &sha256sum(&scene.out.join(file)),
            sha,
            "{file} is what the report says"
        );
    }
    scene.assert_clean("none (the final build)");

    // `kiln test` of the image: killed while it prepares, and while it boots.
    let out = scene.out.display().to_string();
    let test_args = ["test", "-o", out.as_str()];
    let _one = one_boot_at_a_time();
    for (aim, signal) in DURING_TEST
        .into_iter()
        .zip([signal_of.next().expect("a signal"), last_test_signal])
    {
        let delay = Duration::from_millis(rng.below(aim.window_ms));
        scene.kill(&test_args, aim, delay, signal);
        scene.assert_clean(aim.stage);
    }
    assert!(
        !scene.killed_hard,
        "the last kill of kiln test was not SIGKILL"
    );

    eprintln!(
        "kill: seed {seed}: {} kills, all clean; reference build {:.0} s, final build {:.0} s, whole test {:.0} s:\n  {}",
        scene.tried.len(),
        reference_took.as_secs_f64(),
        final_took.as_secs_f64(),
        began.elapsed().as_secs_f64(),
        scene.tried.join("\n  ")
    );
}
