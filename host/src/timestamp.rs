//! Timestamps as the API and webhook payloads write them: RFC 3339 in UTC with milliseconds,
//! from the milliseconds since the Unix epoch the store keeps.

/// Milliseconds since the Unix epoch as `2026-11-27T08:00:00.000Z`.
pub fn iso8601(millis: u64) -> String {
    let secs = millis / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        millis % 1000
    )
}

/// Milliseconds since the Unix epoch of an ISO 8601 date-time with its offset, as clients
/// write them: `2026-11-27T08:00:00Z`, `…08:00:00.250+01:00`, or PHP's `DATE_ISO8601`
/// `…08:00:00+0100`. `None` for anything else, or a time before 1970.
pub fn parse_iso8601(text: &str) -> Option<u64> {
    let text = text.trim();
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = digits(date_parts.next()?, 4)?;
    let month: i64 = digits(date_parts.next()?, 2)?;
    let day: i64 = digits(date_parts.next()?, 2)?;
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let (clock, fraction) = match time.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (time, None),
    };
    let mut clock_parts = clock.splitn(3, ':');
    let hour: i64 = digits(clock_parts.next()?, 2)?;
    let minute: i64 = digits(clock_parts.next()?, 2)?;
    let second: i64 = match clock_parts.next() {
        Some(second) => digits(second, 2)?,
        None => 0,
    };
    let millis: i64 = match fraction {
        Some(fraction) if !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{fraction:0<3}")[..3].parse().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    let offset_minutes: i64 = match zone {
        "Z" | "z" => 0,
        "" => return None,
        signed => {
            let sign = if signed.starts_with('-') { -1 } else { 1 };
            let unsigned = signed[1..].replace(':', "");
            if unsigned.len() != 4 {
                return None;
            }
            let hours: i64 = digits(&unsigned[..2], 2)?;
            let minutes: i64 = digits(&unsigned[2..], 2)?;
            sign * (hours * 60 + minutes)
        }
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Howard Hinnant's days-from-civil, the inverse of the one above.
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let yoe = shifted_year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(seconds * 1000 + millis).ok()
}

/// A field of exactly `len` ASCII digits.
fn digits(text: &str, len: usize) -> Option<i64> {
    (text.len() == len && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_parse_in_the_shapes_clients_send() {
        let at = 1_795_764_562_000;
        for text in [
            "2026-11-27T07:29:22Z",
            "2026-11-27T07:29:22.000Z",
            "2026-11-27T08:29:22+01:00",
            "2026-11-27T08:29:22+0100",
            "2026-11-27T02:29:22-0500",
        ] {
            assert_eq!(parse_iso8601(text), Some(at), "{text}");
        }
        assert_eq!(parse_iso8601("2026-11-27T07:29:22.687Z"), Some(at + 687));
        assert_eq!(
            parse_iso8601(&iso8601(951_782_400_000)),
            Some(951_782_400_000)
        );
        for bad in [
            "",
            "2026-11-27",
            "2026-11-27T07:29:22",
            "2026-13-01T00:00:00Z",
            "2026-11-27T25:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-11-27T07:29:22+1",
            "２０２６-11-27T07:29:22Z",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_795_764_562_687), "2026-11-27T07:29:22.687Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
