//! In-process tests of the hub's subtle invariants, on a real store and
//! writer in a temporary directory: publishes interleaved with every step of
//! subscribing, ring overflow and repair, and exactly-once delivery over
//! random schedules.
//!
//! The random schedules come from a seeded generator rather than a property
//! testing crate: each case starts a real writer and store and runs tasks on
//! a multi-threaded runtime, whose interleavings no shrinker can replay; a
//! seed printed on failure, with the case's parameters, reproduces the
//! inputs, and no dependency is needed.

use super::steps::Step;
use super::*;
use crate::core::log::read::{Gap, GapReason};
use crate::core::writer::{Footprint, Writer};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

/// Generous: these tests assert behaviour, never speed.
const DEADLINE: Duration = Duration::from_secs(60);

/// A hub whose rings keep everything (no repair unless a test wants it).
const ROOMY: HubLimits = HubLimits {
    topic_events: 1 << 16,
    topic_bytes: usize::MAX,
    total_bytes: usize::MAX,
    readers: 2,
};

struct Harness {
    _dir: tempfile::TempDir,
    writer: Writer,
    hub: Arc<Hub>,
    /// Every id committed to a topic, in commit order.
    committed: Arc<Mutex<HashMap<String, Vec<Ulid>>>>,
}

impl Harness {
    fn start(limits: HubLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 16 << 20).unwrap();
        let started = Writer::start_for_tests(store, limits);
        Self {
            _dir: dir,
            writer: started.writer,
            hub: started.hub,
            committed: Arc::default(),
        }
    }

    /// Commits one event per entry of `sizes` (that many bytes of padding)
    /// to `topic` in one change, and records their ids.
    async fn publish(&self, topic: &TopicRef, sizes: Vec<usize>) -> Vec<Ulid> {
        publish(&self.writer, &self.committed, topic, sizes).await
    }

    fn committed(&self, topic: &TopicRef) -> Vec<Ulid> {
        let committed = self.committed.lock().unwrap();
        committed.get(&topic.name).cloned().unwrap_or_default()
    }
}

async fn publish(
    writer: &Writer,
    committed: &Mutex<HashMap<String, Vec<Ulid>>>,
    topic: &TopicRef,
    sizes: Vec<usize>,
) -> Vec<Ulid> {
    let bytes = sizes.iter().sum::<usize>() + 64 * sizes.len();
    let target = topic.clone();
    let done = writer
        .commit(Footprint::data(bytes), move |change| {
            for size in sizes {
                let data = json!({ "pad": "x".repeat(size) });
                change.append(&target, "test", Value::Null, data)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let ids: Vec<Ulid> = done.events.iter().map(|event| event.id()).collect();
    let mut committed = committed.lock().unwrap();
    let all = committed.entry(topic.name.clone()).or_default();
    all.extend(&ids);
    all.sort();
    ids
}

/// Removes the oldest `count` events of `topic` as retention does; returns
/// the pruned-through id.
async fn prune(harness: &Harness, topic: &TopicRef, count: usize) -> Ulid {
    let ids: Vec<u128> = harness.committed(topic)[..count]
        .iter()
        .map(|&id| u128::from(id))
        .collect();
    let newest = *ids.last().unwrap();
    let target = topic.clone();
    harness
        .writer
        .commit(Footprint::SMALL, move |change| change.prune(&target, &ids))
        .await
        .unwrap();
    Ulid::from(newest)
}

fn topic(name: &str) -> TopicRef {
    TopicRef::new(uuid::Uuid::nil(), name).unwrap()
}

/// What a subscriber received.
#[derive(Debug, Default)]
struct Received {
    ids: Vec<Ulid>,
    gaps: Vec<(usize, Gap)>,
}

/// Reads `feed` (at most `max` events per batch) until it delivered
/// `until`, recording everything.
async fn read_until(feed: &mut Subscription, until: Ulid, max: usize) -> Received {
    let mut received = Received::default();
    let reading = async {
        while received.ids.last().is_none_or(|&last| last < until) {
            let batch = feed.next(max).await.unwrap();
            assert!(batch.events.len() <= max);
            if let Some(gap) = batch.gap {
                received.gaps.push((received.ids.len(), gap));
            }
            received
                .ids
                .extend(batch.events.iter().map(|event| event.id()));
        }
    };
    tokio::time::timeout(DEADLINE, reading)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "stalled after {:?} (waiting for {until})",
                received.ids.last()
            )
        });
    received
}

/// Asserts `received` is exactly `expected`, naming the first difference
/// (the lists are long).
fn assert_exactly(received: &[Ulid], expected: &[Ulid], context: &str) {
    if received == expected {
        return;
    }
    let at = received
        .iter()
        .zip(expected)
        .take_while(|(a, b)| a == b)
        .count();
    panic!(
        "{context}: received {} events, expected {}; first difference at {at}: {:?} instead of {:?}",
        received.len(),
        expected.len(),
        received.get(at),
        expected.get(at),
    );
}

