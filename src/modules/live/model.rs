//! The live module's records and wire shapes: streams, chats, quizzes, the
//! items waiting for an interval, and the interval body the spec shows.
//!
//! Invariants: an interval is `INTERVAL_MS` long and starts at a multiple of
//! it (unix ms); the body of an interval is built by [`IntervalBody::encode`]
//! alone, so the same inputs give the same bytes; quiz choices keep the
//! producer's order on the wire; percentages are floored
//! (`100·count/total`, 0 without answers).

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

/// Length of one interval, in ms (what `/api/v1/time` announces).
pub const INTERVAL_MS: u64 = 250;

/// The interval containing `ms`.
pub fn interval_of(ms: u64) -> u64 {
    ms - ms % INTERVAL_MS
}

/// A stream as stored and as producers see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StreamRecord {
    /// The stream id.
    pub id: Uuid,
    /// Its title.
    pub title: String,
    /// Whether a CDN may cache its closed intervals (`Cache-Control: public`).
    pub public: bool,
    /// How long its closed intervals are kept, in seconds.
    pub retention_seconds: u64,
    /// When it was created (unix ms).
    pub created_at: u64,
    /// Its first interval: earlier ones are empty.
    pub first_interval: u64,
    /// When it ended (unix ms), if it did.
    pub ended_at: Option<u64>,
    /// Its last interval once ended: later ones are refused.
    pub last_interval: Option<u64>,
    /// `live` or `ended`.
    pub status: StreamStatus,
    /// The quiz open now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_quiz: Option<Uuid>,
}

/// Whether a stream still runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StreamStatus {
    /// Intervals are being closed.
    Live,
    /// No interval after its last one.
    Ended,
}

impl StreamRecord {
    /// The retention in ms.
    pub fn retention_ms(&self) -> u64 {
        self.retention_seconds.saturating_mul(1000)
    }

    /// The newest closed interval of a stream nothing was closed for yet:
    /// the one before its first.
    pub fn initial_closed_through(&self) -> u64 {
        self.first_interval.saturating_sub(INTERVAL_MS)
    }

    /// True while intervals are being closed.
    pub fn is_live(&self) -> bool {
        self.status == StreamStatus::Live
    }
}

/// The five kinds of chat and the array each goes to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ChatKind {
    /// `messages`.
    Message,
    /// `questions`.
    Question,
    /// `greetings`.
    Greeting,
    /// `cheers`.
    Cheer,
    /// `purchases`: with an item, an amount and a currency.
    Purchase,
}

impl ChatKind {
    /// The log event type of a chat of this kind.
    pub fn event_type(self) -> &'static str {
        match self {
            ChatKind::Message => "chat.message",
            ChatKind::Question => "chat.question",
            ChatKind::Greeting => "chat.greeting",
            ChatKind::Cheer => "chat.cheer",
            ChatKind::Purchase => "chat.purchase",
        }
    }
}

/// A chat as viewers receive it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Chat {
    /// Its id (a ULID: ordered by commit).
    pub id: String,
    /// The JWT subject who posted it.
    pub user_id: String,
    /// The name shown next to it.
    pub display_name: String,
    /// Its text.
    pub text: String,
    /// When it was committed (unix ms).
    pub created: u64,
    /// A purchase's item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// A purchase's amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    /// A purchase's currency (ISO 4217).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// A quiz as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QuizRecord {
    /// Its id.
    pub id: Uuid,
    /// The stream it belongs to.
    pub stream_id: Uuid,
    /// The interval it opened in (unix ms).
    pub created: u64,
    /// How long it is open, in ms.
    pub duration: u64,
    /// The interval its results are in (unix ms).
    pub close_interval: u64,
    /// The question.
    pub question: String,
    /// The choices, in the producer's order.
    pub choices: Vec<String>,
    /// Index of the right choice.
    pub answer: usize,
    /// Answers per choice (as of the last persisted interval, or final).
    pub counts: Vec<u64>,
    /// True once closed (results published).
    pub closed: bool,
    /// The durable timer that closes it.
    pub timer: String,
}

/// How a quiz's data is shown.
#[derive(Clone, Copy)]
pub enum QuizView {
    /// The `quiz` event: counts zeroed, no answer.
    Opened,
    /// `quiz-results`: counts, floored percentages and the answer.
    Results,
    /// For its producer: zeroed counts and the answer.
    Producer,
}

/// A quiz's data in the spec's field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuizData<'a> {
    id: Uuid,
    stream_id: Uuid,
    created: u64,
    duration: u64,
    close_interval: u64,
    question: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<&'a str>,
    choices: Choices<'a>,
}

