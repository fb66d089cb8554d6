//! Value types shared by every capability, parsed at the boundary: money, page sizes and cursors.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{AppError, FieldError};

/// An amount of money in fen (分, 1/100 yuan). Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    /// A non-negative amount in fen.
    pub fn from_fen(fen: i64) -> Result<Money, String> {
        if fen < 0 {
            return Err(format!("amount must not be negative, got {fen}"));
        }
        Ok(Money(fen))
    }

    pub fn fen(self) -> i64 {
        self.0
    }

    pub fn checked_mul(self, quantity: i64) -> Option<Money> {
        self.0.checked_mul(quantity).map(Money)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }
}

/// A page size: default 20, between 1 and 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    pub const DEFAULT: u32 = 20;
    pub const MAX: u32 = 100;

    /// `None` is the default; out-of-range values are a 422 naming `limit`.
    pub fn parse(limit: Option<i64>) -> Result<PageLimit, AppError> {
        match limit {
            None => Ok(PageLimit(Self::DEFAULT)),
            Some(n) if (1..=i64::from(Self::MAX)).contains(&n) => Ok(PageLimit(n as u32)),
            Some(n) => Err(AppError::validation("limit", format!("must be between 1 and {}, got {n}", Self::MAX))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A keyset-pagination cursor: the sort key of the last item of a page, written as its non-negative integers
/// joined by `.` (`1732960000000.42`). Clients pass back the `next_cursor` they were given; the OpenAPI document
/// describes the form exactly ([`Cursor::pattern`]), so any cursor a client can build from it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Vec<i64>);

impl Cursor {
    /// The most digits a key may have (any such number fits an `i64`).
    const MAX_DIGITS: usize = 18;

    pub fn new(keys: Vec<i64>) -> Cursor {
        Cursor(keys)
    }

    /// Parses a cursor that must hold `arity` keys; anything else is a 400 `invalid_parameter`.
    pub fn parse(text: &str, arity: usize) -> Result<Cursor, AppError> {
        let invalid = || AppError::invalid_parameter("cursor is not valid; use the next_cursor of a previous page");
        let keys = text
            .split('.')
            .map(|k| {
                let digits = !k.is_empty() && k.len() <= Self::MAX_DIGITS && k.bytes().all(|b| b.is_ascii_digit());
                digits.then(|| k.parse::<i64>().ok()).flatten()
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid)?;
        if keys.len() != arity {
            return Err(invalid());
        }
        Ok(Cursor(keys))
    }

    /// The regular expression a cursor of `arity` keys matches (also the empty string: no cursor).
    pub fn pattern(arity: usize) -> String {
        let key = format!("[0-9]{{1,{}}}", Self::MAX_DIGITS);
        format!("^({})?$", vec![key; arity].join("\\."))
    }

    pub fn keys(&self) -> &[i64] {
        &self.0
    }

    pub fn encode(&self) -> String {
        self.0.iter().map(|k| k.max(&0).to_string()).collect::<Vec<_>>().join(".")
    }
}

/// Cuts a page from rows fetched with `limit + 1`: the first `limit` rows and, when a row beyond them exists, the
/// cursor of the last row kept (`key` gives its keyset sort key).
pub fn cut_page<T>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> Vec<i64>) -> (Vec<T>, Option<String>) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(|row| Cursor::new(key(row)).encode()) } else { None };
    (rows, next)
}

/// Why `value` is not acceptable human text (a name, title, address line, remark) of at most `max` characters:
/// control characters (which also escape to six bytes each in a JSON snapshot), bidi overrides and isolates
/// (which make text display other than it reads), or nothing visible at all (only spaces or zero-width
/// characters). Empty text passes when `required` is false. The limits match the columns with headroom.
pub fn human_text_problem(value: &str, max: usize, required: bool) -> Option<String> {
    if value.is_empty() {
        return required.then(|| "must not be empty".to_owned());
    }
    if value.chars().count() > max {
        return Some(format!("must be at most {max} characters"));
    }
    if value.chars().any(|c| c.is_control()) {
        return Some("must not contain control characters".to_owned());
    }
    if value.chars().any(is_bidi_control) {
        return Some("must not contain bidirectional override characters".to_owned());
    }
    if !value.chars().any(|c| !c.is_whitespace() && !is_invisible(c)) {
        return Some("must contain visible characters".to_owned());
    }
    None
}

/// [`human_text_problem`] as a form check: a problem goes into `errors` under `field`.
pub fn check_human_text(field: &str, value: &str, max: usize, required: bool, errors: &mut Vec<FieldError>) {
    if let Some(problem) = human_text_problem(value, max, required) {
        errors.push(FieldError::new(field, problem));
    }
}

/// Characters no human text may hold: controls (Unicode Cc) and bidi overrides, isolates and marks.
const FORBIDDEN_CLASS: &str = r"\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069";
/// Characters that show nothing: white space (Unicode White_Space, as `char::is_whitespace`) and the invisible
/// ones of [`is_invisible`].
const BLANK_CLASS: &str =
    r"\s\u0085\u00A0\u1680\u2000-\u200D\u2028\u2029\u202F\u205F\u2060\u3000\uFEFF\u180E\u3164\u115F\u1160";

/// The regular expression (ECMA-262, for the OpenAPI document) of text [`human_text_problem`] accepts as
/// required: no forbidden character, at least one visible one.
pub fn human_text_pattern() -> String {
    format!("^[^{FORBIDDEN_CLASS}]*[^{FORBIDDEN_CLASS}{BLANK_CLASS}][^{FORBIDDEN_CLASS}]*$")
}

/// [`human_text_pattern`] or the empty string, for optional text.
pub fn optional_text_pattern() -> String {
    format!("^([^{FORBIDDEN_CLASS}]*[^{FORBIDDEN_CLASS}{BLANK_CLASS}][^{FORBIDDEN_CLASS}]*)?$")
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{180E}' | '\u{3164}' | '\u{115F}' | '\u{1160}')
}

/// [`crate::db::parse_rfc3339`] for one field of a form: a failure goes into `errors` and gives `None`.
pub fn time_field(field: &str, value: &str, errors: &mut Vec<FieldError>) -> Option<i64> {
    match crate::db::parse_rfc3339(field, value) {
        Ok(t) => Some(t),
        Err(AppError::Validation(fields)) => {
            errors.extend(fields);
            None
        }
        Err(_) => None,
    }
}

/// The earliest time a sale or campaign may start: 2020-01-01T00:00:00Z.
pub const EARLIEST_WINDOW_MS: i64 = 1_577_836_800_000;
/// How far ahead a sale or campaign may end: about five years.
pub const WINDOW_HORIZON_MS: i64 = 5 * 366 * 24 * 3_600_000;

/// The window of a sale or campaign: when both times parsed, `ends_at` must follow `starts_at` and be in the
/// future, and both must be sane (from 2020 to five years ahead); what is wrong goes into `errors`.
pub fn check_window(starts_at: Option<i64>, ends_at: Option<i64>, now: i64, errors: &mut Vec<FieldError>) {
    let sane = EARLIEST_WINDOW_MS..=now + WINDOW_HORIZON_MS;
    let mut insane = false;
    for (field, time) in [("starts_at", starts_at), ("ends_at", ends_at)] {
        if time.is_some_and(|t| !sane.contains(&t)) {
            errors.push(FieldError::new(field, "must be between 2020-01-01 and five years from now"));
            insane = true;
        }
    }
    if insane {
        return;
    }
    if let (Some(starts_at), Some(ends_at)) = (starts_at, ends_at) {
        if starts_at >= ends_at {
            errors.push(FieldError::new("ends_at", "must be after starts_at"));
        } else if ends_at <= now {
            errors.push(FieldError::new("ends_at", "must be in the future"));
        }
    }
}

/// `limit` and `cursor` of a list ordered newest first by id: the page size and the id to continue below.
pub fn id_page(limit: Option<i64>, cursor: Option<&str>) -> Result<(u32, Option<i64>), AppError> {
    let limit = PageLimit::parse(limit)?.get();
    let before = cursor.map(|c| Cursor::parse(c, 1)).transpose()?.map(|c| c.keys()[0]);
    Ok((limit, before))
}

/// `?limit=&cursor=` of a list ordered newest first by id.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 100, default 20.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// One page of a cursor-paginated list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_text_refuses_controls_overrides_and_invisible_values() {
        assert_eq!(human_text_problem("文三路 1 号", 10, true), None);
        assert_eq!(human_text_problem("", 10, false), None);
        assert!(human_text_problem("", 10, true).is_some());
        assert!(human_text_problem("a\u{0}b", 10, true).unwrap().contains("control"));
        assert!(human_text_problem("line\nbreak", 20, true).unwrap().contains("control"));
        assert!(human_text_problem("abc\u{202E}cba", 20, true).unwrap().contains("bidirectional"));
        assert!(human_text_problem("\u{200B}\u{200B}", 20, true).unwrap().contains("visible"));
        assert!(human_text_problem("   ", 20, false).unwrap().contains("visible"));
        assert_eq!(human_text_problem("a\u{200D}b", 20, true), None, "zero-width joiners inside text are fine");
        assert!(human_text_problem("abcd", 3, true).unwrap().contains("at most 3"));
    }

    #[test]
    fn money_refuses_negative() {
        assert!(Money::from_fen(-1).is_err());
        assert_eq!(Money::from_fen(1999).unwrap().fen(), 1999);
        assert_eq!(Money::from_fen(i64::MAX).unwrap().checked_mul(2), None);
    }

    #[test]
    fn limit_bounds() {
        assert_eq!(PageLimit::parse(None).unwrap().get(), 20);
        assert_eq!(PageLimit::parse(Some(100)).unwrap().get(), 100);
        assert_eq!(PageLimit::parse(Some(1)).unwrap().get(), 1);
        for bad in [0, 101, -5] {
            assert_eq!(PageLimit::parse(Some(bad)).unwrap_err().code(), "validation_failed");
        }
    }

    #[test]
    fn pages_are_cut_at_the_limit_with_a_cursor_only_when_more_follow() {
        let (rows, next) = cut_page(vec![9, 8, 7], 2, |r| vec![*r]);
        assert_eq!(rows, vec![9, 8]);
        assert_eq!(Cursor::parse(&next.unwrap(), 1).unwrap().keys(), &[8]);
        let (rows, next) = cut_page(vec![9, 8], 2, |r| vec![*r]);
        assert_eq!((rows, next), (vec![9, 8], None));
    }

    #[test]
    fn cursor_round_trip_and_garbage() {
        let cursor = Cursor::new(vec![1_700_000_000_000, 42]);
        assert_eq!(Cursor::parse(&cursor.encode(), 2).unwrap(), cursor);
        assert!(Cursor::parse(&cursor.encode(), 1).is_err());
        assert_eq!(cursor.encode(), "1700000000000.42");
        for bad in ["", "!!!", "djE6YQ", "1.", ".1", "-1", "1e3", "1234567890123456789"] {
            assert_eq!(Cursor::parse(bad, 1).unwrap_err().code(), "invalid_parameter", "{bad}");
        }
        let pattern = Cursor::pattern(2);
        assert_eq!(pattern, "^([0-9]{1,18}\\.[0-9]{1,18})?$");
    }
}
