//! The rules of an imagefile that a JSON schema cannot express.
//!
//! Parsing guarantees each value is well formed on its own; these checks
//! look at values together: exactly one root mountpoint, unique names,
//! labels and mountpoints, `rest` at most once, an ESP that is vfat, sizes
//! that fit the disk, a base that names what it needs. Every rule runs, so
//! the user sees all problems of the file at once.

use std::collections::HashMap;
use std::hash::Hash;

use miette::SourceSpan;

use super::diagnostic::Problem;
use super::layout_fit::Fit;
use super::values::Size;
use super::{
    BaseFrom, Disk, DiskSize, Distro, Filesystem, ImageTest, Manifest, OutputFormat, Partition,
    PartitionSize, PartitionTable, PartitionType, Spanned, SuiteKind,
};

/// ext4 stores timestamps up to 2446-05-10 (with 256-byte inodes).
const MAX_EPOCH_SECONDS: u64 = (1 << 34) - 1;

/// Checks the rules that tie a manifest's values together. Returns every
/// problem found, errors and warnings, in no particular order.
pub fn check(manifest: &Manifest) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_base(manifest, &mut problems);
    check_repositories(manifest, &mut problems);
    check_lists(manifest, &mut problems);
    check_disk(&manifest.disk, &mut problems);
    check_tests(manifest, &mut problems);
    check_ramdisk(manifest, &mut problems);
    if let Some(epoch) = &manifest.source_date_epoch
        && epoch.value > MAX_EPOCH_SECONDS
    {
        problems.push(Problem::error(
            format!(
                "`source_date_epoch` {} lies beyond the year 2446",
                epoch.value
            ),
            epoch.span,
            "too far in the future",
            "give seconds since 1970-01-01 UTC, such as the output of `date +%s`",
        ));
    }
    problems
}

fn check_base(manifest: &Manifest, problems: &mut Vec<Problem>) {
    let base = &manifest.base;
    let distro = base.distro.value;
    if distro != Distro::Image && base.release.is_none() {
        problems.push(Problem::error(
            format!("`distro: {}` needs a `release`", distro.as_str()),
            base.distro.span,
            "which release?",
            match distro {
                Distro::Debian => "add `release: bookworm` (or another Debian code name) to `base`",
                Distro::Ubuntu => "add `release: noble` (or another Ubuntu code name) to `base`",
                _ => "add the release to `base`, such as `release: \"9\"`",
            },
        ));
    }
    let from_image = base.from_image();
    if let Some(from) = &base.from {
        match from.value {
            BaseFrom::Archive if !distro.is_debian_family() => problems.push(Problem::error(
                format!("`distro: {}` has no archive kiln installs from", distro.as_str()),
                from.span,
                "not for this distro",
                "remove `from`: this distro's base is taken out of its cloud image",
            )),
            BaseFrom::Archive if base.url.is_some() => problems.push(Problem::error(
                "`from: archive` takes no `url`",
                from.span,
                "archive, or the image at `url`?",
                "remove `url` to install from the archive, or `from` to start from the image",
            )),
            BaseFrom::CloudImage if distro == Distro::Debian && base.url.is_none() => {
                problems.push(Problem::error(
                    "kiln does not look up Debian's cloud images by release",
                    from.span,
                    "which image?",
                    "add `url:` with the image to start from, or remove `from` to install from the archive",
                ))
            }
            _ => {}
        }
    }
    if matches!(distro, Distro::Image | Distro::Rhel) && base.url.is_none() {
        problems.push(Problem::error(
            format!("`distro: {}` needs a `url`", distro.as_str()),
            base.distro.span,
            "from which image?",
            if distro == Distro::Rhel {
                "add `url:` with the RHEL KVM guest image you downloaded with your subscription (a `file://` URL)"
            } else {
                "add `url:` with the cloud image or root filesystem tarball to start from"
            },
        ));
    }
    if !from_image && let Some(sha256) = &base.sha256 {
        problems.push(Problem::error(
            format!(
                "`distro: {}` is installed from its archive and takes no `sha256`",
                distro.as_str()
            ),
            sha256.span,
            "not used",
            "remove it to build from packages, or add `url:` to start from that image",
        ));
    }
    if from_image
        && base.url.is_none()
        && let Some(sha256) = &base.sha256
    {
        problems.push(Problem::error(
            "`sha256` pins the file at `url`, and there is none",
            sha256.span,
            "of which file?",
            "add `url:`, or remove `sha256`: the signed checksum file pins the image kiln finds",
        ));
    }
    if from_image
        && (distro == Distro::Image || base.url.is_some())
        && let Some(mirror) = &base.mirror
    {
        problems.push(
            Problem::error(
                "`mirror` is not used with an image given by `url`",
                mirror.span,
                "ignored",
                "remove `mirror`; the image is downloaded from `url`",
            )
            .warning(),
        );
    }
}

