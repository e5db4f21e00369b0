//! The closed-loop load every system gets alike: N clients, each with one request in flight,
//! for a set time; each acknowledged request's latency goes into its series' hdrhistogram.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use hdrhistogram::Histogram;

use crate::report::Series;

/// How long one request may take before it counts as failed.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Distinct failure messages a run keeps, to say why requests failed.
pub const FAILURE_MESSAGES_MAX: usize = 8;
/// The pause after a failed request, so a client retrying an unavailable system does not spin.
pub const FAILURE_PAUSE_MS: u64 = 5;

/// One client's connection to the system under test: one request (or one scripted exchange)
/// per call.
pub trait Session: Send + 'static {
    /// Sends request `sequence` (unique across clients) and waits until the system
    /// acknowledges it as durable; says what to record.
    fn write(&mut self, sequence: u64) -> impl Future<Output = anyhow::Result<Recorded>> + Send;
}

/// What one acknowledged request adds to the run's series (indexes into the names given to
/// [`Recorder::new`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// The round trip as the client timed it, into this series.
    RoundTrip { series: usize },
    /// Latencies the system's own stamps give (a handoff's steps), each into its series.
    Stamped(Vec<(usize, Duration)>),
}

impl Recorded {
    /// The round trip, into the run's only series.
    pub const ROUND_TRIP: Recorded = Recorded::RoundTrip { series: 0 };
}

/// A latency histogram in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What the clients of one run saw, shared between them.
pub struct Recorder {
    names: Vec<String>,
    histograms: Mutex<Vec<Histogram<u64>>>,
    acknowledged: AtomicU64,
    failed: AtomicU64,
    /// The first [`FAILURE_MESSAGES_MAX`] distinct failure messages, with their counts.
    failures: Mutex<Vec<(String, u64)>>,
    start: Instant,
    /// Microseconds from the start to the fault injected mid-run (0: none yet).
    fault_at_us: AtomicU64,
    /// Microseconds from the fault to the first acknowledgement of a request sent after it.
    recovered_after_us: AtomicU64,
}

impl Recorder {
    /// A recorder of one series per name.
    pub fn new(names: &[&str]) -> Arc<Recorder> {
        Arc::new(Recorder {
            names: names.iter().map(|name| name.to_string()).collect(),
            histograms: Mutex::new(names.iter().map(|_| new_histogram()).collect()),
            acknowledged: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            start: Instant::now(),
            fault_at_us: AtomicU64::new(0),
            recovered_after_us: AtomicU64::new(0),
        })
    }

