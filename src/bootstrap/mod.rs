//! Bootstrap: turn a lock and the cache into a root tree without
//! debootstrap or mmdebstrap on the host.
//!
//! The stage unpacks the essential set from the cached, verified `.deb`s
//! into the tree (merged /usr, as bookworm expects), writes the few files
//! dpkg and apt need to start, and builds a local apt repository of exactly
//! the locked files, so that the chroot runner can let the target's own
//! dpkg configure the essential set and its own apt install the rest.
//!
//! - [`deb`]: reading a `.deb` (control file, data unpacked safely).
//! - [`merged_usr`]: the `/bin -> usr/bin`, … links.
//! - [`paragraphs`]: each locked package's index paragraph, made from the
//!   lock and its `.deb` (the build reads no archive index).
//! - [`essential`]: which locked packages are unpacked first.
//! - [`repo`]: the local repository and the apt configuration that points
//!   at it.
//! - [`sources`]: the image's apt sources for the imagefile's extra
//!   repositories.
//! - [`extract`]: the first stage itself.
//! - [`install`]: the second stage, in the chroot, and the check that
//!   the tree holds exactly the lock.

pub mod deb;
pub mod essential;
pub mod extract;
pub mod install;
pub mod merged_usr;
pub mod paragraphs;
pub mod repo;
pub mod sources;

pub use deb::{
    DebError, PackagedFile, UnpackReport, list_files, read_control, read_control_file, unpack_data,
};
pub use essential::essential_set;
pub use extract::{BootstrapError, extract_essential, stage_debs, write_dpkg_skeleton};
pub use install::{Bootstrapped, InstallError, LocalRepo, bootstrap, check_finished_tree};
pub use merged_usr::create_merged_usr;
pub use repo::{write_apt_setup, write_local_repo};
