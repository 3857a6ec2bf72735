//! The commands diskimage-builder hooks call, as kiln provides them.
//!
//! In the chroot, `install-packages`, `pkg-map`, `dib-init-system` and
//! `dib-run-parts` come first on `PATH` from the hooks tree (so they leave
//! the image with it); `pkg-map` reads each element's map as the plan
//! flattened it for the target, and `install-packages` refuses a package
//! the lock does not pin. Outside the chroot, hooks get a `sudo` that runs
//! the command as it is (kiln is root already), the shell functions
//! `disk-image-create` exports (`get_image_element_array`), and in `_LIB`
//! kiln's `img-functions` (`select_boot_kernel_initrd`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::plan::Plan;

/// Where kiln's in-chroot helpers are, below the hooks directory.
pub(super) const KILN_DIR: &str = "kiln";

const IN_CHROOT: &[(&str, &str)] = &[
    ("install-packages", include_str!("helpers/install-packages")),
    ("pkg-map", include_str!("helpers/pkg-map")),
    ("dib-init-system", include_str!("helpers/dib-init-system")),
    ("dib-run-parts", include_str!("helpers/dib-run-parts")),
];

const SUDO: &str = include_str!("helpers/sudo");

/// kiln's stand-in for DIB's `lib/img-functions`, found by outside hooks
/// through `_LIB` as DIB's are.
pub(super) const IMG_FUNCTIONS: &str = include_str!("helpers/img-functions");

/// Writes the in-chroot helpers below `hooks/kiln`: `bin/` (the
/// commands), `pkg-map/<element>` (name, tab, mapped names), and
/// `locked-packages` (one name a line).
pub(super) fn write_in_chroot(hooks: &Path, plan: &Plan, locked: &[String]) -> std::io::Result<()> {
    let kiln = hooks.join(KILN_DIR);
    let bin = kiln.join("bin");
    std::fs::create_dir_all(&bin)?;
    for (name, text) in IN_CHROOT {
        write_executable(&bin.join(name), text)?;
    }
    let maps = kiln.join("pkg-map");
    std::fs::create_dir_all(&maps)?;
    for (element, names) in &plan.pkg_maps {
        let text: String = names
            .iter()
            .map(|(from, to)| format!("{from}\t{to}\n"))
            .collect();
        std::fs::write(maps.join(element.as_str()), text)?;
    }
    let mut names = locked.join("\n");
    names.push('\n');
    std::fs::write(kiln.join("locked-packages"), names)
}

/// Writes the outside-the-chroot helpers into `dir`: `sudo`, and
/// `img-functions` (`_LIB` names `dir`).
pub(super) fn write_outside(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("img-functions"), IMG_FUNCTIONS)?;
    write_executable(&dir.join("sudo"), SUDO)
}

fn write_executable(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// The shell functions `disk-image-create` exports to hooks, as bash
/// passes exported functions through the environment
/// (`BASH_FUNC_name%%`), plus `IMAGE_ELEMENT_YAML`, which they read.
pub(super) fn exported_functions(plan: &Plan) -> Vec<(String, String)> {
    let array: Vec<String> = plan
        .elements
        .iter()
        .map(|e| format!("[{}]={}", e.name, shell_quote(&e.dir.display().to_string())))
        .collect();
    let yaml: String = plan
        .elements
        .iter()
        .map(|e| format!("{}: {}\n", e.name, e.dir.display()))
        .collect();
    vec![
        (
            "BASH_FUNC_get_image_element_array%%".to_string(),
            format!("() {{ echo {};\n}}", shell_quote(&array.join(" "))),
        ),
        ("IMAGE_ELEMENT_YAML".to_string(), yaml),
    ]
}

/// `text` in single quotes for the shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
