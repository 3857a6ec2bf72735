//! `kiln boot` and `kiln test` on real images under QEMU's TCG:
//! `manifests/debian-cloud.yaml` as committed (and a broken fixture),
//! built once per change of their inputs and kept beside the shared cache,
//! booted by BIOS and by UEFI. The image file must not change; a broken image and a
//! failing `tests:` entry must fail `kiln test`, saying what failed; and
//! no QEMU may outlive kiln, also after SIGINT.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::common::{kiln, repo_path, shared_cache};

/// The example cloud image, as committed: what CI must prove boots.
const FIXTURE: &str = include_str!("../../manifests/debian-cloud.yaml");

const BROKEN: &str = "name: boot-fixture-broken
base: {distro: debian, release: bookworm}
elements: [vm, fixture-cloud, fixture-broken-fstab]
packages: [openssh-server, sudo, cloud-init, cloud-guest-utils, ifupdown, isc-dhcp-client]
outputs: [qcow2]
";

/// The fixture's own checks, one of each kind, all passing.
const PASSING_TESTS: &str = "tests:
  - {run: cat /etc/os-release, output: bookworm}
  - {name: root through sudo, run: id -u, sudo: true, output: '0'}
  - {run: 'exit 3', exit: 3}
  - {file: /etc/ssh/sshd_config.d/50-kiln-cloud-image.conf}
  - {unit: ssh.service}
  - name: no upgrade is waiting in the locked repositories
    run: apt-get update -qq && apt-get -s upgrade
    sudo: true
    output: '0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded'
";

use crate::common::one_boot_at_a_time;

/// Every file under `dir`, hashed with its relative path.
fn hash_tree(hasher: &mut Sha256, dir: &Path) {
    let mut files = crate::common::files_with_extension(dir, &[""]);
    files.sort();
    for file in files {
        hasher.update(
            file.strip_prefix(dir)
                .expect("inside")
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update(std::fs::read(&file).expect("read fixture file"));
    }
}

/// Builds `manifest` (once per change of it, of the fixture elements and
/// of kiln's built-in elements) in a directory beside the shared cache,
/// and returns that directory: `imagefile.yaml` and `out/<name>.qcow2`.
fn built(manifest: &'static str, cell: &'static OnceLock<PathBuf>) -> PathBuf {
    built_as(manifest, cell, &Fixture::default())
}

/// How a fixture is built, beyond its imagefile.
#[derive(Debug, Default)]
pub(crate) struct Fixture {
    /// The output whose presence means the fixture is built; default
    /// `<name>.qcow2`.
    pub product: Option<&'static str>,
    /// More arguments to `kiln build`.
    pub args: &'static [&'static str],
    /// Build again whenever the kiln executable changes: for fixtures
    /// that test what kiln itself writes, not only what it boots.
    pub per_kiln: bool,
}

/// [`built`], as `fixture` says.
pub(crate) fn built_as(
    manifest: &'static str,
    cell: &'static OnceLock<PathBuf>,
    fixture: &Fixture,
) -> PathBuf {
    cell.get_or_init(|| {
        let mut hasher = Sha256::new();
        hasher.update(manifest.as_bytes());
        hash_tree(&mut hasher, &repo_path("tests/fixtures/elements/boot"));
        hash_tree(&mut hasher, &repo_path("elements"));
        for arg in fixture.args {
            hasher.update(arg.as_bytes());
        }
        if fixture.per_kiln {
            hasher.update(
                std::fs::read(env!("CARGO_BIN_EXE_kiln")).expect("read the kiln executable"),
            );
        }
        let key = hex::encode(hasher.finalize());
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name: "))
            .expect("a name");
        let cache = shared_cache();
        let dir = cache
            .parent()
            .expect("cache has a parent")
            .join("boot-fixtures")
            .join(format!("{name}-{}", &key[..16]));
        let product = fixture
            .product
            .map_or_else(|| format!("{name}.qcow2"), str::to_string);
        let image = dir.join("out").join(product);
        if image.is_file() {
            return dir;
        }
        // Fixtures of earlier inputs are 1 GiB each: keep only this one.
        let parent = dir.parent().expect("fixtures directory");
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let stale = file_name
                .strip_prefix(&format!("{name}-"))
                .is_some_and(|hash| {
                    hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())
                });
            if stale && entry.path() != dir {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        std::fs::create_dir_all(&dir).expect("create the fixture directory");
        std::fs::write(dir.join("imagefile.yaml"), manifest).expect("write");
        let output = kiln()
            .current_dir(&dir)
            .args(["build", "--cache-dir"])
            .arg(&cache)
            .args(fixture.args)
            .arg("--elements-path")
            .arg(repo_path("tests/fixtures/elements/boot"))
            .output()
            .expect("kiln runs");
        assert!(
            output.status.success() && image.is_file(),
            "building {name} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        dir
    })
    .clone()
}

/// The example cloud image, built by this kiln: how much room its root
/// keeps for a boot that does not grow it is kiln's own doing. Its tree is
/// kept (`out/debian-cloud.root`), for the SBOM test to hold its SBOMs
/// against.
pub(crate) fn fixture() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    built_as(
        FIXTURE,
        &CELL,
        &Fixture {
            per_kiln: true,
            args: &["--keep-tree"],
            ..Fixture::default()
        },
    )
}

