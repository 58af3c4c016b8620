//! Quizzes: a producer opens one (a question, 2 to 10 choices, the answer, a
//! duration); viewers answer once each while it is open; a durable timer
//! closes it at its close interval, even with no traffic and across a
//! restart; a producer may close it early. Opening puts a `quiz` event in
//! the interval it opened in; closing puts `quiz-results` and
//! `quiz-winners` in the interval it closed in (its `closeInterval`, which
//! the close sets to where the results really are, later than planned only
//! when the server was down at the planned time).
//!
//! Invariants: one open quiz per stream; an answer is taken only while the
//! quiz is open in memory (before its close interval and before its close
//! began) and once per subject; answers are counted in memory and stored
//! once per interval (a viewer row per answer, the totals in the record), so
//! a crash loses at most the answers of the open interval; the close stores
//! the final totals and is the last write to the quiz's counts.

use super::items::{open_interval, put_item};
use super::layout;
use super::model::{INTERVAL_MS, Item, QuizRecord, StreamRecord};
use super::state::LiveStream;
use super::{read_json, write_json};
use crate::core::writer::{Change, Timer, TimerId};
use crate::error::{ApiError, ErrorCode};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

/// The timer handler closing a quiz.
pub const CLOSE_TIMER: &str = "live.quiz-close";

/// What a producer asks for.
pub struct NewQuiz {
    /// The question.
    pub question: String,
    /// The choices, in order, distinct.
    pub choices: Vec<String>,
    /// Index of the right choice.
    pub answer: usize,
    /// How long it is open, in ms.
    pub duration_ms: u64,
}

/// Reads a quiz record.
pub fn read(
    change: &Change<'_>,
    tenant: &Uuid,
    quiz: &Uuid,
) -> Result<Option<QuizRecord>, ApiError> {
    read_json(change, &layout::quiz(tenant, quiz), "quiz")
}

/// Writes a quiz record.
pub fn write(change: &mut Change<'_>, tenant: &Uuid, quiz: &QuizRecord) -> Result<(), ApiError> {
    write_json(change, layout::quiz(tenant, &quiz.id), quiz, "quiz")
}

/// Stores viewers' answers, one row each.
pub fn store_answers(
    change: &mut Change<'_>,
    tenant: &Uuid,
    quiz: &Uuid,
    answers: &[super::state::Answer],
) {
    for (subject, choice) in answers {
        change.put(layout::answer(tenant, quiz, subject), vec![*choice]);
    }
}

/// Opens a quiz in `record`'s stream inside `change`: its record, its
/// `quiz` event and its closing timer. 409 when one is open already.
pub fn open(
    change: &mut Change<'_>,
    tenant: &Uuid,
    record: &mut StreamRecord,
    new: NewQuiz,
) -> Result<QuizRecord, ApiError> {
    if let Some(open) = record.open_quiz {
        return Err(
            ApiError::new(ErrorCode::Conflict, "a quiz is open in this stream already")
                .with_details(json!({ "reason": "quiz-open", "quizId": open })),
        );
    }
    let created = open_interval(change, tenant, record)?;
    let close_interval = created + new.duration_ms.div_ceil(INTERVAL_MS) * INTERVAL_MS;
    let id = Uuid::new_v4();
    let timer = change.schedule(
        close_interval,
        CLOSE_TIMER,
        &timer_payload(tenant, &record.id, &id),
    )?;
    let quiz = QuizRecord {
        id,
        stream_id: record.id,
        created,
        duration: new.duration_ms,
        close_interval,
        question: new.question,
        counts: vec![0; new.choices.len()],
        choices: new.choices,
        answer: new.answer,
        closed: false,
        timer: timer.0.to_string(),
    };
    write(change, tenant, &quiz)?;
    put_item(
        change,
        tenant,
        &record.id,
        created,
        &Item::QuizOpened { quiz: quiz.clone() },
    )?;
    record.open_quiz = Some(id);
    Ok(quiz)
}

/// Closes quiz `quiz` of `stream` inside `change`: final totals (memory's,
/// which include every answer taken), the answers not stored yet, the
/// results item in the open interval, the stream's open quiz cleared (in
/// `record`, which the caller writes; memory forgets the quiz once durable).
/// `Ok(None)` when it is unknown or closed already.
pub fn close(
    change: &mut Change<'_>,
    stream: &Arc<LiveStream>,
    record: &mut StreamRecord,
    quiz: &Uuid,
) -> Result<Option<QuizRecord>, ApiError> {
    let tenant = stream.tenant;
    let open = |q: &QuizRecord| !q.closed && q.stream_id == record.id;
    let Some(mut closing) = read(change, &tenant, quiz)?.filter(open) else {
        return Ok(None);
    };
    // Taking the answers stops new ones at once; should this change not
    // commit, the totals stay in memory for the retry (the timer, or the
    // producer's next close), and only the rows of the answers taken here
    // are missing, which matter no more once the quiz is closed.
    if let Some(finals) = stream.close_quiz(*quiz) {
        store_answers(change, &tenant, quiz, &finals.unstored);
        closing.counts = finals.totals;
    }
    closing.closed = true;
    closing.close_interval = open_interval(change, &tenant, record)?;
    write(change, &tenant, &closing)?;
    put_item(
        change,
        &tenant,
        &record.id,
        closing.close_interval,
        &Item::QuizClosed {
            quiz: closing.clone(),
        },
    )?;
    if record.open_quiz == Some(*quiz) {
        record.open_quiz = None;
    }
    let (memory, closed) = (stream.clone(), *quiz);
    change.after_commit(move || memory.forget_quiz(closed));
    Ok(Some(closing))
}

/// The timer's payload: tenant, stream and quiz ids.
fn timer_payload(tenant: &Uuid, stream: &Uuid, quiz: &Uuid) -> Vec<u8> {
    [
        tenant.as_bytes().as_slice(),
        stream.as_bytes(),
        quiz.as_bytes(),
    ]
    .concat()
}

/// The ids in a timer's payload.
fn parse_payload(payload: &[u8]) -> Option<(Uuid, Uuid, Uuid)> {
    if payload.len() != 48 {
        return None;
    }
    let id = |range: std::ops::Range<usize>| Uuid::from_slice(&payload[range]).ok();
    Some((id(0..16)?, id(16..32)?, id(32..48)?))
}

/// The timer handler: closes the quiz unless it closed already (a late or
/// repeated timer does nothing).
pub fn on_timer(
    module: &super::LiveModule,
    change: &mut Change<'_>,
    timer: &Timer,
) -> Result<(), ApiError> {
    let Some((tenant, stream_id, quiz)) = parse_payload(&timer.payload) else {
        tracing::error!("a quiz timer with an unreadable payload was dropped");
        return Ok(());
    };
    let Some(stream) = module.streams.get(&tenant, &stream_id) else {
        return Ok(());
    };
    module.close_quiz_in(change, &stream, &quiz).map(drop)
}

/// The timer id stored in a quiz record.
pub fn timer_of(quiz: &QuizRecord) -> Option<TimerId> {
    quiz.timer.parse().ok().map(TimerId)
}
