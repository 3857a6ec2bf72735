//! `kiln::distro::image::discover` against download sites laid out as
//! Fedora's, CentOS's, openSUSE's and Ubuntu's are: the same directories
//! and file names, checksum files in each one's format, autoindex HTML
//! listings in the style each site's server writes, several builds so the
//! newest must be picked, and checksum files signed with a throwaway key
//! (`apt_repo::TestKey`). Served from 127.0.0.1 by `apt_repo::serve`;
//! no root needed. Never run against the real sites.

use std::path::{Path, PathBuf};

use kiln::distro::image::discover::{self, DiscoverError, Found, Request, Trust};
use kiln::host::http::{Http, HttpOptions};
use kiln::manifest::{Arch, Distro};

use crate::apt_repo::{Server, TestKey, serve, sha256_hex};

/// How a site's web server writes its directory listings.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// Apache `IndexOptions HTMLTable` (dl.fedoraproject.org,
    /// cloud.centos.org).
    ApacheTable,
    /// Apache `<pre>` FancyIndexing (cloud-images.ubuntu.com).
    ApachePre,
    /// MirrorCache (download.opensuse.org): a table with absolute links and
    /// a `.mirrorlist` details link per file.
    MirrorCache,
}

/// A fixture site under a tempdir, with the keys that sign it.
struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
    key: TestKey,
    other: TestKey,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).expect("keys dir");
        let root = dir.path().join("site");
        std::fs::create_dir_all(&root).expect("site dir");
        Site {
            key: TestKey::new(&keys, "distro"),
            other: TestKey::new(&keys, "stranger"),
            root,
            _dir: dir,
        }
    }

    /// Writes `bytes` at `path` below the root and returns its SHA-256.
    fn file(&self, path: &str, bytes: &[u8]) -> String {
        let file = self.root.join(path);
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("create dirs");
        std::fs::write(&file, bytes).expect("write fixture file");
        sha256_hex(bytes)
    }

    fn dir(&self, path: &str) {
        std::fs::create_dir_all(self.root.join(path)).expect("create dir");
    }

    /// Clear-signs the text at `path` in place.
    fn clearsign(&self, path: &str) {
        let file = self.root.join(path);
        let plain = file.with_extension("unsigned");
        std::fs::rename(&file, &plain).expect("move aside");
        self.key.sign_file("--clearsign", &plain, &file);
        std::fs::remove_file(&plain).expect("remove unsigned");
    }

    /// Writes the detached signature of `path` to `signature`.
    fn detach_sign(&self, path: &str, signature: &str) {
        self.key.sign_file(
            "--detach-sign",
            &self.root.join(path),
            &self.root.join(signature),
        );
    }

    /// Replaces `from` with `to` in the file at `path` (after signing).
    fn tamper(&self, path: &str, from: &str, to: &str) {
        let file = self.root.join(path);
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(text.contains(from), "{path} has {from}");
        std::fs::write(&file, text.replacen(from, to, 1)).expect("write");
    }

    /// Writes every directory's `index.html` as `style` would list it.
    fn write_listings(&self, style: Style) {
        write_listings(&self.root, &self.root, style);
    }
}

fn write_listings(root: &Path, dir: &Path, style: Style) {
    let mut entries: Vec<(String, bool)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("dir entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.path().is_dir())
        })
        .filter(|(name, _)| name != "index.html")
        .collect();
    entries.sort();
    for (name, is_dir) in &entries {
        if *is_dir {
            write_listings(root, &dir.join(name), style);
        }
    }
    let relative = dir.strip_prefix(root).expect("below root");
    let path = if relative.as_os_str().is_empty() {
        "/".to_string()
    } else {
        format!("/{}/", relative.display())
    };
    std::fs::write(dir.join("index.html"), listing(&path, &entries, style)).expect("listing");
}

