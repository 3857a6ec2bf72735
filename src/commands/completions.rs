//! `kiln completions SHELL`: print the shell's completion script for
//! `kiln`, its commands and their options.
//!
//! The script is made from the command line's own definition
//! ([`crate::cli::definition`]) by clap_complete, so it names exactly the
//! commands and options `kiln --help` lists. It is for `kiln`; kiln started
//! as `disk-image-create` parses DIB's command line, which clap does not
//! describe.

use std::io::Write;

use crate::failure::Failure;

/// The shells kiln writes completion scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// bash (with or without the bash-completion package).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// What `kiln completions` was asked for.
#[derive(Debug)]
pub struct CompletionsSettings {
    /// The shell whose script to print.
    pub shell: Shell,
}

/// Prints the completion script of `settings.shell` on stdout.
pub fn run(settings: &CompletionsSettings) -> Result<(), Failure> {
    let script = script(settings.shell);
    std::io::stdout().lock().write_all(&script).map_err(|e| {
        Failure::Internal(miette::miette!(
            "cannot write the completion script to stdout: {e}"
        ))
    })
}

/// The completion script of `shell` for `kiln`. Written into memory first:
/// clap_complete panics on a failed write, and stdout can be a closed pipe.
pub fn script(shell: Shell) -> Vec<u8> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut definition = crate::cli::definition();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut definition, "kiln", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(shell: Shell) -> String {
        String::from_utf8(script(shell)).expect("a completion script is UTF-8")
    }

    #[test]
    fn every_shell_s_script_names_every_command() {
        let commands: Vec<String> = crate::cli::definition()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert!(commands.len() >= 10, "{commands:?}");
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = text(shell);
            for command in &commands {
                assert!(
                    script.contains(command.as_str()),
                    "{shell:?}'s script does not name `{command}`"
                );
            }
        }
    }

    #[test]
    fn the_bash_script_registers_kiln_and_completes_build_s_options() {
        let script = text(Shell::Bash);
        assert!(
            script.contains("complete -F _kiln") && script.contains(" kiln\n"),
            "{script}"
        );
        // Options of a command, and the values of an enum option.
        assert!(script.contains("--keep-tree"), "{script}");
        assert!(script.contains("tcg kvm"), "{script}");
        assert!(text(Shell::Zsh).starts_with("#compdef kiln"));
        assert!(text(Shell::Fish).contains("complete -c kiln"));
    }
}
