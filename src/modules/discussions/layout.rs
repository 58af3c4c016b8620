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
//! and the module's own records, under the nil tenant (tenant ids are random
//! UUID v4, never nil):
//!
//! ```text
//! <nil:16> m pending-index    the pending index covers every comment (empty value;
//!                             written by the backfill, see `super::backfill`)
//! ```
//!
//! Invariants: comment ids are UUID v7 (time ordered), so a parent's children
//! index lists its replies oldest first and the pending index a tenant's
//! comments awaiting moderation oldest first, across discussions; a `p` row
//! exists exactly while its comment is `pending` (written and removed in the
//! change that sets and leaves that status; comments stored by builds before
//! the index get theirs from the one-time backfill, done once the
//! `pending-index` record exists); every key starts with the tenant, so
//! one tenant's keys never reach another's, and every kind byte is below
//! 0xff, so `<tenant> 0xff` sorts after all of a tenant's keys; these
//! encodings never change (existing data directories are read as they are;
//! the tests pin the bytes).

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
    let mut key = comments(tenant);
    key.extend_from_slice(id.as_bytes());
    key
}

/// Prefix of a tenant's comments.
pub fn comments(tenant: &Uuid) -> Vec<u8> {
    base(tenant, b'c')
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

/// Key of the record saying the pending index covers every comment,
/// comments stored before the index included (see `super::backfill`).
pub fn pending_index_complete() -> Vec<u8> {
    let mut key = base(&Uuid::nil(), b'm');
    key.extend_from_slice(b"pending-index");
    key
}

/// The tenant of a key of the module: the 16 bytes after the prefix
/// (zero-padded if the key is shorter, so any key gives a tenant at or
/// before it).
pub fn tenant_of(key: &[u8]) -> Uuid {
    let tail = key.get(prefix().len()..).unwrap_or_default();
    let mut tenant = [0; 16];
    let len = tail.len().min(16);
    tenant[..len].copy_from_slice(&tail[..len]);
    Uuid::from_bytes(tenant)
}

/// A key after every key of `tenant` and before any of the next tenant:
/// `<tenant> 0xff` (every kind byte is lower).
pub fn after_tenant(tenant: &Uuid) -> Vec<u8> {
    base(tenant, 0xff)
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
        assert_eq!(comments(&tenant), [&base[..], b"c"].concat());
        assert_eq!(
            pending_index_complete(),
            [&b"sdiscussions\0"[..], &[0; 16], b"mpending-index"].concat()
        );
        assert_eq!(after_tenant(&tenant), [&base[..], &[0xff]].concat());
    }

    #[test]
    fn tenants_are_read_back_and_bounded_by_their_end_key() {
        let (tenant, next) = (Uuid::from_bytes([0x77; 16]), Uuid::from_bytes([0x78; 16]));
        let id = Uuid::from_bytes([0xfe; 16]);
        for key in [
            comment(&tenant, &id),
            reaction(&tenant, &id, &id, "like"),
            external(&tenant, "\u{10ffff}"),
            pending_comments(&tenant),
        ] {
            assert_eq!(tenant_of(&key), tenant);
            assert!(key < after_tenant(&tenant), "{key:?}");
        }
        assert!(after_tenant(&tenant) < discussion(&next, &Uuid::nil()));
        assert_eq!(tenant_of(&pending_index_complete()), Uuid::nil());
        let short = [&prefix()[..], &[0x77, 0x77]].concat();
        assert_eq!(
            tenant_of(&short),
            Uuid::from_bytes([0x77, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        );
        assert!(short < after_tenant(&tenant_of(&short)));
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