fn listing(path: &str, entries: &[(String, bool)], style: Style) -> String {
    let parent = Path::new(path.trim_end_matches('/'))
        .parent()
        .map_or("/".to_string(), |p| {
            format!("{}/", p.display()).replace("//", "/")
        });
    let mut html = String::new();
    match style {
        Style::ApacheTable => {
            html.push_str(&format!(
                "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<html>\n <head>\n  \
                 <title>Index of {path}</title>\n </head>\n <body>\n<h1>Index of {path}</h1>\n  <table>\n   \
                 <tr><th valign=\"top\"><img src=\"/icons/blank.gif\" alt=\"[ICO]\"></th>\
                 <th><a href=\"?C=N;O=D\">Name</a></th><th><a href=\"?C=M;O=A\">Last modified</a></th>\
                 <th><a href=\"?C=S;O=A\">Size</a></th><th><a href=\"?C=D;O=A\">Description</a></th></tr>\n   \
                 <tr><th colspan=\"5\"><hr></th></tr>\n\
                 <tr><td valign=\"top\"><img src=\"/icons/back.gif\" alt=\"[PARENTDIR]\"></td>\
                 <td><a href=\"{parent}\">Parent Directory</a></td><td>&nbsp;</td><td align=\"right\">  - </td><td>&nbsp;</td></tr>\n"
            ));
            for (name, dir) in entries {
                let (icon, alt, shown, size) = if *dir {
                    ("folder.gif", "[DIR]", format!("{name}/"), "  - ")
                } else {
                    ("unknown.gif", "[   ]", name.clone(), "1.2K")
                };
                html.push_str(&format!(
                    "<tr><td valign=\"top\"><img src=\"/icons/{icon}\" alt=\"{alt}\"></td>\
                     <td><a href=\"{shown}\">{shown}</a></td><td align=\"right\">2024-10-23 14:21  </td>\
                     <td align=\"right\">{size}</td><td>&nbsp;</td></tr>\n"
                ));
            }
            html.push_str("   <tr><th colspan=\"5\"><hr></th></tr>\n</table>\n</body></html>\n");
        }
        Style::ApachePre => {
            html.push_str(&format!(
                "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\">\n<html>\n <head>\n  \
                 <title>Ubuntu Cloud Images</title>\n </head>\n <body><div id=\"pageWrapper\">\n\
                 <div id=\"header\"><a href=\"http://www.ubuntu.com/\"></a></div>\n<div id=\"main\">\n\
                 <h1>Ubuntu Cloud Images</h1>\n<pre><img src=\"/icons/blank.gif\" alt=\"Icon \" width=\"22\" height=\"22\"> \
                 <a href=\"?C=N;O=D\">Name</a>                    <a href=\"?C=M;O=A\">Last modified</a>      \
                 <a href=\"?C=S;O=A\">Size</a>  <a href=\"?C=D;O=A\">Description</a><hr>\
                 <img src=\"/icons/back.gif\" alt=\"[PARENTDIR]\" width=\"22\" height=\"22\"> <a href=\"{parent}\">Parent Directory</a>                             -   \n"
            ));
            for (name, dir) in entries {
                let (icon, alt, shown) = if *dir {
                    ("folder.png", "[DIR]", format!("{name}/"))
                } else {
                    ("unknown.gif", "[   ]", name.clone())
                };
                html.push_str(&format!(
                    "<img src=\"../../../../cdicons/{icon}\" alt=\"{alt}\" width=\"22\" height=\"22\"> \
                     <a href=\"{shown}\">{shown}</a>               2024-05-23 18:27    -   \n"
                ));
            }
            html.push_str("<hr></pre>\n</div></div></body></html>\n");
        }
        Style::MirrorCache => {
            html.push_str(&format!(
                "<!DOCTYPE html>\n<html lang=\"en\">\n<head><title>openSUSE Download</title></head>\n<body>\n\
                 <div class=\"container\"><h4>Index of {path}</h4>\n<table class=\"table\"><thead><tr>\
                 <th>Name</th><th>Last Modified</th><th>Size</th><th>Metadata</th></tr></thead><tbody>\n\
                 <tr><td><a href=\"{parent}\"><img src=\"/folder-open.svg\"> Parent Directory</a></td></tr>\n"
            ));
            for (name, dir) in entries {
                if *dir {
                    html.push_str(&format!(
                        "<tr><td class=\"name\"><a href=\"{path}{name}/\">{name}/</a></td>\
                         <td class=\"mtime\">23-Oct-2024 10:00</td><td class=\"size\"></td><td></td></tr>\n"
                    ));
                } else {
                    html.push_str(&format!(
                        "<tr><td class=\"name\"><a href=\"{path}{name}\">{name}</a></td>\
                         <td class=\"mtime\">23-Oct-2024 10:00</td><td class=\"size\">1.2 KiB</td>\
                         <td><a href=\"{path}{name}.mirrorlist\">Details</a></td></tr>\n"
                    ));
                }
            }
            html.push_str("</tbody></table></div>\n</body></html>\n");
        }
    }
    html
}

fn http() -> Http {
    Http::new(HttpOptions {
        retries: 0,
        ..HttpOptions::default()
    })
    .expect("an HTTP client")
}

fn find(
    server: &Server,
    distro: Distro,
    release: &str,
    arch: Arch,
    keyrings: &[PathBuf],
) -> Result<Found, DiscoverError> {
    let http = http();
    discover::discover(&Request {
        distro,
        release,
        arch,
        mirror: Some(&server.url),
        keyrings,
        http: &http,
    })
}

