//! Formatting helpers: escaping, JSON strings, aligned tables, human-readable numbers.

use std::fmt::Write as _;

/// Bytes shown on one line: printable text as is (valid UTF-8 included); tab, newline, CR and
/// backslash as `\t`, `\n`, `\r`, `\\`; other control characters and invalid UTF-8 as `\xNN`
/// (`\u{NN}` for non-ASCII control characters).
pub fn escape_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// A key for a message: escaped, quoted, and shortened when long.
pub fn key_for_message(key: &[u8]) -> String {
    const MAX: usize = 48;
    if key.len() <= MAX {
        format!("\"{}\"", escape_bytes(key))
    } else {
        let head = escape_bytes(&key[..MAX]);
        format!("\"{head}...\" ({} bytes)", key.len())
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number for milliseconds, or `null`.
pub fn json_ms(ms: Option<f64>) -> String {
    match ms {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "null".to_string(),
    }
}

/// One row of a [`Table`]: cells, or a message that spans every column after the first.
pub enum Row {
    Cells(Vec<String>),
    Message(String, String),
}

/// A table of left-aligned, space-separated columns under a header.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Row>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Table {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            match row {
                Row::Cells(cells) => {
                    for (w, c) in widths.iter_mut().zip(cells) {
                        *w = (*w).max(c.chars().count());
                    }
                }
                Row::Message(first, _) => {
                    if let Some(w) = widths.first_mut() {
                        *w = (*w).max(first.chars().count());
                    }
                }
            }
        }
        let mut out = String::new();
        let line = |cells: &[&str], out: &mut String| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    let pad = widths[i].saturating_sub(c.chars().count());
                    l.push_str(c);
                    l.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&self.header, &mut out);
        for row in &self.rows {
            match row {
                Row::Cells(cells) => {
                    let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
                    line(&refs, &mut out);
                }
                Row::Message(first, msg) => line(&[first, msg], &mut out),
            }
        }
        out
    }
}

/// Seconds as `3d 4h`, `4h 5m`, `5m 6s` or `6s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// Bytes as `512 B`, `1.5 KiB`, `20.0 MiB`, ...
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Unix milliseconds as an RFC 3339 UTC time, `2023-11-14T22:13:20.000Z`.
pub fn utc_millis(ms: u64) -> String {
    let (secs, milli) = (ms / 1000, ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Milliseconds with three decimals.
pub fn ms(v: f64) -> String {
    format!("{v:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(escape_bytes(b"plain text"), "plain text");
        assert_eq!(escape_bytes(b"a\tb\nc\r\\"), "a\\tb\\nc\\r\\\\");
        assert_eq!(escape_bytes(b"\x00\x7f\xff"), "\\x00\\x7f\\xff");
        assert_eq!(escape_bytes("h\u{e9}\u{85}".as_bytes()), "h\u{e9}\\u{85}");
    }

    #[test]
    fn json() {
        assert_eq!(json_str("a\"b\\\n\u{1}"), "\"a\\\"b\\\\\\n\\u0001\"");
        assert_eq!(json_ms(None), "null");
    }

    #[test]
    fn humans() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(65), "1m 5s");
        assert_eq!(human_duration(3_700), "1h 1m");
        assert_eq!(human_duration(90_000), "1d 1h");
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 * 1024 * 1024), "64.0 MiB");
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_millis(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(utc_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc_millis(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn table() {
        let mut t = Table::new(vec!["A", "BB", "C"]);
        t.push(Row::Cells(vec!["xxx".into(), "y".into(), "z".into()]));
        t.push(Row::Message("q".into(), "error: boom".into()));
        assert_eq!(t.render(), "A    BB  C\nxxx  y   z\nq    error: boom\n");
    }
}
