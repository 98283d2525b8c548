//! Requests in flight, as the reader needs to know of them: counted in the run's delivery
//! state while they last, and the reader rung when the last one ends (a batch that lingered
//! waits for that).

use std::sync::Arc;

use crate::delivery::DeliveryState;
use crate::tail::Wake;

/// Requests in flight, counted for the reader: a batch waiting for the files to be read to
/// their end leaves early only while none is, and the reader is told when the last one ends.
pub(super) struct Sending {
    pub delivery: Arc<DeliveryState>,
    pub wake: Arc<Wake>,
}

impl Sending {
    pub(super) fn start(&self) -> SendingGuard<'_> {
        self.delivery.request_started();
        SendingGuard(self)
    }
}

/// One request in flight; counted off when dropped, however the request ended.
pub(super) struct SendingGuard<'a>(&'a Sending);

impl Drop for SendingGuard<'_> {
    fn drop(&mut self) {
        if self.0.delivery.request_ended() {
            self.0.wake.requests_ended();
        }
    }
}
