//! Transaction ids, timestamps, and error chains for logs.

/// A new transaction id: time plus randomness, sortable by time.
pub(crate) fn new_txid() -> String {
    let mut random = [0u8; 4];
    let _ = getrandom::getrandom(&mut random);
    format!("{}-{}", now(), hex::encode(random))
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A Unix time as `2026-11-21T07:05:58Z`.
pub(crate) fn iso8601(unix: u64) -> String {
    let (year, month, day) = upkg_format::civil_from_days((unix / 86_400) as i64);
    let secs = unix % 86_400;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// An error with its whole chain of causes, `outer: inner: innermost`, for logs and messages.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
