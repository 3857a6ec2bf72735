//! The fuzzing harness for every parser that reads a file kiln did not
//! write itself or that a person may have edited: the imagefile, an
//! `element.yaml`, the lock, deb822 indexes and `Release` texts, `.deb`
//! archives and the tar entries inside them.
//!
//! It runs on the stable toolchain as ordinary tests, driven by proptest:
//! each target mutates real inputs (the example manifests, the elements'
//! `element.yaml`s, a lock of `debian-cloud`, paragraphs of bookworm's
//! `Packages` and `Release`, `.deb`s built here) line by line and byte by
//! byte, and also feeds raw bytes. The property is the same everywhere: the
//! parser returns, within [`CASE_LIMIT`], `Ok` or its structured error (for
//! parsers with diagnostics, every span inside the input); for `.deb`s,
//! nothing is written outside the root either. A panic is caught by
//! proptest, shrunk, and printed with the minimal input.
//!
//! CI runs a fixed number of cases from a fixed seed, so a run is
//! repeatable; `KILN_FUZZ_CASES` (cases per target) and `KILN_FUZZ_SEED`
//! (a number) change both, and `scripts/fuzz` runs rounds of new seeds for
//! a given time (docs/developer/testing.md). Every target prints its
//! executions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

/// How long one input may take before it counts as a hang. Generous: a
/// debug build on a busy two-core machine is slow, and a real hang is
/// endless.
const CASE_LIMIT: Duration = Duration::from_secs(10);

/// The seed CI uses, so that a CI run can be repeated exactly.
const DEFAULT_SEED: u64 = 19;

const EXAMPLE_MANIFESTS: [&str; 4] = [
    include_str!("../manifests/debian-cloud.yaml"),
    include_str!("../manifests/debian-minimal.yaml"),
    include_str!("../manifests/debian-ramdisk.yaml"),
    include_str!("../manifests/debian-state.yaml"),
];

const ELEMENT_YAMLS: [&str; 4] = [
    include_str!("../elements/devuser/element.yaml"),
    include_str!("../elements/debian/element.yaml"),
    include_str!("../elements/ubuntu/element.yaml"),
    include_str!("../elements/cloud-image/element.yaml"),
];

/// A lock of `debian-cloud` written by `kiln lock` (its package list cut
/// to 25 lines, its mirror renamed).
const LOCK: &str = include_str!("../tests/fuzz-seeds/debian-cloud.lock");

/// Nine paragraphs of bookworm's `main/binary-amd64/Packages`.
const PACKAGES: &str = include_str!("../tests/fuzz-seeds/Packages");

/// The head of bookworm's `Release` (some of its index lines).
const RELEASE: &str = include_str!("../tests/fuzz-seeds/Release");

/// Bytes that matter to one of the formats: YAML indicators, deb822's
/// colon and continuation, tar's and ar's padding and terminators.
const INTERESTING_BYTES: &[u8] = b":- \n\t#&*!|>{}[]\"',?%@`/.\0\x7f\xff0";

/// Short texts that change a parse more than a random byte does.
const TOKENS: &[&str] = &[
    "~",
    "null",
    "- ",
    "[]",
    "{}",
    ": ",
    "\n ",
    "\n- ",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!binary ",
    "99999999999999999999999",
    "-1",
    "0x",
    "1e400",
    "..",
    "../",
    "/",
    "\u{feff}",
    "\u{202e}",
    "é",
    "\r\n",
    "'",
    "\"\\u",
    " (>= ",
    " | ",
    "[amd64]",
    ":any",
    "sha256:",
    "version: 4\n",
    "---\n",
    "...\n",
];

