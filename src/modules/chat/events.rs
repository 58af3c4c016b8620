//! The chat module's stored events and their payloads (the WebSocket stream
//! and webhooks serve `data` exactly as appended here).
//!
//! * Room topic `~chat/r<roomId>`: `TextMessagesCreated` and
//!   `TextMessagesUpdated` (`{"messages":[message]}`, one message per event),
//!   `TextMessageDeleted`, `RoomUpdated`, `RoomDeleted`, `ReadReceiptsUpdated`.
//! * User topic `~chat/u<userId>`: `RoomCreated` `{room, userId, reason,
//!   role}` (the user's membership begins at its id) and `RoomDeleted`
//!   `{roomId, userId, reason}` (it ends at its id); `userId` names whose,
//!   for webhooks, which get `data` alone.
//!
//! Invariants: every event is appended in the change that makes the state it
//! describes, in the contract's order (a membership's user-topic event before
//! the room's `RoomUpdated` when it begins, after it when it ends); the
//! membership functions record the span in [`super::directory`] with the
//! event's id, so history and events never disagree. An event's `actor` is
//! `{"userId":n}` (0: the backend).

use super::directory;
use super::model::{Message, Role, Room};
use crate::core::log::TopicRef;
use crate::core::log::namespace::Namespace;
use crate::core::writer::Change;
use crate::error::ApiError;
use serde_json::{Value, json};
use ulid::Ulid;
use uuid::Uuid;

/// Name of the module and of its topic namespace.
pub const NAME: &str = "chat";

/// The module's topic namespace: `~chat/…`.
pub const NAMESPACE: Namespace = Namespace::Module(NAME);

/// The topic of a room's events.
pub fn room_topic(tenant: Uuid, room: u64) -> TopicRef {
    TopicRef::internal(tenant, NAME, &format!("r{room}"))
}

/// The topic of a user's membership events.
pub fn user_topic(tenant: Uuid, user: u64) -> TopicRef {
    TopicRef::internal(tenant, NAME, &format!("u{user}"))
}

/// Why a membership began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Began {
    /// The user created the room, or was named when it was created.
    Created,
    /// An owner, admin or the backend added the user.
    Added,
    /// The user joined a public room.
    Joined,
}

/// Why a membership ended (other than the room's deletion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// An owner, admin or the backend removed the user.
    Removed,
    /// The user left.
    Left,
}

/// Appends one tenant's chat events inside a change, as one actor.
pub struct Emitter {
    tenant: Uuid,
    actor: u64,
}

impl Emitter {
    /// An emitter for events caused by user `actor` (0: the backend).
    pub fn new(tenant: Uuid, actor: u64) -> Self {
        Self { tenant, actor }
    }

    fn emit(
        &self,
        change: &mut Change<'_>,
        topic: &TopicRef,
        event_type: &str,
        data: Value,
    ) -> Result<Ulid, ApiError> {
        let actor = json!({ "userId": self.actor });
        Ok(change.append(topic, event_type, actor, data)?.id())
    }

    fn to_room(
        &self,
        change: &mut Change<'_>,
        room: u64,
        event_type: &str,
        data: Value,
    ) -> Result<Ulid, ApiError> {
        self.emit(change, &room_topic(self.tenant, room), event_type, data)
    }

    /// `TextMessagesCreated` with one message.
    pub fn message_created(
        &self,
        change: &mut Change<'_>,
        message: &Message,
    ) -> Result<(), ApiError> {
        let data = json!({ "messages": [message] });
        self.to_room(change, message.room_id, "TextMessagesCreated", data)?;
        Ok(())
    }

    /// `TextMessagesUpdated` with one message.
    pub fn message_updated(
        &self,
        change: &mut Change<'_>,
        message: &Message,
    ) -> Result<(), ApiError> {
        let data = json!({ "messages": [message] });
        self.to_room(change, message.room_id, "TextMessagesUpdated", data)?;
        Ok(())
    }

    /// `TextMessageDeleted`.
    pub fn message_deleted(
        &self,
        change: &mut Change<'_>,
        message: &Message,
    ) -> Result<(), ApiError> {
        let data = json!({
            "parentMessageId": message.parent_message_id,
            "roomId": message.room_id,
            "messageId": message.message_id,
        });
        self.to_room(change, message.room_id, "TextMessageDeleted", data)?;
        Ok(())
    }