/// Asserts that `result` is a signature failure on the checksum file
/// `url` that names the keyring.
fn assert_bad_signature(result: Result<Found, DiscoverError>, url: &str, keyring: &Path) {
    let error = result.expect_err("a bad signature must be refused");
    let message = error.to_string();
    assert!(
        matches!(&error, DiscoverError::Signature { url: u, .. } if u == url),
        "a signature error on {url}: {error:?}"
    );
    assert!(message.contains(url), "{message}");
    assert!(
        message.contains(&keyring.display().to_string()),
        "{message}"
    );
}

// ---- Fedora --------------------------------------------------------------

const FEDORA_IMAGES: &str = "pub/fedora/linux/releases/41/Cloud/x86_64/images";

/// `pub/fedora/linux/releases/{40,41,42}`; 41's x86_64 images directory
/// holds composes 1.4 and 1.14 (a respin), each with its Generic qcow2,
/// other images and a clear-signed CHECKSUM. Returns the SHA-256 of
/// 1.14's Generic image.
fn fedora_site(site: &Site) -> String {
    for release in ["40", "42"] {
        site.dir(&format!("pub/fedora/linux/releases/{release}/Cloud"));
    }
    let mut newest = String::new();
    for compose in ["1.4", "1.14"] {
        let mut checksum = String::new();
        for (image, bytes) in [
            (
                format!("Fedora-Cloud-Base-Generic-41-{compose}.x86_64.qcow2"),
                format!("qcow2 Fedora 41 Generic {compose}"),
            ),
            (
                format!("Fedora-Cloud-Base-AmazonEC2-41-{compose}.x86_64.raw.xz"),
                format!("ec2 {compose}"),
            ),
            (
                format!("Fedora-Cloud-Base-UEFI-UKI-41-{compose}.x86_64.qcow2"),
                format!("uki {compose}"),
            ),
        ] {
            let sha = site.file(&format!("{FEDORA_IMAGES}/{image}"), bytes.as_bytes());
            checksum.push_str(&format!(
                "# {image}: {} bytes\nSHA256 ({image}) = {sha}\n",
                bytes.len()
            ));
            if image.starts_with("Fedora-Cloud-Base-Generic") {
                newest = sha;
            }
        }
        let name = format!("{FEDORA_IMAGES}/Fedora-Cloud-41-{compose}-x86_64-CHECKSUM");
        site.file(&name, checksum.as_bytes());
        site.clearsign(&name);
    }
    site.file(
        "pub/fedora/linux/releases/41/Cloud/aarch64/images/Fedora-Cloud-Base-Generic-41-1.14.aarch64.qcow2",
        b"qcow2 aarch64",
    );
    newest
}

#[test]
fn fedora_newest_compose_is_found_with_its_signed_checksum() {
    let site = Site::new();
    let sha = fedora_site(&site);
    site.write_listings(Style::ApacheTable);
    let server = serve(&site.root);
    let found = find(
        &server,
        Distro::Fedora,
        "41",
        Arch::Amd64,
        std::slice::from_ref(&site.key.armored),
    )
    .expect("Fedora 41 is found");
    let images = format!("{}/{FEDORA_IMAGES}", server.url);
    assert_eq!(
        found,
        Found {
            url: format!("{images}/Fedora-Cloud-Base-Generic-41-1.14.x86_64.qcow2"),
            sha256: sha,
            checksums: format!("{images}/Fedora-Cloud-41-1.14-x86_64-CHECKSUM"),
            signed_by: site.key.fingerprint.clone(),
            version: "1.14".to_string(),
            trust: Trust::Signed,
        }
    );
}

#[test]
fn fedora_checksum_altered_after_signing_is_refused() {
    let site = Site::new();
    let sha = fedora_site(&site);
    let checksum = format!("{FEDORA_IMAGES}/Fedora-Cloud-41-1.14-x86_64-CHECKSUM");
    site.tamper(&checksum, &sha, &"0".repeat(64));
    site.write_listings(Style::ApacheTable);
    let server = serve(&site.root);
    let result = find(
        &server,
        Distro::Fedora,
        "41",
        Arch::Amd64,
        std::slice::from_ref(&site.key.keyring),
    );
    assert_bad_signature(
        result,
        &format!("{}/{checksum}", server.url),
        &site.key.keyring,
    );
}

#[test]
fn fedora_checksum_signed_by_another_key_is_refused() {
    let site = Site::new();
    fedora_site(&site);
    site.write_listings(Style::ApacheTable);
    let server = serve(&site.root);
    let result = find(
        &server,
        Distro::Fedora,
        "41",
        Arch::Amd64,
        std::slice::from_ref(&site.other.keyring),
    );
    assert_bad_signature(
        result,
        &format!(
            "{}/{FEDORA_IMAGES}/Fedora-Cloud-41-1.14-x86_64-CHECKSUM",
            server.url
        ),
        &site.other.keyring,
    );
}

