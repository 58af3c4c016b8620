//! The live module's write side and snapshot.
//!
//! Producers (`X-API-Key` with the `publish` scope): `POST
//! /api/v1/events-streams` (create), `PATCH …/{streamId}` (title, public,
//! retention), `POST …/{streamId}/end`, `POST …/{streamId}/quizzes` (open),
//! `POST …/{streamId}/quizzes/{quizId}/close`, `POST …/{streamId}/discounts`.
//! Viewers (a JWT): `POST …/{streamId}/chats` (idempotent under
//! `Idempotency-Key`), `POST …/{streamId}/hearts`, `POST
//! …/{streamId}/quizzes/{quizId}/answers`. Anyone authenticated: `GET
//! …/{streamId}/snapshot`.
//!
//! Invariants: every stored change is one writer change whose in-memory
//! effect is an after-commit hook; inputs are checked (lengths, ranges,
//! choices) before anything is written; a chat's answer names the interval
//! it is in.

use super::items::{open_interval, put_item};
use super::model::{
    Chat, ChatKind, Item, QuizRecord, QuizView, StreamRecord, StreamStatus, interval_of,
};
use super::quiz::{self, NewQuiz};
use super::state::{AnswerRefused, ChatBounds, LiveStream};
use super::{LiveModule, read_record, write_record};
use crate::auth::Principal;
use crate::auth::api_keys::Scope;
use crate::core::log::TopicRef;
use crate::core::writer::{Change, Footprint};
use crate::error::{ApiError, ErrorCode};
use crate::field_limits::check_chars;
use crate::http::{Request, Response, response};
use crate::modules::idempotency::{self, Reply};
use http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;

/// Longest stream title, in characters.
const MAX_TITLE_CHARS: usize = 200;
/// Longest display name, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Longest purchase item, quiz question or choice, in characters.
const MAX_LABEL_CHARS: usize = 300;
/// Retention of a stream that names none: one day.
const DEFAULT_RETENTION_SECONDS: u64 = 86_400;
/// Fewest and most quiz choices.
const CHOICES: std::ops::RangeInclusive<usize> = 2..=10;
/// Shortest and longest quiz, in ms.
const QUIZ_DURATION_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;
/// Most discounts in one request.
const MAX_DISCOUNTS_PER_REQUEST: u64 = 1_000;

/// The `streamId` path parameter.
pub fn stream_param(request: &Request) -> Result<Uuid, ApiError> {
    request.uuid_param("streamId")
}

/// A JSON body of the endpoint's shape, or 400.
async fn body<T: DeserializeOwned>(request: &mut Request) -> Result<T, ApiError> {
    let value: Value = request.json().await?;
    serde_json::from_value(value).map_err(|err| {
        ApiError::validation(format!(
            "the JSON body does not have the expected shape: {err}"
        ))
    })
}

impl LiveModule {
    /// The caller of a read (a poll, the snapshot): a JWT of the tenant's
    /// realm (in the header, or in `access_token` when `query` allows), or
    /// an API key with the `read` scope.
    pub(super) fn reader(&self, request: &Request, query: bool) -> Result<Principal, ApiError> {
        let auth = &self.core.auth;
        let principal = if query {
            auth.authenticate_with_query_token(request)?
        } else {
            auth.authenticate(request)?
        };
        if principal.user().is_none() {
            principal.require(Scope::Read)?;
        }
        Ok(principal)
    }

    /// The caller, who must be a producer (the `publish` scope).
    fn producer(&self, request: &Request) -> Result<Principal, ApiError> {
        let principal = self.core.auth.authenticate(request)?;
        principal.require(Scope::Publish)?;
        Ok(principal)
    }

    /// The caller, who must be a viewer (a JWT's subject), and the stream.
    fn viewer(&self, request: &Request) -> Result<(Principal, Arc<LiveStream>), ApiError> {
        let principal = self.core.auth.authenticate(request)?;
        if principal.user().is_none() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "viewers act with a JWT (Authorization: Bearer); API keys produce",
            ));
        }
        let stream = self.stream(&principal, request)?;
        Ok((principal, stream))
    }

    /// The request's stream, for the caller's tenant.
    fn stream(
        &self,
        principal: &Principal,
        request: &Request,
    ) -> Result<Arc<LiveStream>, ApiError> {
        let id = stream_param(request)?;
        self.streams
            .get(&principal.tenant, &id)
            .ok_or_else(|| ApiError::not_found("no such events-stream"))
    }

    /// Commits a change on `stream`'s record (read fresh in the change) and
    /// puts the record it leaves into memory once durable; `data` is the
    /// operation's reply.
    async fn on_record<T, F>(
        &self,
        stream: &Arc<LiveStream>,
        footprint: usize,
        operation: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Change<'_>, &mut StreamRecord) -> Result<T, ApiError> + Send + 'static,
    {
        let target = stream.clone();
        let committed = self
            .core
            .writer
            .commit(Footprint::data(footprint), move |change| {
                let mut record = read_record(change, &target.tenant, &target.id)?
                    .ok_or_else(|| ApiError::not_found("no such events-stream"))?;
                let value = operation(change, &mut record)?;
                write_record(change, &target.tenant, &record)?;
                change.after_commit(move || target.set_record(record));
                Ok(value)
            })
            .await?;
        Ok(committed.value)
    }
}

