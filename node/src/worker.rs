//! Background work in one shape (Garage's `Worker`): a worker does one unit of work at a time,
//! says whether more is waiting, waits for work when there is none, and stops when the host
//! stops. One runner drives every worker the same way and records what each is doing, so a
//! worker that fails or panics is reported (in the metrics page) instead of vanishing.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a worker rests after a unit of work failed, before it tries again.
pub const ERROR_PAUSE_MS: u64 = 1_000;
/// How often [`Workers::stopped`] looks whether every worker has ended.
pub const STOP_POLL_MS: u64 = 10;

/// What a unit of work left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More work is waiting: do the next unit at once.
    Busy,
    /// Nothing to do: wait for work first.
    Idle,
    /// This worker is finished; it ends.
    Done,
}

/// A background task driven by [`Workers::spawn`].
pub trait Worker: Send + 'static {
    /// What the status shows, e.g. `pump 530602->5306`.
    fn name(&self) -> String;
    /// Does one unit of work. An `Err` is an operating error (storage, a peer): the runner
    /// records it, rests [`ERROR_PAUSE_MS`] and carries on.
    fn work(&mut self) -> impl Future<Output = Result<Step, String>> + Send;
    /// Waits until there may be work again (after [`Step::Idle`]).
    fn wait_for_work(&mut self) -> impl Future<Output = ()> + Send;
}

/// A worker that does one quick thing every period (re-reads a file, say).
pub struct Every<F> {
    name: &'static str,
    period: Duration,
    action: F,
}

impl<F: FnMut() + Send + 'static> Every<F> {
    pub fn new(name: &'static str, period_ms: u64, action: F) -> Every<F> {
        Every {
            name,
            period: Duration::from_millis(period_ms),
            action,
        }
    }
}

impl<F: FnMut() + Send + 'static> Worker for Every<F> {
    fn name(&self) -> String {
        self.name.to_string()
    }

    async fn work(&mut self) -> Result<Step, String> {
        (self.action)();
        Ok(Step::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(self.period).await;
    }
}

/// What a worker is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Running,
    Idle,
    /// It panicked (a programming error): it has stopped, and says why.
    Failed(String),
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Running => "running",
            State::Idle => "idle",
            State::Failed(_) => "failed",
        }
    }
}

/// One worker as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    /// Units of work that returned an error.
    pub errors: u64,
    pub last_error: Option<String>,
}

/// The host's workers and what each is doing. Finished workers leave the table; failed ones
/// stay (until one of the same name starts again), so the failure can be seen.
#[derive(Clone, Default)]
pub struct Workers {
    table: Arc<Mutex<BTreeMap<String, Status>>>,
}

impl Workers {
    /// Every worker's status, by name.
    pub fn statuses(&self) -> BTreeMap<String, Status> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Resolves once every worker has ended (after the stop signal), or `limit` has passed.
    pub async fn stopped(&self, limit: Duration) {
        let give_up = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < give_up {
            let running = self
                .statuses()
                .values()
                .any(|status| !matches!(status.state, State::Failed(_)));
            if !running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(STOP_POLL_MS)).await;
        }
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut Status)) {
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let status = table.entry(name.to_string()).or_insert(Status {
            state: State::Running,
            errors: 0,
            last_error: None,
        });
        change(status);
    }

    fn remove(&self, name: &str) {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(name);
    }

    /// Runs `worker` on its own task until it is done, it panics, or `stop` turns true.
    pub fn spawn(&self, worker: impl Worker, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let workers = self.clone();
        tokio::spawn(workers.run(worker, stop))
    }

    async fn run(self, mut worker: impl Worker, mut stop: watch::Receiver<bool>) {
        let name = worker.name();
        self.update(&name, |status| *status = fresh());
        loop {
            if *stop.borrow() {
                break;
            }
            self.update(&name, |status| status.state = State::Running);
            let unit = AssertUnwindSafe(worker.work()).catch_unwind();
            let outcome = tokio::select! {
                outcome = unit => outcome,
                _ = stop.wait_for(|stopped| *stopped) => break,
            };
            let pause = match outcome {
                Err(panic) => {
                    let reason = panic_text(panic.as_ref());
                    tracing::error!(worker = %name, %reason, "worker panicked and stopped");
                    self.update(&name, |status| status.state = State::Failed(reason));
                    return;
                }
                Ok(Ok(Step::Busy)) => continue,
                Ok(Ok(Step::Done)) => break,
                Ok(Ok(Step::Idle)) => None,
                Ok(Err(error)) => {
                    tracing::debug!(worker = %name, %error, "worker's unit of work failed");
                    self.update(&name, |status| {
                        status.errors += 1;
                        status.last_error = Some(error);
                    });
                    Some(Duration::from_millis(ERROR_PAUSE_MS))
                }
            };
            self.update(&name, |status| status.state = State::Idle);
            let wait = async {
                match pause {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => worker.wait_for_work().await,
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
        self.remove(&name);
    }
}

fn fresh() -> Status {
    Status {
        state: State::Running,
        errors: 0,
        last_error: None,
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts down, failing once on the way, then panics or finishes.
    struct Countdown {
        left: u32,
        fail_at: u32,
        panic_at_end: bool,
    }

    impl Worker for Countdown {
        fn name(&self) -> String {
            "countdown".into()
        }

        async fn work(&mut self) -> Result<Step, String> {
            if self.left == 0 {
                if self.panic_at_end {
                    panic!("out of numbers");
                }
                return Ok(Step::Done);
            }
            self.left -= 1;
            if self.left == self.fail_at {
                return Err(format!("failed at {}", self.left));
            }
            Ok(if self.left.is_multiple_of(2) {
                Step::Busy
            } else {
                Step::Idle
            })
        }

        async fn wait_for_work(&mut self) {}
    }

    /// A worker that panics is reported failed with its message, not lost; an error is counted
    /// and the worker carries on; a finished worker leaves the table.
    #[tokio::test]
    async fn failures_and_panics_are_reported() {
        let workers = Workers::default();
        let (_stop_tx, stop) = watch::channel(false);
        let panicking = Countdown {
            left: 4,
            fail_at: 2,
            panic_at_end: true,
        };
        workers.spawn(panicking, stop.clone()).await.unwrap();
        let status = workers
            .statuses()
            .remove("countdown")
            .expect("still listed");
        assert_eq!(status.state, State::Failed("out of numbers".into()));
        assert_eq!(status.errors, 1);
        assert_eq!(status.last_error.as_deref(), Some("failed at 2"));

        let finishing = Countdown {
            left: 3,
            fail_at: 99,
            panic_at_end: false,
        };
        workers.spawn(finishing, stop).await.unwrap();
        assert!(workers.statuses().is_empty(), "a finished worker leaves");
    }

    /// Stopping the host stops a worker that waits for work.
    #[tokio::test]
    async fn a_waiting_worker_stops_on_the_signal() {
        struct Waiter;
        impl Worker for Waiter {
            fn name(&self) -> String {
                "waiter".into()
            }
            async fn work(&mut self) -> Result<Step, String> {
                Ok(Step::Idle)
            }
            async fn wait_for_work(&mut self) {
                std::future::pending::<()>().await
            }
        }
        let workers = Workers::default();
        let (stop_tx, stop) = watch::channel(false);
        let task = workers.spawn(Waiter, stop);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(workers.statuses()["waiter"].state, State::Idle);
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert!(workers.statuses().is_empty());
    }
}
