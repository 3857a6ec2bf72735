//! ssh into a booted machine: a throwaway ed25519 key, and commands run
//! with the host's OpenSSH client (`ssh`), never trusting or recording the
//! machine's host key (it is new on every boot).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{MachineError, failed};
use crate::host::command::{self, Finished};

/// The host address QEMU forwards the guest's port 22 from.
pub const HOST_ADDRESS: &str = "127.0.0.1";

/// Seconds ssh waits for the TCP connection and the server's banner.
const CONNECT_TIMEOUT_SECS: u64 = 5;

/// A key pair made for one boot.
#[derive(Debug, Clone)]
pub struct SshKey {
    /// The private key file.
    pub private: PathBuf,
    /// The public key, one line.
    pub public: String,
}

impl SshKey {
    /// Makes `dir/id_ed25519` (and `.pub`) without a passphrase; shells out
    /// to `ssh-keygen`.
    pub fn generate(dir: &Path) -> Result<SshKey, MachineError> {
        let private = dir.join("id_ed25519");
        let finished = command::run(
            "ssh-keygen",
            &[
                "-q".as_ref(),
                "-t".as_ref(),
                "ed25519".as_ref(),
                "-N".as_ref(),
                "".as_ref(),
                "-C".as_ref(),
                "kiln".as_ref(),
                "-f".as_ref(),
                private.as_os_str(),
            ],
            "openssh-client",
        )?;
        if !finished.success() {
            return Err(failed("ssh-keygen", &finished));
        }
        let public_path = dir.join("id_ed25519.pub");
        let public = fs_err::read_to_string(&public_path)?;
        Ok(SshKey {
            private,
            public: public.trim().to_string(),
        })
    }
}

/// Where and as whom to ssh into a machine.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// The user to log in as.
    pub user: String,
    /// The host port forwarded to the guest's port 22.
    pub port: u16,
    /// The private key.
    pub key: PathBuf,
}

impl SshTarget {
    /// The command a person types to log in.
    pub fn login_command(&self) -> String {
        format!(
            "ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -i {} -p {} {}@{HOST_ADDRESS}",
            self.key.display(),
            self.port,
            self.user
        )
    }

    /// ssh's arguments up to the destination: no user configuration, no
    /// prompts, no host key checks.
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "-F",
            "none",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentitiesOnly=yes",
        ]
        .iter()
        .map(|a| (*a).to_string())
        .collect();
        args.push("-o".into());
        args.push(format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}"));
        args.extend(extra.iter().map(|a| (*a).to_string()));
        args.push("-i".into());
        args.push(self.key.display().to_string());
        args.push("-p".into());
        args.push(self.port.to_string());
        args.push(format!("{}@{HOST_ADDRESS}", self.user));
        args
    }

    /// Runs `remote` (a shell command line) in the machine with the key,
    /// killed after `limit`; shells out to `timeout` and `ssh`. Exit code
    /// 255 is ssh's own failure (no connection, key refused); 124 is the
    /// limit.
    pub fn run(&self, remote: &str, limit: Duration) -> Result<Finished, MachineError> {
        run_retrying(&self.run_args(remote, limit))
    }

    /// [`SshTarget::run`] once, without trying a dropped connection again:
    /// for polling until the machine lets anyone in at all.
    pub fn run_once(&self, remote: &str, limit: Duration) -> Result<Finished, MachineError> {
        Ok(command::run(
            "timeout",
            &self.run_args(remote, limit),
            "coreutils",
        )?)
    }

    fn run_args(&self, remote: &str, limit: Duration) -> Vec<String> {
        let mut args = vec![
            "--kill-after=5".to_string(),
            format!("{}", limit.as_secs().max(1)),
            "ssh".to_string(),
        ];
        args.extend(self.args(&[]));
        args.push("--".into());
        args.push(remote.to_string());
        args
    }

    /// The authentication methods the server offers, read from ssh's
    /// "Permission denied (…)" after trying a password login (which
    /// `BatchMode` never completes). `None` if the server did not refuse.
    pub fn offered_methods(&self) -> Result<Option<Vec<String>>, MachineError> {
        let mut args = vec![
            "--kill-after=5".to_string(),
            "30".to_string(),
            "ssh".to_string(),
        ];
        args.extend(self.args(&[
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
        ]));
        args.push("--".into());
        args.push("true".into());
        let finished = run_retrying(&args)?;
        if finished.success() {
            return Ok(None);
        }
        match denied_methods(&finished.stderr) {
            Some(methods) => Ok(Some(methods)),
            None => Err(MachineError::Failed {
                command: "ssh without a key".to_string(),
                status: format!("{:?}", finished.code),
                stderr: finished.stderr,
            }),
        }
    }
}

/// How long a connection that sshd drops (it restarts on a first boot,
/// when cloud-init changes its configuration or keys) is tried again.
const RECONNECT_LIMIT: Duration = Duration::from_secs(60);

/// Runs `timeout ARGS` (an ssh command line), trying again while ssh
/// fails to connect at all (exit 255 before authentication): a first boot
/// restarts sshd, and a check must not fail because it was in between.
fn run_retrying(args: &[String]) -> Result<Finished, MachineError> {
    let started = std::time::Instant::now();
    loop {
        let finished = command::run("timeout", args, "coreutils")?;
        let dropped = finished.code == Some(255)
            && [
                "kex_exchange_identification",
                "Connection reset",
                "Connection refused",
                "Connection closed",
            ]
            .iter()
            .any(|sign| finished.stderr.contains(sign));
        // A signal stops the wait at once; the caller reports it.
        if !dropped
            || started.elapsed() > RECONNECT_LIMIT
            || crate::host::signals::received().is_some()
        {
            return Ok(finished);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The methods in ssh's "user@host: Permission denied (publickey,password)."
pub fn denied_methods(stderr: &str) -> Option<Vec<String>> {
    let start = stderr.rfind("Permission denied (")? + "Permission denied (".len();
    let rest = &stderr[start..];
    let end = rest.find(')')?;
    Some(
        rest[..end]
            .split(',')
            .map(|m| m.trim().to_string())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offered_methods_are_read_from_the_refusal() {
        assert_eq!(
            denied_methods("debian@127.0.0.1: Permission denied (publickey,password).\r\n"),
            Some(vec!["publickey".to_string(), "password".to_string()])
        );
        assert_eq!(
            denied_methods("debian@127.0.0.1: Permission denied (publickey).\n"),
            Some(vec!["publickey".to_string()])
        );
        assert_eq!(denied_methods("Connection refused"), None);
    }

    #[test]
    fn the_login_command_names_key_port_and_user() {
        let target = SshTarget {
            user: "debian".into(),
            port: 2222,
            key: PathBuf::from("/tmp/k/id_ed25519"),
        };
        assert!(
            target
                .login_command()
                .ends_with("-i /tmp/k/id_ed25519 -p 2222 debian@127.0.0.1")
        );
        let args = target.args(&[]);
        assert_eq!(args.last().map(String::as_str), Some("debian@127.0.0.1"));
        assert!(args.contains(&"BatchMode=yes".to_string()));
    }
}
