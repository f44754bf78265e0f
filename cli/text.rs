//! Formatting for people: byte counts and dates.

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n` with the singular or plural noun: `1 file`, `2 files`.
pub fn count(n: u64, singular: &str, plural: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { singular } else { plural })
}

/// A byte count, exact and in binary units: `12,582,912 bytes (12.0 MiB)`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{} bytes", thousands(n));
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{} bytes ({value:.1} {})", thousands(n), UNITS[unit])
}

/// A Unix time as `2026-11-21 07:05:58 UTC`; 0 means the build did not record one.
pub fn utc(unix: u64) -> String {
    if unix == 0 {
        return "not recorded (SOURCE_DATE_EPOCH was not set)".to_owned();
    }
    let (year, month, day) = upkg_format::civil_from_days((unix / 86_400) as i64);
    let secs = unix % 86_400;
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(count(1, "member", "members"), "1 member");
        assert_eq!(count(1200, "directory", "directories"), "1,200 directories");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(12_582_912), "12,582,912 bytes (12.0 MiB)");
        assert_eq!(utc(1_795_244_758), "2026-11-21 07:05:58 UTC");
    }
}
