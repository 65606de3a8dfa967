//! Time formatting for `isotime` (Go reference-time layouts such as `2006-01-02T15:04:05Z07:00`)
//! and `strftime` (C-style `%Y-%m-%d`), on the UTC time the process first asked for
//! ([`init_time`], Packer's `InitTime`).
//!
//! Hand-written because no kept crate formats Go layouts; the calendar arithmetic is chrono's.

use std::sync::OnceLock;

use chrono::{DateTime, Datelike, Timelike, Utc};

static INIT_TIME: OnceLock<DateTime<Utc>> = OnceLock::new();

/// The UTC time of the first call in this process: Packer's `InitTime`, which `timestamp`,
/// `isotime` and `strftime` all use so that every value of one build matches.
pub fn init_time() -> DateTime<Utc> {
    *INIT_TIME.get_or_init(Utc::now)
}

const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const LONG_DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

fn short(s: &str) -> &str {
    &s[..3]
}

/// Formats `t` (a UTC time) with a Go reference-time layout, as Go's `time.Time.Format` does.
pub fn format_go(t: &DateTime<Utc>, layout: &str) -> String {
    let mut out = String::new();
    let b = layout.as_bytes();
    let mut i = 0;
    let month = t.month0() as usize;
    let weekday = t.weekday().num_days_from_sunday() as usize;
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    while i < b.len() {
        let rest = &layout[i..];
        let (token_len, text): (usize, String) = if rest.starts_with("January") {
            (7, LONG_MONTHS[month].to_string())
        } else if rest.starts_with("Jan") {
            (3, short(LONG_MONTHS[month]).to_string())
        } else if rest.starts_with("Monday") {
            (6, LONG_DAYS[weekday].to_string())
        } else if rest.starts_with("Mon") {
            (3, short(LONG_DAYS[weekday]).to_string())
        } else if rest.starts_with("MST") {
            (3, "UTC".to_string())
        } else if rest.starts_with("2006") {
            (4, format!("{:04}", t.year()))
        } else if rest.starts_with("002") {
            (3, format!("{:03}", t.ordinal()))
        } else if rest.starts_with("01") {
            (2, format!("{:02}", t.month()))
        } else if rest.starts_with("02") {
            (2, format!("{:02}", t.day()))
        } else if rest.starts_with("03") {
            (2, format!("{hour12:02}"))
        } else if rest.starts_with("04") {
            (2, format!("{:02}", t.minute()))
        } else if rest.starts_with("05") {
            (2, format!("{:02}", t.second()))
        } else if rest.starts_with("06") {
            (2, format!("{:02}", t.year().rem_euclid(100)))
        } else if rest.starts_with("15") {
            (2, format!("{:02}", t.hour()))
        } else if rest.starts_with('1') {
            (1, t.month().to_string())
        } else if rest.starts_with('2') {
            (1, t.day().to_string())
        } else if rest.starts_with("__2") {
            (3, format!("{:>3}", t.ordinal()))
        } else if rest.starts_with("_2") && !rest.starts_with("_2006") {
            (2, format!("{:>2}", t.day()))
        } else if rest.starts_with('3') {
            (1, hour12.to_string())
        } else if rest.starts_with('4') {
            (1, t.minute().to_string())
        } else if rest.starts_with('5') {
            (1, t.second().to_string())
        } else if rest.starts_with("PM") {
            (2, if t.hour() >= 12 { "PM" } else { "AM" }.to_string())
        } else if rest.starts_with("pm") {
            (2, if t.hour() >= 12 { "pm" } else { "am" }.to_string())
        } else if let Some(len) =
            ["Z070000", "Z07:00:00", "Z0700", "Z07:00", "Z07"].iter().find(|z| rest.starts_with(**z)).map(|z| z.len())
        {
            // A UTC time: the Z forms print "Z".
            (len, "Z".to_string())
        } else if let Some(z) =
            ["-070000", "-07:00:00", "-0700", "-07:00", "-07"].iter().find(|z| rest.starts_with(**z))
        {
            let text = match *z {
                "-070000" => "+000000",
                "-07:00:00" => "+00:00:00",
                "-0700" => "+0000",
                "-07:00" => "+00:00",
                _ => "+00",
            };
            (z.len(), text.to_string())
        } else if (rest.starts_with('.') || rest.starts_with(',')) && matches!(b.get(i + 1), Some(b'0') | Some(b'9')) {
            let digit = b[i + 1];
            let mut j = i + 1;
            while j < b.len() && b[j] == digit {
                j += 1;
            }
            if j < b.len() && b[j].is_ascii_digit() {
                (1, (b[i] as char).to_string())
            } else {
                let n = j - i - 1;
                let nanos = format!("{:09}", t.nanosecond().min(999_999_999));
                let mut digits = nanos[..n.min(9)].to_string();
                if digit == b'9' {
                    while digits.ends_with('0') {
                        digits.pop();
                    }
                }
                let text = if digits.is_empty() { String::new() } else { format!("{}{digits}", b[i] as char) };
                (j - i, text)
            }
        } else {
            let c = rest.chars().next().unwrap_or_default();
            (c.len_utf8(), c.to_string())
        };
        out.push_str(&text);
        i += token_len;
    }
    out
}