/// A warning for each entry listed again (`what`: "this X is listed
/// twice"), pointing at both.
fn warn_listed_twice(
    what: &str,
    repeated: Vec<(SourceSpan, SourceSpan)>,
    problems: &mut Vec<Problem>,
) {
    for (first, again) in repeated {
        problems.push(
            Problem::error(
                format!("this {what} is listed twice"),
                again,
                "listed again",
                "remove the second entry",
            )
            .with_related(first, "first listed here")
            .warning(),
        );
    }
}

/// Suites that only some releases have: a development release has no
/// updates, security or backports suite.
const RELEASES_WITHOUT_SUITES: [&str; 4] = ["sid", "unstable", "experimental", "rc-buggy"];

fn check_repositories(manifest: &Manifest, problems: &mut Vec<Problem>) {
    let base = &manifest.base;
    let distro = base.distro.value;
    let release = base.release.as_ref().map(|r| r.as_str().to_string());
    if !distro.is_debian_family() || base.from_image() {
        let help = if distro.is_debian_family() {
            "remove it: a base taken out of an image installs from the image's own package sources"
        } else {
            "remove it, or use `distro: debian` or `distro: ubuntu`"
        };
        let apt_keys = [
            (
                "suites",
                base.suites
                    .as_ref()
                    .map(|s| s.first().map_or(base.distro.span, |s| s.span)),
            ),
            (
                "components",
                base.components
                    .as_ref()
                    .map(|c| c.first().map_or(base.distro.span, |c| c.span)),
            ),
            (
                "security_mirror",
                base.security_mirror.as_ref().map(|m| m.span),
            ),
        ];
        for (key, span) in apt_keys {
            if let Some(span) = span {
                problems.push(Problem::error(
                    format!(
                        "`{key}` is for apt archives; `distro: {}` does not use it",
                        distro.as_str()
                    ),
                    span,
                    "not used",
                    help,
                ));
            }
        }
        if let Some(repository) = manifest.repositories.first() {
            problems.push(Problem::error(
                format!(
                    "`repositories` are apt archives; `distro: {}` does not use them",
                    distro.as_str()
                ),
                repository.span,
                "not used",
                help,
            ));
        }
    }
    if let (Some(release), Some(suites)) = (&release, &base.suites)
        && RELEASES_WITHOUT_SUITES.contains(&release.as_str())
        && let Some(first) = suites.first()
    {
        problems.push(Problem::error(
            format!("`{release}` has no `{}` suite", first.value.as_str()),
            first.span,
            "no such suite",
            "a development release has only itself: write `suites: []` or remove `suites`",
        ));
    }
    if let Some(suites) = &base.suites {
        warn_listed_twice(
            "suite",
            duplicates(suites.iter().map(|s| (s.value, s.span))),
            problems,
        );
    }
    for (first, again) in duplicates(
        manifest
            .repositories
            .iter()
            .map(|r| (r.name.value.clone(), r.name.span)),
    ) {
        problems.push(
            Problem::error(
                "two repositories have this name",
                again,
                "used again",
                "give each repository its own name: the lock and the image's apt sources name it by it",
            )
            .with_related(first, "first used here"),
        );
    }
    for repository in &manifest.repositories {
        if repository.name.as_str() == distro.as_str() {
            problems.push(Problem::error(
                format!(
                    "`{}` is the name of the base distribution's archive",
                    distro.as_str()
                ),
                repository.name.span,
                "taken",
                "give the repository another name, such as its vendor's",
            ));
        }
        if repository.key.is_none() && repository.fingerprint.is_none() {
            problems.push(Problem::error(
                "this repository names no key to check it with",
                repository.name.span,
                "signed by whom?",
                "add `key: <file>` with the repository's public key (armored or binary), or `fingerprint:` of a key in the host's apt keyrings",
            ));
        }
        if let Some(key) = &repository.key
            && key.value.trim().is_empty()
        {
            problems.push(Problem::error(
                "`key` is empty",
                key.span,
                "no path",
                "give the path of the repository's public key file, relative to the imagefile",
            ));
        }
    }
    // `name/suite` must name a suite the lock reads.
    let mut known: Vec<String> = Vec::new();
    if let Some(release) = &release {
        known.push(release.clone());
        if !RELEASES_WITHOUT_SUITES.contains(&release.as_str()) {
            let kinds = base.suites.as_ref().map_or_else(
                || SuiteKind::DEFAULT.to_vec(),
                |suites| suites.iter().map(|s| s.value).collect(),
            );
            known.extend(kinds.iter().map(|kind| kind.suite(release)));
        }
    }
    for repository in &manifest.repositories {
        if repository.suites.is_empty() {
            known.extend(release.clone());
        }
        known.extend(repository.suites.iter().map(|s| s.as_str().to_string()));
    }
    for package in &manifest.packages {
        let Some(suite) = package.value.suite() else {
            continue;
        };
        if known.iter().any(|k| k == suite) {
            continue;
        }
        let backports = release
            .as_ref()
            .is_some_and(|r| suite == SuiteKind::Backports.suite(r));
        problems.push(Problem::error(
            format!("`{suite}` is not a suite this image reads"),
            package.span,
            "unknown suite",
            if backports {
                "add `backports` to `base.suites` to read it".to_string()
            } else {
                format!("the suites read are: {}", known.join(", "))
            },
        ));
    }
}

