//! The model worker: one dedicated OS thread loads the model, warms it up and then runs calls on
//! it one at a time, so model work never blocks the async runtime and a model tied to its thread
//! (a GPU context) never moves.
//!
//! Admission is a semaphore of `1 + max_waiting` slots taken before a call is queued: the running
//! call holds one, queued calls wait FIFO in the others, and a call finding none is refused at
//! once with [`Error::Busy`] (`RESOURCE_EXHAUSTED`) instead of queueing without bound.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use crate::stream::{ResponseStream, Sink, channel};
use crate::{Error, Result};

type Job<M> = Box<dyn FnOnce(&mut M) + Send>;

#[derive(Debug, Clone)]
enum State {
    Loading,
    Ready,
    Failed(String),
}

/// A handle on the model thread; clones share it.
pub struct Worker<M> {
    jobs: std_mpsc::Sender<Job<M>>,
    slots: Arc<Semaphore>,
    capacity: usize,
    state: watch::Receiver<State>,
}

impl<M> Clone for Worker<M> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
            slots: self.slots.clone(),
            capacity: self.capacity,
            state: self.state.clone(),
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `f`, turning a panic into [`Error::Panicked`]: one bad call must not take the replica
/// down with it.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(Error::Panicked(panic_message(&*p))))
}

