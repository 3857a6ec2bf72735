//! The host seam: everything kiln does to the world outside its own process.
//!
//! Downloads today; running commands, mounting, and entering chroots later.
//! Every external action goes through the types of this module and nowhere
//! else, for two reasons. Logic elsewhere (resolving, locking, layout maths)
//! takes these types as values, so it can be tested without a network, root
//! or a scratch disk. And every external action is reported the same way,
//! so a user reading a failed build's log sees each download, retry and
//! command with what it was asked to do and how it ended.

pub mod command;
pub mod file;
pub mod http;
pub mod memory;
pub mod signals;
pub mod space;
pub mod temp;
pub mod walk;
