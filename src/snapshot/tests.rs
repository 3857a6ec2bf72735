use super::*;

#[test]
fn sizes_parse_with_binary_suffixes() {
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("123"), Some(123));
    assert_eq!(parse_size("512M"), Some(512 << 20));
    assert_eq!(parse_size("8G"), Some(8 << 30));
    assert_eq!(parse_size("1t"), Some(1 << 40));
    assert_eq!(parse_size("lots"), None);
    assert_eq!(parse_size("G"), None);
    assert_eq!(parse_size(""), None);
}

/// An element `site` with a script in every phase kind and a static file.
fn element(dir: &Path) -> PathBuf {
    let site = dir.join("site");
    for (phase, script) in [
        ("install.d", "50-install"),
        ("post-install.d", "50-post"),
        ("pre-finalise.d", "50-pre-finalise"),
        ("finalise.d", "50-finalise"),
        ("cleanup.d", "50-cleanup"),
    ] {
        fs_err::create_dir_all(site.join(phase)).unwrap();
        fs_err::write(
            site.join(phase).join(script),
            format!("#!/bin/sh\necho {script}\n"),
        )
        .unwrap();
    }
    fs_err::create_dir_all(site.join("static/etc")).unwrap();
    fs_err::write(site.join("static/etc/site-release"), "1\n").unwrap();
    fs_err::write(site.join("element-deps"), "vm\n").unwrap();
    site
}

fn lock() -> crate::lock::Lock {
    crate::lock::Lock {
        version: crate::lock::LOCK_FORMAT_VERSION,
        kiln: "0.1.0".to_string(),
        manifest: format!("sha256:{}", "1".repeat(64)),
        base: crate::lock::LockedBase {
            distro: "debian".to_string(),
            release: "bookworm".to_string(),
            arch: "amd64".to_string(),
            image: None,
        },
        repositories: Vec::new(),
        source_date_epoch: 1_746_835_200,
        packages: vec![crate::lock::LockedPackage {
            name: "zlib1g".to_string(),
            version: "1:1.2.13.dfsg-1".to_string(),
            arch: "amd64".to_string(),
            priority: Some("required".to_string()),
            size: 1,
            sha256: "0".repeat(64),
            repository: "debian/bookworm".to_string(),
            filename: "pool/main/z/zlib1g.deb".to_string(),
        }],
        native_twins: Vec::new(),
        elements: vec![crate::lock::LockedElement {
            name: "site".to_string(),
            origin: "builtin".to_string(),
            tree: format!("sha256:{}", "2".repeat(64)),
        }],
    }
}

fn manifest(extra: &str) -> crate::manifest::Manifest {
    let text = format!(
        "name: site\nbase:\n  distro: debian\n  release: bookworm\nelements: [site]\noutputs: [raw]\n{extra}"
    );
    crate::manifest::parse(&crate::manifest::Source::new("imagefile.yaml", &text)).expect("parses")
}

struct Inputs {
    kiln: String,
    lock: crate::lock::Lock,
    manifest: crate::manifest::Manifest,
    environment: Vec<(String, String)>,
}

impl Inputs {
    fn new() -> Inputs {
        Inputs {
            kiln: "a".repeat(64),
            lock: lock(),
            manifest: manifest(""),
            environment: vec![("DIB_RELEASE".to_string(), "bookworm".to_string())],
        }
    }

    fn key(&self, site: &Path) -> Key {
        key(&KeyInputs {
            kiln: &self.kiln,
            lock: &self.lock,
            manifest: &self.manifest,
            elements: &[("site", site)],
            environment: &self.environment,
        })
        .expect("key")
    }
}

#[test]
fn the_key_ignores_what_comes_after_the_snapshot() {
    let temp = tempfile::tempdir().unwrap();
    let site = element(temp.path());
    let inputs = Inputs::new();
    let before = inputs.key(&site);
    assert_eq!(before, inputs.key(&site), "the same inputs, the same key");
    assert_eq!(before.as_str().len(), 64);

    // The scripts of the phases that finish the image run after it.
    for script in [
        "finalise.d/50-finalise",
        "pre-finalise.d/50-pre-finalise",
        "cleanup.d/50-cleanup",
    ] {
        fs_err::write(site.join(script), "#!/bin/sh\necho edited\n").unwrap();
        assert_eq!(
            inputs.key(&site),
            before,
            "{script} is run after the snapshot"
        );
    }
    fs_err::create_dir_all(site.join("finalise.d")).unwrap();
    fs_err::write(site.join("finalise.d/60-new"), "#!/bin/sh\n").unwrap();
    assert_eq!(inputs.key(&site), before, "a new finalise.d script");

    // So do the outputs, the element hashes and the imagefile's hash in the
    // lock (they change with the edits above), and the disk.
    let mut later = Inputs::new();
    later.manifest = manifest("ramdisk:\n  compression: gzip\n");
    later.manifest.outputs.clear();
    later.lock.elements[0].tree = format!("sha256:{}", "3".repeat(64));
    later.lock.manifest = format!("sha256:{}", "4".repeat(64));
    assert_eq!(later.key(&site), before);
}