impl QuizRecord {
    /// The quiz's data as the events and the API show it.
    pub fn view(&self, view: QuizView) -> QuizData<'_> {
        let (counts, answer) = match view {
            QuizView::Opened => (None, None),
            QuizView::Producer => (None, Some(self.choices[self.answer].as_str())),
            QuizView::Results => (
                Some(self.counts.as_slice()),
                Some(self.choices[self.answer].as_str()),
            ),
        };
        QuizData {
            id: self.id,
            stream_id: self.stream_id,
            created: self.created,
            duration: self.duration,
            close_interval: self.close_interval,
            question: &self.question,
            answer,
            choices: Choices {
                names: &self.choices,
                counts,
            },
        }
    }

    /// Answers with the right choice.
    pub fn winners(&self) -> u64 {
        self.counts.get(self.answer).copied().unwrap_or(0)
    }
}

/// Choices as the spec's object `{"<choice>":{"count","percentage"}}`, in
/// the producer's order; all zero without counts.
pub struct Choices<'a> {
    names: &'a [String],
    counts: Option<&'a [u64]>,
}

impl Serialize for Choices<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Tally {
            count: u64,
            percentage: u64,
        }
        let count_of = |index: usize| self.counts.and_then(|c| c.get(index).copied());
        let total: u64 = self.counts.map_or(0, |counts| counts.iter().sum());
        let mut map = serializer.serialize_map(Some(self.names.len()))?;
        for (index, name) in self.names.iter().enumerate() {
            let count = count_of(index).unwrap_or(0);
            let percentage = floored_percentage(count, total);
            map.serialize_entry(name, &Tally { count, percentage })?;
        }
        map.end()
    }
}

/// `floor(100·count/total)`; 0 when there are no answers.
pub fn floored_percentage(count: u64, total: u64) -> u64 {
    if total == 0 {
        return 0;
    }
    (u128::from(count) * 100 / u128::from(total)) as u64
}

/// The short form of a count (the `formatted` field of `view-count`): below
/// 1 000 as is; then thousands (`K`), millions (`M`), billions (`B`) with one
/// decimal, truncated, and without a trailing `.0` (1 000 → "1K", 2 134 →
/// "2.1K", 1 999 → "1.9K", 15 300 000 → "15.3M", 2 500 000 000 → "2.5B").
pub fn formatted_count(value: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")];
    let Some(&(scale, suffix)) = UNITS.iter().find(|(scale, _)| value >= *scale) else {
        return value.to_string();
    };
    let tenths = value / (scale / 10);
    let (whole, decimal) = (tenths / 10, tenths % 10);
    if decimal == 0 {
        format!("{whole}{suffix}")
    } else {
        format!("{whole}.{decimal}{suffix}")
    }
}

/// Something committed for an interval before it closed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "item")]
pub enum Item {
    /// A chat of one kind.
    Chat {
        /// Its kind.
        kind: ChatKind,
        /// The chat.
        chat: Chat,
    },
    /// A quiz opened (its `quiz` event).
    QuizOpened {
        /// The quiz as it opened.
        quiz: QuizRecord,
    },
    /// A quiz closed (its `quiz-results` and `quiz-winners` events).
    QuizClosed {
        /// The quiz with its final counts.
        quiz: QuizRecord,
    },
}

/// What one closed interval holds; encoded once into the served bytes.
#[derive(Debug, Default)]
pub struct IntervalBody {
    /// The interval (unix ms).
    pub interval: u64,
    /// The view count, while the stream is live and the interval was seen.
    pub view_count: Option<u64>,
    /// Hearts sent in the interval.
    pub hearts: u64,
    /// Discounts published in the interval.
    pub discounts: u64,
    /// Items committed for the interval, in commit order.
    pub items: Vec<Item>,
}

/// One event of an interval, `{"type","data"}`.
#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    event_type: &'a str,
    data: T,
}

/// The `chats` event's data, arrays in the spec's order.
#[derive(Serialize)]
struct ChatsData<'a> {
    messages: Vec<&'a Chat>,
    questions: Vec<&'a Chat>,
    greetings: Vec<&'a Chat>,
    cheers: Vec<&'a Chat>,
    purchases: Vec<&'a Chat>,
    hearts: u64,
    discounts: u64,
}

/// The `view-count` event's data.
#[derive(Serialize)]
struct ViewCount {
    value: u64,
    formatted: String,
}

/// The `quiz-winners` event's data.
#[derive(Serialize)]
struct Winners {
    count: u64,
}

