//! The request state machine: a request's status is derived from its timeline, never stored.
//!
//! The closed loop (全闭环) is collect → triage → handle → resolve → call back → close:
//!
//! | from | event | to |
//! | --- | --- | --- |
//! | (new) | `collected` | collected |
//! | collected | `triaged` | triaged |
//! | triaged | `triaged` (re-triage, before handling starts) | triaged |
//! | triaged | `handling` | handling |
//! | triaged, immediate track only | `resolved` | resolved |
//! | handling | `resolved` | resolved |
//! | resolved | `handling` (reopened) | handling |
//! | resolved | `called_back` | called back |
//! | called back | `closed` | closed (final) |
//!
//! Devices append events offline, and Automerge merges concurrent appends into one list order
//! that is identical on every replica. The status is computed by walking that merged order, so
//! every replica derives the same status. An event that is not a valid transition from the state
//! it lands in (a second `collected`, `resolved` before triage, anything after `closed`) is kept
//! in the document, because the trace must stay complete, but it is ignored: it never changes the
//! status, and its index is reported in [`Flow::ignored`] so the app can show it greyed out.
//!
//! This module must not decide who may add an event (that is [`access`](super::access) and
//! [`write_rules`](super::write_rules)) and never reads a clock: times come from the events.

use automerge::Automerge;
use serde::{Deserialize, Serialize};

use super::event::{Event, EventKind, Satisfaction, Track};
use super::keys;
use super::read::Node;
use super::schema::SchemaError;

wire_enum! {
    /// Where a request stands in its loop.
    pub enum Status / StatusError ("request status") {
        /// No valid `collected` event yet. A valid document never has this status, because its
        /// timeline starts with `collected`; it exists so that [`status`] is total.
        New = "new",
        /// 收集: collected, waiting for triage.
        Collected = "collected",
        /// Triaged onto a track, nobody working on it yet.
        Triaged = "triaged",
        /// Someone is working on it.
        Handling = "handling",
        /// Solved, waiting for the callback.
        Resolved = "resolved",
        /// 回访: the resident was called back.
        CalledBack = "called_back",
        /// The loop is closed. Final.
        Closed = "closed",
    }
}

impl Status {
    /// Whether the work is done: resolved, called back or closed. A finished request is never
    /// overdue.
    pub const fn is_finished(self) -> bool {
        matches!(self, Status::Resolved | Status::CalledBack | Status::Closed)
    }
}

/// What a request's timeline adds up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Where the request stands.
    pub status: Status,
    /// The track of the last valid triage.
    pub track: Option<Track>,
    /// The department of the last valid triage, when its track is transfer.
    pub department: Option<String>,
    /// What the resident said at the last valid callback.
    pub satisfaction: Option<Satisfaction>,
    /// Indices (in timeline order) of events that were invalid where they landed.
    pub ignored: Vec<usize>,
    /// When the request was collected.
    pub collected_at: Option<i64>,
    /// When the last valid triage happened: due times count from here.
    pub triaged_at: Option<i64>,
    /// When it was resolved; cleared when it is reopened.
    pub resolved_at: Option<i64>,
    /// When it was closed.
    pub closed_at: Option<i64>,
}

impl Flow {
    fn start() -> Self {
        Flow {
            status: Status::New,
            track: None,
            department: None,
            satisfaction: None,
            ignored: Vec::new(),
            collected_at: None,
            triaged_at: None,
            resolved_at: None,
            closed_at: None,
        }
    }
}

/// The status `kind` moves a request to from `status` on `track`, or `None` when the event is
/// not valid there. This is the whole state machine.
fn transition(status: Status, track: Option<Track>, kind: &EventKind) -> Option<Status> {
    use EventKind as E;
    use Status as S;
    match (status, kind) {
        (S::New, E::Collected) => Some(S::Collected),
        // Triage, and re-triage as long as nobody has started handling it.
        (S::Collected | S::Triaged, E::Triaged { .. }) => Some(S::Triaged),
        (S::Triaged, E::Handling) => Some(S::Handling),
        // Only an immediate request is solved on the spot, without a handling step.
        (S::Triaged, E::Resolved) if track == Some(Track::Immediate) => Some(S::Resolved),
        (S::Handling, E::Resolved) => Some(S::Resolved),
        (S::Resolved, E::CalledBack { .. }) => Some(S::CalledBack),
        // Found not solved after all before the callback: reopened.
        (S::Resolved, E::Handling) => Some(S::Handling),
        (S::CalledBack, E::Closed) => Some(S::Closed),
        _ => None,
    }
}

