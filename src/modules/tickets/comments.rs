//! Comments on tickets, with `@<userId>` mentions.
//!
//! Anyone who sees a ticket may comment on it (text 1 to
//! `--tickets-max-text-chars` characters). A mention is a word starting
//! with `@`: a word is a run of `[A-Za-z0-9._:@-]` (so `ann@example.com`
//! mentions nobody), the mentioned id is the rest of the word with trailing
//! `.` and `:` dropped (`@bob.` and `@bob:` mention `bob`); at most
//! [`MAX_MENTIONS`] distinct users per comment. The mentioned get
//! `mention`, the ticket's other followers `comment`, both with
//! `metadata.commentId`. The first comment of an agent who is not the
//! requester sets the ticket's `firstResponseAt` (saved through
//! `ticket::save`, so its response SLA ends and its lists hear of it).
//!
//! Invariants: a comment, its notifications and the ticket's first response
//! are one change; comment ids come from the tenant's comment counter
//! (increasing in commit order, served as strings), so a ticket's comments
//! read oldest first in key order; a merged ticket takes no comment (409).

use super::layout::{self, Counter};
use super::model::{Metadata, NotificationType, Person, Ticket, id_string};
use super::notify::{self, Cause};
use super::recipients;
use super::service::{self, Acting, check_user, next_id, now, save as save_record};
use super::ticket;
use crate::core::store::Store;
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::records::{check_chars, decode};
use serde::{Deserialize, Serialize};

/// Most distinct users one comment mentions.
pub const MAX_MENTIONS: usize = 20;

/// A comment as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    /// Per-tenant id, served as a string.
    #[serde(with = "id_string")]
    pub id: u64,
    /// The ticket, served as a string.
    #[serde(with = "id_string")]
    pub ticket_id: u64,
    /// Who wrote it.
    pub author: Person,
    /// The text.
    pub text: String,
    /// The users it mentions, in order of first mention.
    pub mentions: Vec<String>,
    /// Written (RFC 3339).
    pub created_at: String,
}

/// `POST /ticket/{ticketId}/comments` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewComment {
    /// The text.
    pub text: String,
}

/// A page of comments, oldest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommentPage {
    /// The comments.
    pub items: Vec<Comment>,
    /// The cursor of the next page (the last comment's id), when there is one.
    pub next_cursor: Option<String>,
}

/// Whether `byte` may be part of a mention's word.
fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"._:@-".contains(&byte)
}

/// The distinct user ids `text` mentions, in order of first mention.
pub fn mentions(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found: Vec<String> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if !is_word_byte(bytes[at]) {
            at += 1;
            continue;
        }
        let start = at;
        while at < bytes.len() && is_word_byte(bytes[at]) {
            at += 1;
        }
        if bytes[start] != b'@' {
            continue;
        }
        let user = text[start + 1..at].trim_end_matches(['.', ':']);
        if !user.is_empty() && !found.iter().any(|seen| seen == user) {
            found.push(user.to_string());
        }
    }
    found
}

/// The text and mentions of a new comment, checked against the limits.
fn checked(acting: &Acting, text: &str) -> Result<Vec<String>, ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::validation("`text` must not be empty"));
    }
    check_chars(
        "text",
        text,
        acting.limits.max_text_chars,
        "tickets-max-text-chars",
    )?;
    let mentioned = mentions(text);
    if mentioned.len() > MAX_MENTIONS {
        return Err(ApiError::validation(format!(
            "a comment mentions at most {MAX_MENTIONS} distinct users; this one mentions {}",
            mentioned.len()
        )));
    }
    for user in &mentioned {
        check_user("mentions", user)?;
    }
    Ok(mentioned)
}

