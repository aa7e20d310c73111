//! Dates, times and timestamps as PostgreSQL counts them (days and microseconds since
//! 2000-01-01) and as the WIT tuples write them.

use super::{CodecError, Datetime};

// Dates and timestamps: the calendar arithmetic is done here rather than by chrono's
// impls (postgres-types' `with-chrono-0_4`), because chrono's calendar ends at
// 262142-12-31 while PostgreSQL's dates go to 5874897 AD and its timestamps to
// 294276 AD, years the WIT tuples hold: through chrono such a row would fail to read
// (`value too large to decode`) and such a parameter would be refused. The day and
// microsecond counts themselves travel through postgres-protocol.

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
pub(super) const PG_EPOCH_DAYS: i64 = 10_957;
pub(super) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(super) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
pub(super) fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since PostgreSQL's epoch of a date, checked (so 2023-02-30 is an error).
pub(super) fn pg_days(date: (i32, u8, u8)) -> Result<i32, String> {
    let (year, month, day) = date;
    let days = days_from_civil(i64::from(year), u32::from(month), u32::from(day));
    if !(1..=12).contains(&month) || civil_from_days(days) != (i64::from(year), month, day) {
        return Err(format!("{year:04}-{month:02}-{day:02} is not a date"));
    }
    i32::try_from(days - PG_EPOCH_DAYS).map_err(|_| format!("year {year} is out of range"))
}

/// A date (days since 2000-01-01) as a date tuple.
pub(super) fn date_from_days(days: i32) -> Result<(i32, u8, u8), CodecError> {
    if days == i32::MAX || days == i32::MIN {
        return Err("infinite dates have no date value".into());
    }
    let (year, month, day) = civil_from_days(i64::from(days) + PG_EPOCH_DAYS);
    Ok((i32::try_from(year)?, month, day))
}

pub(super) fn pg_time_micros(time: (u8, u8, u8, u32)) -> Result<i64, String> {
    let (hour, minute, second, nanos) = time;
    if hour > 23 || minute > 59 || second > 59 || nanos > 999_999_999 {
        return Err(format!(
            "{hour:02}:{minute:02}:{second:02}.{nanos:09} is not a time of day"
        ));
    }
    Ok(
        ((i64::from(hour) * 60 + i64::from(minute)) * 60 + i64::from(second)) * 1_000_000
            + i64::from(nanos / 1000),
    )
}

pub(super) fn time_from_micros(micros: i64) -> (u8, u8, u8, u32) {
    let seconds = micros.div_euclid(1_000_000);
    let nanos = (micros.rem_euclid(1_000_000) * 1000) as u32;
    (
        (seconds / 3600 % 24) as u8,
        (seconds / 60 % 60) as u8,
        (seconds % 60) as u8,
        nanos,
    )
}

/// A timestamp (microseconds since 2000-01-01 00:00) as a datetime tuple.
pub(super) fn datetime_from_micros(micros: i64) -> Result<Datetime, CodecError> {
    if micros == i64::MAX || micros == i64::MIN {
        return Err("infinite timestamps have no datetime value".into());
    }
    let days = micros.div_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days + PG_EPOCH_DAYS);
    let (hour, minute, second, nanos) = time_from_micros(micros.rem_euclid(MICROS_PER_DAY));
    Ok((
        i32::try_from(year)?,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
    ))
}

pub(super) fn datetime_micros(datetime: Datetime) -> Result<i64, String> {
    let (year, month, day, hour, minute, second, nanos) = datetime;
    let days = pg_days((year, month, day))?;
    let time = pg_time_micros((hour, minute, second, nanos))?;
    i64::from(days)
        .checked_mul(MICROS_PER_DAY)
        .and_then(|d| d.checked_add(time))
        .ok_or_else(|| format!("year {year} is out of range"))
}