/// Cases per target: `KILN_FUZZ_CASES`, or the target's CI default.
fn cases(ci_default: u32) -> u32 {
    std::env::var("KILN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci_default)
}

/// The run's seed: `KILN_FUZZ_SEED`, or CI's.
fn seed() -> u64 {
    std::env::var("KILN_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// Runs `check` on `cases` values of `strategy`, from the run's seed, and
/// prints the executions; on a failure, panics with proptest's minimal
/// input and the seed to replay it.
fn fuzz<S>(target: &str, ci_cases: u32, strategy: S, check: impl Fn(S::Value) -> Result<(), String>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let cases = cases(ci_cases);
    let seed = seed();
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    seed_bytes[8..8 + target.len().min(24)]
        .copy_from_slice(&target.as_bytes()[..target.len().min(24)]);
    let config = Config {
        cases,
        failure_persistence: None,
        // Mutated inputs are mostly rejected early; none is filtered out.
        max_global_rejects: 0,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let executions = AtomicU64::new(0);
    let started = Instant::now();
    let result = runner.run(&strategy, |value| {
        executions.fetch_add(1, Ordering::Relaxed);
        check(value).map_err(TestCaseError::fail)
    });
    let executions = executions.into_inner();
    eprintln!(
        "fuzz {target}: {executions} executions in {:.1} s (seed {seed})",
        started.elapsed().as_secs_f64()
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, value)) => {
            panic!("fuzz {target} (KILN_FUZZ_SEED={seed}): {reason}\nminimal input: {value:?}")
        }
        Err(TestError::Abort(reason)) => panic!("fuzz {target} aborted: {reason}"),
    }
}

/// Runs `parse` on its own thread and waits at most [`CASE_LIMIT`] for it:
/// a hang is a failure, not a stuck test run.
fn within_limit<T: Send + 'static>(
    parse: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (sender, receiver) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = sender.send(parse());
    });
    match receiver.recv_timeout(CASE_LIMIT) {
        Ok(value) => {
            let _ = worker.join();
            Ok(value)
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            Err(format!("no answer within {CASE_LIMIT:?}: a hang"))
        }
        // The sender was dropped without a value: the parser panicked.
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => Err(format!("panicked: {}", panic_text(&panic))),
            Ok(()) => Err("the parser's thread ended without an answer".to_string()),
        },
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// One change to an input.
#[derive(Debug, Clone)]
enum Edit {
    /// Flip one bit of the byte at (position modulo length).
    FlipBit(usize, u8),
    /// Set the byte there to one of [`INTERESTING_BYTES`].
    Interesting(usize, usize),
    /// Insert one of [`TOKENS`] there.
    Token(usize, usize),
    /// Remove up to `len` bytes from there.
    Delete(usize, usize),
    /// Copy up to `len` bytes from there to another place.
    Duplicate(usize, usize, usize),
    /// Cut everything after there.
    Truncate(usize),
    /// Remove a whole line.
    DeleteLine(usize),
    /// Repeat a whole line.
    DuplicateLine(usize),
    /// Swap two lines.
    SwapLines(usize, usize),
    /// Indent a line by up to four more spaces, or outdent it.
    Indent(usize, i8),
}

