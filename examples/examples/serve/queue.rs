//! The run queue: one run at a time on the models, the others waiting with their positions
//! told, each cancellable by its client (a request, or by going away).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::response::sse;
use serde::Serialize;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_stream::Stream;

use crate::api::ApiError;
use crate::form::Submission;

/// A run's number, unique for the server's lifetime.
pub(crate) type RunId = u64;

/// What a client hears about its run, as server-sent events (the event name is the variant's,
/// in kebab case; the data is the fields as JSON).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub(crate) enum Event {
    /// The run was accepted under this number (for its cancel and image URLs).
    Accepted { id: RunId },
    /// Its place in the queue: 1 is next.
    Queued { position: usize },
    /// It has the models.
    Started { seeds: Vec<u64> },
    /// A step done; `done` / `total` count the steps of every stage of the run.
    Progress {
        stage: &'static str,
        step: usize,
        steps: usize,
        done: usize,
        total: usize,
    },
    /// A new preview of the predicted image (the run's `preview.png`).
    Preview { step: usize, url: String },
    /// Something went wrong that does not stop the run (a preview that could not be made).
    Warning { message: String },
    /// The images, one URL per seed.
    Done {
        images: Vec<String>,
        seeds: Vec<u64>,
        seconds: f64,
    },
    /// The run failed: the typed error's message.
    Failed { error: String },
    /// The run stopped (asked to, its client gone, or the server stopping).
    Cancelled,
}

impl Event {
    fn to_sse(&self) -> sse::Event {
        let value = serde_json::to_value(self).expect("events serialise");
        let name = value["event"].as_str().unwrap_or("message").to_string();
        sse::Event::default().event(name).data(value.to_string())
    }
}

/// A run as the queue and the worker see it.
#[derive(Debug)]
pub(crate) struct Run {
    /// Its number.
    pub(crate) id: RunId,
    cancel: AtomicBool,
    events: UnboundedSender<Event>,
}

impl Run {
    /// Tells the client. A closed channel means the client has gone, which its stream's guard
    /// has already turned into a cancellation, so there is nobody left to tell.
    pub(crate) fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Whether the run should stop after the current step.
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

/// The counts `/api/status` reports.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Counts {
    done: usize,
    failed: usize,
    cancelled: usize,
}

/// How a run ended, for the counts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    Done,
    Failed,
    Cancelled,
}

/// The queue's state as `/api/status` reports it.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    running: Option<RunId>,
    waiting: Vec<RunId>,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<(Arc<Run>, Submission)>,
    running: Option<Arc<Run>>,
    next_id: RunId,
    stopping: bool,
    counts: Counts,
}

/// The runs waiting for the models and the one that has them.
pub(crate) struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    limit: usize,
}

impl Queue {
    /// A queue that holds at most `limit` waiting runs.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::default(),
            ready: Condvar::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a run; its events arrive on the stream, which cancels the run when dropped (the
    /// client gone). 503 when the queue is full or the server stopping.
    pub(crate) fn submit(
        self: &Arc<Self>,
        submission: Submission,
    ) -> Result<EventStream, ApiError> {
        let mut state = self.lock();
        if state.stopping {
            return Err(ApiError::unavailable("the server is stopping"));
        }
        if state.waiting.len() >= self.limit {
            return Err(ApiError::unavailable(format!(
                "the queue is full ({} runs waiting); try again later",
                state.waiting.len()
            )));
        }
        let (events, receiver) = unbounded_channel();
        state.next_id += 1;
        let run = Arc::new(Run {
            id: state.next_id,
            cancel: AtomicBool::new(false),
            events,
        });
        run.send(Event::Accepted { id: run.id });
        state.waiting.push_back((run.clone(), submission));
        tell_positions(&state);
        self.ready.notify_one();
        Ok(EventStream {
            receiver,
            _guard: CancelOnDrop {
                queue: self.clone(),
                id: run.id,
            },
        })
    }

    /// The next run for the worker, waiting for one; `None` once the server is stopping.
    pub(crate) fn next(&self) -> Option<(Arc<Run>, Submission)> {
        let mut state = self.lock();
        loop {
            if state.stopping {
                return None;
            }
            if let Some((run, submission)) = state.waiting.pop_front() {
                state.running = Some(run.clone());
                tell_positions(&state);
                return Some((run, submission));
            }
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// The worker is done with its run.
    pub(crate) fn finish(&self, run: &Run, outcome: Outcome) {
        let mut state = self.lock();
        if state.running.as_ref().is_some_and(|r| r.id == run.id) {
            state.running = None;
        }
        count(&mut state.counts, outcome);
    }

    /// Cancels a run: a waiting one leaves the queue at once, the running one stops after its
    /// current step. False when no such run is waiting or running.
    pub(crate) fn cancel(&self, id: RunId) -> bool {
        let mut state = self.lock();
        if let Some(run) = state.running.as_ref().filter(|r| r.id == id) {
            run.cancel.store(true, Ordering::SeqCst);
            return true;
        }
        let Some(index) = state.waiting.iter().position(|(r, _)| r.id == id) else {
            return false;
        };
        if let Some((run, _)) = state.waiting.remove(index) {
            run.send(Event::Cancelled);
        }
        count(&mut state.counts, Outcome::Cancelled);
        tell_positions(&state);
        true
    }

    /// Cancels everything and lets the worker go: the server is stopping.
    pub(crate) fn stop(&self) {
        let mut state = self.lock();
        state.stopping = true;
        for (run, _) in std::mem::take(&mut state.waiting) {
            run.send(Event::Cancelled);
            count(&mut state.counts, Outcome::Cancelled);
        }
        if let Some(run) = &state.running {
            run.cancel.store(true, Ordering::SeqCst);
        }
        self.ready.notify_all();
    }

    /// What is running and waiting, and how the finished runs ended.
    pub(crate) fn status(&self) -> Status {
        let state = self.lock();
        Status {
            running: state.running.as_ref().map(|r| r.id),
            waiting: state.waiting.iter().map(|(r, _)| r.id).collect(),
            counts: state.counts,
        }
    }
}

fn count(counts: &mut Counts, outcome: Outcome) {
    match outcome {
        Outcome::Done => counts.done += 1,
        Outcome::Failed => counts.failed += 1,
        Outcome::Cancelled => counts.cancelled += 1,
    }
}

/// Tells every waiting run its place (after any change to the queue).
fn tell_positions(state: &State) {
    for (i, (run, _)) in state.waiting.iter().enumerate() {
        run.send(Event::Queued { position: i + 1 });
    }
}

/// Cancels its run when the client's event stream is dropped (the client disconnected); a no-op
/// for a run that has already ended.
struct CancelOnDrop {
    queue: Arc<Queue>,
    id: RunId,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.queue.cancel(self.id);
    }
}

/// A run's events as server-sent events; ends when the run has ended.
pub(crate) struct EventStream {
    receiver: UnboundedReceiver<Event>,
    _guard: CancelOnDrop,
}

impl Stream for EventStream {
    type Item = Result<sse::Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver
            .poll_recv(cx)
            .map(|event| event.map(|e| Ok(e.to_sse())))
    }
}
