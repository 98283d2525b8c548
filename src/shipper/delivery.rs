//! The state of delivery that the stages act on, one per run: requests in flight, endpoints
//! failing, the key missing or rejected, checkpoints that cannot be written.
//!
//! The reader holds batches back while an endpoint fails and requests are in flight; liveness
//! counts a reader that waits for requests as the sender's lateness; `/status` says why nothing
//! ships. All of them read it here. The gauges of the same names are rendered from it
//! ([`DeliveryState::gauges`]), never read back. A reload starts a new run with a new state,
//! so nothing an old run saw can hold the new one.
//!
//! Each transition says whether it changed anything, so that the stage that made it logs the
//! change once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::metrics::Family;

/// `sidelog_api_key_rejected`, from [`DeliveryState::key_rejected`].
pub const API_KEY_REJECTED: Family = Family {
    name: "api_key_rejected",
    kind: "gauge",
    help: "1 while the intake rejects the API key.",
};
/// `sidelog_api_key_missing`, from [`DeliveryState::key_missing`].
pub const API_KEY_MISSING: Family = Family {
    name: "api_key_missing",
    kind: "gauge",
    help: "1 while the API key file is missing or empty.",
};
/// `sidelog_checkpoints_unwritten`, from [`DeliveryState::checkpoints_unwritten`].
pub const CHECKPOINTS_UNWRITTEN: Family = Family {
    name: "checkpoints_unwritten",
    kind: "gauge",
    help: "1 while checkpoints cannot be written (a full data_dir): shipping goes on, positions are kept in memory and written once the disk allows; a restart meanwhile repeats lines.",
};
/// `sidelog_intake_failing`, from [`DeliveryState::endpoints_failing`].
pub const INTAKE_FAILING: Family = Family {
    name: "intake_failing",
    kind: "gauge",
    help: "Endpoints that fail now, their requests held back behind one probe (the intake, and reliable additional endpoints).",
};
/// The families rendered from a run's state, in the order they are served.
pub const FAMILIES: &[Family] = &[
    API_KEY_REJECTED,
    API_KEY_MISSING,
    CHECKPOINTS_UNWRITTEN,
    INTAKE_FAILING,
];

/// One run's delivery state, shared by the reader, the dispatcher, the senders of the endpoints
/// that hold the pipeline (the intake and reliable additional endpoints), the checkpoint writer
/// and the admin server. Best-effort endpoints hold nothing back and report nothing here.
#[derive(Debug, Default)]
pub struct DeliveryState {
    in_flight: AtomicUsize,
    failing: AtomicUsize,
    key_rejecting: AtomicUsize,
    key_missing: AtomicBool,
    checkpoints_unwritten: AtomicBool,
}

impl DeliveryState {
    /// A request starts.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request ended, however; true when it was the last one in flight. SeqCst pairs with
    /// the reader's check of [`Self::is_idle`] before it sleeps.
    pub fn request_ended(&self) -> bool {
        decrement(&self.in_flight, Ordering::SeqCst) == 1
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// No request is in flight (read before the reader sleeps, so SeqCst).
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }

    /// An endpoint's outage gate closed: its requests wait behind one probe.
    pub fn endpoint_failing(&self) {
        self.failing.fetch_add(1, Ordering::Relaxed);
    }

    /// An endpoint's outage gate opened again.
    pub fn endpoint_recovered(&self) {
        decrement(&self.failing, Ordering::Relaxed);
    }

    /// Endpoints whose outage gate is closed now.
    pub fn endpoints_failing(&self) -> usize {
        self.failing.load(Ordering::Relaxed)
    }

    /// Whether the reader holds batches until they are full: an endpoint fails and requests
    /// wait on it. Partial batches would only queue up behind the probe, each costing a
    /// request once the endpoint is back. With nothing in flight there is nothing to wait on,
    /// and a batch leaves as usual (it becomes the probe).
    pub fn holding_back(&self) -> bool {
        self.endpoints_failing() > 0 && self.in_flight() > 0
    }

    /// An endpoint now rejects its key; true when it did not before. `was_rejecting` is the
    /// endpoint's own flag, so that one endpoint counts once.
    pub fn key_rejected_by(&self, was_rejecting: bool) -> bool {
        if was_rejecting {
            return false;
        }
        self.key_rejecting.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// An endpoint that rejected its key accepts one again.
    pub fn key_accepted_by(&self, was_rejecting: bool) {
        if was_rejecting {
            decrement(&self.key_rejecting, Ordering::Relaxed);
        }
    }

    /// Whether an endpoint that holds the pipeline rejects its key now.
    pub fn key_rejected(&self) -> bool {
        self.key_rejecting.load(Ordering::Relaxed) > 0
    }

    /// Whether the key file is missing or empty now; returns what it was.
    pub fn set_key_missing(&self, missing: bool) -> bool {
        self.key_missing.swap(missing, Ordering::Relaxed)
    }

    pub fn key_missing(&self) -> bool {
        self.key_missing.load(Ordering::Relaxed)
    }

    /// Whether checkpoints can be written now; true when that changed.
    pub fn set_checkpoints_unwritten(&self, unwritten: bool) -> bool {
        self.checkpoints_unwritten
            .swap(unwritten, Ordering::Relaxed)
            != unwritten
    }

    pub fn checkpoints_unwritten(&self) -> bool {
        self.checkpoints_unwritten.load(Ordering::Relaxed)
    }

    /// Why nothing is being shipped now, for people and alerts (never for a probe).
    pub fn not_shipping_because(&self) -> Option<&'static str> {
        if self.key_missing() {
            Some("waiting for the API key file")
        } else if self.key_rejected() {
            Some("the intake rejects the API key (401/403)")
        } else if self.endpoints_failing() > 0 {
            Some("the intake fails; requests wait behind one probe")
        } else {
            None
        }
    }