fn check_lists(manifest: &Manifest, problems: &mut Vec<Problem>) {
    warn_listed_twice(
        "element",
        duplicates(
            manifest
                .elements
                .iter()
                .map(|e| (e.value.name().clone(), e.span)),
        ),
        problems,
    );
    warn_listed_twice(
        "package",
        duplicates(
            manifest
                .packages
                .iter()
                .map(|p| (p.value.name().to_string(), p.span)),
        ),
        problems,
    );
    warn_listed_twice(
        "output format",
        duplicates(manifest.outputs.iter().map(|o| (o.value, o.span))),
        problems,
    );
    warn_listed_twice(
        "SBOM format",
        duplicates(manifest.sbom.iter().map(|o| (o.value, o.span))),
        problems,
    );
}

fn check_tests(manifest: &Manifest, problems: &mut Vec<Problem>) {
    for test in &manifest.tests {
        check_test(test, problems);
    }
    for (first, again) in duplicates(
        manifest
            .tests
            .iter()
            .filter_map(|t| t.name.as_ref())
            .map(|n| (n.value.clone(), n.span)),
    ) {
        problems.push(
            Problem::error(
                "two tests have this name",
                again,
                "used again",
                "give each test its own name, so a failure says which one failed",
            )
            .with_related(first, "first used here"),
        );
    }
}