impl<M: 'static> Worker<M> {
    /// Starts the thread `name`, which runs `load` (load + warm-up) and then the calls.
    pub fn spawn(
        name: &str,
        max_waiting: u16,
        load: impl FnOnce() -> Result<M> + Send + 'static,
    ) -> Self {
        let (state_tx, state) = watch::channel(State::Loading);
        let (jobs, queue) = std_mpsc::channel::<Job<M>>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let started = std::time::Instant::now();
                let mut model = match guarded(load) {
                    Ok(model) => model,
                    Err(e) => {
                        tracing::error!(error = %e, "loading the model failed");
                        state_tx.send_replace(State::Failed(e.to_string()));
                        return;
                    }
                };
                tracing::info!(
                    seconds = started.elapsed().as_secs_f64(),
                    "model loaded and warmed up"
                );
                state_tx.send_replace(State::Ready);
                // Ends when every handle is gone.
                for job in queue {
                    job(&mut model);
                }
            });
        if let Err(e) = thread {
            tracing::error!(error = %e, "cannot start the model thread");
        }
        let capacity = 1 + usize::from(max_waiting);
        Self {
            jobs,
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            state,
        }
    }

    /// Resolves when the model is loaded and warm, or failed to load.
    pub async fn ready(&self) -> Result<()> {
        let mut state = self.state.clone();
        let state = state
            .wait_for(|s| !matches!(s, State::Loading))
            .await
            .map(|s| s.clone())
            .unwrap_or_else(|_| State::Failed("the model thread exited".into()));
        match state {
            State::Ready => Ok(()),
            State::Failed(e) => Err(Error::LoadFailed(e)),
            State::Loading => unreachable!("waited for a state other than Loading"),
        }
    }

    /// No call is running or waiting.
    pub fn is_idle(&self) -> bool {
        self.slots.available_permits() == self.capacity
    }

    /// A call made now would be admitted (the model is loaded and a slot is free); a later call
    /// may still find none.
    pub fn has_room(&self) -> bool {
        matches!(*self.state.borrow(), State::Ready) && self.slots.available_permits() > 0
    }

    fn admit(&self) -> Result<OwnedSemaphorePermit> {
        match &*self.state.borrow() {
            State::Ready => {}
            State::Loading => return Err(Error::Loading),
            State::Failed(e) => return Err(Error::LoadFailed(e.clone())),
        }
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Busy {
                slots: self.capacity,
            })
    }

    fn enqueue(&self, job: Job<M>) -> Result<()> {
        self.jobs.send(job).map_err(|_| Error::WorkerStopped)
    }

    /// Runs `job` on the model and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut M) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = self.admit()?;
        let (tx, rx) = oneshot::channel();
        // The model thread works inside the caller's span, so model time shows in its trace.
        let span = tracing::Span::current();
        self.enqueue(Box::new(move |model| {
            let _span = span.enter();
            let result = guarded(|| job(model));
            // Free the slot before answering, so a client calling again at once is not refused.
            drop(permit);
            let _ = tx.send(result);
        }))?;
        rx.await.map_err(|_| Error::WorkerStopped)?
    }

    /// Reads something of the loaded model (its configuration) on the model thread, without an
    /// admission slot, so that it never makes a call find the worker busy; it waits for the load
    /// and then behind the calls queued before it.
    pub async fn inspect<T: Send + 'static>(
        &self,
        read: impl FnOnce(&M) -> T + Send + 'static,
    ) -> Result<T> {
        self.ready().await?;
        let (tx, rx) = oneshot::channel();
        self.enqueue(Box::new(move |model| {
            let _ = tx.send(guarded(|| Ok(read(model))));
        }))?;
        rx.await.map_err(|_| Error::WorkerStopped)?
    }

    /// Runs `job` on the model, streaming what it sends into the returned response stream
    /// (at most `buffer` items ahead of the client). A job error ends the stream with its status;
    /// a client that leaves makes the job's next [`Sink::send`] fail with [`Error::ClientGone`].
    pub fn stream<T: Send + 'static>(
        &self,
        buffer: usize,
        job: impl FnOnce(&mut M, &Sink<T>) -> Result<()> + Send + 'static,
    ) -> Result<ResponseStream<T>> {
        let permit = self.admit()?;
        let (sink, stream) = channel(buffer);
        let span = tracing::Span::current();
        self.enqueue(Box::new(move |model| {
            let _span = span.enter();
            // A call whose client left while it waited in the queue never runs.
            let result = if sink.is_closed() {
                Err(Error::ClientGone)
            } else {
                guarded(|| job(model, &sink))
            };
            drop(permit);
            match result {
                Ok(()) => {}
                Err(Error::ClientGone) => tracing::info!("client left; call stopped"),
                Err(e) => sink.fail(e),
            }
        }))?;
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_stream::StreamExt;

    use super::*;

    /// A worker whose model (`value`) loads once the returned sender says so.
    fn gated(value: u32) -> (std_mpsc::Sender<()>, Worker<u32>) {
        let (release, gate) = std_mpsc::channel::<()>();
        let worker = Worker::spawn("test-model", 0, move || {
            gate.recv().unwrap();
            Ok(value)
        });
        (release, worker)
    }

    /// A streaming call that adds one to the model, sends it, and holds the only slot until the
    /// returned sender says so.
    fn holding(worker: &Worker<u32>) -> (std_mpsc::Sender<()>, ResponseStream<u32>) {
        let (unblock, blocked) = std_mpsc::channel::<()>();
        let stream = worker
            .stream(1, move |n: &mut u32, sink: &Sink<u32>| {
                *n += 1;
                sink.send(*n)?;
                blocked.recv().unwrap();
                Ok(())
            })
            .unwrap();
        (unblock, stream)
    }

    #[tokio::test]
    async fn loads_then_serves_one_call_at_a_time() {
        let (release, worker) = gated(0);
        assert!(matches!(worker.call(|_| Ok(())).await, Err(Error::Loading)));
        release.send(()).unwrap();
        worker.ready().await.unwrap();

        // A streaming call holds the only slot until its job returns.
        let (unblock, mut stream) = holding(&worker);
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        assert!(!worker.is_idle());
        assert!(matches!(
            worker.call(|_| Ok(())).await,
            Err(Error::Busy { slots: 1 })
        ));
        unblock.send(()).unwrap();
        assert!(stream.next().await.is_none());
        assert!(worker.is_idle());

        let status = worker
            .call(|_: &mut u32| -> Result<()> { panic!("boom") })
            .await
            .unwrap_err();
        assert!(matches!(status, Error::Panicked(m) if m == "boom"));
        assert_eq!(
            worker.call(|n| Ok(*n)).await.unwrap(),
            1,
            "the worker survives"
        );
    }

    #[tokio::test]
    async fn inspecting_the_model_takes_no_slot() {
        let (release, worker) = gated(7);
        // Waits for the load rather than failing while the model loads.
        let early = tokio::spawn({
            let worker = worker.clone();
            async move { worker.inspect(|n| *n).await }
        });
        assert!(!worker.has_room(), "loading");
        release.send(()).unwrap();
        assert_eq!(early.await.unwrap().unwrap(), 7);
        assert!(worker.has_room());

        let (unblock, mut stream) = holding(&worker);
        assert_eq!(stream.next().await.unwrap().unwrap(), 8);
        assert!(!worker.has_room());
        // With the only slot taken, an inspection queues behind the running call instead of being
        // refused, and leaves the slot to it.
        let queued = tokio::spawn({
            let worker = worker.clone();
            async move { worker.inspect(|n| *n).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!queued.is_finished());
        unblock.send(()).unwrap();
        assert_eq!(queued.await.unwrap().unwrap(), 8);
        assert!(stream.next().await.is_none());
        assert!(worker.is_idle());
    }

    #[tokio::test]
    async fn a_failed_load_is_reported() {
        let worker: Worker<()> =
            Worker::spawn("test-model", 0, || Err(Error::invalid("model", "corrupt")));
        assert!(matches!(worker.ready().await, Err(Error::LoadFailed(_))));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(matches!(
            worker.call(|_| Ok(())).await,
            Err(Error::LoadFailed(_))
        ));
    }
}
