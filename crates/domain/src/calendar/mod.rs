//! Business calendars (CONTRACT §7): the hours a team works, in an IANA
//! time zone, with several intervals per weekday and holidays off. Service
//! levels count only this time: [`BusinessCalendar::add`] finds when a
//! business duration from a moment runs out, [`BusinessCalendar::between`]
//! measures the business time between two moments. Both work in physical
//! time (timestamps), so a day that loses an hour to daylight saving has an
//! hour less of business time and one that gains an hour has one more.
//!
//! Time-zone arithmetic is jiff's (with its bundled tz database, so a
//! container without tzdata computes the same); the rest of the project
//! keeps `time::OffsetDateTime`, converted here only ([`to_timestamp`],
//! [`from_timestamp`]).

pub mod written;

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use time::OffsetDateTime;

/// How far ahead [`BusinessCalendar::add`] looks for business time (a
/// calendar whose every day is a holiday for years has none).
const HORIZON_DAYS: u32 = 5 * 366;

/// One stretch of working time within a day, `start` before `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// First moment of the stretch (local clock time).
    pub start: Time,
    /// First moment after it.
    pub end: Time,
}

/// The OpenAPI schema of a time zone name: one of the IANA names of the
/// time zone database the server carries (jiff's bundled copy), the names
/// [`Calendar::new`] accepts.
#[derive(Debug, Clone, Copy)]
pub struct IanaTimeZone;

impl utoipa::PartialSchema for IanaTimeZone {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let mut names: Vec<String> = jiff::tz::db()
            .available()
            .map(|name| name.as_str().to_owned())
            .collect();
        names.sort_unstable();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("An IANA time zone name, e.g. `Europe/Berlin`."))
            .enum_values(Some(names))
            .into()
    }
}

impl utoipa::ToSchema for IanaTimeZone {}

/// Why a calendar cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// Not an IANA time zone name.
    #[error("{0:?} is not a known IANA time zone")]
    UnknownTimeZone(String),
    /// An interval that ends at or before its start.
    #[error("{weekday}: an interval must end after it starts ({start}–{end})")]
    Inverted {
        /// The weekday, e.g. `monday`.
        weekday: &'static str,
        /// Its start.
        start: Time,
        /// Its end.
        end: Time,
    },
    /// Two intervals of one weekday that overlap.
    #[error("{weekday}: intervals overlap ({first_end} is after {second_start})")]
    Overlapping {
        /// The weekday.
        weekday: &'static str,
        /// End of the earlier interval.
        first_end: Time,
        /// Start of the later one.
        second_start: Time,
    },
}

/// Monday first, as ISO 8601 counts.
pub const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// A validated business calendar.
#[derive(Debug, Clone)]
pub struct BusinessCalendar {
    tz: TimeZone,
    /// Sorted, non-overlapping intervals per weekday, Monday first.
    week: [Vec<Interval>; 7],
    holidays: BTreeSet<Date>,
}

impl BusinessCalendar {
    /// A calendar in the IANA zone `time_zone` with `week[0]` Monday's
    /// intervals … `week[6]` Sunday's (in any order; they may not overlap
    /// and each must end after it starts) and whole days off.
    pub fn new(
        time_zone: &str,
        week: [Vec<Interval>; 7],
        holidays: impl IntoIterator<Item = Date>,
    ) -> Result<Self, CalendarError> {
        let tz = TimeZone::get(time_zone)
            .map_err(|_| CalendarError::UnknownTimeZone(time_zone.to_owned()))?;
        let mut week = week;
        for (day, intervals) in week.iter_mut().enumerate() {
            let weekday = WEEKDAYS[day];
            intervals.sort_by_key(|i| i.start);
            for interval in intervals.iter() {
                if interval.end <= interval.start {
                    return Err(CalendarError::Inverted {
                        weekday,
                        start: interval.start,
                        end: interval.end,
                    });
                }
            }
            for pair in intervals.windows(2) {
                if pair[1].start < pair[0].end {
                    return Err(CalendarError::Overlapping {
                        weekday,
                        first_end: pair[0].end,
                        second_start: pair[1].start,
                    });
                }
            }
        }
        Ok(Self {
            tz,
            week,
            holidays: holidays.into_iter().collect(),
        })
    }

    /// Every day, all day, in UTC: service levels in plain elapsed time.
    pub fn always() -> Self {
        let day = vec![Interval {
            start: Time::MIN,
            end: Time::MAX,
        }];
        Self {
            tz: TimeZone::UTC,
            week: std::array::from_fn(|_| day.clone()),
            holidays: BTreeSet::new(),
        }
    }

