//! A tenant's ticketing settings ([`TenantSettings`]): read by agents,
//! changed by admins (one writer change; the fields sent replace theirs,
//! the others are kept).
//!
//! Invariants (a 400 naming the field otherwise): `numberPrefix` is 1 to
//! [`MAX_PREFIX_CHARS`] of `A-Z0-9`; `actionUrlTemplate` at most
//! [`MAX_ACTION_URL_CHARS`] characters; `notificationRoles` at most
//! [`MAX_ROLES`] distinct roles, each 1 to [`MAX_ROLE_CHARS`] characters;
//! `slaWarningPercent` 1 to 99. A new prefix numbers only tickets created
//! afterwards.

use super::layout;
use super::model::TenantSettings;
use super::service::{self, Acting, fixed_chars, save};
use crate::core::writer::Change;
use crate::error::ApiError;
use serde::Deserialize;

/// Longest ticket number prefix.
pub const MAX_PREFIX_CHARS: usize = 10;
/// Longest action URL template, in characters.
pub const MAX_ACTION_URL_CHARS: usize = 500;
/// Most notification roles.
pub const MAX_ROLES: usize = 20;
/// Longest notification role, in characters.
pub const MAX_ROLE_CHARS: usize = 100;

/// `PUT /settings` body: the fields to change.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsEdit {
    /// New ticket number prefix.
    #[serde(default)]
    pub number_prefix: Option<String>,
    /// New action URL template.
    #[serde(default)]
    pub action_url_template: Option<String>,
    /// New notification roles (replace the old ones).
    #[serde(default)]
    pub notification_roles: Option<Vec<String>>,
    /// New SLA warning share, percent.
    #[serde(default)]
    pub sla_warning_percent: Option<u64>,
}

/// Changes the tenant's settings (admins); answers them as stored.
pub fn update(
    change: &mut Change<'_>,
    acting: &Acting,
    edit: SettingsEdit,
) -> Result<TenantSettings, ApiError> {
    acting.require_admin()?;
    let mut settings = service::settings(change, &acting.tenant)?;
    if let Some(prefix) = edit.number_prefix {
        check_prefix(&prefix)?;
        settings.number_prefix = prefix;
    }
    if let Some(template) = edit.action_url_template {
        fixed_chars("actionUrlTemplate", &template, MAX_ACTION_URL_CHARS)?;
        settings.action_url_template = template;
    }
    if let Some(roles) = edit.notification_roles {
        settings.notification_roles = check_roles(roles)?;
    }
    if let Some(percent) = edit.sla_warning_percent {
        settings.sla_warning_percent = check_percent(percent)?;
    }
    save(change, layout::settings(&acting.tenant), &settings)?;
    Ok(settings)
}

fn check_prefix(prefix: &str) -> Result<(), ApiError> {
    let allowed = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
    if (1..=MAX_PREFIX_CHARS).contains(&prefix.len()) && prefix.chars().all(allowed) {
        return Ok(());
    }
    Err(ApiError::validation(format!(
        "`numberPrefix` must be 1 to {MAX_PREFIX_CHARS} characters of A-Z and 0-9"
    )))
}

fn check_roles(roles: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut distinct: Vec<String> = Vec::new();
    for role in roles {
        if role.is_empty() {
            return Err(ApiError::validation(
                "`notificationRoles` must not hold an empty role",
            ));
        }
        fixed_chars("notificationRoles", &role, MAX_ROLE_CHARS)?;
        if !distinct.contains(&role) {
            distinct.push(role);
        }
        if distinct.len() > MAX_ROLES {
            return Err(ApiError::validation(format!(
                "`notificationRoles` holds at most {MAX_ROLES} roles"
            )));
        }
    }
    Ok(distinct)
}

fn check_percent(percent: u64) -> Result<u8, ApiError> {
    match u8::try_from(percent) {
        Ok(percent @ 1..=99) => Ok(percent),
        _ => Err(ApiError::validation("`slaWarningPercent` must be 1 to 99")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_validated_field_by_field() {
        assert!(check_prefix("INC").is_ok());
        assert!(check_prefix("REQ2026").is_ok());
        for bad in ["", "inc", "IN-C", "ABCDEFGHIJK", "ÄB"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
        assert_eq!(check_percent(1).unwrap(), 1);
        assert_eq!(check_percent(99).unwrap(), 99);
        for bad in [0, 100, 300] {
            assert!(check_percent(bad).is_err());
        }
        let roles = |n: usize| (0..n).map(|i| format!("r{i}")).collect::<Vec<_>>();
        assert_eq!(check_roles(roles(20)).unwrap().len(), 20);
        assert!(check_roles(roles(21)).is_err());
        assert_eq!(
            check_roles(vec!["a".into(), "a".into()]).unwrap(),
            vec!["a".to_string()]
        );
        assert!(check_roles(vec![String::new()]).is_err());
        assert!(check_roles(vec!["x".repeat(101)]).is_err());
    }
}