/// Walks `events` in timeline order and returns where the request stands.
pub fn status(events: &[Event]) -> Flow {
    let mut flow = Flow::start();
    for (index, event) in events.iter().enumerate() {
        let Some(next) = transition(flow.status, flow.track, &event.kind) else {
            flow.ignored.push(index);
            continue;
        };
        match &event.kind {
            EventKind::Collected => flow.collected_at = Some(event.at),
            EventKind::Triaged { track, department } => {
                flow.track = Some(*track);
                flow.department = department.clone();
                flow.triaged_at = Some(event.at);
            }
            // Handling after resolution reopens the request: it is no longer resolved.
            EventKind::Handling => flow.resolved_at = None,
            EventKind::Resolved => flow.resolved_at = Some(event.at),
            EventKind::CalledBack { satisfaction } => flow.satisfaction = Some(*satisfaction),
            EventKind::Closed => flow.closed_at = Some(event.at),
        }
        flow.status = next;
    }
    flow
}

/// Reads the `timeline` of the request document `doc`, in list order.
///
/// List order is Automerge's merged order of the list, identical on every replica that has the
/// same changes, so [`status`] of these events is the same everywhere.
pub fn read_events(doc: &Automerge) -> Result<Vec<Event>, SchemaError> {
    Node::root(doc)
        .req_list(keys::TIMELINE)?
        .maps()?
        .iter()
        .map(Event::read)
        .collect()
}

