//! The written form of a business calendar (CONTRACT §7), as the API takes
//! and stores it: weekday intervals as `HH:MM` and holidays as dates.
//! [`build_calendar`] turns it into a [`BusinessCalendar`], reporting every
//! problem as a field error; [`from_stored`] reads back what was stored.

use jiff::civil::{Date, Time};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{BusinessCalendar, CalendarError, Interval};
use crate::Validation;

/// Most opening intervals in a week.
pub const HOURS_MAX: usize = 70;
/// Most holidays in a calendar.
pub const HOLIDAYS_MAX: usize = 400;
/// Longest holiday name.
pub const HOLIDAY_NAME_MAX: usize = 100;

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// One opening interval of a weekday.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpeningHours {
    /// The weekday.
    pub weekday: Weekday,
    /// Opening time, `HH:MM` (24-hour clock).
    #[schema(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "09:00")]
    pub start: String,
    /// Closing time, `HH:MM`, after `start`; `24:00` is the end of the day.
    #[schema(
        pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
        example = "17:00"
    )]
    pub end: String,
}

/// A whole day off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    /// The date, `YYYY-MM-DD` (in the calendar's time zone).
    #[schema(format = Date, example = "2026-12-24")]
    pub date: String,
    /// What it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `HH:MM`; `24:00` only where `end_of_day` is allowed (as [`Time::MAX`]).
fn parse_clock(text: &str, end_of_day: bool) -> Option<Time> {
    if end_of_day && text == "24:00" {
        return Some(Time::MAX);
    }
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

fn parse_date(text: &str) -> Option<Date> {
    (text.len() == 10).then_some(())?;
    text.parse().ok()
}

/// Checks a whole calendar: the domain calendar it makes, or every problem
/// as a field error.
pub fn build_calendar(
    v: &mut Validation,
    time_zone: &str,
    hours: &[OpeningHours],
    holidays: &[Holiday],
) -> Option<BusinessCalendar> {
    if hours.len() > HOURS_MAX {
        v.error("hours", format!("at most {HOURS_MAX} intervals"));
    }
    if holidays.len() > HOLIDAYS_MAX {
        v.error("holidays", format!("at most {HOLIDAYS_MAX} holidays"));
    }
    let mut week: [Vec<Interval>; 7] = Default::default();
    for (i, h) in hours.iter().enumerate() {
        let start = parse_clock(&h.start, false);
        let end = parse_clock(&h.end, true);
        if start.is_none() {
            v.error(
                format!("hours[{i}].start"),
                "expected HH:MM, 00:00 to 23:59",
            );
        }
        if end.is_none() {
            v.error(format!("hours[{i}].end"), "expected HH:MM, 00:01 to 24:00");
        }
        if let (Some(start), Some(end)) = (start, end) {
            week[h.weekday as usize].push(Interval { start, end });
        }
    }
    let mut days = Vec::new();
    for (i, holiday) in holidays.iter().enumerate() {
        match parse_date(&holiday.date) {
            Some(date) => days.push(date),
            None => v.error(format!("holidays[{i}].date"), "expected a date, YYYY-MM-DD"),
        }
        v.optional_text(
            &format!("holidays[{i}].name"),
            holiday.name.as_deref(),
            HOLIDAY_NAME_MAX,
        );
    }
    match BusinessCalendar::new(time_zone.trim(), week, days) {
        Ok(calendar) => Some(calendar),
        Err(error @ CalendarError::UnknownTimeZone(_)) => {
            v.error("time_zone", error.to_string());
            None
        }
        Err(error) => {
            v.error("hours", error.to_string());
            None
        }
    }
}

/// The calendar a stored row describes (it was checked by [`build_calendar`]
/// when written); `None` if it no longer builds.
pub fn from_stored(
    time_zone: &str,
    hours: &serde_json::Value,
    holidays: &serde_json::Value,
) -> Option<BusinessCalendar> {
    let hours: Vec<OpeningHours> = serde_json::from_value(hours.clone()).ok()?;
    let holidays: Vec<Holiday> = serde_json::from_value(holidays.clone()).ok()?;
    let mut v = Validation::new();
    let calendar = build_calendar(&mut v, time_zone, &hours, &holidays);
    v.finish().ok().and(calendar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_times_and_dates() {
        assert_eq!(parse_clock("09:30", false), Time::new(9, 30, 0, 0).ok());
        assert_eq!(parse_clock("24:00", true), Some(Time::MAX));
        for bad in ["24:00", "9:30", "09:60", "25:00", "0930", "09:30:00", ""] {
            assert_eq!(parse_clock(bad, false), None, "{bad}");
        }
        assert!(parse_date("2026-12-24").is_some());
        for bad in ["2026-02-30", "2026-1-5", "24.12.2026", "2026-12-24T00:00"] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }
}