fn edit() -> impl Strategy<Value = Edit> {
    let n = any::<usize>;
    prop_oneof![
        (n(), 0u8..8).prop_map(|(p, b)| Edit::FlipBit(p, b)),
        (n(), n()).prop_map(|(p, i)| Edit::Interesting(p, i)),
        (n(), n()).prop_map(|(p, t)| Edit::Token(p, t)),
        (n(), 1usize..64).prop_map(|(p, l)| Edit::Delete(p, l)),
        (n(), 1usize..64, n()).prop_map(|(p, l, to)| Edit::Duplicate(p, l, to)),
        n().prop_map(Edit::Truncate),
        n().prop_map(Edit::DeleteLine),
        n().prop_map(Edit::DuplicateLine),
        (n(), n()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (n(), -4i8..=4).prop_map(|(l, by)| Edit::Indent(l, by)),
    ]
}

/// Applies `edits` to `input`, in order.
fn mutate(input: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = input.to_vec();
    for edit in edits {
        apply(&mut out, edit);
    }
    out
}

fn apply(out: &mut Vec<u8>, edit: &Edit) {
    let at = |p: usize, len: usize| if len == 0 { 0 } else { p % len };
    let len = out.len();
    match *edit {
        Edit::FlipBit(p, bit) if len > 0 => out[at(p, len)] ^= 1 << bit,
        Edit::Interesting(p, i) if len > 0 => {
            out[at(p, len)] = INTERESTING_BYTES[i % INTERESTING_BYTES.len()];
        }
        Edit::Token(p, t) => {
            let token = TOKENS[t % TOKENS.len()].as_bytes();
            let p = at(p, len + 1);
            out.splice(p..p, token.iter().copied());
        }
        Edit::Delete(p, l) if len > 0 => {
            let p = at(p, len);
            out.drain(p..(p + l).min(len));
        }
        Edit::Duplicate(p, l, to) if len > 0 => {
            let p = at(p, len);
            let piece = out[p..(p + l).min(len)].to_vec();
            let to = at(to, len + 1);
            out.splice(to..to, piece);
        }
        Edit::Truncate(p) => out.truncate(at(p, len + 1)),
        Edit::DeleteLine(l)
        | Edit::DuplicateLine(l)
        | Edit::SwapLines(l, _)
        | Edit::Indent(l, _) => {
            let mut lines: Vec<Vec<u8>> = out
                .split_inclusive(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            if lines.is_empty() {
                return;
            }
            let i = l % lines.len();
            match *edit {
                Edit::DeleteLine(_) => {
                    lines.remove(i);
                }
                Edit::DuplicateLine(_) => lines.insert(i, lines[i].clone()),
                Edit::SwapLines(_, other) => {
                    let j = other % lines.len();
                    lines.swap(i, j);
                }
                Edit::Indent(_, by) if by >= 0 => {
                    let spaces = vec![b' '; by.unsigned_abs().into()];
                    lines[i].splice(0..0, spaces);
                }
                Edit::Indent(_, by) => {
                    let strip = lines[i]
                        .iter()
                        .take(by.unsigned_abs().into())
                        .take_while(|&&b| b == b' ')
                        .count();
                    lines[i].drain(..strip);
                }
                _ => {}
            }
            *out = lines.concat();
        }
        _ => {}
    }
}

/// A mutation of one of `seeds`: up to `max_edits` edits.
fn mutated(seeds: Vec<Vec<u8>>, max_edits: usize) -> impl Strategy<Value = Vec<u8>> {
    let count = seeds.len();
    (0..count, prop::collection::vec(edit(), 1..=max_edits))
        .prop_map(move |(seed, edits)| mutate(&seeds[seed], &edits))
}

/// Half mutations of `seeds`, a quarter lightly edited, a quarter raw
/// bytes.
fn inputs(seeds: &[&str], max_edits: usize) -> impl Strategy<Value = Vec<u8>> {
    let seeds: Vec<Vec<u8>> = seeds.iter().map(|s| s.as_bytes().to_vec()).collect();
    prop_oneof![
        2 => mutated(seeds.clone(), max_edits),
        1 => mutated(seeds, 2),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether every problem's spans lie inside `text`.
fn spans_inside(problems: &[crate::manifest::Problem], text: &str) -> Result<(), String> {
    for problem in problems {
        for (span, label) in problem.span.iter().chain(&problem.related) {
            if span.offset() + span.len() > text.len() {
                return Err(format!(
                    "span {}..{} ({label}: {}) outside a text of {} bytes",
                    span.offset(),
                    span.offset() + span.len(),
                    problem.message,
                    text.len()
                ));
            }
            if !text.is_char_boundary(span.offset()) {
                return Err(format!(
                    "span starts inside a character: {}",
                    problem.message
                ));
            }
        }
        if problem.help.is_empty() {
            return Err(format!("no help line: {}", problem.message));
        }
    }
    Ok(())
}

// The seeds parse: each target reaches the parser's deep paths, not only
// its first refusal.
#[test]
fn the_seeds_are_valid() {
    for text in EXAMPLE_MANIFESTS {
        let source = crate::manifest::Source::new("imagefile.yaml", text);
        let manifest = crate::manifest::parse(&source).unwrap();
        assert!(crate::manifest::check(&manifest).is_empty());
    }
    for text in ELEMENT_YAMLS {
        crate::plan::parse_element_yaml(text).unwrap();
    }
    let lock = crate::lock::parse(Path::new("debian-cloud.lock"), LOCK).unwrap();
    assert_eq!(lock.packages.len(), 25);
    let index =
        crate::apt::index::PackageIndex::from_packages("amd64", "Packages", PACKAGES).unwrap();
    assert_eq!(index.len(), 9);
    let release = crate::apt::release::parse(RELEASE, "Release").unwrap();
    assert!(crate::apt::release::parse_date("Sat, 11 Jul 2026 10:16:37 UTC").is_some());
    let _ = release;
}

#[test]
fn imagefile() {
    fuzz("imagefile", 3000, inputs(&EXAMPLE_MANIFESTS, 8), |bytes| {
        let text = lossy(&bytes);
        within_limit(move || {
            let source = crate::manifest::Source::new("imagefile.yaml", text.clone());
            match crate::manifest::parse(&source) {
                Ok(manifest) => spans_inside(&crate::manifest::check(&manifest), &text),
                Err(problems) => {
                    if problems.problems.is_empty() {
                        return Err("a refusal without a problem".to_string());
                    }
                    spans_inside(&problems.problems, &text)
                }
            }
        })?
    });
}

#[test]
fn imagefile_bytes_from_a_file() {
    // The file-reading edge: binary, non-UTF-8 and oversized content.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imagefile.yaml");
    fuzz(
        "imagefile-file",
        500,
        inputs(&EXAMPLE_MANIFESTS, 4),
        |bytes| {
            std::fs::write(&path, &bytes).unwrap();
            let path = path.clone();
            within_limit(move || match crate::manifest::read(&path) {
                Ok(checked) => spans_inside(&checked.warnings.problems, checked.source.text()),
                Err(problems) => {
                    let text = std::fs::read(&path).map(|b| lossy(&b)).unwrap_or_default();
                    let spans = problems
                        .problems
                        .iter()
                        .filter(|p| p.span.is_some())
                        .count();
                    if spans > 0 && std::str::from_utf8(&bytes).is_ok() {
                        spans_inside(&problems.problems, &text)
                    } else {
                        Ok(())
                    }
                }
            })?
        },
    );
}

#[test]
fn element_yaml() {
    fuzz("element.yaml", 3000, inputs(&ELEMENT_YAMLS, 8), |bytes| {
        let text = lossy(&bytes);
        within_limit(move || match crate::plan::parse_element_yaml(&text) {
            Ok(_) => Ok(()),
            Err(problems) if problems.is_empty() => Err("a refusal without a problem".to_string()),
            Err(problems) => spans_inside(&problems, &text),
        })?
    });
}

#[test]
fn lock() {
    fuzz("lock", 1000, inputs(&[LOCK], 8), |bytes| {
        let text = lossy(&bytes);
        within_limit(move || {
            match crate::lock::parse(Path::new("imagefile.lock"), &text) {
                Ok(lock) => {
                    // What the reader accepts, the writer writes and the
                    // reader reads back the same.
                    let again =
                        crate::lock::parse(Path::new("again"), &crate::lock::to_text(&lock))
                            .map_err(|e| format!("the written lock does not read back: {e}"))?;
                    if again != lock {
                        return Err("the written lock reads back different".to_string());
                    }
                    let _ = crate::lock::diff::render(&crate::lock::diff::changes(&lock, &again));
                    Ok(())
                }
                Err(error) => {
                    let _ = error.to_string();
                    Ok(())
                }
            }
        })?
    });
}

#[test]
fn packages_index() {
    fuzz("Packages", 2000, inputs(&[PACKAGES], 8), |bytes| {
        let text = lossy(&bytes);
        within_limit(move || {
            // An error's line (deb822 errors point by line) is in the text.
            let lines = text.split('\n').count();
            for paragraph in crate::apt::deb822::Paragraphs::new(&text) {
                let paragraph = match paragraph {
                    Ok(paragraph) => paragraph,
                    Err(error) if error.line() == 0 || error.line() > lines => {
                        return Err(format!("line {} of {lines}: {error}", error.line()));
                    }
                    Err(_) => break,
                };
                for field in paragraph.fields() {
                    let _ = field.multiline().lines().count();
                    let _ = crate::apt::deb822::parse_relationships(field.value());
                    let _ = crate::apt::deb822::parse_provides(field.value());
                    let _ = crate::apt::version::Version::parse(field.value());
                }
            }
            let mut reader = crate::apt::deb822::ParagraphReader::new(text.as_bytes());
            while let Ok(Some(paragraphs)) = reader.next_text() {
                if paragraphs.count() > text.len() + 1 {
                    return Err("more paragraphs than bytes".to_string());
                }
            }
            if let Ok(index) =
                crate::apt::index::PackageIndex::from_packages("amd64", "Packages", &text)
            {
                for package in index.packages() {
                    let _ = index.newest(&package.name);
                    let _ = index.providers(&package.name).count();
                }
            }
            Ok(())
        })?
    });
}

#[test]
fn release() {
    fuzz("Release", 3000, inputs(&[RELEASE], 8), |bytes| {
        let text = lossy(&bytes);
        within_limit(move || {
            let _ = crate::apt::release::parse(&text, "Release");
            for line in text.lines() {
                let _ =
                    crate::apt::release::parse_date(line.split_once(": ").map_or(line, |(_, v)| v));
            }
            let _ = crate::apt::release::dearmor(&text);
            Ok(())
        })?
    });
}

/// One entry of a data.tar as the tar-entry target generates it.
#[derive(Debug, Clone)]
struct TarEntry {
    path: Vec<u8>,
    kind: u8,
    link: Vec<u8>,
    mode: u32,
    content: Vec<u8>,
    /// The size the header declares, when not the content's.
    declared: Option<u64>,
}

/// Path components that matter to the unpacker: the merged-/usr links,
/// `.` and `..`, empty ones (`a//b`), long ones.
fn component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"bin".to_vec()),
        Just(b"usr".to_vec()),
        Just(b"lib".to_vec()),
        Just(b"etc".to_vec()),
        Just(b"a".to_vec()),
        Just(b"b".to_vec()),
        Just(b".".to_vec()),
        Just(b"..".to_vec()),
        Just(b"".to_vec()),
        Just(vec![b'x'; 90]),
        prop::collection::vec(any::<u8>(), 1..4),
    ]
}

fn entry_path() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), prop::collection::vec(component(), 1..5)).prop_map(|(absolute, parts)| {
        let mut path = if absolute {
            b"/".to_vec()
        } else {
            b"./".to_vec()
        };
        path.extend(parts.join(&b'/'));
        path.truncate(99);
        path
    })
}

