//! Locking: planning an imagefile's elements, whether a lock is still
//! current, and resolving and writing a lock (for `kiln lock`, and for
//! `kiln build` when its lock is missing or stale), with every failure
//! turned into a diagnostic that points into the imagefile.

use std::path::{Path, PathBuf};
use std::time::Instant;

use miette::SourceSpan;

use crate::apt::resolve::ResolveError;
use crate::distro;
use crate::failure::Failure;
use crate::host::http::HttpError;
use crate::lock::make::{self, MakeError};
use crate::manifest::{self, Checked, Problem};
use crate::ops::fetch::open_cache;
use crate::{lock, terminal};

/// Plans the manifest's elements (a mistake there is the user's, exit 1).
pub fn plan_elements(
    checked: &Checked,
    elements_path: &[PathBuf],
    cache_dir: Option<&Path>,
) -> Result<crate::plan::Plan, Failure> {
    let search = crate::plan::SearchPath::from_env(
        elements_path,
        &crate::ops::elements::builtin_elements(cache_dir)?,
    );
    let plan = crate::plan::plan(&checked.manifest, &search)
        .map_err(|error| plan_failure(error, checked))?;
    if let Some(problem) = super::build::ramdisk_without_kernel(checked, &plan) {
        return Err(Failure::from(checked.source.problems(vec![problem])));
    }
    for warning in &plan.warnings {
        terminal::warning(&warning.to_string());
    }
    Ok(plan)
}

/// Turns a plan error into diagnostics: `with:` values that do not fit an
/// element's parameters point into the manifest, a bad `element.yaml`
/// points into that file.
fn plan_failure(error: crate::plan::PlanError, checked: &Checked) -> Failure {
    match error {
        crate::plan::PlanError::Parameters(problems) => {
            Failure::from(checked.source.problems(problems))
        }
        crate::plan::PlanError::ElementYaml(bad) => Failure::from(manifest::Problems::new(
            &bad.path.display().to_string(),
            bad.text,
            bad.problems,
        )),
        crate::plan::PlanError::ElementNotFound(missing) => {
            match element_not_found(&missing, checked) {
                Some(problem) => Failure::from(checked.source.problems(vec![problem])),
                None => Failure::user(miette::miette!(
                    help = ELEMENT_NOT_FOUND_HELP,
                    "{}",
                    crate::plan::PlanError::ElementNotFound(missing)
                )),
            }
        }
        error => Failure::user(miette::miette!(help = ELEMENT_NOT_FOUND_HELP, "{error}")),
    }
}

/// What to do about an element kiln cannot find, after any "did you mean".
const ELEMENT_NOT_FOUND_HELP: &str =
    "check the element names and --elements-path; `kiln elements list` shows what is found";

/// An element not found, pointed at in the imagefile: the entry of
/// `elements:` that names it, or, when another element's `element-deps`
/// asks for it, the entry that brought that element in. `None` when the
/// chain starts at no entry of `elements:`.
fn element_not_found(missing: &crate::plan::NotFound, checked: &Checked) -> Option<Problem> {
    let requested = missing.chain.first()?;
    let entry = checked
        .manifest
        .elements
        .iter()
        .find(|e| e.value.name() == requested)?;
    // The name itself, also in the `- name: x` form.
    let span = match &entry.value {
        crate::manifest::ElementRef::Name(_) => entry.span,
        crate::manifest::ElementRef::WithParams(with) => with.name.span,
    };
    let searched: Vec<String> = missing
        .searched
        .iter()
        .map(|dir| dir.display().to_string())
        .collect();
    // After a "did you mean", the rest of the help is what to do
    // otherwise.
    let suggestion = missing
        .suggestion
        .as_ref()
        .map_or_else(String::new, |s| format!("did you mean `{s}`? Otherwise "));
    let name = &missing.name;
    let problem = match missing.chain.as_slice() {
        [_] => Problem::error(
            format!(
                "element `{name}` not found; searched {}",
                searched.join(", ")
            ),
            span,
            "no element of this name",
            format!("{suggestion}{ELEMENT_NOT_FOUND_HELP}"),
        ),
        [.., parent, _] => {
            let chain: Vec<&str> = missing.chain.iter().map(|n| n.as_str()).collect();
            let via = if parent == requested {
                "the imagefile asks for it".to_string()
            } else {
                format!(
                    "the imagefile's `{requested}` brings it in: {}",
                    chain.join(" -> ")
                )
            };
            Problem::error(
                format!(
                    "element `{name}` not found: `{parent}` depends on it in its element-deps ({via}); searched {}",
                    searched.join(", ")
                ),
                span,
                format!("needs `{name}` through element-deps"),
                format!(
                    "{suggestion}fix the element-deps of `{parent}`, or add the directory holding `{name}` with --elements-path; `kiln elements list` shows what is found"
                ),
            )
        }
        [] => return None,
    };
    Some(problem)
}

