//! [`PersonalNumber`]: a resident's mobile phone number or identity card number, found in free
//! text.
//!
//! Only household documents may hold residents' personal data, and only in their designated
//! fields. In every other kind, free text (what was heard on a visit, a request's description, a
//! note) is searched for the two numbers that identify a resident on their own:
//!
//! - a mainland mobile phone number: 11 digits starting `13` to `19`, perhaps after the country
//!   code `86` or `0086` (`+86`, `(+86)`, `8613800138000`, `0086 138 0013 8000`);
//! - a resident identity card number: 18 characters, 17 digits and a check character (`0`-`9`
//!   or `X`) that is right under ISO 7064 MOD 11-2, with a real birth date (`YYYYMMDD`, years
//!   1900 to 2100) at characters 7 to 14.
//!
//! Digits are read as *runs*: maximal sequences of digits, ASCII or fullwidth (`０`-`９`). People
//! write numbers in groups (`138 0013 8000`, `138-0013-8000`, `138/0013/8000`,
//! `370802_19900101_123X`), so runs separated by one to three separator characters form a
//! *chain*. The separators are spaces (ASCII, tab, no-break, ideographic), hyphens and dashes
//! (`-`, U+2010 to U+2013), dots, slashes and underscores, and the fullwidth `－．／＿`. Any
//! other character ends a chain, and so do four separators in a row.
//!
//! The two numbers are looked for differently, because they can be told from other numbers
//! differently:
//!
//! - A mobile number is found only where whole consecutive runs of a chain spell it, with or
//!   without a country code in front: the digits from the start of one run to the end of the
//!   same or a later run are the 11 digits, or `86` or `0086` and the 11 digits. It never starts
//!   or ends inside a run other than right after that country code: `138001380001` (12 digits)
//!   and `913800138000` are not phone numbers. Its only mark is the `13` to `19` at its start,
//!   which seven numbers in a hundred have, so taking 11 digits from anywhere in a longer run
//!   would refuse every such run: millisecond timestamps (`1741234567890`), order, tracking and
//!   account numbers. The cost of this choice: a mobile number glued to other digits on either
//!   side (`13800138000123`) is not found.
//! - An ID number is found in any 18 consecutive characters of a chain, its runs joined, starting
//!   and ending anywhere, inside a run too: `订单202611010519491231002X` and
//!   `9110105 19491231 002X` hold one. Its check character and birth date are mark enough:
//!   18 random digits pass both about once in 15,000 (one in 11 for the check character, one in
//!   1,360 for the date). A run of `n` digits is so taken for one about `n - 17` times in 15,000:
//!   a 20-digit order number one time in 5,000, a 30-digit one one time in 1,150; such a writer
//!   has to write the number differently (another separator, or a non-digit inside). An `X`
//!   ends a number: one inside the 17 digits makes that window no ID number.
//!
//! This module finds; it says what kind of number it found and never the number, so a refusal
//! built on it cannot echo the resident's data back. Names are not searched for: no rule tells a
//! name from other words in free text.

use std::fmt;

use super::date::days_in_month;

/// A kind of number that identifies a resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonalNumber {
    /// A mainland mobile phone number.
    MobilePhone,
    /// A resident identity card number (居民身份证号码).
    ResidentId,
}

impl fmt::Display for PersonalNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PersonalNumber::MobilePhone => "a mobile phone number",
            PersonalNumber::ResidentId => "a resident ID number",
        })
    }
}

/// The most separator characters between two runs of one chain.
const MAX_GAP: usize = 3;

/// The check character `X` stands for 10, as in the standard.
const X: u8 = 10;

/// The value of a digit character, ASCII or fullwidth.
fn digit(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '０'..='９' => Some((c as u32 - '０' as u32) as u8),
        _ => None,
    }
}

fn is_check_x(c: char) -> bool {
    matches!(c, 'X' | 'x' | 'Ｘ' | 'ｘ')
}

fn is_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t'
            | '-'
            | '.'
            | '/'
            | '_'
            | '\u{a0}' // no-break space
            | '\u{2010}'
            ..='\u{2013}' // hyphen, non-breaking hyphen, figure dash, en dash
            | '\u{3000}' // ideographic space
            | '－'
            | '．'
            | '／'
            | '＿'
    )
}

