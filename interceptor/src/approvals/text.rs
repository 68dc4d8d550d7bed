//! Text shaping the channels share: showing what an agent wrote without letting it hide
//! anything (control, bidirectional and zero-width characters are spelled out, commands
//! are quoted so they paste back exactly), fitting text into a channel's length limits
//! with a visible marker, and dates.
//!
//! Everything here is pure: channels call it while rendering a [`super::Notice`].

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use super::shell_words;

/// Characters that change what a reviewer sees without being seen themselves: C0/C1
/// controls, bidirectional overrides and isolates ("Trojan Source"), zero-width
/// characters, line and paragraph separators, the soft hyphen and the byte order mark.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Appends the escape a reviewer reads for an invisible character: `\n`, `\t`, `\r`,
/// `\xHH` for other ASCII controls, `\u{HHHH}` for the rest.
fn push_escape(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if c.is_ascii() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
        c => out.push_str(&format!("\\u{{{:04x}}}", u32::from(c))),
    }
}

/// `s` with every invisible character spelled out (see [`is_invisible`]); newlines too
/// unless `keep_newlines`, for text shown on several lines (a rationale).
///
/// For display only: a literal backslash is left as it is, so this does not round-trip.
pub fn visible(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let hidden = |c: char| is_invisible(c) && !(keep_newlines && c == '\n');
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) {
            push_escape(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One argv word in bash's ANSI-C quoting (`$'...'`), which can spell any byte: used for
/// words with invisible characters, so the reviewer sees them and a paste still runs the
/// same command.
fn ansi_c_quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 4);
    out.push_str("$'");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_invisible(c) && c.is_ascii() => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c if is_invisible(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The command as a reviewer should read it: [`shell_words`] quoting, except that words
/// holding invisible characters use `$'...'` so nothing in them is hidden. Falls back to
/// the (made visible) target when argv is empty.
pub fn command_line(argv: &[String], target: &str) -> String {
    if argv.is_empty() {
        return visible(target, false).into_owned();
    }
    argv.iter()
        .map(|w| {
            if w.chars().any(is_invisible) {
                ansi_c_quote(w)
            } else {
                shell_words(std::slice::from_ref(w), "")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Length as Slack and Teams limits count it. Both are JavaScript services, so this
/// counts UTF-16 code units: never fewer than the characters a limit could mean.
pub fn units(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// What replaces the end of text that did not fit.
fn marker(omitted_chars: usize) -> String {
    format!(" …[{omitted_chars} more characters cut]")
}

/// Escaping that leaves every character as it is.
pub fn no_escape(c: char, out: &mut String) {
    out.push(c);
}

/// `text`, each character passed through `escape`, cut so the result is at most
/// `max_units` long (see [`units`]) and ends with a visible marker saying how much was
/// cut. Cuts fall between characters, never inside an escape, and it never fails.
pub fn fit(text: &str, max_units: usize, escape: impl Fn(char, &mut String)) -> String {
    let mut whole = String::with_capacity(text.len());
    for c in text.chars() {
        escape(c, &mut whole);
    }
    if units(&whole) <= max_units {
        return whole;
    }
    let total = text.chars().count();
    // The longest marker this text can need, so the cut is decided once.
    let reserve = units(&marker(total));
    if reserve > max_units {
        return if max_units == 0 {
            String::new()
        } else {
            "…".into()
        };
    }
    let budget = max_units - reserve;
    let mut out = String::new();
    let mut used = 0;
    let mut kept = 0;
    let mut piece = String::new();
    for c in text.chars() {
        piece.clear();
        escape(c, &mut piece);
        let n = units(&piece);
        if used + n > budget {
            break;
        }
        out.push_str(&piece);
        used += n;
        kept += 1;
    }
    out.push_str(&marker(total - kept));
    out
}

/// Unix ms as RFC 3339 UTC with milliseconds (`2026-09-21T14:13:20.000Z`). Times past
/// the year 9999 (which RFC 3339 cannot write) are shown as its last millisecond.
pub fn rfc3339_ms(ms: u64) -> String {
    const LAST_MS: u64 = 253_402_300_799_999;
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.min(LAST_MS)))
        .to_string()
}

/// A duration in whole seconds as a reviewer reads it: `45s`, `5m`, `5m 30s`, `2h 5m`.
pub fn short_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn invisible_characters_are_spelled_out() {
        assert_eq!(visible("plain /srv/app", false), "plain /srv/app");
        assert_eq!(visible("a\nb\tc\u{7}", false), "a\\nb\\tc\\x07");
        assert_eq!(visible("a\nb", true), "a\nb");
        // A right-to-left override would show `exe.txt` for `txt.exe`.
        assert_eq!(visible("\u{202E}txt.exe", false), "\\u{202e}txt.exe");
        assert_eq!(visible("zero\u{200B}width", false), "zero\\u{200b}width");
    }

    #[test]
    fn a_command_with_hidden_characters_is_shown_in_ansi_c_quoting() {
        let argv: Vec<String> = vec![
            "sh".into(),
            "-c".into(),
            "echo ok\nrm -rf ~".into(),
            "it's".into(),
            "\u{202E}gpj.exe".into(),
        ];
        assert_eq!(
            command_line(&argv, "/bin/sh"),
            r"sh -c $'echo ok\nrm -rf ~' 'it'\''s' $'\u202egpj.exe'"
        );
        assert_eq!(command_line(&[], "/bin/x\n"), "/bin/x\\n");
        assert_eq!(ansi_c_quote("a\\b'c\u{1b}"), r"$'a\\b\'c\x1b'");
    }

    #[test]
    fn fit_keeps_short_text_and_marks_a_cut() {
        assert_eq!(fit("short", 10, no_escape), "short");
        let cut = fit(&"x".repeat(100), 40, no_escape);
        assert!(units(&cut) <= 40, "{cut}");
        assert_eq!(cut, format!("{} …[87 more characters cut]", "x".repeat(13)));
        // Escapes are never split: `&amp;` is kept whole or cut whole.
        let amp = |c: char, out: &mut String| match c {
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        };
        let cut = fit(&"&".repeat(100), 40, amp);
        assert!(units(&cut) <= 40, "{cut}");
        let kept = cut.split(' ').next().unwrap_or_default();
        assert_eq!(kept.len() % 5, 0, "{cut}");
        assert!(kept.chars().all(|c| "&amp;".contains(c)));
        // Limits too small for the marker still hold.
        assert_eq!(fit("abcdef", 3, no_escape), "…");
        assert_eq!(fit("abcdef", 0, no_escape), "");
    }

    #[test]
    fn units_count_utf16() {
        assert_eq!(units("abc"), 3);
        assert_eq!(units("é"), 1);
        assert_eq!(units("😀"), 2);
    }

    #[test]
    fn dates_and_durations() {
        assert_eq!(rfc3339_ms(1_790_000_300_000), "2026-09-21T14:18:20.000Z");
        assert_eq!(rfc3339_ms(u64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(short_duration(45), "45s");
        assert_eq!(short_duration(300), "5m");
        assert_eq!(short_duration(330), "5m 30s");
        assert_eq!(short_duration(7500), "2h 5m");
        assert_eq!(short_duration(7200), "2h");
    }

    proptest! {
        #[test]
        fn fit_never_exceeds_and_keeps_a_prefix(text in "\\PC{0,300}", max in 0usize..200) {
            let out = fit(&text, max, no_escape);
            prop_assert!(units(&out) <= max);
            if units(&text) <= max {
                prop_assert_eq!(&out, &text);
            } else if let Some(i) = out.rfind(" …[") {
                prop_assert!(text.starts_with(&out[..i]));
            }
        }
    }
}
