//! [`LocalDate`]: a civil date in the field's local time zone, and the calendar arithmetic that
//! goes with it.
//!
//! Visits and station logs are dated `YYYY-MM-DD` in local time (Asia/Shanghai by default), and
//! an immediate-track request is due by the end of the local day. China has had no daylight
//! saving time since 1991, so the local zone is a fixed offset from UTC in seconds, passed in by
//! the caller. The arithmetic is Howard Hinnant's `days_from_civil` / `civil_from_days`
//! (proleptic Gregorian calendar), which is exact for every date and needs no tables.
//!
//! This module never reads a clock: instants come in as milliseconds since the Unix epoch from
//! the caller. It must not know about listening days or due times; those are rules built on it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The UTC offset of Asia/Shanghai (China Standard Time, UTC+8), in seconds.
pub const SHANGHAI_OFFSET_SECS: i32 = 8 * 3600;

/// A civil date, `YYYY-MM-DD` on the wire.
///
/// Parsing accepts exactly four digits of year, two of month and two of day, and checks the day
/// against the real calendar, so `2026-02-30` and `2026-2-3` are refused. Dates order
/// chronologically.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LocalDate {
    year: i32,
    month: u8,
    day: u8,
}

/// Why a string is not a `YYYY-MM-DD` date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// Not ten characters in the shape `YYYY-MM-DD`.
    #[error("`{value}` is not a date in the form YYYY-MM-DD")]
    Format { value: String },
    /// The month is not 1 to 12.
    #[error("month {month} does not exist")]
    Month { month: u8 },
    /// The day is not in the month, such as 2026-02-30.
    #[error("{year:04}-{month:02} has no day {day}")]
    Day { year: i32, month: u8, day: u8 },
}