fn check_test(test: &Spanned<ImageTest>, problems: &mut Vec<Problem>) {
    let kinds: Vec<(&str, miette::SourceSpan)> = [
        ("run", test.run.as_ref().map(|r| r.span)),
        ("file", test.file.as_ref().map(|f| f.span)),
        ("unit", test.unit.as_ref().map(|u| u.span)),
    ]
    .into_iter()
    .filter_map(|(key, span)| span.map(|span| (key, span)))
    .collect();
    match kinds.as_slice() {
        [] => problems.push(Problem::error(
            "this test checks nothing",
            test.span,
            "no `run`, `file` or `unit`",
            "add `run: <command>`, `file: /path` or `unit: <name>.service`",
        )),
        [_] => {}
        [(first, first_span), (second, second_span), ..] => problems.push(
            Problem::error(
                format!("a test is one check; this one has both `{first}` and `{second}`"),
                *second_span,
                "second check",
                "split it into two list entries, one per check",
            )
            .with_related(*first_span, "first check"),
        ),
    }
    if test.run.is_none() {
        for (key, span) in [
            ("exit", test.exit.as_ref().map(|e| e.span)),
            ("output", test.output.as_ref().map(|o| o.span)),
            ("sudo", test.sudo.as_ref().map(|s| s.span)),
        ] {
            if let Some(span) = span {
                problems.push(Problem::error(
                    format!("`{key}` applies only to a `run` test"),
                    span,
                    "no command to apply it to",
                    format!("remove `{key}`, or make this a `run` test"),
                ));
            }
        }
    }
    if let Some(run) = &test.run
        && run.value.trim().is_empty()
    {
        problems.push(Problem::error(
            "the command of this test is empty",
            run.span,
            "nothing to run",
            "write a shell command, such as `systemctl is-active nginx`",
        ));
    }
    if let Some(file) = &test.file
        && !file.value.starts_with('/')
    {
        problems.push(Problem::error(
            format!("`{}` is not an absolute path", file.value),
            file.span,
            "relative to what?",
            format!("write the path from the image's root: `/{}`", file.value),
        ));
    }
    if let Some(unit) = &test.unit
        && (unit.value.is_empty() || unit.value.contains(|c: char| c.is_whitespace() || c == '/'))
    {
        problems.push(Problem::error(
            format!("`{}` is not a systemd unit name", unit.value),
            unit.span,
            "not a unit",
            "write one unit's name, such as `nginx.service`",
        ));
    }
}

/// Pairs of (first span, repeated span) for every value seen more than once.
fn duplicates<K: Eq + Hash>(
    items: impl Iterator<Item = (K, SourceSpan)>,
) -> Vec<(SourceSpan, SourceSpan)> {
    let mut seen = HashMap::new();
    let mut repeated = Vec::new();
    for (key, span) in items {
        match seen.get(&key) {
            Some(first) => repeated.push((*first, span)),
            None => {
                seen.insert(key, span);
            }
        }
    }
    repeated
}

fn check_ramdisk(manifest: &Manifest, problems: &mut Vec<Problem>) {
    let Some(ramdisk) = &manifest.ramdisk else {
        return;
    };
    if !manifest
        .outputs
        .iter()
        .any(|o| o.value == OutputFormat::Ramdisk)
    {
        problems.push(
            Problem::error(
                "`ramdisk` settings, but no `ramdisk` output",
                ramdisk.span,
                "not used",
                "add `ramdisk` to `outputs`, or remove this section",
            )
            .warning(),
        );
    }
    for pattern in &ramdisk.value.exclude {
        let text = pattern.value.as_str();
        let why = if !text.starts_with('/') {
            Some("an absolute path, starting with `/`")
        } else if text.trim_end_matches('/').is_empty() {
            Some("a path below `/`: leaving out everything leaves no system")
        } else if text.split('/').any(|c| c == "." || c == "..") {
            Some("a path without `.` or `..` components")
        } else {
            None
        };
        if let Some(want) = why {
            problems.push(Problem::error(
                format!("`{text}` cannot be left out of the ramdisk"),
                pattern.span,
                "not a path in the image",
                format!("write {want}, such as `/usr/share/doc`"),
            ));
        }
    }
    if let Some(cmdline) = &ramdisk.value.cmdline
        && cmdline.value.contains(['\n', '\r'])
    {
        problems.push(Problem::error(
            "the kernel command line is one line",
            cmdline.span,
            "has a line break",
            "separate the parameters with spaces",
        ));
    }
}