    /// The business stretches of `date` as timestamps, in order. A clock
    /// time a DST gap skips maps forward (jiff's "compatible" rule), so the
    /// stretch is shorter by the gap; a repeated hour counts twice.
    fn stretches(&self, date: Date) -> Vec<(Timestamp, Timestamp)> {
        if self.holidays.contains(&date) {
            return Vec::new();
        }
        let day = usize::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0);
        let at = |time: Time| {
            date.to_datetime(time)
                .to_zoned(self.tz.clone())
                .map(|z| z.timestamp())
        };
        self.week[day]
            .iter()
            .filter_map(|interval| {
                // Time::MAX is the last nanosecond: the day's end is the
                // next day's midnight.
                let end = if interval.end == Time::MAX {
                    date.tomorrow().ok().and_then(|next| {
                        next.to_datetime(Time::MIN)
                            .to_zoned(self.tz.clone())
                            .ok()
                            .map(|z| z.timestamp())
                    })
                } else {
                    at(interval.end).ok()
                };
                Some((at(interval.start).ok()?, end?))
            })
            .filter(|(start, end)| start < end)
            .collect()
    }

    fn local_date(&self, at: Timestamp) -> Date {
        at.to_zoned(self.tz.clone()).date()
    }

    /// When `business` of business time, counted from `from`, runs out.
    /// None when the calendar has no business time within five years.
    pub fn add(&self, from: Timestamp, business: Duration) -> Option<Timestamp> {
        let mut left = SignedDuration::try_from(business).ok()?;
        if left.is_zero() {
            return Some(from);
        }
        // The day before too: its stretch may run past midnight in UTC terms
        // of a zone ahead, and a stretch ending at 24:00 ends on our date.
        let mut date = self.local_date(from).yesterday().ok()?;
        for _ in 0..HORIZON_DAYS {
            for (start, end) in self.stretches(date) {
                if end <= from {
                    continue;
                }
                let start = start.max(from);
                let available = end.duration_since(start);
                if left <= available {
                    return start.checked_add(left).ok();
                }
                left -= available;
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The business time between `from` and `to` (zero when `to` is not after `from`).
    pub fn between(&self, from: Timestamp, to: Timestamp) -> Duration {
        if to <= from {
            return Duration::ZERO;
        }
        let mut total = SignedDuration::ZERO;
        let mut date = self.local_date(from).yesterday().unwrap_or(Date::MIN);
        let last = self.local_date(to);
        while date <= last {
            for (start, end) in self.stretches(date) {
                let (start, end) = (start.max(from), end.min(to));
                if start < end {
                    total += end.duration_since(start);
                }
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        Duration::try_from(total).unwrap_or(Duration::ZERO)
    }
}

/// The project's time value as jiff's (the one conversion point).
pub fn to_timestamp(at: OffsetDateTime) -> Timestamp {
    Timestamp::from_nanosecond(at.unix_timestamp_nanos()).unwrap_or(Timestamp::MIN)
}

/// jiff's timestamp as the project's time value, in UTC.
pub fn from_timestamp(at: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(at.as_nanosecond())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use jiff::civil::{date, time};
    use proptest::prelude::*;

    use super::*;

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|_| unreachable!("{text}"))
    }

    /// Monday to Friday, 09:00–12:00 and 13:00–17:00 (7 h a day), in Berlin.
    fn office(holidays: Vec<Date>) -> BusinessCalendar {
        let day = vec![
            Interval {
                start: time(13, 0, 0, 0),
                end: time(17, 0, 0, 0),
            },
            Interval {
                start: time(9, 0, 0, 0),
                end: time(12, 0, 0, 0),
            },
        ];
        let week = [
            day.clone(),
            day.clone(),
            day.clone(),
            day.clone(),
            day,
            vec![],
            vec![],
        ];
        BusinessCalendar::new("Europe/Berlin", week, holidays)
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn counts_only_working_hours_and_skips_weekends_and_holidays() {
        let cal = office(vec![date(2026, 12, 25)]);
        // Friday 2026-12-18, 16:00 Berlin (15:00Z): 1 h today, then Monday.
        let friday = ts("2026-12-18T15:00:00Z");
        assert_eq!(cal.add(friday, hours(1)), Some(ts("2026-12-18T16:00:00Z")));
        assert_eq!(cal.add(friday, hours(2)), Some(ts("2026-12-21T09:00:00Z")));
        // 1 h on Friday, 3 h on Monday morning, the lunch break not counted,
        // then 1 h from 13:00: 14:00 Berlin.
        assert_eq!(cal.add(friday, hours(5)), Some(ts("2026-12-21T13:00:00Z")));
        assert_eq!(cal.between(friday, ts("2026-12-21T13:00:00Z")), hours(5));
        // Thursday 24th 17:00 → Friday 25th is a holiday → Monday 28th 09:00.
        let christmas_eve = ts("2026-12-24T16:00:00Z");
        assert_eq!(
            cal.add(christmas_eve, Duration::from_secs(60)),
            Some(ts("2026-12-28T08:01:00Z"))
        );
        assert_eq!(
            cal.between(christmas_eve, ts("2026-12-28T08:01:00Z")),
            Duration::from_secs(60)
        );
        // Starting at night: the clock starts with the next stretch.
        assert_eq!(
            cal.add(ts("2026-12-21T02:00:00Z"), hours(1)),
            Some(ts("2026-12-21T09:00:00Z"))
        );
        assert_eq!(
            cal.between(ts("2026-12-19T00:00:00Z"), ts("2026-12-20T23:00:00Z")),
            Duration::ZERO
        );
    }

    #[test]
    fn a_dst_change_shortens_or_lengthens_the_day_in_physical_time() {
        // Sunday 2027-03-28 02:00 Berlin springs to 03:00; 2027-10-31 03:00 falls to 02:00.
        let night = vec![Interval {
            start: time(1, 0, 0, 0),
            end: time(4, 0, 0, 0),
        }];
        let week: [Vec<Interval>; 7] = std::array::from_fn(|_| night.clone());
        let cal = BusinessCalendar::new("Europe/Berlin", week, [])
            .unwrap_or_else(|e| unreachable!("{e}"));
        let spring = ts("2027-03-28T00:00:00Z"); // 01:00 CET
        assert_eq!(
            cal.between(spring, ts("2027-03-28T03:00:00Z")),
            hours(2),
            "01–04 is two hours that night"
        );
        let autumn = ts("2027-10-30T23:00:00Z"); // 01:00 CEST
        assert_eq!(
            cal.between(autumn, ts("2027-10-31T04:00:00Z")),
            hours(4),
            "and four in October"
        );
        assert_eq!(cal.add(spring, hours(2)), Some(ts("2027-03-28T02:00:00Z")));
        assert_eq!(cal.add(autumn, hours(4)), Some(ts("2027-10-31T03:00:00Z")));
    }

    #[test]
    fn bad_calendars_are_refused() {
        let empty: [Vec<Interval>; 7] = Default::default();
        assert_eq!(
            BusinessCalendar::new("Mars/Olympus", empty.clone(), []).err(),
            Some(CalendarError::UnknownTimeZone("Mars/Olympus".into()))
        );
        let mut inverted = empty.clone();
        inverted[2] = vec![Interval {
            start: time(17, 0, 0, 0),
            end: time(9, 0, 0, 0),
        }];
        assert!(matches!(
            BusinessCalendar::new("UTC", inverted, []),
            Err(CalendarError::Inverted {
                weekday: "wednesday",
                ..
            })
        ));
        let mut overlapping = empty.clone();
        overlapping[0] = vec![
            Interval {
                start: time(9, 0, 0, 0),
                end: time(13, 0, 0, 0),
            },
            Interval {
                start: time(12, 0, 0, 0),
                end: time(17, 0, 0, 0),
            },
        ];
        assert!(matches!(
            BusinessCalendar::new("UTC", overlapping, []),
            Err(CalendarError::Overlapping {
                weekday: "monday",
                ..
            })
        ));
        // No business time at all: nothing is ever due.
        let never = BusinessCalendar::new("UTC", empty, []).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(never.add(ts("2026-12-01T00:00:00Z"), hours(1)), None);
    }

    #[test]
    fn always_is_plain_elapsed_time_and_conversions_round_trip() {
        let cal = BusinessCalendar::always();
        let from = ts("2026-12-31T23:30:00Z");
        assert_eq!(cal.add(from, hours(25)), Some(ts("2027-01-02T00:30:00Z")));
        let now = OffsetDateTime::from_unix_timestamp_nanos(1_796_000_000_123_456_789)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(from_timestamp(to_timestamp(now)), now);
    }

    proptest! {
        /// Adding a business duration and measuring it again gives it back,
        /// across weekends, holidays and both 2027 DST changes.
        #[test]
        fn add_then_between_gives_the_duration_back(
            start_minutes in 0i64..(400 * 24 * 60),
            business_minutes in 0u64..(120 * 60),
            through_the_night in any::<bool>(),
        ) {
            // Office hours, or 01:00–04:00 every night: the hours DST moves.
            let cal = if through_the_night {
                let night = vec![Interval { start: time(1, 0, 0, 0), end: time(4, 0, 0, 0) }];
                BusinessCalendar::new("Europe/Berlin", std::array::from_fn(|_| night.clone()), [date(2027, 6, 1)])
                    .unwrap_or_else(|e| unreachable!("{e}"))
            } else {
                office(vec![date(2027, 3, 29), date(2027, 10, 29), date(2027, 12, 24)])
            };
            let from = ts("2027-01-01T00:00:00Z")
                .checked_add(SignedDuration::from_mins(start_minutes))
                .unwrap_or_else(|_| unreachable!());
            let business = Duration::from_secs(business_minutes * 60);
            let due = cal.add(from, business).unwrap_or_else(|| unreachable!());
            prop_assert!(due >= from);
            prop_assert_eq!(cal.between(from, due), business);
        }
    }
}
