//! A real, signed apt archive for tests, laid out as Debian's and Ubuntu's
//! are (`pool/`, `dists/<suite>/`, by-hash indices, `InRelease` and
//! `Release.gpg`), and a small HTTP server to serve it from 127.0.0.1. Tests
//! that need suites the host's mirror does not have (a security update, a
//! backports suite, a package at a version of their choosing) build one here
//! instead of tampering with copies of the real mirror. The server can also
//! misbehave on cue ([`Fault`], [`Server::inject`]): stall, reset the
//! connection, cut a body short, answer 5xx or 429 (with or without
//! `Retry-After`), serve another file, redirect in a loop. The self-tests at
//! the bottom prove the fixture with the host's own apt: if apt accepts it,
//! so must kiln.
//!
//! Shells out to `gpg`, `gpgconf`, `dpkg-deb`, `dpkg-scanpackages` and
//! `md5sum` (scripts/install-test-deps installs them).

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

/// How long a stopped gpg-agent may take to exit before that is a failure.
const AGENT_EXIT_TIMEOUT_SECS: u64 = 10;

/// An idle keep-alive connection is closed after this long, so a client
/// that vanished cannot hold a server thread forever.
const IDLE_CONNECTION_SECS: u64 = 60;

/// An OpenPGP signing key made for a test: ed25519, no passphrase, in a
/// GNUPGHOME of its own. No gpg-agent is left running once a function of
/// this module returns.
#[derive(Debug)]
pub struct TestKey {
    /// The key's GNUPGHOME (`<dir>/<name>.gnupg`).
    pub home: PathBuf,
    /// The primary key's fingerprint, 40 upper-case hex digits.
    pub fingerprint: String,
    /// The public key as a binary keyring (`gpg --export`, `<dir>/<name>.gpg`),
    /// for `gpgv --keyring` and apt's `signed-by`.
    pub keyring: PathBuf,
    /// The public key armored (`gpg --armor --export`, `<dir>/<name>.asc`),
    /// which apt's `signed-by` also takes.
    pub armored: PathBuf,
}

impl TestKey {
    /// Generates a key named `name` (a file-name-safe word) under `dir`,
    /// which the caller owns (usually a tempdir), by running `gpg`.
    pub fn new(dir: &Path, name: &str) -> TestKey {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "a key name is a file name: {name:?}"
        );
        let home = dir.join(format!("{name}.gnupg"));
        std::fs::create_dir_all(&home).expect("create the key's GNUPGHOME");
        set_mode(&home, 0o700);
        let key = TestKey {
            fingerprint: String::new(),
            keyring: dir.join(format!("{name}.gpg")),
            armored: dir.join(format!("{name}.asc")),
            home,
        };
        let uid = format!("kiln test archive key ({name})");
        run_ok(
            key.gpg()
                .args(["--quick-gen-key", &uid, "ed25519", "sign", "never"]),
        );
        let listing = run_ok(key.gpg().args(["--with-colons", "--list-keys", &uid]));
        let fingerprint = String::from_utf8_lossy(&listing)
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').find(|field| !field.is_empty()))
            .expect("gpg lists the new key's fingerprint")
            .to_string();
        let keyring = key.keyring.to_str().expect("UTF-8 path");
        let armored = key.armored.to_str().expect("UTF-8 path");
        run_ok(
            key.gpg()
                .args(["--output", keyring, "--export", &fingerprint]),
        );
        run_ok(
            key.gpg()
                .args(["--armor", "--output", armored, "--export", &fingerprint]),
        );
        stop_gpg_agent(&key.home);
        TestKey { fingerprint, ..key }
    }

    /// `gpg` in this key's home, never prompting.
    fn gpg(&self) -> Command {
        let mut command = Command::new("gpg");
        command
            .arg("--homedir")
            .arg(&self.home)
            .args([
                "--batch",
                "--yes",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
            ])
            .args(["--passphrase", ""]);
        command
    }

    /// Runs `gpg` to sign `file` into `output` with SHA512, armored:
    /// `--clearsign` (the text with its signature around it, as Fedora's
    /// `CHECKSUM`) or `--detach-sign` (the signature alone, as Ubuntu's
    /// `SHA256SUMS.gpg` and openSUSE's `.sha256.asc`).
    pub fn sign_file(&self, mode: &str, file: &Path, output: &Path) {
        assert!(
            mode == "--clearsign" || mode == "--detach-sign",
            "a signing mode: {mode}"
        );
        run_ok(
            self.gpg()
                .args(["--local-user", &self.fingerprint, "--digest-algo", "SHA512"])
                .args(["--armor", mode, "--output"])
                .arg(output)
                .arg(file),
        );
        stop_gpg_agent(&self.home);
    }

    /// Runs `gpg` to write `InRelease` (clear-signed) and `Release.gpg`
    /// (detached, armored) beside `release`, with SHA512 as Debian's
    /// archive does.
    fn sign_release_with_gpg(&self, release: &Path) {
        let dir = release.parent().expect("Release has a directory");
        for (mode, output) in [
            ("--clearsign", "InRelease"),
            ("--detach-sign", "Release.gpg"),
        ] {
            run_ok(
                self.gpg()
                    .args(["--local-user", &self.fingerprint, "--digest-algo", "SHA512"])
                    .args(["--armor", mode, "--output"])
                    .arg(dir.join(output))
                    .arg(release),
            );
        }
        stop_gpg_agent(&self.home);
    }
}