impl IntervalBody {
    /// The bytes served for the interval: `{"interval":T,"events":[…]}`
    /// with `view-count`, `chats`, then each quiz event in commit order.
    pub fn encode(&self) -> Vec<u8> {
        let mut events: Vec<Vec<u8>> = Vec::new();
        if let Some(value) = self.view_count {
            let formatted = formatted_count(value);
            events.push(encode_event("view-count", ViewCount { value, formatted }));
        }
        if let Some(chats) = self.chats() {
            events.push(encode_event("chats", chats));
        }
        for item in &self.items {
            match item {
                Item::Chat { .. } => {}
                Item::QuizOpened { quiz } => {
                    events.push(encode_event("quiz", quiz.view(QuizView::Opened)));
                }
                Item::QuizClosed { quiz } => {
                    events.push(encode_event("quiz-results", quiz.view(QuizView::Results)));
                    let count = quiz.winners();
                    events.push(encode_event("quiz-winners", Winners { count }));
                }
            }
        }
        let mut body = format!("{{\"interval\":{},\"events\":[", self.interval).into_bytes();
        body.extend_from_slice(&events.join(&b','));
        body.extend_from_slice(b"]}");
        body
    }

    /// The `chats` event's data, when anything of it happened.
    fn chats(&self) -> Option<ChatsData<'_>> {
        let of_kind = |wanted: ChatKind| -> Vec<&Chat> {
            self.items
                .iter()
                .filter_map(|item| match item {
                    Item::Chat { kind, chat } if *kind == wanted => Some(chat),
                    _ => None,
                })
                .collect()
        };
        let any_chat = self
            .items
            .iter()
            .any(|item| matches!(item, Item::Chat { .. }));
        if !any_chat && self.hearts == 0 && self.discounts == 0 {
            return None;
        }
        Some(ChatsData {
            messages: of_kind(ChatKind::Message),
            questions: of_kind(ChatKind::Question),
            greetings: of_kind(ChatKind::Greeting),
            cheers: of_kind(ChatKind::Cheer),
            purchases: of_kind(ChatKind::Purchase),
            hearts: self.hearts,
            discounts: self.discounts,
        })
    }
}

fn encode_event<T: Serialize>(event_type: &str, data: T) -> Vec<u8> {
    serde_json::to_vec(&Event { event_type, data }).unwrap_or_default()
}

/// The body of an interval with nothing in it (before a stream's start, or
/// one the server was not running for).
pub fn empty_body(interval: u64) -> Vec<u8> {
    IntervalBody {
        interval,
        ..IntervalBody::default()
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_formatted_by_the_documented_rule() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1_000, "1K"),
            (1_099, "1K"),
            (1_999, "1.9K"),
            (2_134, "2.1K"),
            (999_999, "999.9K"),
            (1_000_000, "1M"),
            (15_300_000, "15.3M"),
            (2_500_000_000, "2.5B"),
            (u64::MAX, "18446744073.7B"),
        ];
        for (value, text) in cases {
            assert_eq!(formatted_count(value), text, "{value}");
        }
    }

    #[test]
    fn percentages_are_floored_as_in_the_spec() {
        let counts = [2_123, 55_156, 107_721];
        let total = counts.iter().sum();
        let shown: Vec<u64> = counts
            .iter()
            .map(|&count| floored_percentage(count, total))
            .collect();
        assert_eq!(shown, [1, 33, 65]);
        assert_eq!(floored_percentage(0, 0), 0);
    }

    #[test]
    fn chat_event_keys_are_in_field_order_and_choices_in_producer_order() {
        let quiz = QuizRecord {
            id: Uuid::nil(),
            stream_id: Uuid::nil(),
            created: 1_000,
            duration: 500,
            close_interval: 1_500,
            question: "q".into(),
            choices: vec!["Zebra".into(), "Apple".into()],
            answer: 1,
            counts: vec![1, 3],
            closed: true,
            timer: String::new(),
        };
        let text = serde_json::to_string(&quiz.view(QuizView::Results)).unwrap();
        assert!(text.starts_with(r#"{"id":"#), "{text}");
        let zebra = text.find("Zebra").unwrap();
        assert!(zebra < text.find("\"Apple\":").unwrap(), "{text}");
        assert!(
            text.contains(r#""Apple":{"count":3,"percentage":75}"#),
            "{text}"
        );
        let body = IntervalBody {
            interval: 250,
            view_count: Some(2_134),
            hearts: 13,
            items: vec![Item::QuizClosed { quiz }],
            ..IntervalBody::default()
        };
        let text = String::from_utf8(body.encode()).unwrap();
        assert!(text.starts_with(
            r#"{"interval":250,"events":[{"type":"view-count","data":{"value":2134,"formatted":"2.1K"}},{"type":"chats","data":{"messages":[],"#
        ), "{text}");
        assert!(
            text.ends_with(r#"{"type":"quiz-winners","data":{"count":3}}]}"#),
            "{text}"
        );
        assert_eq!(empty_body(500), br#"{"interval":500,"events":[]}"#);
    }
}