#[test]
fn fedora_unknown_release_lists_the_releases_there() {
    let site = Site::new();
    fedora_site(&site);
    site.write_listings(Style::ApacheTable);
    let server = serve(&site.root);
    let error = find(
        &server,
        Distro::Fedora,
        "39",
        Arch::Amd64,
        std::slice::from_ref(&site.key.keyring),
    )
    .expect_err("there is no Fedora 39");
    match &error {
        DiscoverError::UnknownRelease { known, url, .. } => {
            assert_eq!(known, &["40", "41", "42"]);
            assert_eq!(url, &format!("{}/pub/fedora/linux/releases/", server.url));
        }
        other => panic!("an unknown release: {other:?}"),
    }
    assert!(error.to_string().contains("40, 41, 42"), "{error}");
}

#[test]
fn fedora_arm64_without_a_checksum_file_is_an_error() {
    let site = Site::new();
    fedora_site(&site);
    site.write_listings(Style::ApacheTable);
    let server = serve(&site.root);
    let error = find(
        &server,
        Distro::Fedora,
        "41",
        Arch::Arm64,
        std::slice::from_ref(&site.key.keyring),
    )
    .expect_err("no CHECKSUM for aarch64");
    assert!(
        matches!(&error, DiscoverError::MissingFile { name, .. } if name == "Fedora-Cloud-41-1.14-aarch64-CHECKSUM"),
        "{error:?}"
    );
}

// ---- CentOS Stream -------------------------------------------------------

const CENTOS_IMAGES: &str = "centos/9-stream/x86_64/images";

/// `centos/{8-stream,9-stream,10-stream}`; 9-stream's x86_64 images hold
/// three GenericCloud builds, the `latest` alias, Vagrant and container
/// images, a `.SHA256SUM` per image and one `CHECKSUM` for all, unsigned
/// as CentOS publishes it. Returns the SHA-256 of build 20240115.1.
fn centos_site(site: &Site) -> String {
    site.dir("centos/8-stream/x86_64/images");
    site.dir("centos/10-stream/x86_64/images");
    let mut checksum = String::new();
    let mut newest = String::new();
    for build in ["20240101.0", "20240115.0", "20240115.1", "latest"] {
        for (image, bytes) in [
            (
                format!("CentOS-Stream-GenericCloud-9-{build}.x86_64.qcow2"),
                format!("qcow2 CentOS Stream 9 {build}"),
            ),
            (
                format!("CentOS-Stream-Vagrant-9-{build}.x86_64.vagrant-libvirt.box"),
                format!("vagrant {build}"),
            ),
            (
                format!("CentOS-Stream-Container-Base-9-{build}.x86_64.tar.xz"),
                format!("container {build}"),
            ),
        ] {
            let sha = site.file(&format!("{CENTOS_IMAGES}/{image}"), bytes.as_bytes());
            let lines = format!(
                "# {image}: {} bytes\nSHA256 ({image}) = {sha}\n",
                bytes.len()
            );
            site.file(
                &format!("{CENTOS_IMAGES}/{image}.SHA256SUM"),
                lines.as_bytes(),
            );
            checksum.push_str(&lines);
            if build == "20240115.1" && image.contains("GenericCloud") {
                newest = sha;
            }
        }
    }
    site.file(&format!("{CENTOS_IMAGES}/CHECKSUM"), checksum.as_bytes());
    newest
}

#[test]
fn centos_newest_build_is_found_and_its_unsigned_checksum_said_so() {
    let site = Site::new();
    let sha = centos_site(&site);
    site.write_listings(Style::ApacheTable);
    let server = serve(&site.root);
    let found = find(&server, Distro::Centos, "9", Arch::Amd64, &[]).expect("Stream 9 is found");
    let images = format!("{}/{CENTOS_IMAGES}", server.url);
    assert_eq!(
        found,
        Found {
            url: format!("{images}/CentOS-Stream-GenericCloud-9-20240115.1.x86_64.qcow2"),
            sha256: sha,
            checksums: format!("{images}/CHECKSUM"),
            signed_by: String::new(),
            version: "20240115.1".to_string(),
            trust: Trust::Unsigned,
        }
    );
    assert!(!discover::publishes_signatures(Distro::Centos));
}

#[test]
fn centos_unsigned_checksum_with_a_keyring_is_refused() {
    let site = Site::new();
    centos_site(&site);
    site.write_listings(Style::ApacheTable);
    let server = serve(&site.root);
    let error = find(
        &server,
        Distro::Centos,
        "9-stream",
        Arch::Amd64,
        std::slice::from_ref(&site.key.keyring),
    )
    .expect_err("a keyring cannot check an unsigned file");
    assert!(
        matches!(&error, DiscoverError::Unsigned { url, .. } if url.ends_with("/CHECKSUM")),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains(&site.key.keyring.display().to_string())
    );
}

