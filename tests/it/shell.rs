//! `kiln completions` and `kiln man` as a user meets them: the bash script
//! sourced into a real bash registers completion for `kiln` and completes
//! its commands and options; the manual pages render with groff (`man`'s
//! formatter, from groff-base) without a warning and name every command.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::kiln;

/// kiln's commands, as `kiln --help` lists them.
fn commands() -> Vec<String> {
    let help = kiln().arg("--help").output().expect("kiln --help");
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).expect("utf-8");
    let commands: Vec<String> = text
        .split("Commands:\n")
        .nth(1)
        .expect("kiln --help lists commands")
        .lines()
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    for expected in ["build", "validate", "lock", "completions", "man"] {
        assert!(commands.iter().any(|c| c == expected), "{commands:?}");
    }
    commands
}

fn stdout_of(args: &[&str]) -> String {
    let output = kiln().args(args).output().expect("run kiln");
    assert!(
        output.status.success(),
        "kiln {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Runs `script` in bash with `kiln completions bash` sourced, returning
/// its stdout.
fn in_bash(script: &str) -> String {
    let completion = stdout_of(&["completions", "bash"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kiln.bash");
    std::fs::write(&path, completion).expect("write the script");
    let output = Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(format!("source {} && {script}", path.display()))
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn the_bash_script_registers_kiln_and_names_every_command() {
    let script = stdout_of(&["completions", "bash"]);
    for command in commands() {
        assert!(script.contains(&command), "no `{command}` in {script}");
    }
    let registered = in_bash("complete -p kiln");
    assert!(
        registered.starts_with("complete ")
            && registered.contains(" -F _kiln ")
            && registered.trim_end().ends_with(" kiln"),
        "{registered}"
    );
}

#[test]
fn bash_completes_commands_and_a_command_s_options() {
    // What bash does on <TAB>: the completion function over the words typed.
    let complete = |words: &[&str]| -> Vec<String> {
        let words_array = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let line = words.join(" ");
        let out = in_bash(&format!(
            "COMP_WORDS=({words_array}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; \
             _kiln kiln '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            words.len() - 1,
            line.len(),
            words[words.len() - 1],
            words[words.len() - 2],
        ));
        out.lines().map(str::to_string).collect()
    };
    let after_kiln = complete(&["kiln", "b"]);
    assert!(after_kiln.contains(&"build".to_string()), "{after_kiln:?}");
    assert!(after_kiln.contains(&"boot".to_string()), "{after_kiln:?}");
    assert!(!after_kiln.contains(&"lock".to_string()), "{after_kiln:?}");
    let build_options = complete(&["kiln", "build", "--k"]);
    assert_eq!(build_options, ["--keep-tree"], "{build_options:?}");
    // The shells, after the options any command takes.
    let shells = complete(&["kiln", "completions", ""]);
    assert!(
        shells.ends_with(&["bash".into(), "zsh".into(), "fish".into()]),
        "{shells:?}"
    );
    assert!(!shells.iter().any(|s| s == "build"), "{shells:?}");
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    let zsh = stdout_of(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef kiln"), "{zsh}");
    let fish = stdout_of(&["completions", "fish"]);
    for command in commands() {
        assert!(zsh.contains(&format!("'{command}:")), "zsh: no `{command}`");
        assert!(
            fish.contains(&format!("-a \"{command}\"")),
            "fish: no `{command}` in {fish}"
        );
    }
    let wrong = kiln()
        .args(["completions", "tcsh"])
        .output()
        .expect("run kiln");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("possible values: bash, zsh, fish"));
}

/// `page` formatted by groff as `man` does (`-man -Tutf8`), with every
/// warning on (`-ww`): (text, warnings).
fn groff(page: &str) -> (String, String) {
    let mut child = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-rLL=80n"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("groff is installed (groff-base; scripts/install-test-deps)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write the page");
    let output = child.wait_with_output().expect("groff runs");
    assert!(output.status.success(), "groff failed");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// groff's text without its overstrike bold and underline.
fn plain(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn the_man_page_renders_without_warnings_and_names_every_command() {
    let (text, warnings) = groff(&stdout_of(&["man"]));
    assert_eq!(warnings, "", "groff warns");
    let text = plain(&text);
    assert!(
        text.contains("EXIT STATUS") && text.contains("KILN_CACHE_DIR"),
        "{text}"
    );
    for command in commands() {
        assert!(
            text.contains(&format!("kiln-{command}(1)")),
            "no kiln-{command}(1) in {text}"
        );
        let (own, warnings) = groff(&stdout_of(&["man", &command]));
        assert_eq!(warnings, "", "groff warns on kiln-{command}");
        assert!(plain(&own).contains(&format!("kiln-{command}")), "{own}");
    }
    let (prune, _) = groff(&stdout_of(&["man", "cache", "prune"]));
    assert!(plain(&prune).contains("--keep"), "{prune}");
}

#[test]
fn man_output_writes_pages_that_man_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let man1 = dir.path().join("man1");
    let output = kiln()
        .args(["man", "--output"])
        .arg(&man1)
        .output()
        .expect("run kiln");
    assert!(output.status.success());
    for command in commands() {
        assert!(
            man1.join(format!("kiln-{command}.1")).is_file(),
            "kiln-{command}.1"
        );
    }
    // man itself finds and formats a page of that directory.
    let man = Command::new("man")
        .env("MANPATH", dir.path())
        .env("MANWIDTH", "80")
        .args(["--warnings", "kiln-build"])
        .output()
        .expect("man is installed (man-db; scripts/install-test-deps)");
    assert!(
        man.status.success(),
        "man: {}",
        String::from_utf8_lossy(&man.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&man.stderr), "");
    assert!(plain(&String::from_utf8_lossy(&man.stdout)).contains("--keep-tree"));

    let unknown = kiln().args(["man", "bild"]).output().expect("run kiln");
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("kiln has no command `bild`"), "{stderr}");
    assert!(stderr.contains("help:"), "{stderr}");
}