fn check_disk(disk: &Spanned<Disk>, problems: &mut Vec<Problem>) {
    match &disk.table {
        None => check_filesystem_image(disk, problems),
        Some(table) => check_partitioned(disk, table, problems),
    }
}

fn check_filesystem_image(disk: &Spanned<Disk>, problems: &mut Vec<Problem>) {
    if let Some(first) = disk.partitions.first() {
        problems.push(Problem::error(
            "partitions need a partition table",
            first.span,
            "no `table` for these",
            "add `table: gpt` (or `mbr`) to `disk`, or remove `partitions` for an image of one filesystem",
        ));
    }
    let filesystem = disk
        .filesystem
        .as_ref()
        .map_or(Filesystem::Ext4, |f| f.value);
    if let Some(fs) = &disk.filesystem
        && !matches!(fs.value, Filesystem::Ext4 | Filesystem::Xfs)
    {
        problems.push(Problem::error(
            format!("the root filesystem cannot be `{}`", fs.value.as_str()),
            fs.span,
            "not a root filesystem",
            "use `ext4` (the default) or `xfs`",
        ));
    }
    if let Some(label) = &disk.label {
        check_label_length(label, filesystem, problems);
    }
}

fn check_partitioned(
    disk: &Spanned<Disk>,
    table: &Spanned<PartitionTable>,
    problems: &mut Vec<Problem>,
) {
    for (key, span) in [
        ("filesystem", disk.filesystem.as_ref().map(|f| f.span)),
        ("label", disk.label.as_ref().map(|l| l.span)),
    ] {
        if let Some(span) = span {
            problems.push(Problem::error(
                format!("`disk.{key}` applies only to an image of one filesystem"),
                span,
                "not used with a partition table",
                format!("set `{key}` on the partition it belongs to"),
            ));
        }
    }
    let partitions = &disk.partitions;
    if partitions.is_empty() {
        problems.push(Problem::error(
            "a partition table needs partitions",
            table.span,
            "no partitions",
            "add `partitions:` with at least a root partition (`mountpoint: /`)",
        ));
        return;
    }

    let roots: Vec<&Spanned<Partition>> = partitions
        .iter()
        .filter(|p| p.mountpoint.as_ref().is_some_and(|m| m.is_root()))
        .collect();
    if roots.is_empty() {
        problems.push(Problem::error(
            "no partition is mounted at `/`",
            table.span,
            "this disk has no root",
            "add `mountpoint: /` to the partition that holds the root filesystem",
        ));
    }

    for (first, again) in duplicates(
        partitions
            .iter()
            .map(|p| (p.name.value.clone(), p.name.span)),
    ) {
        problems.push(
            Problem::error(
                "two partitions have this name",
                again,
                "used again",
                "give each partition its own name",
            )
            .with_related(first, "first used here"),
        );
    }
    for (first, again) in duplicates(
        partitions
            .iter()
            .filter_map(|p| p.label.as_ref())
            .map(|l| (l.value.clone(), l.span)),
    ) {
        problems.push(
            Problem::error(
                "two partitions have this label",
                again,
                "used again",
                "give each filesystem its own label; fstab and the bootloader find filesystems by label",
            )
            .with_related(first, "first used here"),
        );
    }
    for (first, again) in duplicates(
        partitions
            .iter()
            .filter_map(|p| p.mountpoint.as_ref())
            .map(|m| (m.value.clone(), m.span)),
    ) {
        problems.push(
            Problem::error(
                "two partitions are mounted here",
                again,
                "mounted again",
                "give each partition its own mountpoint, or remove one",
            )
            .with_related(first, "first mounted here"),
        );
    }
    let rests: Vec<SourceSpan> = partitions
        .iter()
        .filter(|p| p.size.value == PartitionSize::Rest)
        .map(|p| p.size.span)
        .collect();
    for again in rests.iter().skip(1) {
        problems.push(
            Problem::error(
                "only one partition can take the `rest` of the disk",
                *again,
                "second `rest`",
                "give this partition a fixed size, such as `2GiB`",
            )
            .with_related(rests[0], "first `rest` here"),
        );
    }

    for partition in partitions {
        check_partition(partition, table.value, problems);
    }

    if table.value == PartitionTable::Mbr && partitions.len() > 4 {
        problems.push(Problem::error(
            format!(
                "an MBR disk holds at most 4 partitions; this one has {}",
                partitions.len()
            ),
            partitions[4].span,
            "fifth partition",
            "use `table: gpt`, or merge partitions",
        ));
    }

    if let DiskSize::Fixed(disk_size) = disk.size.value {
        check_fit(disk_size, disk.size.span, table.value, partitions, problems);
    }
}

