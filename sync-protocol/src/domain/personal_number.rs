//! [`PersonalNumber`]: a resident's mobile phone number or identity card number, found in free
//! text.
//!
//! Only household documents may hold residents' personal data, and only in their designated
//! fields. In every other kind, free text (what was heard on a visit, a request's description, a
//! note) is searched for the two numbers that identify a resident on their own:
//!
//! - a mainland mobile phone number: 11 digits starting `13` to `19`;
//! - a resident identity card number: 18 characters, 17 digits and a check character (`0`-`9`
//!   or `X`) that is right under ISO 7064 MOD 11-2, with a real birth date (`YYYYMMDD`, years
//!   1900 to 2100) at characters 7 to 14. Requiring both keeps order numbers and the like from
//!   being taken for one: a random 18-digit number passes both one time in about 300.
//!
//! Digits are read as *runs*: maximal sequences of digits, ASCII or fullwidth (`０`-`９`). People
//! write numbers in groups (`138 0013 8000`, `138-0013-8000`, `370802 19900101 123X`), so runs
//! separated by one to three separator characters (spaces, hyphens, dots and their fullwidth
//! forms) form a *chain*, and a number is found when whole consecutive runs of a chain spell it
//! (`+86 138 0013 8000` holds one). A number is never found inside a longer run: `138001380001`
//! (12 digits) is not a phone number.
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
        ' ' | '-'
            | '.'
            | '\u{a0}' // no-break space
            | '\u{2010}'
            ..='\u{2013}' // hyphen, non-breaking hyphen, figure dash, en dash
            | '\u{3000}' // ideographic space
            | '－'
            | '．'
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
                // A digit right after a check character stays in its run, which then spells
                // no number (see `in_chain`).
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

    /// A number spelled by whole consecutive runs of `chain`.
    fn in_chain(chain: &[Vec<u8>]) -> Option<PersonalNumber> {
        for start in 0..chain.len() {
            let mut digits: Vec<u8> = Vec::with_capacity(18);
            for run in &chain[start..] {
                // A check character ends a number: neither the runs before the last nor the
                // last before its end may carry one.
                let x_inside = run.iter().rev().skip(1).any(|d| *d == X);
                if x_inside || digits.last() == Some(&X) {
                    break;
                }
                digits.extend_from_slice(run);
                match digits.len() {
                    11 if is_mobile(&digits) => return Some(PersonalNumber::MobilePhone),
                    18 if is_resident_id(&digits) => return Some(PersonalNumber::ResidentId),
                    len if len > 18 => break,
                    _ => {}
                }
            }
        }
        None
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
            "138/0013/8000",          // a slash is not a separator
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
        // A wrong check character, an impossible date, or one character too many.
        assert_eq!(find("110105194912310021"), None);
        assert_eq!(find("11010519491331002X"), None);
        assert_eq!(find("11010519491231002X7"), None);
        assert_eq!(
            find("11010519491231002XX"),
            Some(PersonalNumber::ResidentId)
        );
        assert_eq!(find("911010519491231002X"), None);
        // An X only ends a number.
        assert_eq!(find("1101051949123100X2"), None);
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
            separator in proptest::sample::select(vec!["", " ", "-", "\u{3000}"]),
            before in filler(),
        ) {
            let number = format!("1{second}{rest}");
            let grouped = format!(
                "{}{separator}{}{separator}{}",
                &number[..3],
                &number[3..7],
                &number[7..]
            );
            let text = format!("{before}，电话{grouped}。");
            prop_assert_eq!(find(&text), Some(PersonalNumber::MobilePhone));
            // One more digit in the same run makes it some other number.
            let longer = format!("{before}，编号{number}7。");
            prop_assert_eq!(find(&longer), None);
        }
    }
}