/// One suite of an archive: `dists/<name>/`.
#[derive(Debug, Clone, Default)]
pub struct Suite {
    /// The directory under `dists/` and the Release's `Suite`, e.g.
    /// `noble-security`.
    pub name: String,
    /// The Release's `Codename`, e.g. `noble` (Ubuntu) or
    /// `bookworm-security` (Debian).
    pub codename: String,
    /// The Release's `Origin`: `Debian` or `Ubuntu`.
    pub origin: String,
    /// The Release's `Label`, e.g. `Debian-Security`.
    pub label: String,
    /// Each component (`main`, ...) with the .deb files it holds.
    pub components: Vec<(String, Vec<PathBuf>)>,
    /// Writes `NotAutomatic: yes` (apt's priority 1, or 100 with
    /// `but_automatic_upgrades`).
    pub not_automatic: bool,
    /// Writes `ButAutomaticUpgrades: yes`.
    pub but_automatic_upgrades: bool,
    /// The Release's `Architectures`, e.g. `["amd64"]`: one
    /// `binary-<arch>` index each. Architecture `all` packages go into
    /// every one of them, as in Debian's and Ubuntu's archives.
    pub architectures: Vec<String>,
}

/// Lays out `root` as an apt archive holding `suites`, signed with `key`:
///
/// - `pool/<component>/<prefix>/<source>/<package>_<version>_<arch>.deb`
///   (hard links, or copies across filesystems; the version without its
///   epoch, the prefix `libx` for `lib*` sources);
/// - `dists/<suite>/<component>/binary-<arch>/` with `Packages` (made by
///   `dpkg-scanpackages`), `Packages.gz`, `Packages.xz`, a per-index
///   `Release`, and `by-hash/SHA256/<hash>` of each `Packages*`;
/// - `dists/<suite>/Release` with `Acquire-By-Hash: yes` and the MD5Sum
///   and SHA256 of every index file, as apt-ftparchive writes them, then
///   `InRelease` and `Release.gpg`.
///
/// Writing again into the same `root` publishes an update as a mirror does:
/// index files are replaced (new inodes), and by-hash files of earlier
/// indices stay.
pub fn write_archive(root: &Path, suites: &[Suite], key: &TestKey) {
    for suite in suites {
        assert!(
            !suite.architectures.is_empty(),
            "{}: no architectures",
            suite.name
        );
        let dists = root.join("dists").join(&suite.name);
        let mut index_files = Vec::new();
        for (component, debs) in &suite.components {
            // dpkg-scanpackages reads a directory, and the shared pool holds
            // other suites' packages too: it scans a tree of links to this
            // suite's files only, at the same relative paths.
            let staging = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir_all(staging.path().join("pool").join(component))
                .expect("create staging pool");
            for deb in debs {
                let relative = add_to_pool(root, component, deb, &suite.architectures);
                let link = staging.path().join(&relative);
                std::fs::create_dir_all(link.parent().expect("pool path has a parent"))
                    .expect("create staging directory");
                // The same file may be listed twice in one component.
                if !link.exists() {
                    std::os::unix::fs::symlink(root.join(&relative), &link)
                        .expect("link into the staging pool");
                }
            }
            for arch in &suite.architectures {
                let packages = run_ok(
                    Command::new("dpkg-scanpackages")
                        .current_dir(staging.path())
                        .args(["--multiversion", "--arch", arch])
                        .arg(format!("pool/{component}")),
                );
                let index = format!("{component}/binary-{arch}");
                let dir = dists.join(&index);
                let release = format!(
                    "Archive: {}\nOrigin: {}\nLabel: {}\nAcquire-By-Hash: yes\nComponent: {component}\nArchitecture: {arch}\n",
                    suite.name, suite.origin, suite.label
                );
                for (name, bytes) in [
                    ("Packages", packages.clone()),
                    ("Packages.gz", gzip(&packages)),
                    ("Packages.xz", xz(&packages)),
                ] {
                    write_replacing(&dir.join(name), &bytes);
                    let by_hash = dir.join("by-hash/SHA256").join(sha256_hex(&bytes));
                    if !by_hash.exists() {
                        std::fs::create_dir_all(by_hash.parent().expect("parent"))
                            .expect("create by-hash");
                        std::fs::hard_link(dir.join(name), &by_hash).expect("link by-hash");
                    }
                    index_files.push(format!("{index}/{name}"));
                }
                write_replacing(&dir.join("Release"), release.as_bytes());
                index_files.push(format!("{index}/Release"));
            }
        }
        index_files.sort();
        let release = dists.join("Release");
        write_replacing(
            &release,
            release_text(suite, &dists, &index_files).as_bytes(),
        );
        key.sign_release_with_gpg(&release);
    }
}

/// The text of `dists/<suite>/Release` for `index_files` (relative to
/// `dists`).
fn release_text(suite: &Suite, dists: &Path, index_files: &[String]) -> String {
    let components: Vec<&str> = suite.components.iter().map(|(c, _)| c.as_str()).collect();
    let mut text = format!(
        "Origin: {}\nLabel: {}\nSuite: {}\nCodename: {}\nDate: {}\n",
        suite.origin,
        suite.label,
        suite.name,
        suite.codename,
        rfc2822_utc(SystemTime::now()),
    );
    if suite.not_automatic {
        text.push_str("NotAutomatic: yes\n");
    }
    if suite.but_automatic_upgrades {
        text.push_str("ButAutomaticUpgrades: yes\n");
    }
    text.push_str(&format!(
        "Acquire-By-Hash: yes\nArchitectures: {}\nComponents: {}\nDescription: {} {} test archive\n",
        suite.architectures.join(" "),
        components.join(" "),
        suite.origin,
        suite.name,
    ));
    let md5 = md5sums(dists, index_files);
    for (field, hashes) in [
        ("MD5Sum", md5),
        (
            "SHA256",
            index_files
                .iter()
                .map(|file| sha256_hex(&std::fs::read(dists.join(file)).expect("read index")))
                .collect(),
        ),
    ] {
        text.push_str(&format!("{field}:\n"));
        for (file, hash) in index_files.iter().zip(hashes) {
            let size = std::fs::metadata(dists.join(file))
                .expect("stat index")
                .len();
            // apt-ftparchive's layout: the size right-aligned in 16 columns.
            text.push_str(&format!(" {hash} {size:>16} {file}\n"));
        }
    }
    text
}

