//! Due times: each triage track has a deadline, and a request past it is overdue.
//!
//! The deadline counts from the last valid triage ([`Flow::triaged_at`]), because that is when
//! the request was put on its track; re-triage onto another track restarts the clock. The
//! defaults follow the field: an immediate request (即时办理) is due by the end of the same local
//! day, a transferred one (分类转办) within 3 days, a supervised one (重点督办) within 7 days. All
//! three are configurable. A request that is not yet triaged has no deadline here, and one that
//! is resolved, called back or closed is never overdue; a request reopened after resolution is
//! measured against its original deadline again.
//!
//! This module never reads a clock: `now_ms` and the local zone's UTC offset are arguments.

use serde::{Deserialize, Serialize};

use super::date::{DAY_MS, LocalDate};
use super::event::Track;
use super::request_flow::{Flow, Status};

/// How long a track has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Due {
    /// By the end of the local day of the triage (`"same_day"` in configuration).
    SameDay,
    /// Within this many milliseconds of the triage (`{ within_ms = … }` in configuration).
    WithinMs(i64),
}

/// The deadline of each track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DueTimes {
    /// Immediate track; same day by default.
    pub immediate: Due,
    /// Transfer track; 3 days by default.
    pub transfer: Due,
    /// Supervised track; 7 days by default.
    pub supervised: Due,
}

impl Default for DueTimes {
    fn default() -> Self {
        DueTimes {
            immediate: Due::SameDay,
            transfer: Due::WithinMs(3 * DAY_MS),
            supervised: Due::WithinMs(7 * DAY_MS),
        }
    }
}

impl DueTimes {
    /// The deadline rule of `track`.
    pub fn for_track(&self, track: Track) -> Due {
        match track {
            Track::Immediate => self.immediate,
            Track::Transfer => self.transfer,
            Track::Supervised => self.supervised,
        }
    }
}

/// The last millisecond (since the Unix epoch) at which the request is still on time, or `None`
/// if it has not been triaged.
pub fn due_at(flow: &Flow, due_times: &DueTimes, utc_offset_secs: i32) -> Option<i64> {
    let track = flow.track?;
    let triaged_at = flow.triaged_at?;
    Some(match due_times.for_track(track) {
        Due::SameDay => {
            LocalDate::from_unix_ms(triaged_at, utc_offset_secs).end_ms(utc_offset_secs)
        }
        Due::WithinMs(ms) => triaged_at.saturating_add(ms),
    })
}