    /// `RoomUpdated` with the room as it is now.
    pub fn room_updated(&self, change: &mut Change<'_>, room: &Room) -> Result<(), ApiError> {
        self.to_room(change, room.room_id, "RoomUpdated", json!({ "room": room }))?;
        Ok(())
    }

    /// Room-topic `RoomDeleted`; returns its id (where every membership ends).
    pub fn room_deleted(&self, change: &mut Change<'_>, room: u64) -> Result<Ulid, ApiError> {
        self.to_room(change, room, "RoomDeleted", json!({ "roomId": room }))
    }

    /// `ReadReceiptsUpdated`.
    pub fn receipt(
        &self,
        change: &mut Change<'_>,
        room: u64,
        user: u64,
        last_read: u64,
    ) -> Result<(), ApiError> {
        let data = json!({ "roomId": room, "userId": user, "lastReadMessageId": last_read });
        self.to_room(change, room, "ReadReceiptsUpdated", data)?;
        Ok(())
    }

    /// User-topic `RoomCreated`: `user`'s membership of `room` begins here.
    pub fn membership_began(
        &self,
        change: &mut Change<'_>,
        user: u64,
        room: &Room,
        reason: Began,
        role: Role,
    ) -> Result<(), ApiError> {
        let reason = match reason {
            Began::Created => "created",
            Began::Added => "added",
            Began::Joined => "joined",
        };
        let data = json!({ "room": room, "userId": user, "reason": reason, "role": role.as_str() });
        let topic = user_topic(self.tenant, user);
        let id = self.emit(change, &topic, "RoomCreated", data)?;
        directory::begin(change, &self.tenant, user, room.room_id, id)
    }

    /// User-topic `RoomDeleted`: `user`'s membership of `room` ends here.
    pub fn membership_ended(
        &self,
        change: &mut Change<'_>,
        user: u64,
        room: u64,
        reason: Ended,
    ) -> Result<(), ApiError> {
        let reason = match reason {
            Ended::Removed => "removed",
            Ended::Left => "left",
        };
        let data = json!({ "roomId": room, "userId": user, "reason": reason });
        let id = self.emit(change, &user_topic(self.tenant, user), "RoomDeleted", data)?;
        directory::end(change, &self.tenant, user, room, id)
    }
}

#[cfg(test)]
mod tests {
    use super::super::directory::{self, user_rooms};
    use super::super::members::{self, MemberRef};
    use super::super::messages::{self, NewMessage};
    use super::super::model::ChatLimits;
    use super::super::rooms::{self, NewRoom};
    use super::super::service::{Acting, Caller};
    use crate::core::hub::HubLimits;
    use crate::core::log::LogEvent;
    use crate::core::store::Store;
    use crate::core::writer::{Change, Footprint, Writer};
    use crate::error::ApiError;
    use serde_json::{Value, json};
    use std::sync::Arc;
    use uuid::Uuid;

    const LIMITS: ChatLimits = ChatLimits {
        max_message_chars: 100,
        max_room_members: 10,
        max_rooms_per_user: 10,
        max_name_chars: 10,
        max_description_chars: 10,
        max_initial_members: 10,
        max_thread_comments: 10,
        batch_window: std::time::Duration::ZERO,
    };

    struct Chat {
        store: Store,
        writer: Writer,
        tenant: Uuid,
        _dir: tempfile::TempDir,
    }