fn tar_entry() -> impl Strategy<Value = TarEntry> {
    (
        entry_path(),
        prop::sample::select(b"0123456L7xgK\0".to_vec()),
        prop_oneof![
            entry_path(),
            Just(b"/".to_vec()),
            Just(b"usr/bin".to_vec()),
            Just(b"../../..".to_vec()),
        ],
        prop::sample::select(vec![0o644u32, 0o755, 0o4755, 0o1777, 0o7777, 0]),
        prop::collection::vec(any::<u8>(), 0..700),
        prop_oneof![
            6 => Just(None),
            1 => Just(Some(u64::MAX >> 1)),
            1 => (0u64..2000).prop_map(Some),
        ],
    )
        .prop_map(|(path, kind, link, mode, content, declared)| TarEntry {
            path,
            kind,
            link,
            mode,
            content,
            declared,
        })
}

/// A 512-byte ustar header, written field by field so that any value,
/// sane or not, can be given.
fn tar_header(entry: &TarEntry) -> [u8; 512] {
    let mut header = [0u8; 512];
    let put = |header: &mut [u8; 512], at: usize, len: usize, value: &[u8]| {
        let n = value.len().min(len);
        header[at..at + n].copy_from_slice(&value[..n]);
    };
    let octal = |value: u64, len: usize| format!("{value:0width$o}", width = len - 1).into_bytes();
    put(&mut header, 0, 100, &entry.path);
    put(&mut header, 100, 8, &octal(u64::from(entry.mode), 8));
    put(&mut header, 108, 8, &octal(0, 8));
    put(&mut header, 116, 8, &octal(0, 8));
    let size = entry.declared.unwrap_or(entry.content.len() as u64);
    if size >= 1 << 33 {
        // GNU base-256, as tar writes sizes octal cannot hold.
        header[124] = 0x80;
        header[128..136].copy_from_slice(&size.to_be_bytes());
    } else {
        put(&mut header, 124, 12, &octal(size, 12));
    }
    put(&mut header, 136, 12, &octal(1_000_000_000, 12));
    header[156] = entry.kind;
    put(&mut header, 157, 100, &entry.link);
    put(&mut header, 257, 8, b"ustar\x0000");
    put(&mut header, 329, 8, &octal(1, 8));
    put(&mut header, 337, 8, &octal(3, 8));
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    put(&mut header, 148, 8, format!("{sum:06o}\0 ").as_bytes());
    header
}

