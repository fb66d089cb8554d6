//! Times: stored as epoch milliseconds, sent as RFC 3339.

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Parses an RFC 3339 time (`2026-11-24T10:00:00+08:00`) into epoch milliseconds; a 422 naming `field` otherwise.
pub fn parse_rfc3339(field: &str, value: &str) -> Result<i64, crate::error::AppError> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            crate::error::AppError::validation(field.to_owned(), "must be an RFC 3339 time, e.g. 2026-11-24T00:00:00Z")
        })
}

/// Epoch milliseconds as RFC 3339 UTC, how every timestamp is sent.
pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Seconds since the epoch as WeChat writes times: `2026-12-01T10:00:00+08:00` (Beijing time).
pub fn rfc3339_beijing(secs: i64) -> String {
    let offset = time::UtcOffset::from_hms(8, 0, 0).expect("a valid offset");
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+08:00");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map(|t| t.to_offset(offset))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_time_is_eight_hours_ahead() {
        assert_eq!(rfc3339_beijing(0), "1970-01-01T08:00:00+08:00");
    }

    #[test]
    fn rfc3339_is_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