/// The flow of the request document `doc`: [`status`] of [`read_events`].
pub fn read_flow(doc: &Automerge) -> Result<Flow, SchemaError> {
    read_events(doc).map(|events| status(&events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Satisfaction;

    fn event(kind: EventKind, at: i64) -> Event {
        Event {
            kind,
            at,
            by: "u-1".to_owned(),
            device: None,
            note: None,
        }
    }

    fn collected(at: i64) -> Event {
        event(EventKind::Collected, at)
    }

    fn triaged(track: Track, at: i64) -> Event {
        let department = (track == Track::Transfer).then(|| "housing".to_owned());
        event(EventKind::Triaged { track, department }, at)
    }

    fn handling(at: i64) -> Event {
        event(EventKind::Handling, at)
    }

    fn resolved(at: i64) -> Event {
        event(EventKind::Resolved, at)
    }

    fn called_back(at: i64) -> Event {
        event(
            EventKind::CalledBack {
                satisfaction: Satisfaction::Satisfied,
            },
            at,
        )
    }

    fn closed(at: i64) -> Event {
        event(EventKind::Closed, at)
    }

    #[test]
    fn the_whole_loop_on_the_transfer_track() {
        let events = [
            collected(1),
            triaged(Track::Transfer, 2),
            handling(3),
            resolved(4),
            called_back(5),
            closed(6),
        ];
        let statuses: Vec<Status> = (1..=events.len())
            .map(|n| status(&events[..n]).status)
            .collect();
        assert_eq!(
            statuses,
            [
                Status::Collected,
                Status::Triaged,
                Status::Handling,
                Status::Resolved,
                Status::CalledBack,
                Status::Closed
            ]
        );
        let flow = status(&events);
        assert_eq!(flow.track, Some(Track::Transfer));
        assert_eq!(flow.department.as_deref(), Some("housing"));
        assert_eq!(flow.satisfaction, Some(Satisfaction::Satisfied));
        assert_eq!(
            (
                flow.collected_at,
                flow.triaged_at,
                flow.resolved_at,
                flow.closed_at
            ),
            (Some(1), Some(2), Some(4), Some(6))
        );
        assert!(flow.ignored.is_empty());
    }

    #[test]
    fn no_events_is_new_and_events_before_collected_are_ignored() {
        assert_eq!(status(&[]).status, Status::New);
        let flow = status(&[triaged(Track::Immediate, 1), collected(2), handling(3)]);
        assert_eq!(flow.status, Status::Collected);
        assert_eq!(
            flow.ignored,
            [0, 2],
            "handling before triage is ignored too"
        );
        assert_eq!(flow.track, None);
    }

    #[test]
    fn only_the_immediate_track_resolves_straight_from_triage() {
        let immediate = status(&[collected(1), triaged(Track::Immediate, 2), resolved(3)]);
        assert_eq!(immediate.status, Status::Resolved);
        assert!(immediate.ignored.is_empty());

        for track in [Track::Transfer, Track::Supervised] {
            let flow = status(&[collected(1), triaged(track, 2), resolved(3)]);
            assert_eq!(flow.status, Status::Triaged, "{track}");
            assert_eq!(flow.ignored, [2]);
        }
    }

    #[test]
    fn re_triage_is_allowed_until_handling_starts() {
        let flow = status(&[
            collected(1),
            triaged(Track::Immediate, 2),
            triaged(Track::Transfer, 3),
        ]);
        assert_eq!(flow.status, Status::Triaged);
        assert_eq!(flow.track, Some(Track::Transfer));
        assert_eq!(
            flow.triaged_at,
            Some(3),
            "due times count from the last triage"
        );

        let late = status(&[
            collected(1),
            triaged(Track::Transfer, 2),
            handling(3),
            triaged(Track::Supervised, 4),
        ]);
        assert_eq!(late.status, Status::Handling);
        assert_eq!(
            late.track,
            Some(Track::Transfer),
            "the late triage changed nothing"
        );
        assert_eq!(late.department.as_deref(), Some("housing"));
        assert_eq!(late.ignored, [3]);
    }

    #[test]
    fn a_resolved_request_can_be_reopened() {
        let flow = status(&[
            collected(1),
            triaged(Track::Transfer, 2),
            handling(3),
            resolved(4),
            handling(5),
        ]);
        assert_eq!(flow.status, Status::Handling);
        assert_eq!(flow.resolved_at, None);
        let again = status(&[
            collected(1),
            triaged(Track::Transfer, 2),
            handling(3),
            resolved(4),
            handling(5),
            resolved(6),
            called_back(7),
        ]);
        assert_eq!(again.status, Status::CalledBack);
        assert_eq!(again.resolved_at, Some(6));
    }

    #[test]
    fn closed_is_final_and_the_callback_must_come_before_closing() {
        let early_close = status(&[
            collected(1),
            triaged(Track::Immediate, 2),
            resolved(3),
            closed(4),
        ]);
        assert_eq!(early_close.status, Status::Resolved, "no callback yet");
        assert_eq!(early_close.ignored, [3]);

        let after_close = status(&[
            collected(1),
            triaged(Track::Immediate, 2),
            resolved(3),
            called_back(4),
            closed(5),
            handling(6),
            triaged(Track::Transfer, 7),
            closed(8),
        ]);
        assert_eq!(after_close.status, Status::Closed);
        assert_eq!(after_close.closed_at, Some(5));
        assert_eq!(after_close.ignored, [5, 6, 7]);
        assert_eq!(after_close.track, Some(Track::Immediate));
    }

    #[test]
    fn duplicate_events_are_ignored_not_double_counted() {
        let flow = status(&[
            collected(1),
            collected(2),
            triaged(Track::Transfer, 3),
            handling(4),
            handling(5),
        ]);
        assert_eq!(flow.status, Status::Handling);
        assert_eq!(flow.collected_at, Some(1));
        assert_eq!(flow.ignored, [1, 4]);
    }

    #[test]
    fn finished_statuses() {
        let finished: Vec<Status> = Status::ALL
            .iter()
            .copied()
            .filter(|s| s.is_finished())
            .collect();
        assert_eq!(
            finished,
            [Status::Resolved, Status::CalledBack, Status::Closed]
        );
    }
}