    fn elapsed_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Notes that a fault (a leader's kill) is injected now: [`Recorder::recovery`] then
    /// measures until the next request sent after it is acknowledged.
    pub fn mark_fault(&self) {
        self.fault_at_us
            .store(self.elapsed_us().max(1), Ordering::SeqCst);
    }

    /// Time from the fault to the first acknowledged request sent after it.
    pub fn recovery(&self) -> Option<Duration> {
        match self.recovered_after_us.load(Ordering::SeqCst) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    fn acknowledge(&self, sent_us: u64, round_trip: Duration, recorded: Recorded) {
        let samples = match recorded {
            Recorded::RoundTrip { series } => vec![(series, round_trip)],
            Recorded::Stamped(samples) => samples,
        };
        if let Ok(mut histograms) = self.histograms.lock() {
            for (series, latency) in samples {
                if let Some(histogram) = histograms.get_mut(series) {
                    histogram.saturating_record((latency.as_micros() as u64).max(1));
                }
            }
        }
        self.acknowledged.fetch_add(1, Ordering::Relaxed);
        let fault = self.fault_at_us.load(Ordering::SeqCst);
        if fault > 0 && sent_us >= fault {
            let since = (self.elapsed_us() - fault).max(1);
            let _ = self.recovered_after_us.compare_exchange(
                0,
                since,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    fn fail(&self, message: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if let Some((_, count)) = failures.iter_mut().find(|(known, _)| *known == message) {
            *count += 1;
        } else if failures.len() < FAILURE_MESSAGES_MAX {
            failures.push((message, 1));
        }
    }

    /// Why requests failed: distinct messages (at most [`FAILURE_MESSAGES_MAX`]) and how
    /// often each came.
    pub fn failures(&self) -> Vec<(String, u64)> {
        self.failures
            .lock()
            .map(|failures| failures.clone())
            .unwrap_or_default()
    }

    /// The figures of everything recorded so far, one [`Series`] per name. Failed requests
    /// belong to no series: each series carries the run's count.
    pub fn series(&self, seconds: f64) -> anyhow::Result<Vec<Series>> {
        let histograms = self
            .histograms
            .lock()
            .map_err(|_| anyhow!("histogram lock poisoned"))?;
        let failed = self.failed.load(Ordering::SeqCst);
        Ok(self
            .names
            .iter()
            .zip(histograms.iter())
            .map(|(name, histogram)| Series::new(name, histogram, failed, seconds))
            .collect())
    }
}

/// Runs one session per client until `duration` has passed, each sending its next request as
/// soon as the previous one is answered. Returns the seconds the run took (the last requests
/// finish after the deadline).
pub async fn drive<S: Session>(
    sessions: Vec<S>,
    duration: Duration,
    recorder: &Arc<Recorder>,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(sessions.len());
    for (client, mut session) in sessions.into_iter().enumerate() {
        let recorder = recorder.clone();
        tasks.push(tokio::spawn(async move {
            let mut sequence = (client as u64) << 32;
            while Instant::now() < deadline {
                sequence += 1;
                let sent_us = recorder.elapsed_us();
                let began = Instant::now();
                let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
                let outcome = tokio::time::timeout(timeout, session.write(sequence)).await;
                match outcome {
                    Ok(Ok(recorded)) => recorder.acknowledge(sent_us, began.elapsed(), recorded),
                    outcome => {
                        let message = match outcome {
                            Ok(Err(error)) => format!("{error:#}"),
                            _ => format!("no answer within {REQUEST_TIMEOUT_MS} ms"),
                        };
                        recorder.fail(message);
                        tokio::time::sleep(Duration::from_millis(FAILURE_PAUSE_MS)).await;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session that answers after a fixed pause and fails every fifth request.
    struct Fake {
        pause: Duration,
    }

    impl Session for Fake {
        async fn write(&mut self, sequence: u64) -> anyhow::Result<Recorded> {
            tokio::time::sleep(self.pause).await;
            match sequence % 5 {
                0 => Err(anyhow!("refused")),
                1 => Ok(Recorded::Stamped(vec![(1, Duration::from_millis(7))])),
                _ => Ok(Recorded::ROUND_TRIP),
            }
        }
    }

    /// Every client keeps one request in flight for the duration; acknowledged and failed
    /// requests are counted apart, each acknowledged one in the series it names with the
    /// latency it gives (fails if the driver stopped early, counted failures as acknowledged
    /// or mixed the series up).
    #[tokio::test]
    async fn drive_keeps_every_client_busy_and_records_each_series_apart() {
        let recorder = Recorder::new(&["round trip", "stamped"]);
        let sessions = (0..4)
            .map(|_| Fake {
                pause: Duration::from_millis(2),
            })
            .collect();
        let seconds = drive(sessions, Duration::from_millis(200), &recorder)
            .await
            .unwrap();
        let [round_trip, stamped] =
            <[Series; 2]>::try_from(recorder.series(seconds).unwrap()).unwrap();
        assert!(seconds >= 0.2);
        assert!(round_trip.acknowledged > 0 && stamped.acknowledged > 0);
        // One in five sequence numbers fails, one in five is stamped, per client (give or
        // take one per client).
        let total = round_trip.acknowledged + stamped.acknowledged + round_trip.failed;
        for count in [round_trip.failed, stamped.acknowledged] {
            assert!(count * 5 + 4 * 5 >= total, "{count} of {total}");
            assert!(count * 5 <= total + 4 * 5, "{count} of {total}");
        }
        assert!(round_trip.latency.p50_ms >= 2.0, "{round_trip:?}");
        // The stamped latency, not the round trip (7 ms within the histogram's precision).
        assert!((7.0..7.01).contains(&stamped.latency.max_ms), "{stamped:?}");
        let failures = recorder.failures();
        assert_eq!(failures.len(), 1, "one distinct message: {failures:?}");
        assert_eq!(failures[0].0, "refused");
        assert_eq!(failures[0].1, round_trip.failed);
    }
}
