//! Server-streaming responses fed from the model thread through a bounded channel: the model
//! waits when the client reads slowly (back-pressure), and a failed send means the client left,
//! which is the signal to stop work.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::{Error, Result};

/// What a streaming handler returns.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

/// The model thread's end of a response stream.
#[derive(Debug)]
pub struct Sink<T> {
    tx: mpsc::Sender<std::result::Result<T, Status>>,
}

/// A sink and the response stream it feeds, at most `buffer` items ahead of the client.
pub fn channel<T: Send + 'static>(buffer: usize) -> (Sink<T>, ResponseStream<T>) {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    (Sink { tx }, Box::pin(ReceiverStream::new(rx)))
}

impl<T> Sink<T> {
    /// Sends `item`, waiting while the client is `buffer` items behind. Must not be called from
    /// an async task (it blocks the thread); the model thread is where it belongs.
    pub fn send(&self, item: T) -> Result<()> {
        self.tx
            .blocking_send(Ok(item))
            .map_err(|_| Error::ClientGone)
    }

    /// The client is gone (the response stream was dropped).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Ends the stream with `error`'s status.
    pub fn fail(&self, error: Error) {
        // A client that already left needs no status.
        let _ = self.tx.blocking_send(Err(error.into()));
    }
}