/// The ids of `committed` after `position`.
fn after(committed: &[Ulid], position: Ulid) -> Vec<Ulid> {
    committed
        .iter()
        .copied()
        .filter(|&id| id > position)
        .collect()
}

const STEPS: [Step; 6] = [
    Step::Registered,
    Step::RingPositionTaken,
    Step::PageMarked,
    Step::PageBounded,
    Step::PageEnded,
    Step::LiveIdle,
];

/// Subscribes (live, or resuming across two log pages) while the first
/// three times `step` is reached an event is committed and published right
/// there; then one more is published while the feed waits, live. Returns
/// how often the step was reached.
async fn publish_at(step: Step, resume: bool) -> usize {
    let harness = Harness::start(ROOMY);
    let topic = topic("interleaved");
    let history = harness.publish(&topic, vec![16; 600]).await;
    let reached = Arc::new(AtomicUsize::new(0));
    let runtime = tokio::runtime::Handle::current();
    let (writer, committed, counter, target) = (
        harness.writer.clone(),
        harness.committed.clone(),
        reached.clone(),
        topic.clone(),
    );
    harness.hub.steps.listen(move |now| {
        if now == step && counter.fetch_add(1, Ordering::SeqCst) < 3 {
            let commit = publish(&writer, &committed, &target, vec![8]);
            tokio::task::block_in_place(|| runtime.block_on(commit));
        }
    });
    let start = if resume {
        Start::After(history[50])
    } else {
        Start::Live
    };
    let mut feed = harness.hub.subscribe(topic.clone(), start);
    let position = feed.last_id().unwrap();
    // Everything committed so far (publishes at the step add more meanwhile).
    let newest = *harness.committed(&topic).last().unwrap();
    let first = if newest > position {
        read_until(&mut feed, newest, 64).await
    } else {
        Received::default()
    };
    // Live and idle: the feed waits while one more is published.
    let (idle, last) = tokio::join!(feed.next(64), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        harness.publish(&topic, vec![8]).await[0]
    });
    let idle = idle.unwrap();
    let rest = match idle.events.last() {
        Some(seen) if seen.id() >= last => Received::default(),
        _ => read_until(&mut feed, last, 64).await,
    };
    let ids: Vec<Ulid> = (first.ids.into_iter())
        .chain(idle.events.iter().map(|event| event.id()))
        .chain(rest.ids)
        .collect();
    let no_gaps = first.gaps.is_empty() && idle.gap.is_none() && rest.gaps.is_empty();
    assert!(no_gaps, "{step:?}");
    let context =
        format!("{step:?} resume={resume}: every event after the position, once, in order");
    assert_exactly(&ids, &after(&harness.committed(&topic), position), &context);
    reached.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_at_every_step_of_subscribing_leave_no_gap_and_no_duplicate() {
    let mut exercised = HashSet::new();
    for step in STEPS {
        for resume in [false, true] {
            if publish_at(step, resume).await > 0 {
                exercised.insert(step);
            }
        }
    }
    assert_eq!(exercised.len(), STEPS.len(), "every step saw a publish");
}