/// Whether `lock` still pins `checked` and the elements `plan` found:
/// same imagefile bytes, same elements with the same trees. Where an
/// element was found does not matter (a checkout may move); what it holds
/// does.
pub fn is_current(lock: &lock::Lock, checked: &Checked, plan: &crate::plan::Plan) -> bool {
    let locked = lock.elements.iter().map(|e| (e.name.as_str(), &e.tree));
    let planned = plan
        .elements
        .iter()
        .map(|e| (e.name.as_str(), &e.tree_hash));
    lock.manifest == lock::sha256_tag(checked.source.text().as_bytes()) && locked.eq(planned)
}

/// Whether [`lock_planned`] writes the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Write it (when its text changes).
    Yes,
    /// Only report what would change.
    DryRun,
}

/// Resolves and writes the lock for a manifest already read and planned
/// (by `kiln lock`, or by `kiln build` when its lock is missing or stale),
/// reports what changed against the lock already there, and returns it.
pub fn lock_planned(
    checked: &Checked,
    plan: &crate::plan::Plan,
    lock_path: &Path,
    cache_dir: Option<&PathBuf>,
    write: Write,
) -> Result<lock::Lock, Failure> {
    let manifest_sha256 = lock::sha256_tag(checked.source.text().as_bytes());
    let cache = open_cache(cache_dir)?;
    // The indexes (or the base image) downloaded while locking, shown as
    // one set; nothing is shown when they are all in the cache.
    let downloads = terminal::downloads::Downloads::new("file");
    let http = crate::ops::fetch::http_client(false)?.reporting_to(&downloads);
    let started = Instant::now();
    let builtin = crate::ops::elements::builtin_elements(cache_dir.map(PathBuf::as_path))?;
    // `imagefile.lock` has the parent "": the current directory.
    let manifest_dir = lock_path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let made = base_family(checked)
        .lock(&distro::LockRequest {
            checked,
            manifest_sha256: &manifest_sha256,
            manifest_dir,
            elements: &make::Elements::from_plan(plan, &builtin, manifest_dir),
            http: &http,
            cache: &cache,
            host_config_dir: Path::new(make::HOST_APT_DIR),
        })
        .map_err(|error| failure(error, checked))?;
    downloads.finish();
    let lock = made.lock;
    match lock::read(lock_path) {
        Ok(old) => {
            let report = lock::diff::render(&lock::diff::changes(&old, &lock));
            if !report.is_empty() {
                terminal::status(report.trim_end());
            }
        }
        Err(lock::LockError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => terminal::status(&format!("{error}; its changes are not listed")),
    }
    let verb = match write {
        Write::DryRun
            if lock::to_text(&lock) == std::fs::read_to_string(lock_path).unwrap_or_default() =>
        {
            "unchanged"
        }
        Write::DryRun => "would write",
        Write::Yes => {
            let changed = lock::write(lock_path, &lock).map_err(Failure::internal)?;
            if changed { "wrote" } else { "unchanged" }
        }
    };
    if let Some(image) = &lock.base.image {
        terminal::status(&format!(
            "{} {}: the {} image {} ({:.1} MiB, sha256 {}) in {:.2} s",
            verb,
            lock_path.display(),
            image.format,
            image.url,
            image.size as f64 / f64::from(1u32 << 20),
            image.sha256,
            started.elapsed().as_secs_f64(),
        ));
        return Ok(lock);
    }
    let bytes: u64 = lock.packages.iter().map(|p| p.size).sum();
    terminal::status(&format!(
        "{} {}: {} packages ({:.1} MiB of .debs) from {} in {:.2} s",
        verb,
        lock_path.display(),
        lock.packages.len(),
        bytes as f64 / f64::from(1u32 << 20),
        lock.repositories
            .iter()
            .map(|r| r.suite.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs_f64(),
    ));
    Ok(lock)
}

/// The family that makes the imagefile's base tree.
pub fn base_family(checked: &Checked) -> &'static dyn distro::Family {
    distro::family(&checked.manifest.base.value)
}

/// An image base's failure as a diagnostic pointing at the entry of `base`
/// it is about.
fn image_failure(error: &crate::distro::image::ImageError, checked: &Checked) -> Failure {
    use crate::distro::image::ImageError;
    let base = &checked.manifest.base;
    let point = |span: Option<SourceSpan>, label: &str, help: &str| {
        Failure::from(checked.source.problems(vec![Problem::error(
            error.to_string(),
            span.unwrap_or(base.distro.span),
            label,
            help.to_string(),
        )]))
    };
    let url_span = base.url.as_ref().map(|u| u.span);
    match error {
        ImageError::Extract(_) => point(
            url_span,
            "not an image",
            "give a qcow2, a raw disk or filesystem image, a tarball (gzip, xz, zstd) or a squashfs",
        ),
        ImageError::RhelNeedsUrl => point(
            None,
            "from which image?",
            "download the KVM guest image with your subscription and give it as `url: file:///…`",
        ),
        ImageError::Discover(discover) => discover_failure(discover, checked, &point),
        _ => Failure::Internal(miette::miette!("{error}")),
    }
}

/// Where a discovery failure points: the release, the keyring or the
/// mirror.
fn discover_failure(
    error: &crate::distro::image::discover::DiscoverError,
    checked: &Checked,
    point: &dyn Fn(Option<SourceSpan>, &str, &str) -> Failure,
) -> Failure {
    use crate::distro::image::discover::DiscoverError;
    let base = &checked.manifest.base;
    let release = base.release.as_ref().map(|r| r.span);
    let keyring = base.keyring.as_ref().map(|k| k.span);
    let mirror = base.mirror.as_ref().map(|m| m.span);
    match error {
        DiscoverError::UnsupportedDistro { .. } => point(
            None,
            "not found by release",
            "give the image to start from as `url:`",
        ),
        DiscoverError::UnknownRelease { .. } => point(
            release,
            "not on the site",
            "use one of the releases the site lists",
        ),
        DiscoverError::NoKeyring { .. } => point(
            keyring.or(release),
            "no key to check it with",
            "set `keyring:` to the file of the distribution's key that signs its checksum files",
        ),
        DiscoverError::Signature { .. } => point(
            keyring.or(mirror).or(release),
            "does not verify",
            "check that `keyring:` holds the distribution's signing key, and that `mirror:` serves the distribution's own files; an image whose checksums do not verify is never used",
        ),
        DiscoverError::Unsigned { .. } => point(
            keyring,
            "nothing to check",
            "remove `keyring:`: this site signs no checksum file, and the lock pins the image's SHA-256",
        ),
        DiscoverError::Http { .. }
        | DiscoverError::NoImage { .. }
        | DiscoverError::MissingFile { .. }
        | DiscoverError::NotInChecksums { .. } => point(
            mirror.or(release),
            "not found on the site",
            "check `mirror:` (a site laid out like the distribution's) and the release, or give the image as `url:`",
        ),
    }
}

/// Every package of `packages:` the index does not have, each pointed at
/// in the imagefile with its own "did you mean"; `None` if one of them is
/// not in `packages:` (an element's package-installs asked for it).
fn unknown_packages(error: &ResolveError, checked: &Checked) -> Option<Failure> {
    let ResolveError::UnknownSeeds { unknown } = error else {
        return None;
    };
    let problems = unknown
        .iter()
        .map(|name| {
            let entry = checked
                .manifest
                .packages
                .iter()
                .find(|p| p.value.name() == name.package)?;
            Some(Problem::error(
                name.to_string(),
                entry.span,
                "cannot be installed",
                "check the package name, or remove it from `packages`".to_string(),
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Failure::from(checked.source.problems(problems)))
}

/// Turns a lock failure into diagnostics: a mistake in the manifest points
/// at it; a failure of the mirror, network or host exits 2 and names the
/// URL involved.
fn failure(error: MakeError, checked: &Checked) -> Failure {
    let manifest = &checked.manifest;
    let base = &manifest.base;
    let in_manifest = |span: SourceSpan, label: &str, help: String| {
        Failure::from(checked.source.problems(vec![Problem::error(
            error.to_string(),
            span,
            label,
            help,
        )]))
    };
    // The entry of the manifest a repository's failure is about, and the
    // failure itself.
    let (entry, inner) = match &error {
        MakeError::At { entry, error, .. } => (Some(*entry), error.as_ref()),
        other => (None, other),
    };
    let repository = match entry {
        Some(make::Entry::Repository(n)) => manifest.repositories.get(n),
        _ => None,
    };
    let suite_span = match entry {
        Some(make::Entry::Base(Some(kind))) => base
            .suites
            .as_ref()
            .and_then(|suites| suites.iter().find(|s| s.value == kind))
            .map(|s| s.span),
        _ => None,
    };
    match inner {
        MakeError::Image(image_error) => image_failure(image_error, checked),
        MakeError::Http(crate::host::http::HttpError::HashMismatch { .. })
            if base.from_image() =>
        {
            in_manifest(
                base.sha256
                    .as_ref()
                    .map(|s| s.span)
                    .or(base.url.as_ref().map(|u| u.span))
                    .unwrap_or(base.distro.span),
                "does not match",
                "the file was changed at its URL, or `sha256` is wrong: check where the image comes from before you change `sha256`".to_string(),
            )
        }
        MakeError::Http(_) if base.from_image() && base.url.is_some() => in_manifest(
            base.url.as_ref().map_or(base.distro.span, |u| u.span),
            "cannot download",
            "check the URL (a file:// URL names an absolute path)".to_string(),
        ),
        MakeError::Unsupported { .. } => in_manifest(
            base.distro.span,
            "not lockable yet",
            "use `distro: debian` or `distro: ubuntu`".to_string(),
        ),
        MakeError::NoMirror { .. } => in_manifest(
            base.distro.span,
            "from which mirror?",
            "add `mirror:` to `base`, such as the URL your host's apt sources use".to_string(),
        ),
        MakeError::NoRelease { .. } => match (repository, entry) {
            (Some(repository), _) => in_manifest(
                repository
                    .suites
                    .first()
                    .map_or(repository.url.span, |s| s.span),
                "not in this repository",
                "check the repository's `url` and `suites` (the directories below its `dists/`)"
                    .to_string(),
            ),
            (None, Some(make::Entry::Base(Some(kind)))) => in_manifest(
                suite_span
                    .or(base.release.as_ref().map(|r| r.span))
                    .unwrap_or(base.distro.span),
                "not on the mirror",
                if kind == crate::manifest::SuiteKind::Security {
                    "set `security_mirror:` in `base` to where the security suite is published, or leave `security` out of `suites`".to_string()
                } else {
                    format!(
                        "leave `{}` out of `suites`, or use a mirror that has it",
                        kind.as_str()
                    )
                },
            ),
            _ => in_manifest(
                base.release.as_ref().map_or(base.distro.span, |r| r.span),
                "not on the mirror",
                match inner {
                    MakeError::NoRelease {
                        suggestion: Some(name),
                        ..
                    } => format!("write `release: {name}`, which the mirror has"),
                    _ => "check the release's code name (such as `bookworm`) and the mirror URL"
                        .to_string(),
                },
            ),
        },
        MakeError::NotInRelease { wanted, .. } => {
            let component_span = match repository {
                Some(repository) => repository
                    .components
                    .iter()
                    .find(|c| c.as_str() == wanted)
                    .map(|c| c.span),
                None => base
                    .components
                    .iter()
                    .flatten()
                    .find(|c| c.as_str() == wanted)
                    .map(|c| c.span),
            };
            match component_span {
                Some(span) => in_manifest(
                    span,
                    "not in this archive",
                    "list only components the archive's InRelease names".to_string(),
                ),
                None => in_manifest(
                    repository.map_or(base.arch.span, |r| r.url.span),
                    "not in this archive",
                    "choose an architecture the archive carries, or another mirror".to_string(),
                ),
            }
        }
        MakeError::Release(release_error) => {
            use crate::apt::release::ReleaseError;
            let key_span = match repository {
                Some(repository) => Some(
                    repository
                        .key
                        .as_ref()
                        .map(|k| k.span)
                        .or(repository.fingerprint.as_ref().map(|f| f.span))
                        .unwrap_or(repository.name.span),
                ),
                None => base.keyring.as_ref().map(|k| k.span),
            };
            let (label, help) = match release_error {
                ReleaseError::MissingKeyring { .. } => (
                    "no such file",
                    if repository.is_some() {
                        "give the path of the repository's public key, relative to the imagefile"
                    } else {
                        "install the distribution's keyring package (debian-archive-keyring, ubuntu-keyring) or set `keyring:` in `base`"
                    },
                ),
                ReleaseError::NotAKey { .. } => (
                    "not a key",
                    "give the repository's public key: a binary `.gpg` keyring or an armored `.asc` file, as its vendor publishes it",
                ),
                ReleaseError::BadSignature { .. } => (
                    "does not verify",
                    "check that the key is the repository's signing key; a repository whose signature does not verify is never read",
                ),
                ReleaseError::WrongSigner { .. } => (
                    "signed by another key",
                    "check `fingerprint` against the key that signs the repository",
                ),
                _ => (
                    "cannot be checked",
                    "check that gpgv is installed (package gpgv)",
                ),
            };
            match key_span {
                Some(span) => in_manifest(span, label, help.to_string()),
                // The host's keyring is missing: the user's to install.
                None if matches!(release_error, ReleaseError::MissingKeyring { .. }) => {
                    Failure::user(miette::miette!(help = help, "{error}"))
                }
                // The distribution's own archive, checked with the host's
                // keyring, fails: the mirror's fault, not the imagefile's.
                None => Failure::Internal(miette::miette!(
                    help = "the mirror serves an archive its distribution's key did not sign: check the mirror (or proxy), then run `kiln lock` again",
                    "{error}"
                )),
            }
        }
        MakeError::SameVersionDiffers { first, second, .. } => {
            let named = |id: &str| {
                let name = id.split('/').next().unwrap_or_default();
                manifest
                    .repositories
                    .iter()
                    .find(|r| r.name.as_str() == name)
            };
            let span = named(second)
                .or_else(|| named(first))
                .map_or(base.distro.span, |r| r.name.span);
            in_manifest(
                span,
                "conflicting repository",
                "one of the two rebuilt the package without changing its version, so kiln cannot say which file the image gets: remove one of them, or ask its vendor for a distinct version".to_string(),
            )
        }
        MakeError::Resolve(resolve_error)
            if matches!(resolve_error.as_ref(), ResolveError::UnknownSeeds { .. }) =>
        {
            unknown_packages(resolve_error, checked).unwrap_or_else(|| {
                Failure::user(miette::miette!(
                    help = "check the package names: in `packages`, or in the package-installs of the elements that ask for them",
                    "{error}"
                ))
            })
        }
        MakeError::Resolve(resolve_error) => {
            let package = match resolve_error.as_ref() {
                ResolveError::Unsatisfiable {
                    chain, dependency, ..
                } => Some(chain.first().unwrap_or(dependency).clone()),
                _ => None,
            };
            let span = package.and_then(|name| {
                let name = name
                    .split([' ', '('])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                checked
                    .manifest
                    .packages
                    .iter()
                    .find(|p| p.value.name() == name)
                    .map(|p| p.span)
            });
            match span {
                Some(span) => in_manifest(
                    span,
                    "cannot be installed",
                    "check the package name, or remove it from `packages`".to_string(),
                ),
                None => Failure::user(miette::miette!(
                    help = "the archive's own packages cannot be resolved; try another mirror or release",
                    "{error}"
                )),
            }
        }
        MakeError::Http(
            HttpError::HashMismatch { .. } | HttpError::SizeMismatch { .. } | HttpError::TooLarge { .. },
        ) => Failure::Internal(miette::miette!(
            help = "the mirror (or a proxy or captive portal in between) sent another file than its signed InRelease lists; nothing was kept: run `kiln lock` again once the mirror has synced, or use another mirror",
            "{error}"
        )),
        MakeError::Http(HttpError::Redirect { .. }) => Failure::Internal(miette::miette!(
            help = "the mirror's redirects lead nowhere: check the mirror URL (and any proxy in between), or use another mirror",
            "{error}"
        )),
        _ => Failure::Internal(miette::miette!(
            help = "check the mirror and the network, then run `kiln lock` again",
            "{error}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::NotFound;

    fn checked(text: &str) -> Checked {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("imagefile.yaml");
        fs_err::write(&path, text).expect("write");
        manifest::read(&path).expect("valid")
    }

    fn missing(chain: &[&str], suggestion: Option<&str>) -> NotFound {
        let name = |n: &str| n.parse().expect("element name");
        NotFound {
            name: name(chain[chain.len() - 1]),
            chain: chain.iter().map(|n| name(n)).collect(),
            suggestion: suggestion.map(name),
            searched: vec![PathBuf::from("/elements")],
        }
    }

    /// The underlined text of a problem.
    fn underlined<'a>(text: &'a str, problem: &Problem) -> &'a str {
        let (span, _) = problem.span.as_ref().expect("a span");
        &text[span.offset()..span.offset() + span.len()]
    }

    #[test]
    fn a_missing_element_points_at_its_entry_in_either_form() {
        let text = "name: t\nbase: {distro: debian, release: bookworm}\nelements:\n  - vm\n  - name: devusr\n    with: {A: b}\n  - growrot\n";
        let checked = checked(text);
        let problem = element_not_found(&missing(&["growrot"], Some("growroot")), &checked)
            .expect("in elements:");
        assert_eq!(underlined(text, &problem), "growrot");
        assert_eq!(
            problem.message,
            "element `growrot` not found; searched /elements"
        );
        assert!(
            problem
                .help
                .starts_with("did you mean `growroot`? Otherwise check the element names"),
            "{}",
            problem.help
        );
        let problem =
            element_not_found(&missing(&["devusr"], None), &checked).expect("in elements:");
        assert_eq!(underlined(text, &problem), "devusr");
        assert!(problem.help.starts_with("check the element names"));
    }

    #[test]
    fn a_missing_dependency_names_who_depends_on_it_and_points_at_the_entry_that_led_there() {
        let text = "name: t\nbase: {distro: debian, release: bookworm}\nelements: [app]\n";
        let checked = checked(text);
        let problem = element_not_found(&missing(&["app", "lib", "gone"], None), &checked)
            .expect("in elements:");
        assert_eq!(underlined(text, &problem), "app");
        assert_eq!(
            problem.message,
            "element `gone` not found: `lib` depends on it in its element-deps (the imagefile's `app` brings it in: app -> lib -> gone); searched /elements"
        );
        assert_eq!(
            problem.span.as_ref().map(|(_, label)| label.as_str()),
            Some("needs `gone` through element-deps")
        );
        assert!(problem.help.starts_with("fix the element-deps of `lib`"));
        // A chain that starts at no entry of `elements:` has no place.
        assert_eq!(
            element_not_found(&missing(&["other", "gone"], None), &checked),
            None
        );
    }
}