/// A tar stream of `entries`, each header followed by its content
/// (whatever size the header declares) padded to 512 bytes.
fn tar_bytes(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        out.extend_from_slice(&tar_header(entry));
        out.extend_from_slice(&entry.content);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

/// An `ar` archive of `members`, headers written by hand (deb(5), ar(5)).
fn ar_bytes(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, bytes) in members {
        let header = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            0,
            0,
            0,
            "100644",
            bytes.len()
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(bytes);
        if bytes.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// A `.deb` with a control file and `data` as its data member, named
/// `data_name` (the suffix picks the compression).
fn deb_bytes(data_name: &str, data: &[u8]) -> Vec<u8> {
    let control = b"Package: fuzzed\nVersion: 1\nArchitecture: all\n";
    let control_tar = tar_bytes(&[TarEntry {
        path: b"./control".to_vec(),
        kind: b'0',
        link: Vec::new(),
        mode: 0o644,
        content: control.to_vec(),
        declared: None,
    }]);
    ar_bytes(&[
        ("debian-binary", b"2.0\n"),
        ("control.tar", &control_tar),
        (data_name, data),
    ])
}

/// Compresses `tar` as the member name's suffix says.
fn compressed(name: &str, tar: &[u8]) -> Vec<u8> {
    match name.rsplit_once('.').map(|(_, suffix)| suffix) {
        Some("gz") => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(tar).unwrap();
            encoder.finish().unwrap()
        }
        Some("xz") => {
            let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
            encoder.write_all(tar).unwrap();
            encoder.finish().unwrap()
        }
        Some("zst") => zstd::encode_all(tar, 1).unwrap(),
        _ => tar.to_vec(),
    }
}

/// A few well-formed entries, the seed the byte-level `.deb` target
/// mutates.
fn seed_entries() -> Vec<TarEntry> {
    let entry = |path: &[u8], kind: u8, link: &[u8], content: &[u8]| TarEntry {
        path: path.to_vec(),
        kind,
        link: link.to_vec(),
        mode: if kind == b'5' { 0o755 } else { 0o644 },
        content: content.to_vec(),
        declared: None,
    };
    vec![
        entry(b"./", b'5', b"", b""),
        entry(b"./usr/", b'5', b"", b""),
        entry(b"./usr/bin/", b'5', b"", b""),
        entry(b"./usr/bin/tool", b'0', b"", b"#!/bin/sh\necho tool\n"),
        entry(b"./usr/bin/again", b'1', b"./usr/bin/tool", b""),
        entry(b"./usr/bin/link", b'2', b"tool", b""),
        entry(b"./bin/sh", b'0', b"", b"sh\n"),
    ]
}

/// Where `.deb` targets unpack: a root per case beside a directory that
/// must never change.
struct Scratch {
    dir: tempfile::TempDir,
    outside: PathBuf,
    before: BTreeMap<PathBuf, (u32, u64)>,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("passwd"), "host\n").unwrap();
        std::fs::create_dir(outside.join("etc")).unwrap();
        let before = listing(&outside);
        Scratch {
            dir,
            outside,
            before,
        }
    }

    /// Unpacks `deb` into a new root with merged-/usr links and checks
    /// that it returned in time and left everything outside the root as it
    /// was.
    fn unpack(&self, deb: &[u8]) -> Result<Result<crate::bootstrap::UnpackReport, String>, String> {
        let path = self.dir.path().join("fuzzed.deb");
        std::fs::write(&path, deb).unwrap();
        let root = self.dir.path().join("root");
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        std::fs::create_dir(&root).unwrap();
        crate::bootstrap::create_merged_usr(&root, "amd64").unwrap();
        let (deb_path, unpack_root) = (path.clone(), root.clone());
        let result = within_limit(move || {
            let _ = crate::bootstrap::read_control(&deb_path).map_err(|e| e.to_string());
            crate::bootstrap::unpack_data(&deb_path, &unpack_root).map_err(|e| e.to_string())
        })?;
        if listing(&self.outside) != self.before {
            return Err(format!(
                "wrote outside the root: {:?}",
                listing(&self.outside)
            ));
        }
        if let Err(message) = &result
            && !message.contains("fuzzed.deb")
        {
            return Err(format!("the error does not name the .deb: {message}"));
        }
        Ok(result)
    }
}