/// `POST /api/v1/events-streams` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewStream {
    id: Option<Uuid>,
    title: String,
    #[serde(default)]
    public: bool,
    retention_seconds: Option<u64>,
}

/// `PATCH /api/v1/events-streams/{streamId}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StreamChanges {
    title: Option<String>,
    public: Option<bool>,
    retention_seconds: Option<u64>,
}

fn check_retention(module: &LiveModule, seconds: u64) -> Result<u64, ApiError> {
    let max = module.limits.max_retention.as_secs();
    if seconds == 0 || seconds > max {
        return Err(ApiError::validation(format!(
            "retentionSeconds must be between 1 and {max} (--live-max-retention)"
        ))
        .with_details(json!({ "field": "retentionSeconds", "max": max })));
    }
    Ok(seconds)
}

/// `POST /api/v1/events-streams`
pub async fn create(module: Arc<LiveModule>, mut request: Request) -> Result<Response, ApiError> {
    let principal = module.producer(&request)?;
    let input: NewStream = body(&mut request).await?;
    check_chars("title", &input.title, MAX_TITLE_CHARS)?;
    let retention_seconds = check_retention(
        &module,
        input.retention_seconds.unwrap_or(DEFAULT_RETENTION_SECONDS),
    )?;
    let tenant = principal.tenant;
    let id = input.id.unwrap_or_else(Uuid::new_v4);
    let owner = module.clone();
    let committed = module
        .core
        .writer
        .commit(Footprint::data(input.title.len() + 256), move |change| {
            if read_record(change, &tenant, &id)?.is_some() {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "an events-stream with this id exists",
                ));
            }
            let now = change.now_ms();
            let record = StreamRecord {
                id,
                title: input.title,
                public: input.public,
                retention_seconds,
                created_at: now,
                first_interval: interval_of(now),
                ended_at: None,
                last_interval: None,
                status: StreamStatus::Live,
                open_quiz: None,
            };
            write_record(change, &tenant, &record)?;
            let (memory, through) = (record.clone(), record.initial_closed_through());
            change.after_commit(move || {
                owner.in_memory(tenant, memory, through);
            });
            Ok(record)
        })
        .await?;
    Ok(response::data(StatusCode::CREATED, &committed.value))
}

/// `PATCH /api/v1/events-streams/{streamId}`
pub async fn update(module: Arc<LiveModule>, mut request: Request) -> Result<Response, ApiError> {
    let principal = module.producer(&request)?;
    let stream = module.stream(&principal, &request)?;
    let changes: StreamChanges = body(&mut request).await?;
    if let Some(title) = &changes.title {
        check_chars("title", title, MAX_TITLE_CHARS)?;
    }
    let retention = changes
        .retention_seconds
        .map(|seconds| check_retention(&module, seconds))
        .transpose()?;
    let footprint = changes.title.as_ref().map_or(0, String::len) + 256;
    let record = module
        .on_record(&stream, footprint, move |_, record| {
            if let Some(title) = changes.title {
                record.title = title;
            }
            if let Some(public) = changes.public {
                record.public = public;
            }
            if let Some(seconds) = retention {
                record.retention_seconds = seconds;
            }
            Ok(record.clone())
        })
        .await?;
    Ok(response::data(StatusCode::OK, &record))
}

/// `POST /api/v1/events-streams/{streamId}/end`: no interval after the
/// current one; an open quiz closes with it.
pub async fn end(module: Arc<LiveModule>, request: Request) -> Result<Response, ApiError> {
    let principal = module.producer(&request)?;
    let stream = module.stream(&principal, &request)?;
    let target = stream.clone();
    let record = module
        .on_record(&stream, 256, move |change, record| {
            if !record.is_live() {
                return Ok(record.clone());
            }
            if let Some(open) = record.open_quiz {
                quiz::close(change, &target, record, &open)?;
            }
            let last = open_interval(change, &target.tenant, record)?;
            record.status = StreamStatus::Ended;
            record.ended_at = Some(change.now_ms());
            record.last_interval = Some(last);
            Ok(record.clone())
        })
        .await?;
    Ok(response::data(StatusCode::OK, &record))
}

