//! Named points inside subscribing and replaying where in-process tests of
//! the hub make something happen (a publish) at exactly that moment.
//!
//! In a normal build [`Steps`] is empty and [`Steps::reached`] compiles to
//! nothing. Invariant: a step is reached only where the hub holds no lock,
//! so whatever a test does there (commit and publish) cannot deadlock.

/// A point in a subscriber's life where publishes must not cause a gap or a
/// duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Step {
    /// Counted on the channel; its ring position not yet taken.
    Registered,
    /// Ring position taken; the starting position (durable mark) not yet read.
    RingPositionTaken,
    /// A log read took its ring mark; the durable mark not yet read.
    PageMarked,
    /// A log read took the durable mark; the store not yet read.
    PageBounded,
    /// The last events of a page were taken; live or next page not yet decided.
    PageEnded,
    /// Live, the ring had nothing new; not yet waiting.
    LiveIdle,
}

/// Where a test listens for [`Step`]s (shared by the hub and its readers).
#[derive(Clone, Default)]
pub(super) struct Steps {
    #[cfg(test)]
    listener: std::sync::Arc<std::sync::Mutex<Option<Listener>>>,
}

#[cfg(test)]
type Listener = std::sync::Arc<dyn Fn(Step) + Send + Sync>;

impl Steps {
    /// Tells the test's listener, if any, that `step` is reached.
    #[inline(always)]
    pub(super) fn reached(&self, step: Step) {
        #[cfg(test)]
        {
            let listener = self
                .listener
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(listener) = listener {
                listener(step);
            }
        }
        #[cfg(not(test))]
        let _ = step;
    }

    /// Calls `listener` at every step reached from now on.
    #[cfg(test)]
    pub(super) fn listen(&self, listener: impl Fn(Step) + Send + Sync + 'static) {
        *self.listener.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::sync::Arc::new(listener));
    }
}