fn broken_fixture() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    built(BROKEN, &CELL)
}

/// A directory with an imagefile for the fixture's image (its name, and
/// `tests`), whose `-o` is the fixture's output directory.
fn imagefile_with(fixture: &Path, manifest: &str, tests: &str) -> (tempfile::TempDir, Vec<String>) {
    let temp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        temp.path().join("imagefile.yaml"),
        format!("{manifest}{tests}"),
    )
    .expect("write");
    let out = fixture.join("out").to_string_lossy().into_owned();
    (temp, vec!["-o".to_string(), out])
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read the image")))
}

/// Processes whose command line contains `needle` (QEMU with the overlay
/// or serial log of one run).
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == std::process::id().to_string() {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) && cmdline.contains("qemu-system") {
                found.push(format!("{pid}: {cmdline}"));
            }
        }
    }
    found
}

/// The overlay path `kiln test`/`kiln boot` names on stderr.
pub(crate) fn overlay_in(stderr: &str) -> String {
    let start = stderr.find("overlay ").expect("the overlay is named") + "overlay ".len();
    stderr[start..]
        .split([';', ' ', '\n'])
        .next()
        .expect("a path")
        .to_string()
}

/// A kiln started in the background, killed if the test fails before it
/// ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kiln_test(dir: &Path, args: &[&str]) -> Output {
    let _one = one_boot_at_a_time();
    kiln()
        .current_dir(dir)
        .arg("test")
        .args(args)
        .output()
        .expect("kiln runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub(crate) fn assert_no_qemu_left(overlay: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with(overlay).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        processes_with(overlay),
        Vec::<String>::new(),
        "QEMU left running"
    );
    assert!(!Path::new(overlay).exists(), "the overlay is removed");
}

#[test]
fn debian_cloud_passes_kiln_test_by_bios_and_uefi_and_is_left_unchanged() {
    let fixture = fixture();
    let image = fixture.join("out/debian-cloud.qcow2");
    let before = sha256(&image);
    let (dir, out) = imagefile_with(&fixture, FIXTURE, PASSING_TESTS);
    let mut host_keys: Vec<Vec<String>> = Vec::new();
    for firmware in [None, Some("--uefi")] {
        let mut args: Vec<&str> = out.iter().map(String::as_str).collect();
        args.extend(firmware);
        let output = kiln_test(dir.path(), &args);
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{firmware:?}\n{stdout}\n{stderr}"
        );
        for check in crate::common::BUILT_IN_CHECKS_PASSED.into_iter().chain([
            "✓ run `cat /etc/os-release` (",
            "✓ root through sudo (",
            "✓ run `exit 3` (",
            "✓ file /etc/ssh/sshd_config.d/50-kiln-cloud-image.conf exists (",
            "✓ unit ssh.service is active (",
            // apt in the image reads the lock's repositories (the release,
            // -updates, -security) and finds nothing newer there.
            "✓ no upgrade is waiting in the locked repositories (",
        ]) {
            assert!(
                stdout.contains(check),
                "{firmware:?}: no `{check}`:\n{stdout}"
            );
        }
        let login = stderr
            .lines()
            .find(|l| l.starts_with("ssh login after "))
            .expect("the login time is printed");
        eprintln!("{}: {login}", firmware.unwrap_or("--bios"));
        assert!(stderr.contains("all 13 checks passed"), "{stderr}");
        let keys: Vec<String> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("host key: "))
            .map(str::to_string)
            .collect();
        assert!(keys.len() >= 2, "the host keys are printed: {stderr}");
        host_keys.push(keys);
        assert_no_qemu_left(&overlay_in(&stderr));
    }
    assert_eq!(sha256(&image), before, "the image file changed");
    // Two boots of two copies of one image: no host key in common (and, by
    // the check above, none of them in the image file).
    let common: Vec<&String> = host_keys[0]
        .iter()
        .filter(|k| host_keys[1].contains(k))
        .collect();
    assert!(common.is_empty(), "both boots have {common:?}");
}