/// Hard-links (or copies) `deb` into the pool of `component`; returns its
/// path relative to `root`. The same file may be added by several suites;
/// two different files claiming one pool name are a test bug.
fn add_to_pool(root: &Path, component: &str, deb: &Path, architectures: &[String]) -> PathBuf {
    let control = deb_control(deb);
    let field = |name: &str| {
        control_field(&control, name)
            .unwrap_or_else(|| panic!("{} has no {name} field", deb.display()))
    };
    let (package, version, arch) = (field("Package"), field("Version"), field("Architecture"));
    assert!(
        arch == "all" || architectures.contains(&arch),
        "{} is for {arch}, which the suite does not list",
        deb.display()
    );
    let source = control_field(&control, "Source")
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| package.clone());
    let prefix = if source.starts_with("lib") && source.len() > 3 {
        &source[..4]
    } else {
        &source[..1]
    };
    let upstream = version.split_once(':').map_or(version.as_str(), |(_, v)| v);
    let relative = PathBuf::from(format!(
        "pool/{component}/{prefix}/{source}/{package}_{upstream}_{arch}.deb"
    ));
    let target = root.join(&relative);
    if target.exists() {
        assert!(
            std::fs::read(&target).expect("read pool file")
                == std::fs::read(deb).expect("read deb"),
            "{} and another file both claim {}",
            deb.display(),
            relative.display()
        );
        return relative;
    }
    std::fs::create_dir_all(target.parent().expect("parent")).expect("create pool directory");
    if std::fs::hard_link(deb, &target).is_err() {
        std::fs::copy(deb, &target).expect("copy into the pool");
    }
    relative
}

/// What a [`Server`] does to a request instead of answering it well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Sends the headers and half the body, then nothing more until the
    /// client hangs up (a mirror that stalls mid-transfer).
    Stall,
    /// Resets the connection (an RST) without answering.
    Reset,
    /// Sends the headers and half the body, then closes the connection.
    Truncate,
    /// Answers with this status and, when given, `Retry-After: <value>`.
    Status(u16, Option<String>),
    /// Answers 200 with this file's bytes instead of the one asked for.
    OtherFile(PathBuf),
    /// Answers 302 to the same path: a redirect loop.
    RedirectLoop,
    /// Serves the file whole, but spread evenly over this long (a slow
    /// mirror).
    Slow(Duration),
}

impl Fault {
    /// How the request log shows it.
    fn logged(&self) -> String {
        match self {
            Fault::Stall => "stall".to_string(),
            Fault::Reset => "reset".to_string(),
            Fault::Truncate => "truncate".to_string(),
            Fault::Status(code, None) => code.to_string(),
            Fault::Status(code, Some(after)) => format!("{code} retry-after {after}"),
            Fault::OtherFile(_) => "other-file".to_string(),
            Fault::RedirectLoop => "302 loop".to_string(),
            Fault::Slow(over) => format!("slow {over:?}"),
        }
    }
}

/// Faults still to commit: (path suffix, fault), first match first.
type Faults = Mutex<VecDeque<(String, Fault)>>;

/// Serves a directory over HTTP from 127.0.0.1 until dropped; dropping it
/// closes the port and joins every thread it started.
#[derive(Debug)]
pub struct Server {
    /// `http://127.0.0.1:<port>`, with no trailing slash.
    pub url: String,
    address: SocketAddr,
    stopping: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    faults: Arc<Faults>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Every request answered so far, in order, as `<METHOD> <path>
    /// <status>`, e.g. `GET /dists/noble/InRelease 200`; a fault shows as
    /// what it was instead of the status (`reset`, `503 retry-after 1`).
    pub fn requests(&self) -> Vec<String> {
        lock(&self.requests).clone()
    }

    /// Queues `faults` for the next requests whose path ends with `suffix`
    /// (`""` for any request): each is committed once, in order, on the
    /// first request that matches it; the requests after are answered
    /// well.
    pub fn inject(&self, suffix: &str, faults: &[Fault]) {
        lock(&self.faults).extend(faults.iter().map(|f| (suffix.to_string(), f.clone())));
    }

    /// How many injected faults no request has met yet.
    pub fn pending_faults(&self) -> usize {
        lock(&self.faults).len()
    }
}

/// Locks `mutex`, whether or not a thread panicked holding it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees `stopping`.
        let _ = TcpStream::connect(self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Serves the files under `root` over HTTP/1.1 on an ephemeral port of
/// 127.0.0.1, from threads: GET and HEAD, keep-alive and pipelining (as
/// apt uses them), `Content-Length` on every answer, a directory's
/// `index.html` for the directory, 404 for anything that is not a file
/// under `root`.
pub fn serve(root: &Path) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let address = listener.local_addr().expect("local address");
    let stopping = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let faults = Arc::new(Mutex::new(VecDeque::new()));
    let acceptor = {
        let shared = Shared {
            root: root.to_path_buf(),
            requests: requests.clone(),
            faults: faults.clone(),
        };
        let stopping = stopping.clone();
        std::thread::spawn(move || accept_connections(&listener, &shared, &stopping))
    };
    Server {
        url: format!("http://{address}"),
        address,
        stopping,
        requests,
        faults,
        acceptor: Some(acceptor),
    }
}

/// What every connection thread of a [`Server`] reads and writes.
#[derive(Clone)]
struct Shared {
    root: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    faults: Arc<Faults>,
}

/// The acceptor's handle on a connection, to shut it down when stopping;
/// the connection takes it away to reset the connection (an RST needs
/// every descriptor of the socket closed).
type Handle = Arc<Mutex<Option<TcpStream>>>;