#[test]
fn centos_clearsigned_checksum_verifies_and_altered_is_refused() {
    let site = Site::new();
    let sha = centos_site(&site);
    let checksum = format!("{CENTOS_IMAGES}/CHECKSUM");
    site.clearsign(&checksum);
    site.write_listings(Style::ApacheTable);
    let server = serve(&site.root);
    let found = find(
        &server,
        Distro::Centos,
        "9",
        Arch::Amd64,
        std::slice::from_ref(&site.key.keyring),
    )
    .expect("a signed CHECKSUM verifies");
    assert_eq!(
        (found.sha256.as_str(), found.signed_by.as_str(), found.trust),
        (sha.as_str(), site.key.fingerprint.as_str(), Trust::Signed)
    );
    site.tamper(&checksum, &sha, &"f".repeat(64));
    let result = find(
        &server,
        Distro::Centos,
        "9",
        Arch::Amd64,
        std::slice::from_ref(&site.key.keyring),
    );
    assert_bad_signature(
        result,
        &format!("{}/{checksum}", server.url),
        &site.key.keyring,
    );
}

#[test]
fn centos_unknown_release_lists_the_streams_there() {
    let site = Site::new();
    centos_site(&site);
    site.write_listings(Style::ApacheTable);
    let server = serve(&site.root);
    let error = find(&server, Distro::Centos, "7", Arch::Amd64, &[]).expect_err("no 7-stream");
    match &error {
        DiscoverError::UnknownRelease { known, .. } => {
            assert_eq!(known, &["8-stream", "9-stream", "10-stream"]);
        }
        other => panic!("an unknown release: {other:?}"),
    }
}

// ---- openSUSE Leap -------------------------------------------------------

const LEAP_APPLIANCES: &str = "distribution/leap/15.6/appliances";

/// `distribution/leap/{15.5,15.6,16.0}`; 15.6's appliances hold builds
/// 16.3 and 16.12 and the unversioned alias of the Minimal-VM Cloud
/// image, kvm-and-xen images, each with a `.sha256` and a detached
/// `.sha256.asc`. Returns the SHA-256 of Build16.12.
fn leap_site(site: &Site) -> String {
    site.dir("distribution/leap/15.5/appliances");
    site.dir("distribution/leap/16.0/appliances");
    let mut newest = String::new();
    for image in [
        "openSUSE-Leap-15.6-Minimal-VM.x86_64-15.6.0-Cloud-Build16.3.qcow2",
        "openSUSE-Leap-15.6-Minimal-VM.x86_64-15.6.0-Cloud-Build16.12.qcow2",
        "openSUSE-Leap-15.6-Minimal-VM.x86_64-Cloud.qcow2",
        "openSUSE-Leap-15.6-Minimal-VM.x86_64-15.6.0-kvm-and-xen-Build16.12.qcow2",
        "openSUSE-Leap-15.6-Minimal-VM.x86_64-kvm-and-xen.qcow2",
    ] {
        let sha = site.file(
            &format!("{LEAP_APPLIANCES}/{image}"),
            format!("qcow2 {image}").as_bytes(),
        );
        let checksum = format!("{LEAP_APPLIANCES}/{image}.sha256");
        site.file(&checksum, format!("{sha}  {image}\n").as_bytes());
        site.detach_sign(&checksum, &format!("{checksum}.asc"));
        if image.contains("Cloud-Build16.12") {
            newest = sha;
        }
    }
    newest
}

#[test]
fn leap_newest_build_is_found_with_its_detached_signature() {
    let site = Site::new();
    let sha = leap_site(&site);
    site.write_listings(Style::MirrorCache);
    let server = serve(&site.root);
    let found = find(
        &server,
        Distro::Opensuse,
        "15.6",
        Arch::Amd64,
        std::slice::from_ref(&site.key.armored),
    )
    .expect("Leap 15.6 is found");
    let appliances = format!("{}/{LEAP_APPLIANCES}", server.url);
    let image = "openSUSE-Leap-15.6-Minimal-VM.x86_64-15.6.0-Cloud-Build16.12.qcow2";
    assert_eq!(
        found,
        Found {
            url: format!("{appliances}/{image}"),
            sha256: sha,
            checksums: format!("{appliances}/{image}.sha256"),
            signed_by: site.key.fingerprint.clone(),
            version: "15.6.0-Build16.12".to_string(),
            trust: Trust::Signed,
        }
    );
}