/// Whether the request is past its deadline at `now_ms` and its work is not done.
pub fn is_overdue(flow: &Flow, now_ms: i64, due_times: &DueTimes, utc_offset_secs: i32) -> bool {
    !matches!(flow.status, Status::New)
        && !flow.status.is_finished()
        && due_at(flow, due_times, utc_offset_secs).is_some_and(|due| now_ms > due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::date::SHANGHAI_OFFSET_SECS;
    use crate::domain::event::{Event, EventKind};
    use crate::domain::request_flow::status;

    const HOUR_MS: i64 = 3_600_000;

    fn ev(kind: EventKind, at: i64) -> Event {
        Event {
            kind,
            at,
            by: "u".to_owned(),
            device: None,
            note: None,
        }
    }

    fn triaged_flow(track: Track, at: i64) -> Flow {
        let department = (track == Track::Transfer).then(|| "water".to_owned());
        status(&[
            ev(EventKind::Collected, at - 1000),
            ev(EventKind::Triaged { track, department }, at),
        ])
    }

    /// 2026-03-05 in Shanghai, at `hour`:00 local time, in ms since the epoch.
    fn shanghai(hour: i64) -> i64 {
        "2026-03-05"
            .parse::<LocalDate>()
            .unwrap()
            .start_ms(SHANGHAI_OFFSET_SECS)
            + hour * HOUR_MS
    }

    #[test]
    fn immediate_requests_are_due_by_the_end_of_the_local_day() {
        let flow = triaged_flow(Track::Immediate, shanghai(23));
        let due = due_at(&flow, &DueTimes::default(), SHANGHAI_OFFSET_SECS).unwrap();
        assert_eq!(due, shanghai(24) - 1);
        let times = DueTimes::default();
        assert!(!is_overdue(
            &flow,
            shanghai(24) - 1,
            &times,
            SHANGHAI_OFFSET_SECS
        ));
        assert!(is_overdue(
            &flow,
            shanghai(24),
            &times,
            SHANGHAI_OFFSET_SECS
        ));
        // Judged in UTC the same instant is 15:00 on 2026-03-05, so the day ends later.
        assert!(!is_overdue(&flow, shanghai(24), &times, 0));
    }

    #[test]
    fn transfer_and_supervised_requests_have_days() {
        let times = DueTimes::default();
        let transfer = triaged_flow(Track::Transfer, shanghai(9));
        assert_eq!(
            due_at(&transfer, &times, SHANGHAI_OFFSET_SECS),
            Some(shanghai(9) + 3 * DAY_MS)
        );
        assert!(!is_overdue(
            &transfer,
            shanghai(9) + 3 * DAY_MS,
            &times,
            SHANGHAI_OFFSET_SECS
        ));
        assert!(is_overdue(
            &transfer,
            shanghai(9) + 3 * DAY_MS + 1,
            &times,
            SHANGHAI_OFFSET_SECS
        ));
        let supervised = triaged_flow(Track::Supervised, shanghai(9));
        assert_eq!(
            due_at(&supervised, &times, SHANGHAI_OFFSET_SECS),
            Some(shanghai(9) + 7 * DAY_MS)
        );
    }

    #[test]
    fn due_times_are_configurable() {
        let times = DueTimes {
            transfer: Due::WithinMs(HOUR_MS),
            ..DueTimes::default()
        };
        let flow = triaged_flow(Track::Transfer, shanghai(9));
        assert!(is_overdue(
            &flow,
            shanghai(10) + 1,
            &times,
            SHANGHAI_OFFSET_SECS
        ));
        let same_day = DueTimes {
            supervised: Due::SameDay,
            ..DueTimes::default()
        };
        let flow = triaged_flow(Track::Supervised, shanghai(9));
        assert_eq!(
            due_at(&flow, &same_day, SHANGHAI_OFFSET_SECS),
            Some(shanghai(24) - 1)
        );
    }

    #[test]
    fn untriaged_and_finished_requests_are_never_overdue() {
        let times = DueTimes::default();
        let far_future = shanghai(0) + 365 * DAY_MS;
        let collected = status(&[ev(EventKind::Collected, shanghai(9))]);
        assert_eq!(due_at(&collected, &times, SHANGHAI_OFFSET_SECS), None);
        assert!(!is_overdue(
            &collected,
            far_future,
            &times,
            SHANGHAI_OFFSET_SECS
        ));

        let mut events = vec![
            ev(EventKind::Collected, shanghai(8)),
            ev(
                EventKind::Triaged {
                    track: Track::Immediate,
                    department: None,
                },
                shanghai(9),
            ),
            ev(EventKind::Resolved, shanghai(10)),
        ];
        assert!(!is_overdue(
            &status(&events),
            far_future,
            &times,
            SHANGHAI_OFFSET_SECS
        ));
        // Reopened: overdue again against the original deadline.
        events.push(ev(EventKind::Handling, shanghai(11)));
        assert!(is_overdue(
            &status(&events),
            far_future,
            &times,
            SHANGHAI_OFFSET_SECS
        ));
    }

    #[test]
    fn re_triage_restarts_the_clock() {
        let flow = status(&[
            ev(EventKind::Collected, shanghai(8)),
            ev(
                EventKind::Triaged {
                    track: Track::Immediate,
                    department: None,
                },
                shanghai(9),
            ),
            ev(
                EventKind::Triaged {
                    track: Track::Supervised,
                    department: None,
                },
                shanghai(10),
            ),
        ]);
        assert_eq!(
            due_at(&flow, &DueTimes::default(), SHANGHAI_OFFSET_SECS),
            Some(shanghai(10) + 7 * DAY_MS)
        );
    }

    #[test]
    fn configuration_reads_as_words() {
        let times: DueTimes = serde_json::from_str(
            r#"{ "immediate": "same_day", "transfer": { "within_ms": 60000 } }"#,
        )
        .unwrap();
        assert_eq!(times.immediate, Due::SameDay);
        assert_eq!(times.transfer, Due::WithinMs(60_000));
        assert_eq!(times.supervised, DueTimes::default().supervised);
    }
}