    impl Chat {
        fn start() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("db"), 8 << 20).unwrap();
            let started = Writer::start_for_tests(store.clone(), HubLimits::minimal());
            Self {
                store,
                writer: started.writer,
                tenant: Uuid::new_v4(),
                _dir: dir,
            }
        }

        /// Runs `operation` as `sub` (None: the backend); returns its events
        /// as `(topic, type, data)`.
        async fn act<T: Send + 'static>(
            &self,
            sub: Option<&str>,
            operation: impl FnOnce(&mut Change<'_>, &Acting) -> Result<T, ApiError> + Send + 'static,
        ) -> (T, Vec<(String, String, Value)>) {
            let (tenant, caller) = (
                self.tenant,
                match sub {
                    Some(sub) => Caller::User(sub.to_string()),
                    None => Caller::Backend,
                },
            );
            let committed = self
                .writer
                .commit(Footprint::SMALL, move |change| {
                    let acting = Acting::resolve(change, tenant, &caller, LIMITS)?;
                    operation(change, &acting)
                })
                .await
                .unwrap();
            (
                committed.value,
                committed.events.iter().map(described).collect(),
            )
        }
    }

    fn described(event: &Arc<LogEvent>) -> (String, String, Value) {
        let event = &event.event;
        (
            event.topic.clone(),
            event.event_type.clone(),
            event.data.clone(),
        )
    }

    fn types(events: &[(String, String, Value)]) -> Vec<(&str, &str)> {
        events
            .iter()
            .map(|(topic, kind, _)| (topic.as_str(), kind.as_str()))
            .collect()
    }

    fn room(name: &str, members: Vec<MemberRef>) -> NewRoom {
        NewRoom {
            name: name.into(),
            description: String::new(),
            private: false,
            members,
        }
    }

    fn text(text: &str, parent: Option<u64>) -> NewMessage {
        NewMessage {
            text: text.into(),
            message_type: None,
            parent_message_id: parent,
        }
    }

    #[tokio::test]
    async fn membership_events_come_in_the_contract_order_and_record_spans() {
        let chat = Chat::start();
        let members = vec![MemberRef::Sub("bob".into())];
        let (created, events) = chat
            .act(Some("ann"), |change, acting| {
                rooms::create(change, acting, room("r", members))
            })
            .await;
        assert_eq!(created.room_id, 1);
        assert_eq!(
            types(&events),
            [("~chat/u1", "RoomCreated"), ("~chat/u2", "RoomCreated")],
            "creation: user topics only, creator first"
        );
        assert_eq!(events[1].2["reason"], "created");
        assert_eq!(events[1].2["role"], "member");
        assert_eq!(events[1].2["room"]["memberCount"], 2);
        let (_, joined) = chat
            .act(Some("cat"), |change, acting| {
                members::join(change, acting, 1)
            })
            .await;
        assert_eq!(
            types(&joined),
            [("~chat/u3", "RoomCreated"), ("~chat/r1", "RoomUpdated")]
        );
        assert_eq!(joined[0].2["reason"], "joined");
        assert_eq!(joined[1].2["room"]["memberCount"], 3);
        let (_, left) = chat
            .act(Some("cat"), |change, acting| {
                members::leave(change, acting, 1)
            })
            .await;
        assert_eq!(
            types(&left),
            [("~chat/r1", "RoomUpdated"), ("~chat/u3", "RoomDeleted")]
        );
        assert_eq!(
            left[1].2,
            json!({ "roomId": 1, "userId": 3, "reason": "left" })
        );
        let store = chat.store.clone();
        let spans = user_rooms(&store, chat.tenant, 3).unwrap();
        assert_eq!(spans.len(), 1);
        assert!(!spans[0].member_now() && spans[0].spans[0].1.is_some());
        let (_, deleted) = chat
            .act(Some("ann"), |change, acting| {
                rooms::delete(change, acting, 1)
            })
            .await;
        assert_eq!(types(&deleted), [("~chat/r1", "RoomDeleted")]);
        assert_eq!(deleted[0].2, json!({ "roomId": 1 }));
        for user in [1, 2] {
            let spans = user_rooms(&store, chat.tenant, user).unwrap();
            assert!(
                !spans[0].member_now(),
                "ended by the deletion, kept as a tombstone"
            );
        }
        assert_eq!(
            directory::find_user(&store, chat.tenant, "bob").unwrap(),
            Some(2)
        );
    }

    /// The spans of user `user` in room 1, from the store.
    fn spans_of(chat: &Chat, user: u64) -> directory::RoomSpans {
        let rooms = user_rooms(&chat.store, chat.tenant, user).unwrap();
        assert_eq!(rooms.len(), 1, "{rooms:?}");
        rooms.into_iter().next().unwrap()
    }

    #[tokio::test]
    async fn coming_back_more_than_max_spans_times_keeps_the_newest_spans() {
        let chat = Chat::start();
        chat.act(Some("ann"), |change, acting| {
            rooms::create(change, acting, room("r", vec![]))
        })
        .await;
        let rounds = directory::MAX_SPANS + 3;
        let mut began = Vec::new();
        for round in 0..rounds {
            chat.act(Some("bob"), |change, acting| {
                members::join(change, acting, 1)
            })
            .await;
            let spans = spans_of(&chat, 2);
            assert!(spans.member_now(), "joined in round {round}");
            began.push(spans.spans.last().unwrap().0);
            if round + 1 < rounds {
                chat.act(Some("bob"), |change, acting| {
                    members::leave(change, acting, 1)
                })
                .await;
                assert!(!spans_of(&chat, 2).member_now(), "left in round {round}");
            }
        }
        let spans = spans_of(&chat, 2);
        let kept: Vec<_> = spans.spans.iter().map(|(began, _)| *began).collect();
        assert_eq!(
            kept,
            began[rounds - directory::MAX_SPANS..],
            "the oldest dropped"
        );
        let closed = &spans.spans[..directory::MAX_SPANS - 1];
        assert!(closed.iter().all(|(_, ended)| ended.is_some()));
        assert!(spans.member_now() && spans.member_at(*began.last().unwrap()));
        assert!(spans.member_at(kept[0]) && !spans.member_at(began[0]));
    }

    #[tokio::test]
    async fn a_parent_deletion_announces_its_comments_first() {
        let chat = Chat::start();
        chat.act(Some("ann"), |change, acting| {
            rooms::create(change, acting, room("r", vec![]))
        })
        .await;
        let (parent, created) = chat
            .act(Some("ann"), |change, acting| {
                messages::post(change, acting, 1, text("p", None))
            })
            .await;
        assert_eq!(types(&created), [("~chat/r1", "TextMessagesCreated")]);
        assert_eq!(created[0].2["messages"][0]["text"], "p");
        assert_eq!(created[0].2["messages"].as_array().unwrap().len(), 1);
        for n in 0..2 {
            let id = parent.message_id;
            chat.act(Some("ann"), move |change, acting| {
                messages::post(change, acting, 1, text(&format!("c{n}"), Some(id)))
            })
            .await;
        }
        let (edited, updated) = chat
            .act(Some("ann"), move |change, acting| {
                messages::edit(change, acting, 1, parent.message_id, "p2".into())
            })
            .await;
        assert!(edited.edited_at.is_some());
        assert_eq!(types(&updated), [("~chat/r1", "TextMessagesUpdated")]);
        let (_, deleted) = chat
            .act(None, move |change, acting| {
                messages::delete(change, acting, 1, parent.message_id)
            })
            .await;
        let data: Vec<&Value> = deleted.iter().map(|(_, _, data)| data).collect();
        assert_eq!(
            data,
            [
                &json!({ "parentMessageId": 1, "roomId": 1, "messageId": 2 }),
                &json!({ "parentMessageId": 1, "roomId": 1, "messageId": 3 }),
                &json!({ "parentMessageId": null, "roomId": 1, "messageId": 1 }),
            ]
        );
        assert!(
            deleted
                .iter()
                .all(|(_, kind, _)| kind == "TextMessageDeleted")
        );
    }

    #[tokio::test]
    async fn a_read_receipt_is_announced_once_and_never_moves_back() {
        let chat = Chat::start();
        let members = vec![MemberRef::Sub("bob".into())];
        chat.act(Some("ann"), |change, acting| {
            rooms::create(change, acting, room("r", members))
        })
        .await;
        for word in ["a", "b"] {
            chat.act(Some("ann"), move |change, acting| {
                messages::post(change, acting, 1, text(word, None))
            })
            .await;
        }
        let (state, events) = chat
            .act(Some("bob"), |change, acting| {
                messages::read(change, acting, 1, 2)
            })
            .await;
        assert_eq!(state.unread_count, 0);
        assert_eq!(types(&events), [("~chat/r1", "ReadReceiptsUpdated")]);
        assert_eq!(
            events[0].2,
            json!({ "roomId": 1, "userId": 2, "lastReadMessageId": 2 })
        );
        let (state, events) = chat
            .act(Some("bob"), |change, acting| {
                messages::read(change, acting, 1, 1)
            })
            .await;
        assert_eq!(state.last_read_message_id, Some(2));
        assert!(events.is_empty());
    }
}