#[test]
fn leap_checksum_altered_after_signing_is_refused() {
    let site = Site::new();
    let sha = leap_site(&site);
    let checksum = format!(
        "{LEAP_APPLIANCES}/openSUSE-Leap-15.6-Minimal-VM.x86_64-15.6.0-Cloud-Build16.12.qcow2.sha256"
    );
    site.tamper(&checksum, &sha, &"1".repeat(64));
    site.write_listings(Style::MirrorCache);
    let server = serve(&site.root);
    let result = find(
        &server,
        Distro::Opensuse,
        "15.6",
        Arch::Amd64,
        std::slice::from_ref(&site.key.keyring),
    );
    assert_bad_signature(
        result,
        &format!("{}/{checksum}", server.url),
        &site.key.keyring,
    );
}

#[test]
fn leap_signed_by_another_key_is_refused() {
    let site = Site::new();
    leap_site(&site);
    site.write_listings(Style::MirrorCache);
    let server = serve(&site.root);
    let result = find(
        &server,
        Distro::Opensuse,
        "15.6",
        Arch::Amd64,
        std::slice::from_ref(&site.other.keyring),
    );
    assert_bad_signature(
        result,
        &format!(
            "{}/{LEAP_APPLIANCES}/openSUSE-Leap-15.6-Minimal-VM.x86_64-15.6.0-Cloud-Build16.12.qcow2.sha256",
            server.url
        ),
        &site.other.keyring,
    );
}

#[test]
fn leap_unknown_release_lists_the_releases_there() {
    let site = Site::new();
    leap_site(&site);
    site.write_listings(Style::MirrorCache);
    let server = serve(&site.root);
    let error = find(
        &server,
        Distro::Opensuse,
        "15.4",
        Arch::Amd64,
        std::slice::from_ref(&site.key.keyring),
    )
    .expect_err("no Leap 15.4");
    match &error {
        DiscoverError::UnknownRelease { known, .. } => {
            assert_eq!(known, &["15.5", "15.6", "16.0"]);
        }
        other => panic!("an unknown release: {other:?}"),
    }
}

#[test]
fn tumbleweed_alias_pins_the_snapshot_its_checksum_names() {
    let site = Site::new();
    let snapshot = "openSUSE-Tumbleweed-Minimal-VM.x86_64-1.0.0-Cloud-Snapshot20240612.qcow2";
    let alias = "openSUSE-Tumbleweed-Minimal-VM.x86_64-Cloud.qcow2";
    let sha = site.file(&format!("tumbleweed/appliances/{snapshot}"), b"qcow2 tw");
    site.file(&format!("tumbleweed/appliances/{alias}"), b"qcow2 tw");
    let checksum = format!("tumbleweed/appliances/{alias}.sha256");
    site.file(&checksum, format!("{sha}  {snapshot}\n").as_bytes());
    site.detach_sign(&checksum, &format!("{checksum}.asc"));
    site.write_listings(Style::MirrorCache);
    let server = serve(&site.root);
    let found = find(
        &server,
        Distro::Opensuse,
        "tumbleweed",
        Arch::Amd64,
        std::slice::from_ref(&site.key.keyring),
    )
    .expect("Tumbleweed is found");
    assert_eq!(
        found.url,
        format!("{}/tumbleweed/appliances/{snapshot}", server.url)
    );
    assert_eq!(found.sha256, sha);
    assert_eq!(found.version, "1.0.0-Snapshot20240612");
    assert_eq!(found.signed_by, site.key.fingerprint);
}

// ---- Ubuntu --------------------------------------------------------------

/// `releases/{22.04,24.04,jammy,noble,streams}`; noble holds serials
/// 20240423, 20240523 and 20240523.1 and the moving `release/`, each with
/// amd64 and arm64 disk images, squashfs and manifests, `SHA256SUMS` and
/// its detached signature `SHA256SUMS.gpg`. Returns the SHA-256 of
/// 20240523.1's amd64 image.
fn ubuntu_site(site: &Site) -> String {
    for release in ["22.04", "24.04", "jammy", "streams"] {
        site.dir(&format!("releases/{release}"));
    }
    let mut newest = String::new();
    for serial in [
        "release-20240423",
        "release-20240523",
        "release-20240523.1",
        "release",
    ] {
        let mut sums = String::new();
        for arch in ["amd64", "arm64"] {
            for suffix in [".img", ".squashfs", ".manifest", "-root.tar.xz"] {
                let image = format!("ubuntu-24.04-server-cloudimg-{arch}{suffix}");
                let sha = site.file(
                    &format!("releases/noble/{serial}/{image}"),
                    format!("{serial} {image}").as_bytes(),
                );
                sums.push_str(&format!("{sha} *{image}\n"));
                if serial == "release-20240523.1" && arch == "amd64" && suffix == ".img" {
                    newest = sha;
                }
            }
        }
        let path = format!("releases/noble/{serial}/SHA256SUMS");
        site.file(&path, sums.as_bytes());
        site.detach_sign(&path, &format!("{path}.gpg"));
    }
    newest
}