/// `GET /api/v1/events-streams/{streamId}/snapshot`: what a viewer joining
/// late needs: the stream, the server's time, the newest closed interval,
/// the view count and the open quiz.
pub async fn snapshot(module: Arc<LiveModule>, request: Request) -> Result<Response, ApiError> {
    let principal = module.reader(&request, false)?;
    let stream = module.stream(&principal, &request)?;
    let now = crate::core::clock::unix_millis();
    let record = stream.record();
    let through = stream.closed_through();
    let viewers = stream.viewer_count();
    let quiz = stream
        .open_quiz_record()
        .map(|quiz| serde_json::to_value(quiz.view(QuizView::Opened)).unwrap_or_default());
    Ok(response::data(
        StatusCode::OK,
        &json!({
            "stream": *record,
            "serverTime": now,
            "latestInterval": (through >= record.first_interval).then_some(through),
            "viewCount": { "value": viewers, "formatted": super::model::formatted_count(viewers) },
            "quiz": quiz,
        }),
    ))
}

/// `POST …/chats` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewChat {
    kind: ChatKind,
    text: String,
    display_name: Option<String>,
    item: Option<String>,
    amount: Option<f64>,
    currency: Option<String>,
}

impl NewChat {
    /// Checks lengths and a purchase's fields.
    fn check(&self, max_text: usize) -> Result<(), ApiError> {
        if self.text.trim().is_empty() {
            return Err(ApiError::validation("text must not be empty"));
        }
        check_chars("text", &self.text, max_text)?;
        if let Some(name) = &self.display_name {
            check_chars("displayName", name, MAX_NAME_CHARS)?;
        }
        let purchase = self.kind == ChatKind::Purchase;
        let fields = [
            self.item.is_some(),
            self.amount.is_some(),
            self.currency.is_some(),
        ];
        if !purchase && fields.iter().any(|set| *set) {
            return Err(ApiError::validation(
                "item, amount and currency are for purchases only",
            ));
        }
        if !purchase {
            return Ok(());
        }
        let (Some(item), Some(amount), Some(currency)) = (&self.item, self.amount, &self.currency)
        else {
            return Err(ApiError::validation(
                "a purchase needs an item, an amount and a currency",
            ));
        };
        check_chars("item", item, MAX_LABEL_CHARS)?;
        if !(amount.is_finite() && (0.0..=1e12).contains(&amount)) {
            return Err(ApiError::validation(
                "amount must be a number from 0 to 1e12",
            ));
        }
        if !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
            return Err(ApiError::validation(
                "currency must be an ISO 4217 code such as EUR",
            ));
        }
        Ok(())
    }
}

/// `POST /api/v1/events-streams/{streamId}/chats`: durable when answered,
/// in the interval the answer names.
pub async fn chat(module: Arc<LiveModule>, mut request: Request) -> Result<Response, ApiError> {
    let (principal, stream) = module.viewer(&request)?;
    let mut value: Value = request.json().await?;
    let key = idempotency::requested(request.headers(), idempotency::take_field(&mut value))?;
    let claim = module.core.idempotency.claim(
        key,
        &principal,
        "live.chat",
        &[
            request.uri().path().as_bytes(),
            value.to_string().as_bytes(),
        ],
    );
    let input: NewChat = serde_json::from_value(value).map_err(|err| {
        ApiError::validation(format!(
            "the JSON body does not have the expected shape: {err}"
        ))
    })?;
    input.check(module.limits.max_chat_chars)?;
    let in_flight = stream.chat_in_flight(principal.user().unwrap_or_default())?;
    let user = principal.user().unwrap_or_default().to_string();
    let display_name = input
        .display_name
        .clone()
        .or_else(|| token_name(&principal))
        .unwrap_or_else(|| user.chars().take(MAX_NAME_CHARS).collect());
    let bounds = ChatBounds {
        per_interval: module.limits.max_chats_per_interval,
        per_viewer: module.limits.max_chats_per_viewer_interval,
    };
    let footprint = input.text.len() + display_name.len() + 512;
    let committed = module
        .core
        .writer
        .commit(Footprint::data(footprint), move |change| {
            idempotency::protect(claim.as_ref(), change, |change| {
                let record = read_record(change, &stream.tenant, &stream.id)?
                    .ok_or_else(|| ApiError::not_found("no such events-stream"))?;
                if !record.is_live() {
                    return Err(ended());
                }
                let interval = open_interval(change, &stream.tenant, &record)?;
                stream.count_chat(&user, interval, bounds)?;
                let chat = Chat {
                    id: change.next_id().to_string(),
                    user_id: user,
                    display_name,
                    text: input.text,
                    created: change.now_ms(),
                    item: input.item,
                    amount: input.amount,
                    currency: input.currency,
                };
                let topic = TopicRef::internal(
                    stream.tenant,
                    super::layout::MODULE,
                    &stream.id.to_string(),
                );
                let data = json!({ "kind": input.kind, "interval": interval, "chat": chat });
                change.append(
                    &topic,
                    input.kind.event_type(),
                    json!({ "id": chat.user_id }),
                    data,
                )?;
                let reply = json!({ "chat": chat, "interval": interval });
                put_item(
                    change,
                    &stream.tenant,
                    &stream.id,
                    interval,
                    &Item::Chat {
                        kind: input.kind,
                        chat,
                    },
                )?;
                Ok(Reply::new(StatusCode::CREATED, reply.to_string()))
            })
        })
        .await?;
    drop(in_flight);
    Ok(idempotency::reply_response(&committed.value))
}

