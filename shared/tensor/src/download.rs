//! Downloads that are queued now and waited for later ([`crate::Backend::download_async`]).

use crate::{HostTensor, Result};

/// A copy of a device tensor to the host, possibly still in flight: [`PendingDownload::wait`]
/// yields the tensor as f32. Dropping it unwaited is safe: the backend keeps whatever the copy
/// reads and writes alive until the copy has completed.
pub struct PendingDownload(State);

enum State {
    /// Synchronous backends download at once.
    Ready(HostTensor),
    Queued(Box<dyn QueuedDownload>),
}

/// A backend's copy in flight behind a [`PendingDownload`].
pub(crate) trait QueuedDownload: Send {
    /// Waits for the copy and returns its data.
    fn wait(self: Box<Self>) -> Result<HostTensor>;
}

impl PendingDownload {
    pub(crate) fn ready(t: HostTensor) -> Self {
        Self(State::Ready(t))
    }

    pub(crate) fn queued(copy: Box<dyn QueuedDownload>) -> Self {
        Self(State::Queued(copy))
    }

    /// Waits for the copy (only for it, not for work queued after it) and returns the tensor.
    pub fn wait(self) -> Result<HostTensor> {
        match self.0 {
            State::Ready(t) => Ok(t),
            State::Queued(copy) => copy.wait(),
        }
    }
}

impl std::fmt::Debug for PendingDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            State::Ready(t) => write!(f, "PendingDownload(ready {:?})", t.shape),
            State::Queued(_) => write!(f, "PendingDownload(queued)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A queued copy that counts how it ended: waited (`waits`) or dropped (`drops`).
    struct Counted {
        value: f32,
        waits: Arc<AtomicUsize>,
        drops: Arc<AtomicUsize>,
    }

    impl QueuedDownload for Counted {
        fn wait(self: Box<Self>) -> Result<HostTensor> {
            self.waits.fetch_add(1, Ordering::SeqCst);
            HostTensor::from_f32([1], vec![self.value])
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn each_handle_yields_its_own_tensor_in_any_order_and_drops_release_the_copy() {
        let (waits, drops) = (Arc::default(), Arc::default());
        let queue = |value| {
            PendingDownload::queued(Box::new(Counted {
                value,
                waits: Arc::clone(&waits),
                drops: Arc::clone(&drops),
            }))
        };
        let (a, b, c) = (queue(1.0), queue(2.0), queue(3.0));
        assert_eq!(c.wait().unwrap().to_f32_vec(), [3.0]);
        drop(b);
        assert_eq!(a.wait().unwrap().to_f32_vec(), [1.0]);
        assert_eq!(waits.load(Ordering::SeqCst), 2);
        assert_eq!(drops.load(Ordering::SeqCst), 3);

        let ready = PendingDownload::ready(HostTensor::from_f32([2], vec![4.0, 5.0]).unwrap());
        assert_eq!(format!("{ready:?}"), "PendingDownload(ready [2])");
        assert_eq!(ready.wait().unwrap().to_f32_vec(), [4.0, 5.0]);
    }
}