fn check_partition(
    partition: &Spanned<Partition>,
    table: PartitionTable,
    problems: &mut Vec<Problem>,
) {
    let kind = partition.kind.value;
    let filesystem = partition.effective_filesystem();
    let fs_span = partition
        .filesystem
        .as_ref()
        .map_or(partition.kind.span, |f| f.span);

    if kind == PartitionType::Esp && filesystem != Filesystem::Vfat {
        problems.push(Problem::error(
            format!(
                "the EFI system partition must be vfat, not `{}`",
                filesystem.as_str()
            ),
            fs_span,
            "UEFI firmware reads only FAT",
            "set `filesystem: vfat` (or leave `filesystem` out) on the ESP",
        ));
    }
    if kind == PartitionType::BiosBoot {
        if table == PartitionTable::Mbr {
            problems.push(Problem::error(
                "a `bios-boot` partition is for GPT disks",
                partition.kind.span,
                "not needed on MBR",
                "remove this partition; on an MBR disk GRUB lives in the gap after the partition table",
            ));
        }
        if filesystem != Filesystem::None {
            problems.push(Problem::error(
                "the BIOS boot partition holds GRUB's core image, not a filesystem",
                fs_span,
                "no filesystem here",
                "remove `filesystem` (or write `filesystem: none`)",
            ));
        }
    }
    if let Some(mountpoint) = &partition.mountpoint {
        if !filesystem.is_mountable() {
            problems.push(Problem::error(
                format!(
                    "a partition with filesystem `{}` cannot be mounted",
                    filesystem.as_str()
                ),
                mountpoint.span,
                "nothing to mount",
                "remove `mountpoint`, or give the partition a filesystem such as `ext4`",
            ));
        } else if mountpoint.is_root() && !matches!(filesystem, Filesystem::Ext4 | Filesystem::Xfs)
        {
            problems.push(Problem::error(
                format!("the root filesystem cannot be `{}`", filesystem.as_str()),
                fs_span,
                "not a root filesystem",
                "use `ext4` (the default) or `xfs` for the partition mounted at `/`",
            ));
        }
    }
    if let Some(label) = &partition.label {
        if filesystem == Filesystem::None {
            problems.push(Problem::error(
                "a partition without a filesystem has no label",
                label.span,
                "nothing to label",
                "remove `label`, or give the partition a filesystem",
            ));
        } else {
            check_label_length(label, filesystem, problems);
        }
    }
}