/// The `name` claim of a token, for chats that name no display name.
fn token_name(principal: &Principal) -> Option<String> {
    match &principal.credential {
        crate::auth::Credential::Token(claims) => claims
            .extra
            .get("name")
            .and_then(Value::as_str)
            .map(|name| name.chars().take(MAX_NAME_CHARS).collect()),
        _ => None,
    }
}

fn ended() -> ApiError {
    ApiError::new(ErrorCode::StreamEnded, "this events-stream has ended")
}

/// `{"count": n}` of hearts and discounts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Count {
    count: u64,
}

/// The count of a hearts or discounts request, within `1..=max`.
async fn count(request: &mut Request, max: u64) -> Result<u64, ApiError> {
    let Count { count } = body(request).await?;
    if count == 0 || count > max {
        return Err(
            ApiError::validation(format!("count must be between 1 and {max}"))
                .with_details(json!({ "field": "count", "max": max })),
        );
    }
    Ok(count)
}

/// 202 `{"data":{"accepted":n}}`: counted in memory, stored with the interval.
fn accepted(count: u64) -> Response {
    response::data(StatusCode::ACCEPTED, &json!({ "accepted": count }))
}

/// `POST /api/v1/events-streams/{streamId}/hearts`
pub async fn hearts(module: Arc<LiveModule>, mut request: Request) -> Result<Response, ApiError> {
    let (_, stream) = module.viewer(&request)?;
    let count = count(&mut request, module.limits.max_hearts_per_request).await?;
    if !stream.record().is_live() {
        return Err(ended());
    }
    stream.add_hearts(count);
    Ok(accepted(count))
}

/// `POST /api/v1/events-streams/{streamId}/discounts`
pub async fn discounts(
    module: Arc<LiveModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let principal = module.producer(&request)?;
    let stream = module.stream(&principal, &request)?;
    let count = count(&mut request, MAX_DISCOUNTS_PER_REQUEST).await?;
    if !stream.record().is_live() {
        return Err(ended());
    }
    stream.add_discounts(count);
    Ok(accepted(count))
}

/// `POST …/quizzes` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct QuizInput {
    question: String,
    choices: Vec<String>,
    answer: String,
    duration_ms: u64,
}

impl QuizInput {
    /// Checks it and names the right choice by index.
    fn checked(self) -> Result<NewQuiz, ApiError> {
        check_chars("question", &self.question, MAX_LABEL_CHARS)?;
        if !CHOICES.contains(&self.choices.len()) {
            return Err(ApiError::validation("a quiz has 2 to 10 choices"));
        }
        for (index, choice) in self.choices.iter().enumerate() {
            check_chars("choices", choice, MAX_LABEL_CHARS)?;
            if choice.is_empty() || self.choices[..index].contains(choice) {
                return Err(ApiError::validation(
                    "choices must be distinct and not empty",
                ));
            }
        }
        let answer = self
            .choices
            .iter()
            .position(|choice| *choice == self.answer)
            .ok_or_else(|| ApiError::validation("answer must be one of the choices"))?;
        if !QUIZ_DURATION_MS.contains(&self.duration_ms) {
            return Err(ApiError::validation(
                "durationMs must be from 1000 to 3600000",
            ));
        }
        Ok(NewQuiz {
            question: self.question,
            choices: self.choices,
            answer,
            duration_ms: self.duration_ms,
        })
    }
}