impl PersonalNumber {
    /// The first personal number in `text`, if there is one.
    pub fn find(text: &str) -> Option<PersonalNumber> {
        let mut chain: Vec<Vec<u8>> = Vec::new();
        let mut run: Vec<u8> = Vec::new();
        // Separators since the last run of the chain ended.
        let mut gap = 0;
        for c in text.chars() {
            if let Some(d) = digit(c) {
                // A digit right after a check character stays in its run: an ID number may
                // end at the `X`, and none has one inside (see `is_resident_id`).
                if run.is_empty() && !(1..=MAX_GAP).contains(&gap) {
                    if let Some(found) = Self::in_chain(&chain) {
                        return Some(found);
                    }
                    chain.clear();
                }
                run.push(d);
                gap = 0;
            } else if is_check_x(c) && run.last().is_some_and(|last| *last != X) {
                run.push(X);
            } else if is_separator(c) {
                if !run.is_empty() {
                    chain.push(std::mem::take(&mut run));
                }
                gap += 1;
            } else {
                if !run.is_empty() {
                    chain.push(std::mem::take(&mut run));
                }
                if let Some(found) = Self::in_chain(&chain) {
                    return Some(found);
                }
                chain.clear();
                gap = 0;
            }
        }
        if !run.is_empty() {
            chain.push(run);
        }
        Self::in_chain(&chain)
    }

    /// A number in `chain`: a mobile number spelled by whole consecutive runs, perhaps after a
    /// country code, or an ID number in any 18 consecutive characters.
    fn in_chain(chain: &[Vec<u8>]) -> Option<PersonalNumber> {
        for start in 0..chain.len() {
            let mut digits: Vec<u8> = Vec::with_capacity(MAX_MOBILE_LEN);
            for run in &chain[start..] {
                digits.extend_from_slice(run);
                if digits.len() > MAX_MOBILE_LEN {
                    break;
                }
                if is_mobile_with_code(&digits) {
                    return Some(PersonalNumber::MobilePhone);
                }
            }
        }
        let joined = chain.concat();
        joined
            .windows(ID_LEN)
            .any(is_resident_id)
            .then_some(PersonalNumber::ResidentId)
    }
}

/// The characters of an ID number.
const ID_LEN: usize = 18;

/// The most digits of a mobile number with its country code: `0086` and 11.
const MAX_MOBILE_LEN: usize = 15;

/// Whether `digits` are a mainland mobile phone number, alone or after `86` or `0086`.
fn is_mobile_with_code(digits: &[u8]) -> bool {
    match digits.len() {
        11 => is_mobile(digits),
        13 => digits.starts_with(&[8, 6]) && is_mobile(&digits[2..]),
        15 => digits.starts_with(&[0, 0, 8, 6]) && is_mobile(&digits[4..]),
        _ => false,
    }
}

/// Whether `digits` (11 of them) are a mainland mobile phone number.
fn is_mobile(digits: &[u8]) -> bool {
    digits[0] == 1 && (3..=9).contains(&digits[1]) && !digits.contains(&X)
}

