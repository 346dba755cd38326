//! [`Event`]: one entry of a request's timeline, the trace of who did what, when, on which
//! device (人过留痕、事过留迹).
//!
//! On the wire an event is a map in the request's `timeline` list: `type`, `at` (ms since the
//! Unix epoch, by the writing device's clock), `by` (user ID), an optional `device` and `note`,
//! and per type: `triaged` carries the `track` and, for the transfer track, the `department`;
//! `called_back` carries the resident's `satisfaction`. Unknown extra keys are tolerated.
//!
//! This module reads and describes events. It must not decide whether an event is valid where it
//! lands (that is [`request_flow`](super::request_flow)) or who may add it (that is
//! [`access`](super::access)).

use serde::{Deserialize, Serialize};

use super::keys;
use super::read::Node;
use super::schema::SchemaError;

wire_enum! {
    /// The type of a timeline event: one step of the closed loop (全闭环).
    pub enum EventType / EventTypeError ("event type") {
        /// 收集: the request was collected.
        Collected = "collected",
        /// Triage put the request on a track.
        Triaged = "triaged",
        /// Someone is working on it.
        Handling = "handling",
        /// It was solved.
        Resolved = "resolved",
        /// 回访: the resident was called back and asked whether they are satisfied.
        CalledBack = "called_back",
        /// The loop is closed.
        Closed = "closed",
    }
}

wire_enum! {
    /// The triage track of a request.
    pub enum Track / TrackError ("triage track") {
        /// 即时办理: simple, solved on the spot by the team.
        Immediate = "immediate",
        /// 分类转办: professional, transferred to the responsible department.
        Transfer = "transfer",
        /// 重点督办: hard, under supervision with a deadline and escalation.
        Supervised = "supervised",
    }
}

wire_enum! {
    /// What the resident said when called back.
    pub enum Satisfaction / SatisfactionError ("satisfaction") {
        /// 满意.
        Satisfied = "satisfied",
        /// 基本满意.
        Neutral = "neutral",
        /// 不满意.
        Unsatisfied = "unsatisfied",
    }
}

/// What happened, with the data that belongs to that type of event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The request was collected.
    Collected,
    /// The request was put on a track; `department` is set exactly for the transfer track.
    Triaged {
        track: Track,
        department: Option<String>,
    },
    /// Someone is working on it.
    Handling,
    /// It was solved.
    Resolved,
    /// The resident was called back.
    CalledBack { satisfaction: Satisfaction },
    /// The loop is closed.
    Closed,
}

impl EventKind {
    /// The wire type of this event.
    pub fn event_type(&self) -> EventType {
        match self {
            EventKind::Collected => EventType::Collected,
            EventKind::Triaged { .. } => EventType::Triaged,
            EventKind::Handling => EventType::Handling,
            EventKind::Resolved => EventType::Resolved,
            EventKind::CalledBack { .. } => EventType::CalledBack,
            EventKind::Closed => EventType::Closed,
        }
    }
}

/// One event of a request's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// When, in milliseconds since the Unix epoch, by the writing device's clock.
    pub at: i64,
    /// The user who did it.
    pub by: String,
    /// The device it was recorded on, when the client says.
    pub device: Option<String>,
    /// A free-text remark.
    pub note: Option<String>,
}

impl Event {
    /// Reads the event map `node`.
    pub(super) fn read(node: &Node<'_>) -> Result<Event, SchemaError> {
        let event_type: EventType = node.req_parsed(keys::TYPE)?;
        let kind = match event_type {
            EventType::Collected => EventKind::Collected,
            EventType::Triaged => {
                let track = node.req_parsed(keys::TRACK)?;
                // A department on another track means nothing, so it is not carried along:
                // only a transfer hands the request to a department.
                let department = match track {
                    Track::Transfer => Some(node.req_id(keys::DEPARTMENT)?),
                    Track::Immediate | Track::Supervised => None,
                };
                EventKind::Triaged { track, department }
            }
            EventType::Handling => EventKind::Handling,
            EventType::Resolved => EventKind::Resolved,
            EventType::CalledBack => EventKind::CalledBack {
                satisfaction: node.req_parsed(keys::SATISFACTION)?,
            },
            EventType::Closed => EventKind::Closed,
        };
        Ok(Event {
            kind,
            at: node.req_int(keys::AT)?,
            by: node.req_id(keys::BY)?,
            device: node.opt_id(keys::DEVICE)?,
            note: node.string(keys::NOTE)?,
        })
    }

    /// The wire type of this event.
    pub fn event_type(&self) -> EventType {
        self.kind.event_type()
    }
}
