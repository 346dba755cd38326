//! Listening days (民意"5"来听): the days of the month on which teams visit households.
//!
//! By default the 5th, 15th and 25th of every month, configurable per deployment. A visit dated
//! on another day is still accepted, because a field worker must never lose a record, but it is
//! flagged so supervisors can see visits off the rota. Dates are local (Asia/Shanghai by
//! default); [`local_date`] turns an instant into that local date without reading a clock.
//!
//! This module must not refuse anything: it answers "is this a listening day", and the caller
//! decides what a "no" means.

use serde::{Deserialize, Serialize};

use super::date::LocalDate;
use super::keys;
use super::schema::SchemaError;

/// The days of the month that are listening days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListeningDays {
    /// Days of the month, 1 to 31. A day a month lacks (the 31st in April) simply never
    /// matches in that month.
    pub days: Vec<u8>,
}

impl Default for ListeningDays {
    fn default() -> Self {
        ListeningDays {
            days: vec![5, 15, 25],
        }
    }
}

impl ListeningDays {
    /// Whether `date` (`YYYY-MM-DD`) is a listening day. Fails if `date` is not a real date, such
    /// as `2026-02-30`.
    pub fn is_listening_day(&self, date: &str) -> Result<bool, SchemaError> {
        let date: LocalDate = date.parse().map_err(|error| SchemaError::Invalid {
            field: keys::DATE.to_owned(),
            reason: format!("{error}"),
        })?;
        Ok(self.includes(date))
    }

    /// Whether `date` is a listening day.
    pub fn includes(&self, date: LocalDate) -> bool {
        self.days.contains(&date.day())
    }
}

/// The local civil date `YYYY-MM-DD` at the instant `ms` (milliseconds since the Unix epoch) in
/// the zone `utc_offset_secs` east of UTC (`8 * 3600` for Asia/Shanghai).
pub fn local_date(ms: i64, utc_offset_secs: i32) -> String {
    LocalDate::from_unix_ms(ms, utc_offset_secs).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::date::SHANGHAI_OFFSET_SECS;

    #[test]
    fn the_fifth_fifteenth_and_twenty_fifth_by_default() {
        let days = ListeningDays::default();
        assert!(days.is_listening_day("2026-03-05").unwrap());
        assert!(days.is_listening_day("2026-02-15").unwrap());
        assert!(days.is_listening_day("2026-12-25").unwrap());
        assert!(!days.is_listening_day("2026-03-06").unwrap());
        assert!(!days.is_listening_day("2026-03-01").unwrap());
    }

    #[test]
    fn impossible_dates_are_errors_not_false() {
        let days = ListeningDays::default();
        let error = days.is_listening_day("2026-02-30").unwrap_err();
        assert_eq!(
            error.to_string(),
            "`date` is invalid: 2026-02 has no day 30"
        );
        assert!(days.is_listening_day("2026-3-5").is_err());
    }

    #[test]
    fn listening_days_are_configurable() {
        let days = ListeningDays { days: vec![1, 31] };
        assert!(days.is_listening_day("2026-01-31").unwrap());
        assert!(!days.is_listening_day("2026-04-30").unwrap());
        assert!(!days.is_listening_day("2026-01-05").unwrap());
    }

    #[test]
    fn local_date_uses_the_offset_not_a_clock() {
        // 2026-03-04T16:00:00Z is midnight of the 5th in Shanghai, a listening day there.
        let ms = 1_772_640_000_000;
        assert_eq!(local_date(ms, 0), "2026-03-04T16:00:00Z"[..10]);
        assert_eq!(local_date(ms, SHANGHAI_OFFSET_SECS), "2026-03-05");
        assert_eq!(local_date(ms - 1, SHANGHAI_OFFSET_SECS), "2026-03-04");
        let days = ListeningDays::default();
        assert!(
            days.is_listening_day(&local_date(ms, SHANGHAI_OFFSET_SECS))
                .unwrap()
        );
        assert_eq!(local_date(0, 0), "1970-01-01");
    }
}