/// Whether `year` is a leap year in the Gregorian calendar.
pub const fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// The number of days in `month` (1 to 12) of `year`.
pub const fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl LocalDate {
    /// The date with these parts, if it exists.
    pub fn new(year: i32, month: u8, day: u8) -> Result<Self, DateError> {
        if !(1..=12).contains(&month) {
            return Err(DateError::Month { month });
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(DateError::Day { year, month, day });
        }
        Ok(Self { year, month, day })
    }

    /// The year.
    pub const fn year(self) -> i32 {
        self.year
    }

    /// The month, 1 to 12.
    pub const fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, from 1.
    pub const fn day(self) -> u8 {
        self.day
    }

    /// The number of days from 1970-01-01 to this date (negative before it).
    pub fn days_since_epoch(self) -> i64 {
        // Hinnant's days_from_civil: shift the year to start in March, so the leap day is the
        // last day of the shifted year and the month lengths follow a fixed pattern.
        let year = i64::from(self.year) - i64::from(self.month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year.rem_euclid(400);
        let month = i64::from(self.month);
        let shifted_month = if month > 2 { month - 3 } else { month + 9 };
        let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(self.day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    /// The date `days` days after 1970-01-01.
    pub fn from_days_since_epoch(days: i64) -> Self {
        // Hinnant's civil_from_days, the inverse of `days_since_epoch`.
        let days = days + 719_468;
        let era = days.div_euclid(146_097);
        let day_of_era = days.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Self {
            // Any i64 millisecond count divided into days lands within ±3×10⁸ years, well
            // inside i32; the clamp only guards arithmetic on absurd inputs.
            year: year.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            month: month as u8,
            day: day as u8,
        }
    }

    /// The local date at the instant `ms` (milliseconds since the Unix epoch), in the zone
    /// `utc_offset_secs` east of UTC.
    pub fn from_unix_ms(ms: i64, utc_offset_secs: i32) -> Self {
        let local_ms = i128::from(ms) + i128::from(utc_offset_secs) * 1000;
        let days = local_ms.div_euclid(i128::from(DAY_MS));
        Self::from_days_since_epoch(days as i64)
    }

    /// The first millisecond of this date in the zone `utc_offset_secs` east of UTC, as
    /// milliseconds since the Unix epoch.
    pub fn start_ms(self, utc_offset_secs: i32) -> i64 {
        self.days_since_epoch()
            .saturating_mul(DAY_MS)
            .saturating_sub(i64::from(utc_offset_secs) * 1000)
    }

    /// The last millisecond of this date in the zone `utc_offset_secs` east of UTC.
    pub fn end_ms(self, utc_offset_secs: i32) -> i64 {
        self.start_ms(utc_offset_secs)
            .saturating_add(DAY_MS)
            .saturating_sub(1)
    }
}

impl FromStr for LocalDate {
    type Err = DateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let format = || DateError::Format {
            value: super::wire_enum::clip(s),
        };
        let bytes = s.as_bytes();
        let shaped = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shaped {
            return Err(format());
        }
        // The shape check guarantees ASCII digits, so these parses cannot fail.
        let year = s[0..4].parse().map_err(|_| format())?;
        let month = s[5..7].parse().map_err(|_| format())?;
        let day = s[8..10].parse().map_err(|_| format())?;
        Self::new(year, month, day)
    }
}

impl TryFrom<String> for LocalDate {
    type Error = DateError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<LocalDate> for String {
    fn from(date: LocalDate) -> Self {
        date.to_string()
    }
}

impl fmt::Display for LocalDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Debug for LocalDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalDate({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> LocalDate {
        s.parse().unwrap()
    }

    #[test]
    fn parses_real_dates_and_refuses_impossible_ones() {
        assert_eq!(date("2026-03-05").to_string(), "2026-03-05");
        assert_eq!(date("2024-02-29").day(), 29);
        assert_eq!(
            "2026-02-30".parse::<LocalDate>(),
            Err(DateError::Day {
                year: 2026,
                month: 2,
                day: 30
            })
        );
        assert!("2023-02-29".parse::<LocalDate>().is_err());
        assert!(
            "1900-02-29".parse::<LocalDate>().is_err(),
            "1900 was no leap year"
        );
        assert!("2000-02-29".parse::<LocalDate>().is_ok(), "2000 was");
        assert_eq!(
            "2026-13-01".parse::<LocalDate>(),
            Err(DateError::Month { month: 13 })
        );
        assert!("2026-04-31".parse::<LocalDate>().is_err());
        assert!("2026-00-10".parse::<LocalDate>().is_err());
        assert!("2026-01-00".parse::<LocalDate>().is_err());
        for bad in [
            "2026-3-05",
            "2026/03/05",
            "20260305",
            "2026-03-05 ",
            "२०२६-03-05",
            "",
        ] {
            assert!(
                matches!(bad.parse::<LocalDate>(), Err(DateError::Format { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn days_since_epoch_matches_known_dates_and_inverts() {
        assert_eq!(date("1970-01-01").days_since_epoch(), 0);
        assert_eq!(date("1969-12-31").days_since_epoch(), -1);
        assert_eq!(date("2000-03-01").days_since_epoch(), 11_017);
        // 2026-01-01T00:00:00Z is 1767225600 seconds after the epoch.
        assert_eq!(
            date("2026-01-01").days_since_epoch(),
            1_767_225_600 / 86_400
        );
        for days in (-800_000..800_000).step_by(997) {
            let d = LocalDate::from_days_since_epoch(days);
            assert_eq!(d.days_since_epoch(), days, "{d}");
            assert!(LocalDate::new(d.year(), d.month(), d.day()).is_ok());
        }
    }

    #[test]
    fn the_local_date_depends_on_the_offset() {
        // 2026-03-04T16:30:00Z is already 2026-03-05 00:30 in Shanghai.
        let ms = date("2026-03-04").start_ms(0) + (16 * 3600 + 30 * 60) * 1000;
        assert_eq!(LocalDate::from_unix_ms(ms, 0), date("2026-03-04"));
        assert_eq!(
            LocalDate::from_unix_ms(ms, SHANGHAI_OFFSET_SECS),
            date("2026-03-05")
        );
        assert_eq!(LocalDate::from_unix_ms(-1, 0), date("1969-12-31"));
    }

    #[test]
    fn start_and_end_of_a_local_day() {
        let day = date("2026-03-05");
        let start = day.start_ms(SHANGHAI_OFFSET_SECS);
        let end = day.end_ms(SHANGHAI_OFFSET_SECS);
        assert_eq!(end - start, DAY_MS - 1);
        assert_eq!(LocalDate::from_unix_ms(start, SHANGHAI_OFFSET_SECS), day);
        assert_eq!(LocalDate::from_unix_ms(end, SHANGHAI_OFFSET_SECS), day);
        assert_eq!(
            LocalDate::from_unix_ms(start - 1, SHANGHAI_OFFSET_SECS),
            date("2026-03-04")
        );
        assert_eq!(
            LocalDate::from_unix_ms(end + 1, SHANGHAI_OFFSET_SECS),
            date("2026-03-06")
        );
        // Midnight in Shanghai is 16:00 UTC the day before.
        assert_eq!(start, date("2026-03-04").start_ms(0) + 16 * 3600 * 1000);
    }

    #[test]
    fn absurd_instants_do_not_panic() {
        let _ = LocalDate::from_unix_ms(i64::MAX, SHANGHAI_OFFSET_SECS);
        let _ = LocalDate::from_unix_ms(i64::MIN, -SHANGHAI_OFFSET_SECS);
        let _ = date("9999-12-31").end_ms(i32::MIN);
    }

    #[test]
    fn serde_is_the_string_form() {
        let d = date("2026-03-15");
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"2026-03-15\"");
        assert_eq!(
            serde_json::from_str::<LocalDate>("\"2026-03-15\"").unwrap(),
            d
        );
        assert!(serde_json::from_str::<LocalDate>("\"2026-02-30\"").is_err());
    }
}