#[test]
fn ubuntu_newest_serial_is_found_with_its_detached_signature() {
    let site = Site::new();
    let sha = ubuntu_site(&site);
    site.write_listings(Style::ApachePre);
    let server = serve(&site.root);
    let found = find(
        &server,
        Distro::Ubuntu,
        "noble",
        Arch::Amd64,
        std::slice::from_ref(&site.key.keyring),
    )
    .expect("noble is found");
    let dir = format!("{}/releases/noble/release-20240523.1", server.url);
    assert_eq!(
        found,
        Found {
            url: format!("{dir}/ubuntu-24.04-server-cloudimg-amd64.img"),
            sha256: sha,
            checksums: format!("{dir}/SHA256SUMS"),
            signed_by: site.key.fingerprint.clone(),
            version: "20240523.1".to_string(),
            trust: Trust::Signed,
        }
    );
    let arm = find(
        &server,
        Distro::Ubuntu,
        "noble",
        Arch::Arm64,
        std::slice::from_ref(&site.key.keyring),
    )
    .expect("noble arm64 is found");
    assert_eq!(
        arm.url,
        format!("{dir}/ubuntu-24.04-server-cloudimg-arm64.img")
    );
}

#[test]
fn ubuntu_checksums_altered_after_signing_are_refused() {
    let site = Site::new();
    let sha = ubuntu_site(&site);
    let sums = "releases/noble/release-20240523.1/SHA256SUMS";
    site.tamper(sums, &sha, &"2".repeat(64));
    site.write_listings(Style::ApachePre);
    let server = serve(&site.root);
    let result = find(
        &server,
        Distro::Ubuntu,
        "noble",
        Arch::Amd64,
        std::slice::from_ref(&site.key.keyring),
    );
    assert_bad_signature(result, &format!("{}/{sums}", server.url), &site.key.keyring);
}

#[test]
fn ubuntu_signed_by_another_key_is_refused() {
    let site = Site::new();
    ubuntu_site(&site);
    site.write_listings(Style::ApachePre);
    let server = serve(&site.root);
    let result = find(
        &server,
        Distro::Ubuntu,
        "noble",
        Arch::Amd64,
        std::slice::from_ref(&site.other.armored),
    );
    assert_bad_signature(
        result,
        &format!(
            "{}/releases/noble/release-20240523.1/SHA256SUMS",
            server.url
        ),
        &site.other.armored,
    );
}

#[test]
fn ubuntu_unknown_release_lists_the_releases_there() {
    let site = Site::new();
    ubuntu_site(&site);
    site.write_listings(Style::ApachePre);
    let server = serve(&site.root);
    let error = find(
        &server,
        Distro::Ubuntu,
        "oracular",
        Arch::Amd64,
        std::slice::from_ref(&site.key.keyring),
    )
    .expect_err("no oracular here");
    match &error {
        DiscoverError::UnknownRelease { known, .. } => {
            assert_eq!(known, &["22.04", "24.04", "jammy", "noble"]);
        }
        other => panic!("an unknown release: {other:?}"),
    }
    assert!(error.to_string().contains("22.04, 24.04, jammy, noble"));
}