/// Whether `chars` (18 of them, `X` as 10) are a resident ID number: 17 digits, a right check
/// character and a real birth date.
fn is_resident_id(chars: &[u8]) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    // The check character for each remainder of the weighted sum modulo 11.
    const CHECK: [u8; 11] = [1, 0, X, 9, 8, 7, 6, 5, 4, 3, 2];
    let (body, check) = chars.split_at(17);
    if body.contains(&X) {
        return false;
    }
    let sum: u32 = body
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    if CHECK[(sum % 11) as usize] != check[0] {
        return false;
    }
    let number = |range: std::ops::Range<usize>| {
        body[range]
            .iter()
            .fold(0_i32, |n, d| n * 10 + i32::from(*d))
    };
    let (year, month, day) = (number(6..10), number(10..12), number(12..14));
    (1900..=2100).contains(&year)
        && (1..=12).contains(&month)
        && day >= 1
        && day <= i32::from(days_in_month(year, month as u8))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The check character of the 17 digits `body`, as the standard computes it.
    fn check_char(body: &str) -> char {
        const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        let sum: u32 = body
            .chars()
            .zip(WEIGHTS)
            .map(|(c, w)| c.to_digit(10).unwrap() * w)
            .sum();
        "10X98765432".chars().nth((sum % 11) as usize).unwrap()
    }

    fn find(text: &str) -> Option<PersonalNumber> {
        PersonalNumber::find(text)
    }

    #[test]
    fn mobile_numbers_are_found_however_they_are_grouped() {
        for text in [
            "13800138000",
            "请回电13800138000谢谢",
            "电话 138 0013 8000",
            "138-0013-8000",
            "+86 139 1234 5678",
            "(+86)19912345678",
            "１３８００１３８０００",
            "138 - 0013 - 8000",
            "1 3 8 0 0 1 3 8 0 0 0",
            "2026 13800138000",
            "138 0013 8000 1", // a trailing run does not hide the three before it
        ] {
            assert_eq!(find(text), Some(PersonalNumber::MobilePhone), "{text}");
        }
    }

    #[test]
    fn other_numbers_are_not_mobile_numbers() {
        for text in [
            "12800138000",            // no mobile number starts 12
            "138001380001",           // 12 digits in one run
            "913800138000",           // inside a longer run
            "1380013800",             // 10 digits
            "2026-03-05 9:00, 12 人", // dates and counts
            "楼道灯坏了",
            "",
        ] {
            assert_eq!(find(text), None, "{text}");
        }
    }

    #[test]
    fn resident_ids_need_their_check_character_and_a_real_birth_date() {
        // The example of GB 11643-1999.
        assert_eq!(find("11010519491231002X"), Some(PersonalNumber::ResidentId));
        assert_eq!(
            find("身份证 110105 19491231 002x。"),
            Some(PersonalNumber::ResidentId)
        );
        assert_eq!(
            find("身份证１１０１０５１９４９１２３１００２Ｘ"),
            Some(PersonalNumber::ResidentId)
        );
        // A wrong check character or an impossible date.
        assert_eq!(find("110105194912310021"), None);
        assert_eq!(find("11010519491331002X"), None);
        assert_eq!(
            find("11010519491231002XX"),
            Some(PersonalNumber::ResidentId)
        );
        // An X only ends a number.
        assert_eq!(find("1101051949123100X2"), None);
    }

    #[test]
    fn mobile_numbers_with_a_glued_country_code_or_other_separators_are_found() {
        for text in [
            "+8613800138000",
            "008613800138000",
            "电话8613800138000",
            "tel:+86-13800138000",
            "0086 13800138000",
            "86138 0013 8000",
            "138/0013/8000",
            "138_0013_8000",
            "138／0013／8000",
            "138＿0013＿8000",
            "+86/138/0013/8000",
            "+８６１３８００１３８０００",
        ] {
            assert_eq!(find(text), Some(PersonalNumber::MobilePhone), "{text}");
        }
    }

    #[test]
    fn resident_ids_glued_inside_longer_runs_or_split_by_other_separators_are_found() {
        for text in [
            "911010519491231002X",
            "11010519491231002X7",
            "编号202611010519491231002X号",
            "订单11010519491231002X2026",
            "110105/19491231/002X",
            "110105_19491231_002X",
            "110105／19491231＿002X",
            "9110105 19491231 002X",
            "2026-110105-19491231-002X-1",
        ] {
            assert_eq!(find(text), Some(PersonalNumber::ResidentId), "{text}");
        }
    }

    #[test]
    fn near_misses_are_not_personal_numbers() {
        for text in [
            "+8612800138000", // no mobile number starts 12, country code or not
            "8612800138000",
            "86 12800138000",
            "1741234567890",        // a 13-digit timestamp in milliseconds
            "8613800138000123",     // a country code does not make a longer run a number
            "138001380001/2",       // one digit too many, then a separator
            "20260305123456789012", // 20 digits without a valid ID window
            "98765432109876543210",
            "订单号 2026/03/05/0001",
            "3/4 的住户, 12_5",
        ] {
            assert_eq!(find(text), None, "{text}");
        }
    }

    fn body() -> impl Strategy<Value = String> {
        (
            100_000_u32..999_999,
            1900_i32..=2100,
            1_u8..=12,
            1_u8..=31,
            0_u32..1000,
        )
            .prop_filter("a real date", |(_, y, m, d, _)| *d <= days_in_month(*y, *m))
            .prop_map(|(region, y, m, d, seq)| format!("{region}{y:04}{m:02}{d:02}{seq:03}"))
    }

    /// Text around a number: no digits, nothing that could join the number to its neighbours.
    fn filler() -> impl Strategy<Value = String> {
        "[a-z，。楼道灯坏了 ]{0,12}".prop_map(|s| s.trim_matches(' ').to_owned())
    }

    /// The characters a writer may group a number with, up to three of them.
    fn separator() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(vec![
            "", " ", "-", ".", "/", "_", "\t", "\u{a0}", "\u{2013}", "\u{3000}", "－", "．", "／",
            "＿", " - ", " / ",
        ])
    }

    /// A country code in front of a mobile number, as people write it, or none.
    fn country_code() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(vec![
            "",
            "86",
            "+86",
            "0086",
            "+86 ",
            "+86-",
            "0086 ",
            "(+86)",
            "+８６",
            "００８６",
        ])
    }

    /// A run of 19 to 40 digits: random ones, or ones with a region and a birth date where an
    /// ID number would have them, so that some hold an ID number and some just miss.
    fn long_run() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{19,40}",
            "[0-9]{0,8}[1-6][0-9]{5}(19[0-9]{2}|20[0-9]{2})(0[1-9]|1[0-2])[0-3][0-9][0-9]{4,12}",
        ]
    }

    /// Whether some 18 consecutive digits of `digits` are an ID number, worked out afresh.
    fn holds_id(digits: &str) -> bool {
        (0..=digits.len().saturating_sub(18)).any(|start| {
            let window = &digits[start..start + 18];
            let (body, check) = window.split_at(17);
            let year: i32 = body[6..10].parse().unwrap();
            let month: u8 = body[10..12].parse().unwrap();
            let day: u8 = body[12..14].parse().unwrap();
            check.starts_with(check_char(body))
                && (1900..=2100).contains(&year)
                && (1..=12).contains(&month)
                && (1..=days_in_month(year, month)).contains(&day)
        })
    }

    /// An 11-digit number written in groups of 3, 4 and 4 with `separator` between them.
    fn grouped_3_4_4(number: &str, separator: &str) -> String {
        format!(
            "{}{separator}{}{separator}{}",
            &number[..3],
            &number[3..7],
            &number[7..]
        )
    }

    proptest! {
        #[test]
        fn every_valid_resident_id_is_found(body in body(), before in filler(), after in filler()) {
            let id = format!("{body}{}", check_char(&body));
            let text = format!("{before}，{id}，{after}");
            prop_assert_eq!(find(&text), Some(PersonalNumber::ResidentId));
        }

        #[test]
        fn a_wrong_check_character_is_not_an_id(
            body in body(),
            wrong in proptest::sample::select("0123456789X".chars().collect::<Vec<_>>()),
        ) {
            prop_assume!(wrong != check_char(&body));
            let text = format!("编号{body}{wrong}号");
            prop_assert_eq!(find(&text), None);
        }

        #[test]
        fn every_mobile_number_is_found(
            second in 3_u8..=9,
            rest in "[0-9]{9}",
            code in country_code(),
            separator in separator(),
            before in filler(),
        ) {
            let number = format!("1{second}{rest}");
            let grouped = grouped_3_4_4(&number, separator);
            let text = format!("{before}，电话{code}{grouped}。");
            prop_assert_eq!(find(&text), Some(PersonalNumber::MobilePhone), "{}", text);
            // One more digit in the same run makes it some other number.
            let longer = format!("{before}，编号{number}7。");
            prop_assert_eq!(find(&longer), None);
            let longer = format!("{before}，编号9{number}。");
            prop_assert_eq!(find(&longer), None);
        }

        #[test]
        fn no_mobile_number_starts_10_to_12(
            second in 0_u8..=2,
            rest in "[0-9]{9}",
            code in country_code(),
            separator in separator(),
        ) {
            let number = format!("1{second}{rest}");
            let grouped = grouped_3_4_4(&number, separator);
            let text = format!("电话{code}{grouped}。");
            prop_assert_eq!(find(&text), None, "{}", text);
        }

        #[test]
        fn every_resident_id_is_found_glued_or_split(
            body in body(),
            before in "[0-9]{0,12}",
            after in "[0-9]{0,12}",
            separator in separator(),
        ) {
            let id = format!("{body}{}", check_char(&body));
            let glued = format!("编号{before}{id}{after}号");
            prop_assert_eq!(find(&glued), Some(PersonalNumber::ResidentId), "{}", glued);
            let split = format!(
                "身份证{}{separator}{}{separator}{}",
                &id[..6],
                &id[6..14],
                &id[14..]
            );
            prop_assert_eq!(find(&split), Some(PersonalNumber::ResidentId), "{}", split);
        }

        #[test]
        fn a_long_run_is_an_id_only_where_a_window_is_one(digits in long_run()) {
            let text = format!("订单{digits}号");
            let expected = holds_id(&digits).then_some(PersonalNumber::ResidentId);
            prop_assert_eq!(find(&text), expected, "{}", text);
        }
    }
}
