//! The discussions module's key space, inside `s discussions 0x00 <tenant:16>`:
//!
//! ```text
//! d <discussion:16>                               discussion (JSON)
//! x <external id>                                 discussion id by the backend's external id
//! c <comment:16>                                  comment (JSON)
//! k <discussion:16> <parent:16> <comment:16>      children index (nil parent = top level)
//! u <external user id>                            reader (JSON): stable internal id
//! r <comment:16> <user:16> <reaction>             one reader's reaction (empty value)
//! p <comment:16>                                  pending comment (value: its discussion:16)
//! ```
//!
//! Invariants: comment ids are UUID v7 (time ordered), so a parent's children
//! index lists its replies oldest first and the pending index a tenant's
//! comments awaiting moderation oldest first, across discussions; a `p` row
//! exists exactly while its comment is `pending` (written and removed in the
//! change that sets and leaves that status); every key starts with the tenant, so
//! one tenant's keys never reach another's; these encodings never change
//! (existing data directories are read as they are; the tests pin the bytes).

use crate::core::store::layout as store_layout;
use uuid::Uuid;

/// The module's name in the store.
const MODULE: &str = "discussions";

/// The prefix of every key of the module: `s discussions 0x00`.
pub fn prefix() -> Vec<u8> {
    store_layout::module(MODULE)
}

fn base(tenant: &Uuid, kind: u8) -> Vec<u8> {
    store_layout::module_kind(MODULE, tenant, kind)
}

/// Key of a discussion.
pub fn discussion(tenant: &Uuid, id: &Uuid) -> Vec<u8> {
    let mut key = base(tenant, b'd');
    key.extend_from_slice(id.as_bytes());
    key
}

/// Key of the external-id index entry.
pub fn external(tenant: &Uuid, external_id: &str) -> Vec<u8> {
    let mut key = base(tenant, b'x');
    key.extend_from_slice(external_id.as_bytes());
    key
}

/// Key of a comment.
pub fn comment(tenant: &Uuid, id: &Uuid) -> Vec<u8> {
    let mut key = base(tenant, b'c');
    key.extend_from_slice(id.as_bytes());
    key
}

/// Prefix of the children of `parent` (`None`: top-level comments) in a discussion.
pub fn children(tenant: &Uuid, discussion: &Uuid, parent: Option<&Uuid>) -> Vec<u8> {
    let mut key = base(tenant, b'k');
    key.extend_from_slice(discussion.as_bytes());
    key.extend_from_slice(parent.unwrap_or(&Uuid::nil()).as_bytes());
    key
}

/// Key of one child entry.
pub fn child(tenant: &Uuid, discussion: &Uuid, parent: Option<&Uuid>, id: &Uuid) -> Vec<u8> {
    let mut key = children(tenant, discussion, parent);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The comment id at the end of a children-index or pending-index key.
pub fn last_id(key: &[u8]) -> Option<Uuid> {
    let tail = key.get(key.len().checked_sub(16)?..)?;
    Uuid::from_slice(tail).ok()
}

/// Prefix of a tenant's pending-comment index.
pub fn pending_comments(tenant: &Uuid) -> Vec<u8> {
    base(tenant, b'p')
}

/// Key of a comment's pending-index row.
pub fn pending_comment(tenant: &Uuid, comment: &Uuid) -> Vec<u8> {
    let mut key = pending_comments(tenant);
    key.extend_from_slice(comment.as_bytes());
    key
}

/// Key of a reader record.
pub fn reader(tenant: &Uuid, external_user_id: &str) -> Vec<u8> {
    let mut key = base(tenant, b'u');
    key.extend_from_slice(external_user_id.as_bytes());
    key
}

/// Key of one reader's reaction to a comment.
pub fn reaction(tenant: &Uuid, comment: &Uuid, user: &Uuid, reaction: &str) -> Vec<u8> {
    let mut key = base(tenant, b'r');
    key.extend_from_slice(comment.as_bytes());
    key.extend_from_slice(user.as_bytes());
    key.extend_from_slice(reaction.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_byte_for_byte_those_of_existing_data_dirs() {
        let (tenant, id) = (Uuid::from_bytes([0x77; 16]), Uuid::from_bytes([0x88; 16]));
        let base = [&b"sdiscussions\0"[..], &[0x77; 16]].concat();
        assert_eq!(
            discussion(&tenant, &id),
            [&base[..], b"d", &[0x88; 16]].concat()
        );
        assert_eq!(external(&tenant, "x-1"), [&base[..], b"xx-1"].concat());
        assert_eq!(
            comment(&tenant, &id),
            [&base[..], b"c", &[0x88; 16]].concat()
        );
        assert_eq!(
            child(&tenant, &id, None, &id),
            [&base[..], b"k", &[0x88; 16], &[0; 16], &[0x88; 16]].concat()
        );
        assert_eq!(reader(&tenant, "u1"), [&base[..], b"uu1"].concat());
        assert_eq!(
            pending_comment(&tenant, &id),
            [&base[..], b"p", &[0x88; 16]].concat()
        );
        assert_eq!(last_id(&pending_comment(&tenant, &id)), Some(id));
        assert_eq!(
            reaction(&tenant, &id, &id, "like"),
            [&base[..], b"r", &[0x88; 16], &[0x88; 16], b"like"].concat()
        );
    }

    #[test]
    fn children_of_one_parent_share_a_prefix_and_sort_by_id() {
        let (tenant, discussion, parent) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let first = Uuid::now_v7();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = Uuid::now_v7();
        let a = child(&tenant, &discussion, Some(&parent), &first);
        let b = child(&tenant, &discussion, Some(&parent), &second);
        let prefix = children(&tenant, &discussion, Some(&parent));
        assert!(a.starts_with(&prefix) && b.starts_with(&prefix));
        assert!(a < b);
        assert_eq!(last_id(&b), Some(second));
        let top = children(&tenant, &discussion, None);
        assert!(!a.starts_with(&top));
    }
}