/// The acceptor thread: one thread per connection; when stopping, shuts
/// every connection down and joins its thread.
fn accept_connections(listener: &TcpListener, shared: &Shared, stopping: &AtomicBool) {
    let mut connections: Vec<(Handle, JoinHandle<()>)> = Vec::new();
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        connections.retain(|(_, thread)| !thread.is_finished());
        let handle = Arc::new(Mutex::new(Some(handle)));
        let (shared, ours) = (shared.clone(), handle.clone());
        let thread = std::thread::spawn(move || serve_connection(stream, &ours, &shared));
        connections.push((handle, thread));
    }
    for (handle, thread) in connections {
        if let Some(stream) = lock(&handle).take() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let _ = thread.join();
    }
}

/// Answers the requests of one connection in order until the client
/// closes it, asks to, or goes idle; then closes it (the acceptor holds a
/// handle too, so dropping ours would not).
fn serve_connection(stream: TcpStream, handle: &Handle, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(IDLE_CONNECTION_SECS)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    if answer_requests(stream, &mut writer, shared) == Ending::Reset {
        // Every descriptor of the socket closes with the request unread,
        // which makes the kernel send an RST (RFC 2525 2.17).
        drop(lock(handle).take());
        return;
    }
    let _ = writer.shutdown(Shutdown::Both);
}

/// How a connection's request loop ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// Closed, or to be closed, in an orderly way.
    Closed,
    /// To be reset: the request is left unread.
    Reset,
}

/// The request target of the next request on `stream`, read without
/// taking it from the socket (so that a reset finds it unread).
fn peek_target(stream: &TcpStream) -> Option<String> {
    let mut buffer = [0; 2048];
    let n = stream.peek(&mut buffer).ok()?;
    let text = String::from_utf8_lossy(&buffer[..n]);
    text.lines()
        .next()?
        .split_whitespace()
        .nth(1)
        .map(str::to_string)
}

/// Takes the first queued fault whose suffix ends `target`.
fn take_fault(faults: &Faults, target: &str) -> Option<Fault> {
    let mut faults = lock(faults);
    let index = faults
        .iter()
        .position(|(suffix, _)| target.ends_with(suffix.as_str()))?;
    faults.remove(index).map(|(_, fault)| fault)
}

/// The request loop of `serve_connection`.
fn answer_requests(stream: TcpStream, writer: &mut TcpStream, shared: &Shared) -> Ending {
    let (root, requests) = (shared.root.as_path(), &*shared.requests);
    let mut reader = BufReader::new(stream);
    loop {
        // A request pipelined behind another is already in the buffer; a
        // fault applies to requests that come one at a time, as kiln's do.
        let fault = if reader.buffer().is_empty() {
            peek_target(reader.get_ref())
                .and_then(|target| take_fault(&shared.faults, &target).map(|fault| (target, fault)))
        } else {
            None
        };
        if let Some((target, Fault::Reset)) = &fault {
            lock(requests).push(format!("GET {target} {}", Fault::Reset.logged()));
            return Ending::Reset;
        }
        let mut request_line = String::new();
        if !matches!(reader.read_line(&mut request_line), Ok(n) if n > 0) {
            return Ending::Closed;
        }
        let mut close = false;
        loop {
            let mut header = String::new();
            if !matches!(reader.read_line(&mut header), Ok(n) if n > 0) {
                return Ending::Closed;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.trim().eq_ignore_ascii_case("connection")
                && value.trim().eq_ignore_ascii_case("close")
            {
                close = true;
            }
        }
        let mut parts = request_line.split_whitespace();
        let (method, target, version) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        close |= version != "HTTP/1.1";
        if let Some((_, fault)) = fault {
            lock(requests).push(format!("{method} {target} {}", fault.logged()));
            if commit_fault(&fault, &mut reader, writer, root, target) {
                continue;
            }
            return Ending::Closed;
        }
        let (status, body) = match method {
            "GET" | "HEAD" => match file_for(root, target).map(std::fs::read) {
                Some(Ok(bytes)) => ("200 OK", bytes),
                _ => ("404 Not Found", b"not found\n".to_vec()),
            },
            _ => ("405 Method Not Allowed", b"GET or HEAD only\n".to_vec()),
        };
        lock(requests).push(format!("{method} {target} {}", &status[..3]));
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n",
            body.len()
        )
        .into_bytes();
        if close {
            response.extend_from_slice(b"Connection: close\r\n");
        }
        response.extend_from_slice(b"\r\n");
        if method != "HEAD" {
            response.extend_from_slice(&body);
        }
        if writer.write_all(&response).is_err() || close {
            return Ending::Closed;
        }
    }
}

/// Does `fault` to the request for `target` (its head read from `reader`)
/// and says whether the connection may serve another request (only after
/// another file, a whole answer). `Fault::Reset` is done before the
/// request is read, not here.
fn commit_fault(
    fault: &Fault,
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    root: &Path,
    target: &str,
) -> bool {
    let file = || file_for(root, target).and_then(|path| std::fs::read(path).ok());
    let head = |status: &str, length: usize, extra: &str| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {length}\r\n{extra}\r\n").into_bytes()
    };
    let half_body = |body: &[u8]| {
        let mut response = head("200 OK", body.len(), "");
        response.extend_from_slice(&body[..body.len() / 2]);
        response
    };
    match fault {
        Fault::Reset => {}
        Fault::Stall => {
            let body = file().unwrap_or_else(|| vec![0; 4096]);
            if writer.write_all(&half_body(&body)).is_ok() {
                // Nothing more until the client gives up and hangs up (or
                // the server stops, which shuts the socket down).
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest);
            }
        }
        Fault::Truncate => {
            let body = file().unwrap_or_else(|| vec![0; 4096]);
            let _ = writer.write_all(&half_body(&body));
        }
        Fault::Status(code, retry_after) => {
            let extra = match retry_after {
                Some(after) => format!("Retry-After: {after}\r\nConnection: close\r\n"),
                None => "Connection: close\r\n".to_string(),
            };
            let _ = writer.write_all(&head(&format!("{code} Fault"), 0, &extra));
        }
        Fault::OtherFile(other) => {
            let body = std::fs::read(other).expect("the other file to serve");
            let mut response = head("200 OK", body.len(), "");
            response.extend_from_slice(&body);
            return writer.write_all(&response).is_ok();
        }
        Fault::RedirectLoop => {
            let extra = format!("Location: {target}\r\nConnection: close\r\n");
            let _ = writer.write_all(&head("302 Found", 0, &extra));
        }
        Fault::Slow(over) => {
            const SLOW_PIECES: u32 = 20;
            let Some(body) = file() else {
                return false;
            };
            if writer.write_all(&head("200 OK", body.len(), "")).is_err() {
                return false;
            }
            let piece = body.len().div_ceil(SLOW_PIECES as usize).max(1);
            for chunk in body.chunks(piece) {
                std::thread::sleep(*over / SLOW_PIECES);
                if writer.write_all(chunk).is_err() {
                    return false;
                }
            }
            return true;
        }
    }
    false
}