#[test]
fn a_signed_site_without_a_keyring_asks_for_one() {
    let site = Site::new();
    ubuntu_site(&site);
    site.write_listings(Style::ApachePre);
    let server = serve(&site.root);
    let error =
        find(&server, Distro::Ubuntu, "noble", Arch::Amd64, &[]).expect_err("no keyring, no trust");
    assert!(
        matches!(&error, DiscoverError::NoKeyring { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("keyring:"), "{error}");
}

// ---------------------------------------------------------------- kiln lock

/// A Fedora site holding one real (empty) qcow2 for release 41, compose
/// 1.2, with its clear-signed CHECKSUM; returns the image's SHA-256.
fn fedora_site_with_a_real_qcow2(site: &Site) -> String {
    let scratch = site.root.parent().expect("a parent").join("qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&scratch)
        .arg("16M")
        .status()
        .expect("qemu-img runs");
    assert!(made.success());
    let image = "Fedora-Cloud-Base-Generic-41-1.2.x86_64.qcow2";
    let sha = site.file(
        &format!("{FEDORA_IMAGES}/{image}"),
        &std::fs::read(&scratch).expect("read the qcow2"),
    );
    let checksum = format!("{FEDORA_IMAGES}/Fedora-Cloud-41-1.2-x86_64-CHECKSUM");
    site.file(&checksum, format!("SHA256 ({image}) = {sha}\n").as_bytes());
    site.clearsign(&checksum);
    site.write_listings(Style::ApacheTable);
    sha
}

/// `kiln lock` in `dir` for a Fedora 41 imagefile reading `mirror` and
/// trusting `keyring`.
fn kiln_lock_fedora(dir: &Path, mirror: &str, keyring: &Path) -> std::process::Output {
    std::fs::write(
        dir.join("imagefile.yaml"),
        format!(
            "name: f\nbase:\n  distro: fedora\n  release: \"41\"\n  mirror: {mirror}\n  keyring: {}\nelements: [fedora]\n",
            keyring.display()
        ),
    )
    .expect("write the imagefile");
    crate::common::kiln()
        .current_dir(dir)
        .arg("lock")
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .output()
        .expect("kiln runs")
}

#[test]
fn kiln_lock_pins_the_fedora_image_it_finds_and_validate_calls_it_experimental() {
    let site = Site::new();
    let sha = fedora_site_with_a_real_qcow2(&site);
    let server = serve(&site.root);
    let project = tempfile::tempdir().expect("tempdir");
    let out = kiln_lock_fedora(project.path(), &server.url, &site.key.armored);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lock = std::fs::read_to_string(project.path().join("imagefile.lock")).expect("lock");
    let images = format!("{}/{FEDORA_IMAGES}", server.url);
    for line in [
        "  distro: \"fedora\"".to_string(),
        "  release: \"41\"".to_string(),
        format!("    url: \"{images}/Fedora-Cloud-Base-Generic-41-1.2.x86_64.qcow2\""),
        format!("    sha256: \"{sha}\""),
        "    format: \"qcow2\"".to_string(),
        format!("    checksums: \"{images}/Fedora-Cloud-41-1.2-x86_64-CHECKSUM\""),
        format!("    signed_by: \"{}\"", site.key.fingerprint),
        "    version: \"1.2\"".to_string(),
    ] {
        assert!(
            lock.contains(&format!("{line}\n")),
            "no `{line}` in\n{lock}"
        );
    }
    let validate = crate::common::kiln()
        .current_dir(project.path())
        .arg("validate")
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&validate.stderr);
    assert!(validate.status.success(), "{stderr}");
    assert!(
        stderr.contains("`distro: fedora` from its cloud image is experimental")
            && stderr.contains("run dnf in it"),
        "{stderr}"
    );
}

#[test]
fn kiln_lock_points_at_the_keyring_when_the_checksum_is_signed_by_another_key() {
    let site = Site::new();
    fedora_site_with_a_real_qcow2(&site);
    let server = serve(&site.root);
    let project = tempfile::tempdir().expect("tempdir");
    let out = kiln_lock_fedora(project.path(), &server.url, &site.other.armored);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not verify"), "{stderr}");
    assert!(
        stderr.contains(&format!("keyring: {}", site.other.armored.display())),
        "{stderr}"
    );
    assert!(stderr.contains("help:"), "{stderr}");
    assert!(
        !project.path().join("imagefile.lock").exists(),
        "a lock was written"
    );
}

#[test]
fn kiln_lock_refuses_a_url_that_is_not_an_image_pointing_at_it() {
    let project = tempfile::tempdir().expect("tempdir");
    let page = project.path().join("download.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html>\n<html><body>Log in to download</body></html>\n",
    )
    .expect("write");
    std::fs::write(
        project.path().join("imagefile.yaml"),
        format!(
            "name: i\nbase:\n  distro: image\n  url: file://{}\n",
            page.display()
        ),
    )
    .expect("write");
    let out = crate::common::kiln()
        .current_dir(project.path())
        .arg("lock")
        .arg("--cache-dir")
        .arg(project.path().join("cache"))
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HTML"), "{stderr}");
    assert!(
        stderr.contains("not an image") && stderr.contains("help:"),
        "{stderr}"
    );
    assert!(stderr.contains("url: file://"), "{stderr}");
    assert!(
        !project.path().join("imagefile.lock").exists(),
        "a lock was written"
    );
}

#[test]
fn kiln_lock_refuses_an_image_whose_hash_is_not_the_pinned_one() {
    let project = tempfile::tempdir().expect("tempdir");
    let image = project.path().join("disk.qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("16M")
        .status()
        .expect("qemu-img runs");
    assert!(made.success());
    let wrong = "ab".repeat(32);
    std::fs::write(
        project.path().join("imagefile.yaml"),
        format!(
            "name: i\nbase:\n  distro: image\n  url: file://{}\n  sha256: {wrong}\n",
            image.display()
        ),
    )
    .expect("write");
    let out = crate::common::kiln()
        .current_dir(project.path())
        .arg("lock")
        .arg("--cache-dir")
        .arg(project.path().join("cache"))
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let actual = sha256_hex(&std::fs::read(&image).expect("read"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&wrong) && stderr.contains(&actual),
        "{stderr}"
    );
    assert!(
        stderr.contains("does not match") && stderr.contains("help:"),
        "{stderr}"
    );
    assert!(
        !project.path().join("imagefile.lock").exists(),
        "a lock was written"
    );
}