/// Also the boot of an image that is never grown: the machine's disk is
/// the image's size, so the root keeps only what `disk.headroom` gave it,
/// and users other than root must still find room on it after the boot.
#[test]
fn a_failing_test_of_the_imagefile_is_reported_by_name() {
    let fixture = fixture();
    let (dir, out) = imagefile_with(
        &fixture,
        FIXTURE,
        "tests:\n  - {name: nginx is installed, file: /usr/sbin/nginx}\n  - {name: says hello, run: echo bye, output: hello}\n  - {unit: ssh.service}\n",
    );
    let image = fixture.join("out/debian-cloud.qcow2");
    let info: serde_json::Value = serde_json::from_str(&crate::common::tool(
        "qemu-img",
        &["info", "--output=json", &image.to_string_lossy()],
    ))
    .expect("qemu-img info is JSON");
    let image_mib = info["virtual-size"]
        .as_u64()
        .expect("a virtual size")
        .div_ceil(1 << 20);
    let disk_size = format!("{image_mib}MiB");
    let mut args: Vec<&str> = out.iter().map(String::as_str).collect();
    args.extend(["--disk-size", &disk_size]);
    let output = kiln_test(dir.path(), &args);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let room = stdout
        .lines()
        .find(|l| l.starts_with("✓ `/` has room for users ("))
        .unwrap_or_else(|| panic!("no room for users on an ungrown root:\n{stdout}"));
    eprintln!("ungrown root, after the first boot: {room}");
    // The default headroom (64 MiB) is meant to leave about as much as the
    // first boot writes (about 30 MiB): at least half of that is expected.
    let free_mib: u64 = room
        .split(['(', ' '])
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no MiB figure in `{room}`"));
    assert!(
        free_mib >= 16,
        "only {free_mib} MiB free for users after the first boot: {room}"
    );
    assert!(
        stdout.contains("✓ the root filesystem fills the disk ("),
        "{stdout}"
    );
    assert!(stdout.contains("✗ nginx is installed ("), "{stdout}");
    assert!(
        stdout.contains("/usr/sbin/nginx does not exist"),
        "{stdout}"
    );
    assert!(stdout.contains("✗ says hello ("), "{stdout}");
    assert!(
        stdout.contains("the output does not contain `hello`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("✓ unit ssh.service is active ("),
        "{stdout}"
    );
    assert!(
        stderr.contains("2 of 10 checks failed: `nginx is installed`, `says hello`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("last 40 lines of the serial console"),
        "{stderr}"
    );
    assert_no_qemu_left(&overlay_in(&stderr));
}

#[test]
fn a_broken_fstab_fails_kiln_test_with_the_serial_console_shown() {
    let fixture = broken_fixture();
    let output = kiln_test(&fixture, &["--timeout", "400"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("✗ boots, and `debian` logs in over ssh with the key from the seed ("),
        "{stdout}"
    );
    assert!(stdout.contains("emergency mode"), "{stdout}");
    assert!(
        stderr.contains("last 40 lines of the serial console"),
        "{stderr}"
    );
    assert!(
        stdout.contains("[DEPEND] Dependency failed for")
            && stdout.contains("A filesystem that does not exist"),
        "the failed mount is named:\n{stdout}"
    );
    assert!(stderr.contains("You are in emergency mode"), "{stderr}");
    assert!(stderr.contains("1 of 1 checks failed"), "{stderr}");
    assert_no_qemu_left(&overlay_in(&stderr));
}

#[test]
fn sigint_stops_kiln_test_and_its_machine() {
    let fixture = fixture();
    let _one = one_boot_at_a_time();
    let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("NO_COLOR", "1")
        .current_dir(&fixture)
        .arg("test")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln test starts");
    let mut child = KillOnDrop(child);
    let stderr = child.0.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let line = lines
        .next()
        .expect("kiln names the overlay")
        .expect("UTF-8");
    let overlay = overlay_in(&line);
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(&overlay).len() != 1 {
        assert!(Instant::now() < deadline, "QEMU runs");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(5));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).expect("pid")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let started = Instant::now();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.0.wait().expect("reaped");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "kiln stopped promptly"
    );
    assert_eq!(status.code(), Some(2), "{rest:?}");
    assert!(
        rest.join("\n").contains("interrupted by SIGINT"),
        "{rest:?}"
    );
    assert_no_qemu_left(&overlay);
}

/// How many first boots [`growroot_grows_the_root_on_every_first_boot`]
/// makes unless `KILN_FIRST_BOOTS` says otherwise.
const FIRST_BOOTS: usize = 4;

/// The disk each of those boots gets: the root grows from under 1 GiB.
const FIRST_BOOT_DISK_GIB: u64 = 8;

/// One `kiln boot` of the fixture on its own overlay, up to the end of
/// growroot on the serial console.
struct FirstBoot {
    child: KillOnDrop,
    serial: PathBuf,
    overlay: String,
    started: Instant,
}

/// How a first boot's growroot ended, from the serial console.
#[derive(Debug)]
enum Grown {
    /// resize2fs grew the root to this many bytes, after this long.
    To(u64, Duration),
    /// growroot failed, or never finished: why, and the console's lines
    /// about it.
    Not(String),
}

impl FirstBoot {
    fn start(image: &Path, serial: PathBuf) -> FirstBoot {
        let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .env("NO_COLOR", "1")
            .arg("boot")
            .args(["--disk-size", &format!("{FIRST_BOOT_DISK_GIB}GiB")])
            .arg("--serial-log")
            .arg(&serial)
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kiln boot starts");
        let mut child = KillOnDrop(child);
        let stderr = child.0.stderr.take().expect("stderr");
        let lines: Vec<String> = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .take(3)
            .collect();
        let said = lines.join("\n");
        assert!(said.contains("ssh -o StrictHostKeyChecking=no"), "{said}");
        assert!(said.contains("debian@127.0.0.1"), "{said}");
        let overlay = overlay_in(&said);
        let info = crate::common::tool("qemu-img", &["info", "--force-share", &overlay]);
        assert!(
            info.contains(&format!("virtual size: {FIRST_BOOT_DISK_GIB} GiB")),
            "{info}"
        );
        assert!(
            info.contains(&format!("backing file: {}", image.display())),
            "{info}"
        );
        FirstBoot {
            child,
            serial,
            overlay,
            started: Instant::now(),
        }
    }

    /// Waits for growroot's outcome on the console, then stops the machine
    /// with SIGTERM, as a user's `kill` would: kiln exits 2 and leaves no
    /// QEMU and no overlay.
    fn finish(mut self) -> Grown {
        const GREW: &str = "The filesystem on /dev/vda3 is now ";
        let deadline = self.started + Duration::from_secs(300);
        let grown = loop {
            let console = std::fs::read(&self.serial).unwrap_or_default();
            let console = String::from_utf8_lossy(&console);
            let about: Vec<&str> = console
                .lines()
                .filter(|l| l.contains("growroot") || l.contains("FAILED:"))
                .collect();
            if let Some(rest) = console.split(GREW).nth(1) {
                let blocks: u64 = rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("resize2fs names the new block count");
                assert!(rest.contains("(4k) blocks long"), "{rest}");
                break Grown::To(blocks * 4096, self.started.elapsed());
            }
            // systemd's `Failed to start growroot.service`, or the
            // script's own `growroot: growpart /dev/vda 3 failed: …`.
            if about
                .iter()
                .any(|l| l.contains("Failed to start") || l.contains("failed:"))
            {
                break Grown::Not(format!("growroot failed:\n{}", about.join("\n")));
            }
            if Instant::now() > deadline {
                break Grown::Not(format!(
                    "growroot did not finish in {} s:\n{}",
                    deadline.duration_since(self.started).as_secs(),
                    about.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.0.id()).expect("pid")),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        let status = self.child.0.wait().expect("reaped");
        assert_eq!(status.code(), Some(2), "kiln boot after SIGTERM");
        assert_no_qemu_left(&self.overlay);
        grown
    }
}

/// growroot must grow the root on every first boot, not most: its
/// growpart once kept its work files in /tmp, which
/// systemd-tmpfiles-setup.service empties at boot beside it, and the
/// root stayed small on 4 of 8 first boots on this machine. Four first
/// boots (`KILN_FIRST_BOOTS` for more), two machines at a time, each on a
/// fresh overlay started and stopped by `kiln boot`, catch a race that
/// fails one boot in two with 94 % (one in eight: 41 %; 24 boots for
/// 96 %, too long for every CI run); the image file is left unchanged.
#[test]
fn growroot_grows_the_root_on_every_first_boot() {
    let fixture = fixture();
    let image = fixture.join("out/debian-cloud.qcow2");
    let before = sha256(&image);
    let boots: usize = std::env::var("KILN_FIRST_BOOTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(FIRST_BOOTS);
    let temp = tempfile::tempdir().expect("tempdir");
    let _one = one_boot_at_a_time();
    let mut outcomes = Vec::new();
    let numbers: Vec<usize> = (1..=boots).collect();
    for pair in numbers.chunks(2) {
        let machines: Vec<(usize, FirstBoot)> = pair
            .iter()
            .map(|&n| {
                let serial = temp.path().join(format!("serial-{n}.log"));
                (n, FirstBoot::start(&image, serial))
            })
            .collect();
        for (n, machine) in machines {
            outcomes.push((n, machine.finish()));
        }
    }
    let least = (FIRST_BOOT_DISK_GIB - 1) << 30;
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|(n, grown)| match grown {
            Grown::To(bytes, _) if *bytes >= least => None,
            Grown::To(bytes, _) => Some(format!("boot {n}: the root grew to {bytes} bytes only")),
            Grown::Not(why) => Some(format!("boot {n}: {why}")),
        })
        .collect();
    assert!(
        failed.is_empty(),
        "the root was not grown on {} of {boots} first boots:\n{}",
        failed.len(),
        failed.join("\n")
    );
    let took: Vec<String> = outcomes
        .iter()
        .filter_map(|(_, grown)| match grown {
            Grown::To(_, took) => Some(format!("{:.0}", took.as_secs_f64())),
            Grown::Not(_) => None,
        })
        .collect();
    eprintln!(
        "growroot: grown on {boots} of {boots} first boots, after {} s",
        took.join(", ")
    );
    assert_eq!(sha256(&image), before, "the image file changed");
}

#[test]
fn kiln_test_before_kiln_build_says_to_build() {
    let temp = tempfile::tempdir().expect("tempdir");
    std::fs::write(temp.path().join("imagefile.yaml"), FIXTURE).expect("write");
    let output = kiln()
        .current_dir(temp.path())
        .arg("test")
        .output()
        .expect("kiln runs");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("debian-cloud has not been built"),
        "{stderr}"
    );
    assert!(
        stderr.contains("run `kiln build imagefile.yaml` first"),
        "{stderr}"
    );
    let output = kiln()
        .current_dir(temp.path())
        .args(["boot", "missing.qcow2"])
        .output()
        .expect("kiln runs");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing.qcow2 does not exist"), "{stderr}");
}