/// Limits that make a ring drop events: by count, by the topic's bytes, by
/// all rings' bytes.
fn tight_limits() -> [HubLimits; 3] {
    [
        HubLimits {
            topic_events: 8,
            ..ROOMY
        },
        HubLimits {
            topic_bytes: 8 * 1024,
            ..ROOMY
        },
        HubLimits {
            total_bytes: 12 * 1024,
            ..ROOMY
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_fell_out_of_the_ring_repairs_from_the_log_exactly_once() {
    for limits in tight_limits() {
        let harness = Harness::start(limits);
        let (slow_topic, busy_topic) = (topic("slow"), topic("busy"));
        let mut slow = harness.hub.subscribe(slow_topic.clone(), Start::Live);
        let mut busy = harness.hub.subscribe(busy_topic.clone(), Start::Live);
        let slow_start = slow.last_id().unwrap();
        let busy_start = busy.last_id().unwrap();
        // Overflow again while the slow one repairs: its log reads must
        // join up with the ring wherever the ring is by then.
        let reads = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Handle::current();
        let (writer, committed, counter, target) = (
            harness.writer.clone(),
            harness.committed.clone(),
            reads.clone(),
            slow_topic.clone(),
        );
        harness.hub.steps.listen(move |step| {
            if step == Step::PageMarked && counter.fetch_add(1, Ordering::SeqCst) < 2 {
                let commit = publish(&writer, &committed, &target, vec![200; 20]);
                tokio::task::block_in_place(|| runtime.block_on(commit));
            }
        });
        for round in 0..10 {
            harness.publish(&slow_topic, vec![200; 10]).await;
            let last = harness.publish(&busy_topic, vec![100 * round; 2]).await[1];
            let stats = harness.hub.stats();
            assert!(stats.ring_events <= 2 * limits.topic_events, "{stats:?}");
            assert!(stats.ring_bytes <= limits.total_bytes, "{stats:?}");
            let got = read_until(&mut busy, last, 512).await;
            assert!(got.gaps.is_empty());
        }
        let newest = *harness.committed(&slow_topic).last().unwrap();
        let got = read_until(&mut slow, newest, 512).await;
        assert!(got.gaps.is_empty(), "repair is not a gap: {:?}", got.gaps);
        let expected = after(&harness.committed(&slow_topic), slow_start);
        assert_exactly(&got.ids, &expected, &format!("{limits:?}"));
        assert!(
            reads.load(Ordering::SeqCst) > 0,
            "{limits:?}: the slow subscriber repaired from the log"
        );
        let newest = *harness.committed(&busy_topic).last().unwrap();
        assert_eq!(busy.last_id(), Some(newest));
        assert!(busy_start < newest);
    }
}

/// A small deterministic generator (SplitMix64).
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `range`.
    fn within(&mut self, range: std::ops::Range<usize>) -> usize {
        range.start + (self.next() % (range.end - range.start) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One random schedule: history, maybe pruned, then subscribers at random
/// positions reading at random pace while a publisher commits batches of
/// random sizes.
async fn random_schedule(seed: u64) {
    let mut rng = Seeded(seed);
    let limits = HubLimits {
        topic_events: rng.within(2..96),
        topic_bytes: rng.within(2..64) * 1024,
        total_bytes: rng.within(4..128) * 1024,
        readers: rng.within(1..4),
    };
    let harness = Harness::start(limits);
    let topic = topic("random");
    let history_len = rng.within(0..700);
    let sizes = (0..history_len).map(|_| rng.within(0..600)).collect();
    let history = harness.publish(&topic, sizes).await;
    let pruned = if history_len > 1 && rng.chance(50) {
        Some(prune(&harness, &topic, rng.within(1..history_len)).await)
    } else {
        None
    };
    let subscribers = rng.within(1..6);
    let mut readers = Vec::new();
    let (final_tx, final_rx) = tokio::sync::watch::channel(None::<Ulid>);
    for _ in 0..subscribers {
        let start = match history.len() {
            0 => Start::Live,
            len if rng.chance(70) => Start::After(history[rng.within(0..len)]),
            _ => Start::Live,
        };
        let feed = harness.hub.subscribe(topic.clone(), start);
        let (max, pause) = (rng.within(1..80), rng.within(0..3) as u64);
        let mut done = final_rx.clone();
        let mut pace = Seeded(rng.next());
        readers.push(tokio::spawn(async move {
            let mut feed = feed;
            let position = feed.last_id().unwrap();
            let mut received = Received::default();
            loop {
                let until = *done.borrow_and_update();
                if until.is_some_and(|until| received.ids.last() >= Some(&until)) {
                    return (start, position, received);
                }
                let next = tokio::time::timeout(Duration::from_millis(50), feed.next(max));
                if let Ok(batch) = next.await {
                    let batch = batch.unwrap();
                    if let Some(gap) = batch.gap {
                        received.gaps.push((received.ids.len(), gap));
                    }
                    received
                        .ids
                        .extend(batch.events.iter().map(|event| event.id()));
                }
                if pace.chance(30) {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        }));
    }
    for _ in 0..rng.within(1..40) {
        let sizes = (0..rng.within(1..24)).map(|_| rng.within(0..900)).collect();
        harness.publish(&topic, sizes).await;
        if rng.chance(30) {
            tokio::time::sleep(Duration::from_millis(rng.within(0..4) as u64)).await;
        }
    }
    let committed = harness.committed(&topic);
    final_tx.send_replace(committed.last().copied());
    for reader in readers {
        let (start, position, received) = tokio::time::timeout(DEADLINE, reader)
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: a subscriber stalled ({limits:?})"))
            .unwrap();
        let context = format!("seed {seed}, {limits:?}, {start:?}, pruned through {pruned:?}");
        let kept: Vec<Ulid> = committed
            .iter()
            .copied()
            .filter(|&id| pruned.is_none_or(|through| id > through))
            .collect();
        assert_exactly(&received.ids, &after(&kept, position), &context);
        let expired =
            matches!(start, Start::After(cursor) if pruned.is_some_and(|through| cursor < through));
        match received.gaps.as_slice() {
            [] => assert!(!expired, "{context}: the pruned cursor was not reported"),
            [(0, gap)] => {
                assert!(expired, "{context}: a gap without pruning: {gap:?}");
                assert_eq!(gap.reason, GapReason::Expired, "{context}");
                assert_eq!(gap.oldest_id, kept.first().copied(), "{context}");
            }
            gaps => panic!("{context}: gaps {gaps:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_each_event_after_its_position_exactly_once_over_random_schedules() {
    let first = std::env::var("TIDINGS_HUB_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0);
    for seed in first..first + 24 {
        random_schedule(seed).await;
    }
}
