//! Channel writes: create a channel, change its name, read policy and
//! entitlement key, and set its discussion (enabled, required feature).
//! The tenant's backend only.
//!
//! Invariants: the entitlement and feature indexes ([`super::layout`])
//! follow the stored settings in the same change; a change that may narrow
//! who reads a room (any change of policy, entitlement key, enabled flag or
//! required feature) appends `communication.access.changed` to that room, so
//! joined sockets re-check before any later event of it; a discussion id is
//! issued once per channel and kept when the discussion is disabled.

use super::events::{Narrowed, Room};
use super::layout::{self, Counter};
use super::model::{Channel, DiscussionSettings, ReadPolicy, check_key};
use super::service::{Acting, now, save};
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::discussions::model::require_text;
use crate::modules::records::forbidden;
use serde::Deserialize;

/// `POST /channels` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewChannel {
    /// Name.
    pub name: String,
    /// Who may read it (default public).
    #[serde(default)]
    pub read_policy: ReadPolicy,
    /// The entitlement an `entitled` channel needs.
    #[serde(default)]
    pub entitlement_key: Option<String>,
}

/// `PATCH /channels/{channelId}` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelPatch {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New read policy.
    #[serde(default)]
    pub read_policy: Option<ReadPolicy>,
    /// New entitlement key (`null` removes it).
    #[serde(default, deserialize_with = "present")]
    pub entitlement_key: Option<Option<String>>,
}

/// `PUT /channels/{channelId}/discussion` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscussionInput {
    /// Whether the discussion is open.
    pub enabled: bool,
    /// A feature joiners must hold (`null` or absent: none).
    #[serde(default)]
    pub required_feature_key: Option<String>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

fn backend_only(acting: &Acting) -> Result<(), ApiError> {
    if acting.is_backend() {
        Ok(())
    } else {
        Err(forbidden(
            "channels are managed by the tenant's backend (API key)",
        ))
    }
}

fn check_policy(channel: &Channel) -> Result<(), ApiError> {
    match (&channel.read_policy, &channel.entitlement_key) {
        (ReadPolicy::Entitled, None) => Err(ApiError::validation(
            "an `entitled` channel needs an `entitlementKey`",
        )),
        (_, Some(key)) => check_key("entitlementKey", key),
        _ => Ok(()),
    }
}

fn index_entitlement(change: &mut Change<'_>, acting: &Acting, channel: &Channel, on: bool) {
    if let Some(key) = &channel.entitlement_key {
        let entry = layout::gated_channel(&acting.tenant, key, channel.id);
        if on {
            change.put(entry, Vec::new());
        } else {
            change.delete(entry);
        }
    }
}

fn index_feature(
    change: &mut Change<'_>,
    acting: &Acting,
    settings: &DiscussionSettings,
    on: bool,
) {
    if let Some(key) = &settings.required_feature_key {
        let entry = layout::requiring_discussion(&acting.tenant, key, settings.discussion_id);
        if on {
            change.put(entry, Vec::new());
        } else {
            change.delete(entry);
        }
    }
}

/// Creates a channel.
pub fn create(
    change: &mut Change<'_>,
    acting: &Acting,
    input: NewChannel,
) -> Result<Channel, ApiError> {
    backend_only(acting)?;
    require_text("name", &input.name, acting.limits.max_name_chars, false)?;
    let at = now(change);
    let channel = Channel {
        id: super::service::next_id(change, &acting.tenant, Counter::Channel)?,
        name: input.name,
        read_policy: input.read_policy,
        entitlement_key: input.entitlement_key,
        discussion: None,
        created_at: at.clone(),
        updated_at: at,
    };
    check_policy(&channel)?;
    index_entitlement(change, acting, &channel, true);
    save(
        change,
        layout::channel(&acting.tenant, channel.id),
        &channel,
    )?;
    Ok(channel)
}

/// Renames a channel or changes who reads it.
pub fn update(
    change: &mut Change<'_>,
    acting: &Acting,
    id: u64,
    patch: ChannelPatch,
) -> Result<Channel, ApiError> {
    backend_only(acting)?;
    let before = super::service::channel(change, &acting.tenant, id)?;
    let mut channel = before.clone();
    if let Some(name) = patch.name {
        require_text("name", &name, acting.limits.max_name_chars, false)?;
        channel.name = name;
    }
    if let Some(policy) = patch.read_policy {
        channel.read_policy = policy;
    }
    if let Some(key) = patch.entitlement_key {
        channel.entitlement_key = key;
    }
    check_policy(&channel)?;
    let readers_changed = channel.read_policy != before.read_policy
        || channel.entitlement_key != before.entitlement_key;
    if channel.name == before.name && !readers_changed {
        return Ok(channel);
    }
    channel.updated_at = now(change);
    index_entitlement(change, acting, &before, false);
    index_entitlement(change, acting, &channel, true);
    save(change, layout::channel(&acting.tenant, id), &channel)?;
    if readers_changed {
        narrow_channel(change, acting, &channel, None, Narrowed::Policy)?;
    }
    Ok(channel)
}

/// Sets a channel's discussion: the first call issues its id.
pub fn set_discussion(
    change: &mut Change<'_>,
    acting: &Acting,
    id: u64,
    input: DiscussionInput,
) -> Result<Channel, ApiError> {
    backend_only(acting)?;
    if let Some(key) = &input.required_feature_key {
        check_key("requiredFeatureKey", key)?;
    }
    let mut channel = super::service::channel(change, &acting.tenant, id)?;
    let before = channel.discussion.clone();
    let discussion_id = match &before {
        Some(settings) => settings.discussion_id,
        None => {
            let issued = super::service::next_id(change, &acting.tenant, Counter::Discussion)?;
            let key = layout::discussion(&acting.tenant, issued);
            change.put(key, id.to_be_bytes().to_vec());
            issued
        }
    };
    let settings = DiscussionSettings {
        discussion_id,
        enabled: input.enabled,
        required_feature_key: input.required_feature_key,
    };
    if before.as_ref() == Some(&settings) {
        return Ok(channel);
    }
    if let Some(old) = &before {
        index_feature(change, acting, old, false);
    }
    index_feature(change, acting, &settings, true);
    channel.discussion = Some(settings);
    channel.updated_at = now(change);
    save(change, layout::channel(&acting.tenant, id), &channel)?;
    if before.is_some() {
        let room = Room::Discussion(discussion_id);
        acting
            .emitter()
            .access_narrowed(change, room, id, None, Narrowed::Discussion)?;
    }
    Ok(channel)
}

/// Appends `communication.access.changed` to the channel's rooms (its
/// posts, and its discussion if it has one), for `user` or everyone.
pub fn narrow_channel(
    change: &mut Change<'_>,
    acting: &Acting,
    channel: &Channel,
    user: Option<&str>,
    why: Narrowed,
) -> Result<(), ApiError> {
    let emitter = acting.emitter();
    emitter.access_narrowed(change, Room::Posts(channel.id), channel.id, user, why)?;
    if let Some(discussion) = &channel.discussion {
        let room = Room::Discussion(discussion.discussion_id);
        emitter.access_narrowed(change, room, channel.id, user, why)?;
    }
    Ok(())
}
