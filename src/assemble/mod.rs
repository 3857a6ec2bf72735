//! The assemble stage: from the finished root tree to filesystem images
//! and whole-disk images, with every identifier derived from the lock.

pub mod disk;
pub mod filesystem;
pub mod fstab;
pub mod ids;