fn check_label_length(
    label: &Spanned<super::Label>,
    filesystem: Filesystem,
    problems: &mut Vec<Problem>,
) {
    if let Some(max) = filesystem.max_label_bytes() {
        let len = label.as_str().len();
        if len > max {
            problems.push(Problem::error(
                format!(
                    "a {} label holds at most {max} bytes; `{}` has {len}",
                    filesystem.as_str(),
                    label.as_str()
                ),
                label.span,
                "too long",
                format!("shorten the label to {max} characters"),
            ));
        }
    }
}

fn check_fit(
    disk_size: Size,
    span: SourceSpan,
    table: PartitionTable,
    partitions: &[Spanned<Partition>],
    problems: &mut Vec<Problem>,
) {
    let fit = Fit::new(table, partitions.iter().map(|p| p.size.value));
    let has_rest = partitions
        .iter()
        .any(|p| p.size.value == PartitionSize::Rest);
    // Sizes past 64 bits need more than any disk.
    let needed_with_rest = fit.and_then(|fit| fit.needed_bytes()).unwrap_or(u64::MAX);
    if needed_with_rest > disk_size.bytes() {
        let shown = Size::from_bytes(needed_with_rest);
        problems.push(Problem::error(
            format!("the partitions need {shown} but the disk is {disk_size}"),
            span,
            "too small",
            format!(
                "make the disk at least {shown}{}, shrink the partitions, or use `size: auto`",
                if has_rest {
                    " (1 MiB of it for the `rest` partition)"
                } else {
                    ""
                }
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Source, parse};

    fn problems_of(yaml: &str) -> Vec<String> {
        let manifest = parse(&Source::new("test.yaml", yaml)).expect("parses");
        let mut messages: Vec<String> = check(&manifest).into_iter().map(|p| p.message).collect();
        messages.sort();
        messages
    }

    const HEAD: &str = "name: t\nbase: {distro: debian, release: bookworm}\n";

    #[test]
    fn a_plain_manifest_has_no_problems() {
        assert!(problems_of(HEAD).is_empty());
    }

    #[test]
    fn partition_rules_all_report_together() {
        let yaml = format!(
            "{HEAD}disk:\n  table: gpt\n  size: 1GiB\n  partitions:\n\
             \x20   - {{name: esp, type: esp, size: 512MiB, filesystem: ext4, mountpoint: /boot/efi}}\n\
             \x20   - {{name: root, size: rest, mountpoint: /, label: a}}\n\
             \x20   - {{name: root, size: rest, mountpoint: /, label: a}}\n\
             \x20   - {{name: data, size: 1GiB, label: abcdefghijkl, filesystem: vfat}}\n"
        );
        let messages = problems_of(&yaml);
        assert_eq!(
            messages,
            vec![
                "a vfat label holds at most 11 bytes; `abcdefghijkl` has 12",
                "only one partition can take the `rest` of the disk",
                "the EFI system partition must be vfat, not `ext4`",
                "the partitions need 1539MiB but the disk is 1GiB",
                "two partitions are mounted here",
                "two partitions have this label",
                "two partitions have this name",
            ]
        );
    }

    #[test]
    fn ramdisk_settings_are_checked() {
        let good = format!(
            "{HEAD}outputs: [ramdisk]\nramdisk:\n  compression: gzip\n  max_size: 300MiB\n  \
             exclude: [/usr/share/doc, '/usr/lib/modules/*/kernel/sound']\n  cmdline: ipa-debug=1\n"
        );
        assert!(problems_of(&good).is_empty(), "{:?}", problems_of(&good));
        let bad = format!(
            "{HEAD}outputs: [qcow2]\nramdisk:\n  exclude: [usr/share/doc, /, /usr/../etc]\n  \
             cmdline: \"a\\nb\"\n"
        );
        assert_eq!(
            problems_of(&bad),
            vec![
                "`/` cannot be left out of the ramdisk",
                "`/usr/../etc` cannot be left out of the ramdisk",
                "`ramdisk` settings, but no `ramdisk` output",
                "`usr/share/doc` cannot be left out of the ramdisk",
                "the kernel command line is one line",
            ]
        );
    }

    #[test]
    fn a_table_without_root_is_refused() {
        let yaml =
            format!("{HEAD}disk:\n  table: mbr\n  partitions:\n    - {{name: a, size: 1GiB}}\n");
        assert_eq!(problems_of(&yaml), vec!["no partition is mounted at `/`"]);
    }

    #[test]
    fn fixed_sizes_count_alignment_and_gpt_backup() {
        let yaml = format!(
            "{HEAD}disk:\n  table: gpt\n  size: 1026MiB\n  partitions:\n    - {{name: r, size: 1GiB, mountpoint: /}}\n"
        );
        assert!(problems_of(&yaml).is_empty());
        let yaml = yaml.replace("1026MiB", "1025MiB");
        assert_eq!(
            problems_of(&yaml),
            vec!["the partitions need 1026MiB but the disk is 1025MiB"]
        );
    }

    #[test]
    fn partitions_past_64_bits_are_too_large_for_any_disk() {
        let yaml = format!(
            "{HEAD}disk:\n  table: mbr\n  size: 1GiB\n  partitions:\n\
             \x20   - {{name: r, size: 9000000TiB, mountpoint: /}}\n\
             \x20   - {{name: s, size: 9000000TiB}}\n"
        );
        assert_eq!(
            problems_of(&yaml),
            vec!["the partitions need 18446744073709551615B but the disk is 1GiB"]
        );
    }

    #[test]
    fn tests_check_one_thing_each() {
        let yaml = format!(
            "{HEAD}tests:\n\
             \x20 - {{run: 'true', exit: 0, output: x, sudo: true}}\n\
             \x20 - {{file: /etc/hostname, name: host}}\n\
             \x20 - {{unit: ssh.service}}\n"
        );
        assert!(problems_of(&yaml).is_empty());
        let yaml = format!(
            "{HEAD}tests:\n\
             \x20 - {{name: a}}\n\
             \x20 - {{run: 'true', file: /x, name: a}}\n\
             \x20 - {{file: etc/hostname, exit: 1}}\n\
             \x20 - {{unit: 'a b'}}\n\
             \x20 - {{run: ' '}}\n"
        );
        assert_eq!(
            problems_of(&yaml),
            vec![
                "`a b` is not a systemd unit name",
                "`etc/hostname` is not an absolute path",
                "`exit` applies only to a `run` test",
                "a test is one check; this one has both `run` and `file`",
                "the command of this test is empty",
                "this test checks nothing",
                "two tests have this name",
            ]
        );
    }

    #[test]
    fn bases_need_what_their_distro_needs() {
        let yaml = "name: t\nbase: {distro: debian, url: 'https://example.invalid/x.img'}\n";
        assert_eq!(
            problems_of(yaml),
            vec!["`distro: debian` needs a `release`"]
        );
        assert_eq!(
            problems_of("name: t\nbase: {distro: rhel, release: '9'}\n"),
            vec!["`distro: rhel` needs a `url`"]
        );
        assert!(problems_of("name: t\nbase: {distro: fedora, release: '41'}\n").is_empty());
        assert_eq!(
            problems_of("name: t\nbase: {distro: fedora, release: '41', from: archive}\n"),
            vec!["`distro: fedora` has no archive kiln installs from"]
        );
        assert_eq!(
            problems_of("name: t\nbase: {distro: debian, release: bookworm, from: cloud-image}\n"),
            vec!["kiln does not look up Debian's cloud images by release"]
        );
        assert_eq!(
            problems_of(&format!(
                "name: t\nbase: {{distro: debian, release: bookworm, sha256: {}}}\n",
                "a".repeat(64)
            )),
            vec!["`distro: debian` is installed from its archive and takes no `sha256`"]
        );
        assert_eq!(
            problems_of("name: t\nbase: {distro: image}\n"),
            vec!["`distro: image` needs a `url`"]
        );
    }
}
