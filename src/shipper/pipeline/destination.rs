//! Where the dispatcher delivers: the [`Destination`] trait, and the intake's [`Sender`]
//! behind it. The dispatcher's tests put a scripted endpoint in its place.

use bytes::Bytes;

use crate::compress::Codec;
use crate::ship::{Delivery, Sender, Slot};
use crate::shutdown::ShutdownSignal;

/// Where batches are delivered: the seam between deciding what to send (`dispatch`) and
/// sending it (HTTP, retries and the outage gate, in `ship`).
pub(super) trait Destination: Send + Sync + 'static {
    /// A place among the requests in flight, held while one is.
    type Slot: Send;
    /// Waits for a place among the requests in flight; `None` at shutdown.
    fn slot(&self) -> impl Future<Output = Option<Self::Slot>> + Send;
    /// The codec bodies are compressed with (it may change when a receiver refuses one).
    fn codec(&self) -> Codec;
    /// Sends a body until it is accepted, refused for good, refused for its codec, or
    /// abandoned at shutdown.
    fn deliver(
        &self,
        body: Bytes,
        codec: Codec,
        signal: &mut ShutdownSignal,
    ) -> impl Future<Output = Delivery> + Send;
    /// Bodies accepted so far (evidence that a refused event is bad, not the endpoint).
    fn accepted(&self) -> u64;
    /// Every part of a batch was refused and nothing else accepted: hold as in an outage.
    fn refuses_everything(&self, status: u16);
}

impl Destination for Sender {
    type Slot = Slot;

    async fn slot(&self) -> Option<Slot> {
        Sender::slot(self).await
    }

    fn codec(&self) -> Codec {
        Sender::codec(self)
    }

    async fn deliver(&self, body: Bytes, codec: Codec, signal: &mut ShutdownSignal) -> Delivery {
        Sender::deliver(self, body, codec, signal).await
    }

    fn accepted(&self) -> u64 {
        Sender::accepted(self)
    }

    fn refuses_everything(&self, status: u16) {
        Sender::refuses_everything(self, status)
    }
}