/// Adds the caller's comment to a ticket they see.
pub fn create(
    change: &mut Change<'_>,
    acting: &Acting,
    ticket: u64,
    input: NewComment,
) -> Result<Comment, ApiError> {
    let mentioned = checked(acting, &input.text)?;
    let ticket = ticket::writable(change, acting, ticket)?;
    let tenant = acting.tenant;
    let comment = Comment {
        id: next_id(change, &tenant, Counter::Comment)?,
        ticket_id: ticket.id,
        author: acting.person.clone(),
        text: input.text,
        mentions: mentioned,
        created_at: now(change),
    };
    save_record(
        change,
        layout::comment(&tenant, ticket.id, comment.id),
        &comment,
    )?;
    let ticket = first_response(change, acting, ticket, &comment.created_at)?;
    notify_followers(change, acting, &ticket, &comment)?;
    Ok(comment)
}

/// Sets `firstResponseAt` when this is the first comment of an agent other
/// than the requester; returns the ticket as saved.
fn first_response(
    change: &mut Change<'_>,
    acting: &Acting,
    ticket: Ticket,
    at: &str,
) -> Result<Ticket, ApiError> {
    let responds = acting.is_agent()
        && acting.person.id != ticket.requester.id
        && ticket.first_response_at.is_none();
    if !responds {
        return Ok(ticket);
    }
    let mut responded = ticket.clone();
    responded.first_response_at = Some(at.to_string());
    responded.updated_at = at.to_string();
    super::ticket::save(change, acting, Some(&ticket), responded)
}

/// `mention` to the mentioned, `comment` to the other followers.
fn notify_followers(
    change: &mut Change<'_>,
    acting: &Acting,
    ticket: &Ticket,
    comment: &Comment,
) -> Result<(), ApiError> {
    let metadata = Metadata {
        comment_id: Some(comment.id.to_string()),
        ..Metadata::default()
    };
    let followers = recipients::followers(change, &acting.tenant, ticket)?;
    let others = followers
        .iter()
        .map(String::as_str)
        .filter(|user| !comment.mentions.iter().any(|mentioned| mentioned == user));
    let mentioned = comment.mentions.iter().map(String::as_str);
    for (kind, users) in [
        (NotificationType::Mention, mentioned.collect::<Vec<_>>()),
        (NotificationType::Comment, others.collect()),
    ] {
        let cause = Cause {
            kind,
            ticket,
            actor: &acting.person,
            metadata: metadata.clone(),
            detail: None,
        };
        notify::notify(
            change,
            &acting.tenant,
            acting.limits.inbox_max,
            users,
            &cause,
        )?;
    }
    Ok(())
}

/// A page of the comments of a ticket the caller sees, oldest first, after
/// the comment `cursor`.
pub fn page(
    store: &Store,
    acting: &Acting,
    ticket: u64,
    cursor: Option<u64>,
    limit: usize,
) -> Result<CommentPage, ApiError> {
    let ticket = service::visible_ticket(store, acting, ticket)?;
    let prefix = layout::comments(&acting.tenant, ticket.id);
    let after = cursor.map(|id| layout::comment(&acting.tenant, ticket.id, id));
    let rows = store
        .scan_blocking(&prefix, after.as_deref(), limit + 1)
        .map_err(|err| err.into_api("reading comments failed"))?;
    let more = rows.len() > limit;
    let items = rows
        .iter()
        .take(limit)
        .map(|(_, value)| decode::<Comment>(value))
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = more
        .then(|| items.last().map(|comment| comment.id.to_string()))
        .flatten();
    Ok(CommentPage { items, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_words_starting_with_at() {
        assert_eq!(
            mentions("@ann please ask @bob.smith, and @ann again; cc (@c:d-e)"),
            ["ann", "bob.smith", "c:d-e"]
        );
        assert_eq!(mentions("write to ann@example.com"), Vec::<String>::new());
        assert_eq!(
            mentions("thanks @bob. @carol: see @dan@corp"),
            ["bob", "carol", "dan@corp"]
        );
        assert_eq!(mentions("@ @. nobody@ é@x"), ["x"]);
        assert_eq!(mentions(""), Vec::<String>::new());
    }

    #[test]
    fn mentions_stop_at_characters_outside_ids() {
        assert_eq!(
            mentions("@ann,@bob!@carol/@dan"),
            ["ann", "bob", "carol", "dan"]
        );
        assert_eq!(mentions("hi\n@ann\t@bob"), ["ann", "bob"]);
    }
}
