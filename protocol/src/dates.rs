//! Dates and times as people read them: the department's clock is Beijing time (UTC+8), on the
//! server, the dashboard and the field app alike.

/// Days since 1970-01-01 as `YYYY-MM-DD` (proleptic Gregorian; Howard Hinnant's algorithm).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of a `YYYY-MM-DD` date (days since 1970-01-01), the inverse of
/// [`civil_date`]; `None` when `date` is not such a date.
pub fn days_from_civil(date: &str) -> Option<i64> {
    let date = date.trim();
    if date.len() != 10 {
        return None;
    }
    let mut p = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, d) = (p.next()??, p.next()??, p.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // 2026-02-31 is no date: only a date that reads back the same is one.
    (civil_date(days) == date).then_some(days)
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM` in Beijing time (UTC+8).
pub fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000) + 8 * 3600;
    let rem = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}",
        civil_date(secs.div_euclid(86_400)),
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Today's date in Beijing time: what deadlines are compared with.
pub fn today() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    time(ms)[..10].to_string()
}