#[test]
fn the_key_changes_with_everything_the_tree_is_made_of() {
    let temp = tempfile::tempdir().unwrap();
    let site = element(temp.path());
    let before = Inputs::new().key(&site);
    let changed = |change: &dyn Fn(&mut Inputs), what: &str| {
        let mut inputs = Inputs::new();
        change(&mut inputs);
        assert_ne!(inputs.key(&site), before, "{what} must change the key");
    };
    changed(&|i| i.kiln = "b".repeat(64), "another kiln");
    changed(
        &|i| i.lock.packages[0].version = "1:1.2.13.dfsg-2".to_string(),
        "a package version",
    );
    changed(&|i| i.lock.source_date_epoch += 1, "SOURCE_DATE_EPOCH");
    changed(
        &|i| i.lock.base.release = "trixie".to_string(),
        "the release",
    );
    changed(
        &|i| i.manifest = manifest("packages: [tmux]\n"),
        "the imagefile's packages",
    );
    changed(
        &|i| i.manifest = manifest("environment:\n  DIB_X: 'y'\n"),
        "the imagefile's environment",
    );
    changed(
        &|i| i.environment[0].1 = "trixie".to_string(),
        "a hook variable",
    );
    changed(
        &|i| {
            i.environment
                .push(("kiln: /etc/fstab".to_string(), "LABEL=x / ext4".to_string()))
        },
        "the fstab",
    );

    // Each of the element's own files before the snapshot.
    for (file, text) in [
        ("install.d/50-install", "#!/bin/sh\necho edited\n"),
        ("post-install.d/50-post", "#!/bin/sh\necho edited\n"),
        ("static/etc/site-release", "2\n"),
        ("element-deps", "vm\ngrowroot\n"),
    ] {
        let original = fs_err::read(site.join(file)).unwrap();
        fs_err::write(site.join(file), text).unwrap();
        assert_ne!(
            Inputs::new().key(&site),
            before,
            "{file} must change the key"
        );
        fs_err::write(site.join(file), original).unwrap();
    }
    // The executable bit decides whether a hook runs.
    use std::os::unix::fs::PermissionsExt;
    let script = site.join("install.d/50-install");
    fs_err::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_ne!(
        Inputs::new().key(&site),
        before,
        "a mode must change the key"
    );
    fs_err::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        Inputs::new().key(&site),
        before,
        "put back, the key is back"
    );
}

#[test]
fn snapshots_are_saved_restored_listed_and_pruned_by_last_use() {
    let temp = tempfile::tempdir().unwrap();
    let tree = temp.path().join("tree");
    fs_err::create_dir_all(tree.join("etc")).unwrap();
    fs_err::write(tree.join("etc/hostname"), "kiln\n").unwrap();
    fs_err::write(tree.join("big"), vec![1u8; 64 * 1024]).unwrap();
    std::os::unix::fs::symlink("etc/hostname", tree.join("link")).unwrap();
    fs_err::hard_link(tree.join("big"), tree.join("big-again")).unwrap();
    let snapshots = Snapshots::in_cache(&temp.path().join("cache"), 1 << 30);
    // Left by a build that was killed while copying (no such process).
    let abandoned = snapshots
        .dir()
        .join(format!(".partial-{}-4194305", "c".repeat(64)));
    fs_err::create_dir_all(abandoned.join("tree")).unwrap();
    let (a, b) = (Key("a".repeat(64)), Key("b".repeat(64)));
    assert!(snapshots.find(&a).is_none());
    let mut log = Vec::new();
    assert!(snapshots.save(&a, "one", &tree, &mut log).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(snapshots.save(&b, "two", &tree, &mut log).unwrap());
    assert!(snapshots.find(&a).is_some());
    assert!(
        !abandoned.exists(),
        "an abandoned partial snapshot is removed"
    );

    // Restored: the same entries, contents, link and hard link.
    let restored = temp.path().join("restored");
    snapshots.restore(&a, &restored).unwrap();
    assert_eq!(
        fs_err::read_to_string(restored.join("etc/hostname")).unwrap(),
        "kiln\n"
    );
    assert_eq!(
        fs_err::read_link(restored.join("link")).unwrap(),
        Path::new("etc/hostname")
    );
    let (x, y) = (
        fs_err::metadata(restored.join("big")).unwrap(),
        fs_err::metadata(restored.join("big-again")).unwrap(),
    );
    assert_eq!((x.ino(), x.len()), (y.ino(), 64 * 1024));
    assert_eq!(
        crate::reproducible::diff_trees(&tree, &restored)
            .unwrap()
            .len(),
        0,
        "the restored tree is the tree"
    );

    // `a` was used last (restored): listed first; pruning to one keeps it.
    let listed: Vec<String> = snapshots
        .list()
        .unwrap()
        .into_iter()
        .map(|s| s.image)
        .collect();
    assert_eq!(listed, ["one", "two"]);
    let each = snapshots.list().unwrap()[0].bytes;
    assert!(each >= 64 * 1024, "{each}");
    let removed = snapshots.prune(each).unwrap();
    assert_eq!(
        removed.iter().map(|s| s.image.as_str()).collect::<Vec<_>>(),
        ["two"]
    );
    assert!(snapshots.find(&b).is_none() && snapshots.find(&a).is_some());
    assert_eq!(snapshots.prune(0).unwrap().len(), 1);
    assert!(snapshots.list().unwrap().is_empty());

    // Beyond the limit on its own: not kept, and said so in the log.
    let small = Snapshots::in_cache(&temp.path().join("cache"), 1024);
    assert!(!small.save(&a, "one", &tree, &mut log).unwrap());
    assert!(small.find(&a).is_none());
    assert!(String::from_utf8_lossy(&log).contains("removed snapshot"));
    let leftovers: Vec<_> = fs_err::read_dir(small.dir()).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "no partial snapshot left: {leftovers:?}"
    );
}
