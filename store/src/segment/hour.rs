//! Hour partitions: the hour of a span's start, and its directory name `hour=YYYY-MM-DDTHH`.

const NANOS_PER_HOUR: u64 = 3_600 * 1_000_000_000;

/// An hour-long partition, as hours since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hour(pub u64);

impl Hour {
    pub fn of_nanos(unix_nanos: u64) -> Hour {
        Hour(unix_nanos / NANOS_PER_HOUR)
    }

    /// The hour it is now.
    pub fn now() -> Hour {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Hour::of_nanos(now.as_nanos() as u64)
    }

    pub fn start_nanos(self) -> u64 {
        self.0 * NANOS_PER_HOUR
    }

    /// `hour=2026-11-29T21`
    pub fn dir_name(self) -> String {
        let days = (self.0 / 24) as i64;
        let (y, m, d) = civil_from_days(days);
        format!("hour={y:04}-{m:02}-{d:02}T{:02}", self.0 % 24)
    }

    pub fn parse_dir_name(name: &str) -> Option<Hour> {
        let s = name.strip_prefix("hour=")?;
        let (date, hour) = s.split_once('T')?;
        let mut parts = date.splitn(3, '-');
        let y: i64 = parts.next()?.parse().ok()?;
        let m: u32 = parts.next()?.parse().ok()?;
        let d: u32 = parts.next()?.parse().ok()?;
        let h: u64 = hour.parse().ok()?;
        let days = days_from_civil(y, m, d);
        (days >= 0 && h < 24).then(|| Hour(days as u64 * 24 + h))
    }
}

// Howard Hinnant's date algorithms: civil calendar <-> days since 1970-01-01, no time-zone database needed.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