/// `POST /api/v1/events-streams/{streamId}/quizzes`
pub async fn open_quiz(
    module: Arc<LiveModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let principal = module.producer(&request)?;
    let stream = module.stream(&principal, &request)?;
    let input: QuizInput = body(&mut request).await?;
    let new = input.checked()?;
    let footprint = new.question.len() + new.choices.iter().map(String::len).sum::<usize>() + 512;
    let target = stream.clone();
    let opened = module
        .on_record(&stream, footprint, move |change, record| {
            if !record.is_live() {
                return Err(ended());
            }
            let opened = quiz::open(change, &target.tenant, record, new)?;
            let memory = (target.clone(), opened.clone());
            change.after_commit(move || memory.0.open_quiz(memory.1, []));
            Ok(opened)
        })
        .await?;
    Ok(response::data(
        StatusCode::CREATED,
        &opened.view(QuizView::Producer),
    ))
}

/// `POST /api/v1/events-streams/{streamId}/quizzes/{quizId}/close`: the
/// results go in the open interval; the timer is cancelled.
pub async fn close_quiz(module: Arc<LiveModule>, request: Request) -> Result<Response, ApiError> {
    let principal = module.producer(&request)?;
    let stream = module.stream(&principal, &request)?;
    let quiz_id = request.uuid_param("quizId")?;
    let closer = module.clone();
    let closed = module
        .core
        .writer
        .commit(Footprint::data(256), move |change| {
            let Some(closed) = closer.close_quiz_in(change, &stream, &quiz_id)? else {
                let known = quiz::read(change, &stream.tenant, &quiz_id)?
                    .is_some_and(|quiz| quiz.stream_id == stream.id);
                return Err(not_open(known));
            };
            if let Some(timer) = quiz::timer_of(&closed) {
                change.cancel(timer)?;
            }
            Ok(closed)
        })
        .await?
        .value;
    Ok(response::data(
        StatusCode::OK,
        &closed.view(QuizView::Results),
    ))
}

/// `POST …/answers` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerInput {
    choice: String,
}

/// `POST /api/v1/events-streams/{streamId}/quizzes/{quizId}/answers`:
/// once per viewer, while the quiz is open.
pub async fn answer(module: Arc<LiveModule>, mut request: Request) -> Result<Response, ApiError> {
    let (principal, stream) = module.viewer(&request)?;
    let quiz_id = request.uuid_param("quizId")?;
    let AnswerInput { choice } = body(&mut request).await?;
    let Some(open) = stream.open_quiz_record().filter(|quiz| quiz.id == quiz_id) else {
        return Err(not_open(module.quiz_known(&stream, quiz_id).await?));
    };
    let index = open
        .choices
        .iter()
        .position(|name| *name == choice)
        .ok_or_else(|| ApiError::validation("choice is not one of the quiz's choices"))?;
    let subject = principal.user().unwrap_or_default();
    let now = crate::core::clock::unix_millis();
    match stream.answer(quiz_id, subject, index as u8, now) {
        Ok(()) => {}
        Err(AnswerRefused::AlreadyAnswered) => {
            return Err(
                ApiError::new(ErrorCode::Conflict, "you answered this quiz already")
                    .with_details(json!({ "reason": "already-answered" })),
            );
        }
        Err(AnswerRefused::Closed | AnswerRefused::NotOpen) => return Err(not_open(true)),
    }
    Ok(response::data(
        StatusCode::CREATED,
        &json!({ "quizId": quiz_id, "choice": choice }),
    ))
}

/// 409 `quiz-closed` for a quiz of the stream that is no longer open, 404
/// for a quiz the stream never had.
fn not_open(known: bool) -> ApiError {
    if known {
        ApiError::new(ErrorCode::Conflict, "this quiz has closed")
            .with_details(json!({ "reason": "quiz-closed" }))
    } else {
        ApiError::not_found("no such quiz in this events-stream")
    }
}

impl LiveModule {
    /// True when `quiz` is a stored quiz of `stream`.
    async fn quiz_known(&self, stream: &LiveStream, quiz: Uuid) -> Result<bool, ApiError> {
        let stored = self
            .stored(super::layout::quiz(&stream.tenant, &quiz))
            .await?;
        Ok(stored
            .and_then(|bytes| super::decode_json::<QuizRecord>(&bytes, "quiz").ok())
            .is_some_and(|quiz| quiz.stream_id == stream.id))
    }
}
