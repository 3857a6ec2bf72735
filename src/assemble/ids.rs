//! Every identifier an image carries, derived from the lock.
//!
//! Filesystem UUIDs, the ext4 hash seed, GPT disk and partition GUIDs, the
//! MBR disk id and the vfat volume id would be random if the tools chose
//! them; kiln passes each tool a value derived from the lock's hash and
//! the identifier's purpose (`"partition root"`, `"ext4 hash seed root"`),
//! so the same lock gives the same bytes and two purposes never collide.

use sha2::{Digest, Sha256};

/// Derives identifiers from one seed (the hash of the lock's
/// [`crate::lock::identity_text`]).
#[derive(Debug, Clone)]
pub struct Ids {
    seed: [u8; 32],
}

/// A 128-bit identifier in RFC 4122 form (version 4 and variant bits set,
/// so tools that check them accept it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid([u8; 16]);

impl Ids {
    /// Identifiers for an image whose lock text is `lock_text`.
    pub fn from_lock_text(lock_text: &str) -> Ids {
        Ids {
            seed: Sha256::digest(lock_text.as_bytes()).into(),
        }
    }

    fn digest(&self, purpose: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.seed);
        hasher.update(b"\0kiln id\0");
        hasher.update(purpose.as_bytes());
        hasher.finalize().into()
    }

    /// A UUID for `purpose`.
    pub fn uuid(&self, purpose: &str) -> Uuid {
        Uuid::from_digest(&self.digest(purpose))
    }

    /// A 32-bit identifier for `purpose` (MBR disk id, vfat volume id),
    /// never zero (which tools read as "none").
    pub fn u32(&self, purpose: &str) -> u32 {
        let digest = self.digest(purpose);
        let value = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        if value == 0 { 1 } else { value }
    }
}

impl Uuid {
    /// The UUID made of a SHA-256 digest's first 16 bytes, with the
    /// version 4 and variant bits set.
    pub fn from_digest(digest: &[u8; 32]) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Uuid(bytes)
    }

    /// The 16 bytes in the order the string form shows them.
    pub fn bytes(&self) -> [u8; 16] {
        self.0
    }
}

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = hex::encode(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_lock_and_purpose_give_the_same_id() {
        let a = Ids::from_lock_text("lock A");
        let b = Ids::from_lock_text("lock A");
        assert_eq!(a.uuid("root"), b.uuid("root"));
        assert_eq!(a.u32("mbr"), b.u32("mbr"));
    }

    #[test]
    fn another_lock_or_purpose_gives_another_id() {
        let a = Ids::from_lock_text("lock A");
        let b = Ids::from_lock_text("lock B");
        assert_ne!(a.uuid("root"), b.uuid("root"));
        assert_ne!(a.uuid("root"), a.uuid("esp"));
        assert_ne!(a.u32("mbr"), a.u32("vfat esp"));
    }

    #[test]
    fn uuids_are_version_4_in_the_usual_form() {
        let text = Ids::from_lock_text("x").uuid("y").to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
        assert_eq!(text.matches('-').count(), 4);
    }
}