    /// The values of [`FAMILIES`], in that order.
    pub fn gauges(&self) -> [(Family, u64); 4] {
        [
            (API_KEY_REJECTED, u64::from(self.key_rejected())),
            (API_KEY_MISSING, u64::from(self.key_missing())),
            (
                CHECKPOINTS_UNWRITTEN,
                u64::from(self.checkpoints_unwritten()),
            ),
            (INTAKE_FAILING, self.endpoints_failing() as u64),
        ]
    }
}

/// Subtracts one, never below zero whatever the order of updates; returns the value before.
fn decrement(n: &AtomicUsize, order: Ordering) -> usize {
    match n.fetch_update(order, Ordering::Relaxed, |v| Some(v.saturating_sub(1))) {
        Ok(before) | Err(before) => before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_only_while_an_endpoint_fails_and_requests_wait() {
        let s = DeliveryState::default();
        assert!(!s.holding_back() && s.is_idle());
        s.endpoint_failing();
        assert!(
            !s.holding_back(),
            "nothing in flight: the next batch is the probe"
        );
        s.request_started();
        assert!(s.holding_back());
        s.endpoint_recovered();
        assert!(!s.holding_back());
        s.endpoint_failing();
        assert!(s.request_ended(), "the last request in flight ended");
        assert!(!s.holding_back() && s.is_idle());
    }

    #[test]
    fn counts_never_go_below_zero() {
        let s = DeliveryState::default();
        s.endpoint_recovered();
        assert!(!s.request_ended());
        s.key_accepted_by(true);
        assert_eq!((s.endpoints_failing(), s.in_flight()), (0, 0));
        assert!(!s.key_rejected());
        s.request_started();
        s.request_started();
        assert!(!s.request_ended());
        assert!(s.request_ended());
    }

    #[test]
    fn key_rejection_counts_each_endpoint_once_and_says_when_it_changes() {
        let s = DeliveryState::default();
        assert!(s.key_rejected_by(false), "first rejection is news");
        assert!(!s.key_rejected_by(true), "the same endpoint again is not");
        assert!(s.key_rejected_by(false), "a second endpoint");
        s.key_accepted_by(true);
        assert!(s.key_rejected(), "one endpoint still rejects its key");
        s.key_accepted_by(false);
        assert!(s.key_rejected());
        s.key_accepted_by(true);
        assert!(!s.key_rejected());
    }

    #[test]
    fn checkpoint_and_key_file_transitions_report_changes() {
        let s = DeliveryState::default();
        assert!(!s.set_checkpoints_unwritten(false));
        assert!(s.set_checkpoints_unwritten(true));
        assert!(!s.set_checkpoints_unwritten(true));
        assert!(s.checkpoints_unwritten());
        assert!(s.set_checkpoints_unwritten(false));
        assert!(!s.set_key_missing(true));
        assert!(s.set_key_missing(false));
    }

    #[test]
    fn status_names_the_first_reason_and_gauges_follow_the_state() {
        let s = DeliveryState::default();
        assert_eq!(s.not_shipping_because(), None);
        assert!(s.gauges().iter().all(|(_, v)| *v == 0));
        s.endpoint_failing();
        s.endpoint_failing();
        assert!(s.not_shipping_because().unwrap_or("").contains("fails"));
        s.key_rejected_by(false);
        assert!(s.not_shipping_because().unwrap_or("").contains("rejects"));
        s.set_key_missing(true);
        assert!(s.not_shipping_because().unwrap_or("").contains("waiting"));
        s.set_checkpoints_unwritten(true);
        let values: Vec<u64> = s.gauges().iter().map(|(_, v)| *v).collect();
        assert_eq!(values, [1, 1, 1, 2]);
        let names: Vec<&str> = s.gauges().iter().map(|(f, _)| f.name).collect();
        let declared: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        assert_eq!(names, declared);
    }

    #[test]
    fn a_new_run_starts_from_nothing() {
        let old = DeliveryState::default();
        old.endpoint_failing();
        old.request_started();
        old.key_rejected_by(false);
        old.set_checkpoints_unwritten(true);
        let new = DeliveryState::default();
        assert!(!new.holding_back() && new.not_shipping_because().is_none());
        assert!(new.gauges().iter().all(|(_, v)| *v == 0));
    }
}