/// The file under `root` that a request target names, if it is one:
/// percent-decoded, query dropped, and never outside `root`.
fn file_for(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split('?').next()?.strip_prefix('/')?;
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).ok()?;
    let mut file = root.to_path_buf();
    for part in decoded.split('/').filter(|part| !part.is_empty()) {
        if part == "." || part == ".." {
            return None;
        }
        file.push(part);
    }
    if file.is_dir() {
        // A directory is answered with its `index.html`, as a web server
        // answers with its listing.
        file.push("index.html");
    }
    file.is_file().then_some(file)
}

/// Rebuilds the real package `deb` at `version` into `out_dir` (named
/// `<package>_<version>_<arch>.deb`, without the epoch) and returns its
/// path: runs `dpkg-deb -R`, rewrites `DEBIAN/control`'s `Version`, and
/// `dpkg-deb --build --root-owner-group -Zxz`. The files are the same; only
/// the version differs.
pub fn with_version(deb: &Path, version: &str, out_dir: &Path) -> PathBuf {
    with_version_compressed(deb, version, out_dir, "xz")
}

/// [`with_version`] with the members compressed by `compression`
/// (`dpkg-deb -Z`): the same package at the same version in other bytes,
/// as a vendor's rebuild would be.
pub fn with_version_compressed(
    deb: &Path,
    version: &str,
    out_dir: &Path,
    compression: &str,
) -> PathBuf {
    let scratch = tempfile::tempdir_in(out_dir).expect("tempdir");
    // A directory dpkg-deb creates itself, so the package's `./` keeps the
    // mode it had rather than the tempdir's 0700.
    let tree = scratch.path().join("tree");
    run_ok(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control_path = tree.join("DEBIAN/control");
    let control = std::fs::read_to_string(&control_path).expect("read DEBIAN/control");
    let mut replaced = false;
    let control: String = control
        .lines()
        .map(|line| {
            if line.starts_with("Version:") {
                replaced = true;
                format!("Version: {version}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert!(replaced, "{} has no Version field", deb.display());
    std::fs::write(&control_path, &control).expect("write DEBIAN/control");
    let field = |name: &str| control_field(&control, name).expect("control field");
    let upstream = version.split_once(':').map_or(version, |(_, v)| v);
    let out = out_dir.join(format!(
        "{}_{upstream}_{}.deb",
        field("Package"),
        field("Architecture")
    ));
    run_ok(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(format!("-Z{compression}"))
            .arg(&tree)
            .arg(&out),
    );
    out
}

/// The control paragraph of a .deb, from `dpkg-deb --field`.
fn deb_control(deb: &Path) -> String {
    String::from_utf8(run_ok(Command::new("dpkg-deb").arg("--field").arg(deb)))
        .expect("a UTF-8 control file")
}

/// The value of a single-line field of a control paragraph.
fn control_field(control: &str, name: &str) -> Option<String> {
    control.lines().find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// Runs `gpgconf --kill gpg-agent` for `home` and waits for the agent to
/// exit, so that no test leaves one behind.
fn stop_gpg_agent(home: &Path) {
    run_ok(
        Command::new("gpgconf")
            .arg("--homedir")
            .arg(home)
            .args(["--kill", "gpg-agent"]),
    );
    let deadline = Instant::now() + Duration::from_secs(AGENT_EXIT_TIMEOUT_SECS);
    while !gpg_agents_for(home).is_empty() {
        assert!(
            Instant::now() < deadline,
            "gpg-agent for {} still runs",
            home.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Process ids of the gpg-agents running for `home` (gpg starts them with
/// `--homedir <home>`; an exited one keeps no command line).
fn gpg_agents_for(home: &Path) -> Vec<String> {
    let home = home.to_string_lossy();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        if args
            .first()
            .is_some_and(|program| program.ends_with("gpg-agent"))
            && args.iter().any(|arg| *arg == home)
        {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

/// Runs `command`, asserting it succeeds; returns its stdout.
fn run_ok(command: &mut Command) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} runs (scripts/install-test-deps): {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Writes `path` as a new file (a new inode), so a hard link to the old
/// one, such as a by-hash entry, keeps the old bytes.
fn write_replacing(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create directory");
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    std::fs::write(&temporary, bytes).expect("write index");
    std::fs::rename(&temporary, path).expect("rename index into place");
}

/// Runs `md5sum` on `files` (relative to `dir`); the hashes in order.
fn md5sums(dir: &Path, files: &[String]) -> Vec<String> {
    let output = run_ok(
        Command::new("md5sum")
            .current_dir(dir)
            .arg("--")
            .args(files),
    );
    let hashes: Vec<String> = String::from_utf8_lossy(&output)
        .lines()
        .map(|line| line.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(hashes.len(), files.len(), "md5sum hashes every file");
    hashes
}

/// The SHA-256 of `bytes` in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn xz(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 6);
    encoder.write_all(bytes).expect("xz");
    encoder.finish().expect("xz")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `time` as a Release file's `Date`: RFC 2822 in UTC, e.g.
/// `Sat, 11 Jul 2026 10:16:37 UTC`.
pub fn rfc2822_utc(time: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let days = secs / 86_400;
    let second_of_day = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} UTC",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    )
}

// ---------------------------------------------------------------------------
// Self-tests: the host's apt accepts the archive and reads it as intended.

/// Small real packages with no dependencies, so apt can install them into
/// an empty system: two `all` and one for the host's architecture.
const REAL_PACKAGES: [&str; 3] = ["sensible-utils", "netbase", "architecture-properties"];

/// `REAL_PACKAGES`, fetched once with `apt-get download` from the host's
/// apt mirror and kept under `KILN_TEST_CACHE` between runs.
fn real_debs() -> &'static [PathBuf] {
    static DEBS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DEBS.get_or_init(|| {
        let cache = crate::common::test_cache().join("apt-repo-debs");
        std::fs::create_dir_all(&cache).expect("create the deb cache");
        let cached = |package: &str| {
            std::fs::read_dir(&cache)
                .expect("read the deb cache")
                .flatten()
                .map(|entry| entry.path())
                .find(|path| {
                    path.file_name().is_some_and(|name| {
                        let name = name.to_string_lossy();
                        name.starts_with(&format!("{package}_")) && name.ends_with(".deb")
                    })
                })
        };
        let missing: Vec<&str> = REAL_PACKAGES
            .into_iter()
            .filter(|package| cached(package).is_none())
            .collect();
        if !missing.is_empty() {
            // Downloaded beside the cache and renamed in, so another test
            // run never sees half a file.
            let download = tempfile::tempdir_in(&cache).expect("tempdir");
            run_ok(
                Command::new("apt-get")
                    .current_dir(download.path())
                    .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
                    .args(&missing),
            );
            for entry in std::fs::read_dir(download.path()).expect("read").flatten() {
                std::fs::rename(entry.path(), cache.join(entry.file_name()))
                    .expect("move into the deb cache");
            }
        }
        REAL_PACKAGES
            .into_iter()
            .map(|package| cached(package).expect("downloaded"))
            .collect()
    })
}

/// The host's dpkg architecture (the archive's, so apt reads it).
fn host_arch() -> String {
    String::from_utf8(run_ok(Command::new("dpkg").arg("--print-architecture")))
        .expect("UTF-8")
        .trim()
        .to_string()
}

/// An apt that reads nothing of the host's configuration, sources, keys,
/// preferences or dpkg status: everything lives under `dir`, and the
/// installed system is empty.
struct ScratchApt {
    config: PathBuf,
}

impl ScratchApt {
    /// Writes the configuration and an empty system under `dir`, with
    /// `sources` as its one-line sources.list.
    fn new(dir: &Path, sources: &str, arch: &str) -> ScratchApt {
        for sub in [
            "apt.conf.d",
            "sources.list.d",
            "preferences.d",
            "trusted.gpg.d",
            "state/lists/partial",
            "cache/archives/partial",
            "log",
        ] {
            std::fs::create_dir_all(dir.join(sub)).expect("create scratch apt directory");
        }
        std::fs::write(dir.join("sources.list"), sources).expect("write sources.list");
        std::fs::write(dir.join("status"), "").expect("write an empty dpkg status");
        let d = dir.display();
        // APT_CONFIG is read before Dir::Etc::Parts, so the host's
        // apt.conf.d (proxies, compression, languages) never applies.
        let config = format!(
            "Dir::Etc::Main \"/dev/null\";\n\
             Dir::Etc::Parts \"{d}/apt.conf.d\";\n\
             Dir::Etc::SourceList \"{d}/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/sources.list.d\";\n\
             Dir::Etc::Preferences \"{d}/preferences\";\n\
             Dir::Etc::PreferencesParts \"{d}/preferences.d\";\n\
             Dir::Etc::Trusted \"{d}/trusted.gpg\";\n\
             Dir::Etc::TrustedParts \"{d}/trusted.gpg.d\";\n\
             Dir::State \"{d}/state\";\n\
             Dir::State::Status \"{d}/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Dir::Log \"{d}/log\";\n\
             APT::Architecture \"{arch}\";\n\
             APT::Architectures {{ \"{arch}\"; }};\n\
             Acquire::Languages \"none\";\n\
             Acquire::http::Proxy \"DIRECT\";\n\
             APT::Sandbox::User \"root\";\n"
        );
        let config_path = dir.join("apt.conf");
        std::fs::write(&config_path, config).expect("write apt.conf");
        ScratchApt {
            config: config_path,
        }
    }

    /// Runs an apt program with this configuration.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("APT_CONFIG", &self.config)
            .env("LC_ALL", "C")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .output()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"))
    }

    /// Runs an apt program, asserting it succeeds without a warning or
    /// error; returns its stdout.
    fn run_clean(&self, program: &str, args: &[&str]) -> String {
        let output = self.run(program, args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        );
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {stdout}{stderr}"
        );
        assert!(
            !stderr
                .lines()
                .any(|l| l.starts_with("W:") || l.starts_with("E:"))
                && !stdout
                    .lines()
                    .any(|l| l.starts_with("W:") || l.starts_with("E:")),
            "{program} {args:?} warned: {stdout}{stderr}"
        );
        stdout
    }
}

/// Asserts `server` has stopped once dropped: its acceptor thread, which
/// owns the listening socket, and every connection thread have ended, so
/// none still holds the flag they share. (Connecting to the old address
/// is no proof: a test running beside this one may have been given the
/// same ephemeral port since, which made this flaky in CI.)
fn assert_stops(server: Server) {
    let stopping = server.stopping.clone();
    drop(server);
    assert_eq!(
        Arc::strong_count(&stopping),
        1,
        "a thread of the server still runs after it was dropped"
    );
}

#[test]
fn apt_takes_the_newer_version_from_the_security_suite() {
    let temp = tempfile::tempdir().expect("tempdir");
    let arch = host_arch();
    let [sensible, netbase, properties] = real_debs() else {
        panic!("three packages");
    };
    let key = TestKey::new(temp.path(), "archive");
    assert_eq!(key.fingerprint.len(), 40, "{}", key.fingerprint);
    assert!(
        gpg_agents_for(&key.home).is_empty(),
        "no agent left by keygen"
    );

    let original = control_field(&deb_control(sensible), "Version").expect("Version");
    let bumped_version = format!("{original}+security1");
    let bumped = with_version(sensible, &bumped_version, temp.path());
    let bumped_control = deb_control(&bumped);
    assert_eq!(
        control_field(&bumped_control, "Version").as_deref(),
        Some(bumped_version.as_str())
    );
    assert_eq!(
        bumped.file_name().and_then(|n| n.to_str()),
        Some(format!("sensible-utils_{bumped_version}_all.deb").as_str())
    );

    let root = temp.path().join("archive");
    let debian = |name: &str, label: &str, debs: Vec<PathBuf>| Suite {
        name: name.to_string(),
        codename: name.to_string(),
        origin: "Debian".to_string(),
        label: label.to_string(),
        components: vec![("main".to_string(), debs)],
        architectures: vec![arch.clone()],
        ..Suite::default()
    };
    write_archive(
        &root,
        &[
            debian(
                "bookworm",
                "Debian",
                vec![sensible.clone(), netbase.clone(), properties.clone()],
            ),
            debian("bookworm-security", "Debian-Security", vec![bumped.clone()]),
        ],
        &key,
    );
    assert!(
        gpg_agents_for(&key.home).is_empty(),
        "no agent left by signing"
    );
    assert!(
        root.join(format!(
            "pool/main/s/sensible-utils/sensible-utils_{bumped_version}_all.deb"
        ))
        .is_file()
    );

    // Both signatures verify with the exported keyring alone.
    let dists = root.join("dists/bookworm-security");
    let in_release = std::fs::read_to_string(dists.join("InRelease")).expect("InRelease");
    assert!(in_release.contains("\nHash: SHA512\n"), "{in_release}");
    let keyring = key.keyring.to_str().expect("UTF-8");
    run_ok(
        Command::new("gpgv")
            .args(["--keyring", keyring])
            .arg(dists.join("InRelease")),
    );
    run_ok(
        Command::new("gpgv")
            .args(["--keyring", keyring])
            .arg(dists.join("Release.gpg"))
            .arg(dists.join("Release")),
    );
    let release = std::fs::read_to_string(dists.join("Release")).expect("Release");
    let packages_xz =
        std::fs::read(dists.join(format!("main/binary-{arch}/Packages.xz"))).expect("Packages.xz");
    assert!(
        release.contains(&format!(
            " {} {:>16} main/binary-{arch}/Packages.xz\n",
            sha256_hex(&packages_xz),
            packages_xz.len()
        )),
        "{release}"
    );
    let packages =
        std::fs::read_to_string(dists.join(format!("main/binary-{arch}/Packages"))).expect("read");
    for field in [
        "Filename: pool/main/s/sensible-utils/",
        "Size:",
        "MD5sum:",
        "SHA256:",
    ] {
        assert!(
            packages.contains(field),
            "Packages lacks {field}: {packages}"
        );
    }

    let server = serve(&root);
    let apt = ScratchApt::new(
        &temp.path().join("apt"),
        &format!(
            "deb [signed-by={keyring}] {url} bookworm main\n\
             deb [signed-by={keyring}] {url} bookworm-security main\n",
            url = server.url
        ),
        &arch,
    );
    apt.run_clean("apt-get", &["update"]);
    let requests = server.requests();
    assert!(
        requests.iter().all(|r| r.ends_with(" 200")),
        "apt asked for something the archive lacks: {requests:#?}"
    );
    let by_hash = format!(
        "GET /dists/bookworm-security/main/binary-{arch}/by-hash/SHA256/{} 200",
        sha256_hex(&packages_xz)
    );
    assert!(requests.contains(&by_hash), "{requests:#?}");

    let policy = apt.run_clean("apt-cache", &["policy", "sensible-utils"]);
    assert!(
        policy.contains(&format!("Candidate: {bumped_version}\n")),
        "{policy}"
    );
    let simulated = apt.run_clean(
        "apt-get",
        &[
            "install",
            "--simulate",
            "sensible-utils",
            "netbase",
            "architecture-properties",
        ],
    );
    let inst = |package: &str| {
        simulated
            .lines()
            .find(|line| line.starts_with(&format!("Inst {package} (")))
            .unwrap_or_else(|| panic!("apt does not install {package}: {simulated}"))
            .to_string()
    };
    let sensible_line = inst("sensible-utils");
    assert!(
        sensible_line.contains(&format!("({bumped_version} "))
            && sensible_line.contains("bookworm-security"),
        "{sensible_line}"
    );
    assert!(inst("netbase").contains(":bookworm ["), "{simulated}");
    assert!(
        inst("architecture-properties").contains(&format!("[{arch}]")),
        "{simulated}"
    );

    // HEAD and missing files, as other clients than apt use them.
    let head = http_exchange(
        &server,
        "HEAD /dists/bookworm/Release HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!(
            "Content-Length: {}\r\n",
            std::fs::metadata(root.join("dists/bookworm/Release"))
                .expect("stat")
                .len()
        )),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    let missing = http_exchange(
        &server,
        "GET /dists/../../etc/passwd HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    assert_stops(server);
}

#[test]
fn a_not_automatic_but_automatic_upgrades_suite_has_priority_100() {
    let temp = tempfile::tempdir().expect("tempdir");
    let arch = host_arch();
    let [_, netbase, properties] = real_debs() else {
        panic!("three packages");
    };
    let key = TestKey::new(temp.path(), "ubuntu-like");
    let armored = std::fs::read_to_string(&key.armored).expect("read the armored key");
    assert!(
        armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{armored}"
    );
    let original = control_field(&deb_control(netbase), "Version").expect("Version");
    let newer = with_version(netbase, &format!("{original}+backport1"), temp.path());

    let root = temp.path().join("archive");
    let ubuntu = |name: &str, debs: Vec<PathBuf>| Suite {
        name: name.to_string(),
        codename: "noble".to_string(),
        origin: "Ubuntu".to_string(),
        label: "Ubuntu".to_string(),
        components: vec![
            ("main".to_string(), debs),
            ("universe".to_string(), Vec::new()),
        ],
        architectures: vec![arch.clone()],
        ..Suite::default()
    };
    write_archive(
        &root,
        &[
            ubuntu("noble", vec![netbase.clone(), properties.clone()]),
            Suite {
                not_automatic: true,
                but_automatic_upgrades: true,
                ..ubuntu("noble-backports", vec![newer])
            },
            Suite {
                not_automatic: true,
                ..ubuntu("noble-experimental", vec![properties.clone()])
            },
        ],
        &key,
    );
    let release =
        std::fs::read_to_string(root.join("dists/noble-backports/Release")).expect("Release");
    assert!(
        release.contains("\nNotAutomatic: yes\nButAutomaticUpgrades: yes\n"),
        "{release}"
    );

    let server = serve(&root);
    let signed_by = key.armored.display();
    let apt = ScratchApt::new(
        &temp.path().join("apt"),
        &["noble", "noble-backports", "noble-experimental"]
            .map(|suite| {
                format!(
                    "deb [signed-by={signed_by}] {} {suite} main universe\n",
                    server.url
                )
            })
            .concat(),
        &arch,
    );
    apt.run_clean("apt-get", &["update"]);
    let policy = apt.run_clean("apt-cache", &["policy"]);
    let priority = |suite: &str| {
        let wanted = format!(" {} {suite}/main {arch} Packages", server.url);
        policy
            .lines()
            .find(|line| line.ends_with(&wanted))
            .and_then(|line| line.split_whitespace().next())
            .unwrap_or_else(|| panic!("apt-cache policy lists no {suite}/main: {policy}"))
            .to_string()
    };
    assert_eq!(priority("noble"), "500", "{policy}");
    assert_eq!(priority("noble-backports"), "100", "{policy}");
    assert_eq!(priority("noble-experimental"), "1", "{policy}");
    // At 100, the backport's newer version is not the candidate.
    let netbase_policy = apt.run_clean("apt-cache", &["policy", "netbase"]);
    assert!(
        netbase_policy.contains(&format!("Candidate: {original}\n")),
        "{netbase_policy}"
    );
    assert_stops(server);
}

#[test]
fn apt_refuses_an_archive_signed_by_another_key() {
    let temp = tempfile::tempdir().expect("tempdir");
    let arch = host_arch();
    let signer = TestKey::new(temp.path(), "signer");
    let stranger = TestKey::new(temp.path(), "stranger");
    let root = temp.path().join("archive");
    write_archive(
        &root,
        &[Suite {
            name: "bookworm".to_string(),
            codename: "bookworm".to_string(),
            origin: "Debian".to_string(),
            label: "Debian".to_string(),
            components: vec![("main".to_string(), real_debs()[..1].to_vec())],
            architectures: vec![arch.clone()],
            ..Suite::default()
        }],
        &signer,
    );
    let server = serve(&root);
    let apt = ScratchApt::new(
        &temp.path().join("apt"),
        &format!(
            "deb [signed-by={}] {} bookworm main\n",
            stranger.keyring.display(),
            server.url
        ),
        &arch,
    );
    let output = apt.run("apt-get", &["update"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "apt accepted another key: {stderr}"
    );
    assert!(
        stderr.contains(&format!("NO_PUBKEY {}", &signer.fingerprint[24..])),
        "{stderr}"
    );
    assert_stops(server);
}

#[test]
fn release_dates_are_rfc2822_in_utc() {
    for (secs, expected) in [
        (0, "Thu, 01 Jan 1970 00:00:00 UTC"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 UTC"),
        (1_783_764_997, "Sat, 11 Jul 2026 10:16:37 UTC"),
        (4_133_980_799, "Fri, 31 Dec 2100 23:59:59 UTC"),
    ] {
        assert_eq!(
            rfc2822_utc(UNIX_EPOCH + Duration::from_secs(secs)),
            expected,
            "{secs}"
        );
    }
}

/// Sends one raw HTTP request to `server`; returns the whole answer.
fn http_exchange(server: &Server, request: &str) -> String {
    let mut stream = TcpStream::connect(server.address).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).expect("read the answer");
    answer
}

/// Builds a `.deb` of `package` at `version` (Architecture `all`) holding
/// `files` (path in the package, file to copy, mode 0644) into `out_dir`,
/// with `dpkg-deb --build --root-owner-group -Zxz`; returns its path.
pub fn deb_of_files(
    out_dir: &Path,
    package: &str,
    version: &str,
    files: &[(&str, &Path)],
) -> PathBuf {
    let scratch = tempfile::tempdir_in(out_dir).expect("tempdir");
    let tree = scratch.path().join("tree");
    std::fs::create_dir_all(tree.join("DEBIAN")).expect("mkdir DEBIAN");
    for (inside, from) in files {
        let target = tree.join(inside.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(from, &target).expect("copy into the package");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    std::fs::write(
        tree.join("DEBIAN/control"),
        format!(
            "Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: kiln tests <kiln@localhost>\n\
             Priority: important\nSection: misc\nDescription: {package}, made by a kiln test\n"
        ),
    )
    .expect("write DEBIAN/control");
    let out = out_dir.join(format!("{package}_{version}_all.deb"));
    run_ok(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zxz"])
            .arg(&tree)
            .arg(&out),
    );
    out
}