/// Formats `t` (a UTC time) with a C `strftime` format (`%Y-%m-%d %H:%M:%S`). Besides the C99
/// conversions, `%f` gives microseconds and `%L` milliseconds (as Packer's strftime library does);
/// an unknown conversion is copied as it is.
pub fn format_strftime(t: &DateTime<Utc>, format: &str) -> String {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            out.push('%');
            break;
        };
        let layout = match spec {
            'a' => "Mon",
            'A' => "Monday",
            'b' | 'h' => "Jan",
            'B' => "January",
            'c' => "Mon Jan _2 15:04:05 2006",
            'd' => "02",
            'D' | 'x' => "01/02/06",
            'e' => "_2",
            'F' => "2006-01-02",
            'H' => "15",
            'I' => "03",
            'm' => "01",
            'M' => "04",
            'p' => "PM",
            'r' => "03:04:05 PM",
            'R' => "15:04",
            'S' => "05",
            'T' | 'X' => "15:04:05",
            'y' => "06",
            'Y' => "2006",
            'z' => "-0700",
            'Z' => "MST",
            _ => "",
        };
        if !layout.is_empty() {
            out.push_str(&format_go(t, layout));
            continue;
        }
        let weekday_sun = t.weekday().num_days_from_sunday();
        let yday0 = t.ordinal0();
        match spec {
            'C' => out.push_str(&format!("{:02}", t.year().div_euclid(100))),
            'j' => out.push_str(&format!("{:03}", t.ordinal())),
            'k' => out.push_str(&format!("{:>2}", t.hour())),
            'l' => out.push_str(&format!("{:>2}", format_go(t, "3"))),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'u' => out.push_str(&t.weekday().number_from_monday().to_string()),
            'w' => out.push_str(&weekday_sun.to_string()),
            'U' => out.push_str(&format!("{:02}", (yday0 + 7 - weekday_sun) / 7)),
            'W' => out.push_str(&format!("{:02}", (yday0 + 7 - t.weekday().num_days_from_monday()) / 7)),
            'V' => out.push_str(&format!("{:02}", t.iso_week().week())),
            'G' => out.push_str(&t.iso_week().year().to_string()),
            's' => out.push_str(&t.timestamp().to_string()),
            'f' => out.push_str(&format!("{:06}", t.nanosecond().min(999_999_999) / 1000)),
            'L' => out.push_str(&format!("{:03}", t.nanosecond().min(999_999_999) / 1_000_000)),
            '%' => out.push('%'),
            other => {
                out.push('%');
                out.push(other);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap() + chrono::Duration::nanoseconds(123_450_000)
    }

    #[test]
    fn go_layouts() {
        let t = t();
        assert_eq!(format_go(&t, "2006-01-02T15:04:05Z07:00"), "2024-03-05T07:08:09Z");
        assert_eq!(format_go(&t, "20060102"), "20240305");
        assert_eq!(format_go(&t, "Jan _2 15:04:05"), "Mar  5 07:08:09");
        assert_eq!(format_go(&t, "Monday, January 2 2006 3:4:5 PM MST"), "Tuesday, March 5 2024 7:8:9 AM UTC");
        assert_eq!(format_go(&t, "Mon 06 1 2 03 pm -07:00 -0700 Z0700"), "Tue 24 3 5 07 am +00:00 +0000 Z");
        assert_eq!(format_go(&t, "15:04:05.000 .999999 ,00"), "07:08:09.123 .12345 ,12");
        assert_eq!(format_go(&t, "002 __2 _2006"), "065  65 _2024");
        assert_eq!(format_go(&t, "x.0y"), "x.1y");
        assert_eq!(format_go(&t, "no tokens here: éé"), "no tokens here: éé");
    }

    #[test]
    fn strftime_conversions() {
        let t = t();
        assert_eq!(format_strftime(&t, "%Y-%m-%d %H:%M:%S"), "2024-03-05 07:08:09");
        assert_eq!(
            format_strftime(&t, "%a %A %b %B %e %j %p %y %Z %z %%"),
            "Tue Tuesday Mar March  5 065 AM 24 UTC +0000 %"
        );
        assert_eq!(
            format_strftime(&t, "%F %T %D %R %I %w %u %L %f"),
            "2024-03-05 07:08:09 03/05/24 07:08 07 2 2 123 123450"
        );
        assert_eq!(format_strftime(&t, "%s %Q %"), "1709622489 %Q %");
    }

    #[test]
    fn init_time_is_stable() {
        assert_eq!(init_time(), init_time());
    }
}
