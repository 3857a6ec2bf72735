//! The NoCloud seed: a small vfat image labelled `cidata` holding
//! `meta-data` and `user-data`, which cloud-init in the guest finds by its
//! label and reads on first boot. Made with `mkfs.vfat` and `mcopy`, so
//! nothing is mounted.

use std::path::{Path, PathBuf};

use super::{MachineError, failed};
use crate::host::command;

/// The filesystem label cloud-init's NoCloud datasource looks for.
pub const SEED_LABEL: &str = "cidata";

/// The size of the seed image: ample for two small files.
const SEED_KIB: u64 = 1024;

/// What the seed tells cloud-init.
#[derive(Debug, Clone)]
pub struct SeedConfig<'a> {
    /// The instance id; a new one makes cloud-init run its first-boot
    /// modules.
    pub instance_id: &'a str,
    /// The machine's host name.
    pub hostname: &'a str,
    /// The public key (one line of `id_ed25519.pub`) the default user
    /// accepts.
    pub public_key: &'a str,
    /// More `#cloud-config` keys, as YAML, appended to the user data.
    pub extra_user_data: &'a str,
}

/// The `meta-data` file.
pub fn meta_data(config: &SeedConfig<'_>) -> String {
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        yaml_quoted(config.instance_id),
        yaml_quoted(config.hostname)
    )
}

/// The `user-data` file: a `#cloud-config` giving the default user the
/// key, then the caller's additions.
pub fn user_data(config: &SeedConfig<'_>) -> String {
    let mut text = format!(
        "#cloud-config\nssh_authorized_keys:\n  - {}\n",
        yaml_quoted(config.public_key.trim())
    );
    let extra = config.extra_user_data.trim_end();
    if !extra.is_empty() {
        text.push_str(
            extra
                .strip_prefix("#cloud-config")
                .unwrap_or(extra)
                .trim_start_matches('\n'),
        );
        text.push('\n');
    }
    text
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn yaml_quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// Writes `meta-data` and `user-data` into `dir` and makes `dir/seed.img`
/// from them; shells out to `mkfs.vfat` and `mcopy`. Returns the image's
/// path.
pub fn make_seed(dir: &Path, config: &SeedConfig<'_>) -> Result<PathBuf, MachineError> {
    let meta = dir.join("meta-data");
    let user = dir.join("user-data");
    for (path, text) in [(&meta, meta_data(config)), (&user, user_data(config))] {
        fs_err::write(path, text)?;
    }
    let image = dir.join("seed.img");
    let blocks = SEED_KIB.to_string();
    let finished = command::run(
        "mkfs.vfat",
        &[
            "-n".as_ref(),
            SEED_LABEL.as_ref(),
            "-C".as_ref(),
            image.as_os_str(),
            blocks.as_ref(),
        ],
        "dosfstools",
    )?;
    if !finished.success() {
        return Err(failed("mkfs.vfat", &finished));
    }
    let finished = command::run(
        "mcopy",
        &[
            "-i".as_ref(),
            image.as_os_str(),
            meta.as_os_str(),
            user.as_os_str(),
            "::".as_ref(),
        ],
        "mtools",
    )?;
    if !finished.success() {
        return Err(failed("mcopy", &finished));
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config<'a>(extra: &'a str) -> SeedConfig<'a> {
        SeedConfig {
            instance_id: "kiln-1",
            hostname: "web",
            public_key: "ssh-ed25519 AAAA kiln\n",
            extra_user_data: extra,
        }
    }

    #[test]
    fn user_data_gives_the_key_and_keeps_additions() {
        assert_eq!(
            user_data(&config("")),
            "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAA kiln\"\n"
        );
        assert_eq!(
            user_data(&config("#cloud-config\npackages: [htop]\n")),
            "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAA kiln\"\npackages: [htop]\n"
        );
        assert_eq!(
            meta_data(&config("")),
            "instance-id: \"kiln-1\"\nlocal-hostname: \"web\"\n"
        );
    }

    #[test]
    fn the_seed_is_a_cidata_vfat_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = match make_seed(dir.path(), &config("")) {
            Ok(image) => image,
            // Hosts without dosfstools/mtools test the text above only.
            Err(MachineError::Command(_)) => return,
            Err(error) => panic!("{error}"),
        };
        let listing = command::run(
            "mdir",
            &[
                "-b".as_ref(),
                "-i".as_ref(),
                image.as_os_str(),
                "::".as_ref(),
            ],
            "mtools",
        )
        .expect("mdir runs");
        let names = String::from_utf8_lossy(&listing.stdout).to_lowercase();
        assert!(
            names.contains("meta-data") && names.contains("user-data"),
            "{names}"
        );
        let label = command::run(
            "mlabel",
            &[
                "-s".as_ref(),
                "-i".as_ref(),
                image.as_os_str(),
                "::".as_ref(),
            ],
            "mtools",
        )
        .expect("mlabel runs");
        assert!(
            String::from_utf8_lossy(&label.stdout)
                .to_lowercase()
                .contains("cidata")
        );
    }
}