/// Everything below `dir`: mode and size.
fn listing(dir: &Path) -> BTreeMap<PathBuf, (u32, u64)> {
    crate::host::walk::tree(dir)
        .min_depth(1)
        .into_iter()
        .map(|entry| {
            let path = entry.unwrap().into_path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            (path, (meta.mode(), meta.len()))
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "host tier: needs root (unpacking sets owners) (cargo test --features host-tests)"
)]
fn tar_entries() {
    let scratch = Scratch::new();
    let outside = scratch.outside.as_os_str().as_encoded_bytes().to_vec();
    let entries = prop::collection::vec(tar_entry(), 1..8);
    // Some symlinks point at the directory that must not change.
    let entries =
        (entries, prop::collection::vec(any::<bool>(), 8)).prop_map(move |(mut entries, aim)| {
            for (entry, aim) in entries.iter_mut().zip(aim) {
                if aim && entry.kind == b'2' {
                    entry.link.clone_from(&outside);
                }
            }
            entries
        });
    fuzz("tar-entries", 800, entries, |entries| {
        let deb = deb_bytes("data.tar", &tar_bytes(&entries));
        let result = scratch.unpack(&deb)?;
        // An entry the reader comes to (a larger declared size earlier
        // makes later headers that entry's data) declaring more than the
        // stream holds after its header.
        let total = tar_bytes(&entries).len() as u64;
        let mut headers = BTreeMap::new();
        let mut offset = 0u64;
        for entry in &entries {
            headers.insert(offset, entry);
            offset += 512 + entry.content.len().next_multiple_of(512) as u64;
        }
        let mut at = 0u64;
        let mut truncated = false;
        while let Some(entry) = headers.get(&at) {
            let size = entry.declared.unwrap_or(entry.content.len() as u64);
            if size > total - at - 512 {
                truncated = true;
                break;
            }
            at += 512 + size.next_multiple_of(512);
        }
        if truncated && result.is_ok() {
            return Err(
                "an entry declaring more bytes than the archive holds was accepted".to_string(),
            );
        }
        Ok(())
    });
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "host tier: needs root (unpacking sets owners) (cargo test --features host-tests)"
)]
fn deb_archives() {
    let scratch = Scratch::new();
    let tar = tar_bytes(&seed_entries());
    let seeds: Vec<Vec<u8>> = ["data.tar", "data.tar.gz", "data.tar.xz", "data.tar.zst"]
        .iter()
        .map(|name| deb_bytes(name, &compressed(name, &tar)))
        .collect();
    for seed in &seeds {
        let report = scratch.unpack(seed).unwrap().unwrap();
        assert_eq!(report.files, 2, "the seed unpacks");
    }
    let bytes_only = prop_oneof![
        Just(Edit::FlipBit(0, 0)),
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Edit::FlipBit(p, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(p, i)| Edit::Interesting(p, i)),
        (any::<usize>(), 1usize..64).prop_map(|(p, l)| Edit::Delete(p, l)),
        (any::<usize>(), 1usize..64, any::<usize>())
            .prop_map(|(p, l, to)| Edit::Duplicate(p, l, to)),
        any::<usize>().prop_map(Edit::Truncate),
    ];
    let count = seeds.len();
    let inputs = prop_oneof![
        4 => (0..count, prop::collection::vec(bytes_only, 1..6))
            .prop_map(move |(seed, edits)| mutate(&seeds[seed], &edits)),
        1 => prop::collection::vec(any::<u8>(), 0..600)
            .prop_map(|mut bytes| { bytes.splice(0..0, b"!<arch>\n".iter().copied()); bytes }),
    ];
    fuzz("deb-archives", 800, inputs, |deb| {
        scratch.unpack(&deb).map(|_| ())
    });
}
