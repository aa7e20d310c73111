//! `NUMERIC` as its exact decimal text.

use bytes::BytesMut;
use postgres_types::{FromSql, IsNull, ToSql, Type};

use super::CodecError;

// NUMERIC: converted to and from its exact decimal text here rather than through
// rust_decimal's `Decimal` (its `db-postgres` impls). `Decimal` holds at most 28 digits
// and no `NaN`/`Infinity`; worse, past 28 fractional digits its `FromSql` rounds instead
// of failing (0.1234567890123456789012345678901234 reads as
// 0.1234567890123456789012345679, and a `numeric(40,30)` zero loses two of its zeros),
// so it cannot even tell when to hand over to this code. Its parser also takes `1_000`
// and `1e5`, which are refused here. Every value would need this code anyway, so it is
// the only path.

/// `NUMERIC` in binary format (base-10000 digits) as a decimal string.
pub(super) fn numeric_to_string(mut buf: &[u8]) -> Result<String, CodecError> {
    use std::fmt::Write as _;
    let mut read_u16 = || -> Result<u16, CodecError> {
        let (head, tail) = buf.split_at_checked(2).ok_or("truncated numeric")?;
        buf = tail;
        Ok(u16::from_be_bytes([head[0], head[1]]))
    };
    let ndigits = read_u16()?;
    let weight = read_u16()? as i16;
    let sign = read_u16()?;
    let dscale = read_u16()?;
    let digits = (0..ndigits)
        .map(|_| read_u16())
        .collect::<Result<Vec<u16>, _>>()?;
    match sign {
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        0x0000 | 0x4000 => {}
        _ => return Err("invalid numeric sign".into()),
    }
    let digit = |index: i32| -> u16 {
        usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    let weight = i32::from(weight);
    if weight < 0 {
        out.push('0');
    } else {
        for index in 0..=weight {
            if index == 0 {
                write!(out, "{}", digit(index))?;
            } else {
                write!(out, "{:04}", digit(index))?;
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut index = weight + 1;
        while fraction.len() < usize::from(dscale) {
            write!(fraction, "{:04}", digit(index))?;
            index += 1;
        }
        fraction.truncate(usize::from(dscale));
        out.push('.');
        out.push_str(&fraction);
    }
    Ok(out)
}

/// A decimal string (`-12.340`, `NaN`, `Infinity`) in `NUMERIC` binary format.
pub(super) fn numeric_to_sql(text: &str, out: &mut BytesMut) -> Result<(), String> {
    let bad = || format!("{text:?} is not a decimal number");
    let trimmed = text.trim();
    let special = match trimmed.to_ascii_lowercase().as_str() {
        "nan" => Some(0xC000u16),
        "infinity" | "+infinity" | "inf" => Some(0xD000),
        "-infinity" | "-inf" => Some(0xF000),
        _ => None,
    };
    if let Some(sign) = special {
        for word in [0u16, 0, sign, 0] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        return Ok(());
    }
    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || frac_part.len() > 0x3FFF
        || int_part.len() > 131_072
    {
        return Err(bad());
    }
    let int_part = int_part.trim_start_matches('0');
    let dscale = frac_part.len() as u16;
    // Align both parts on base-10000 groups around the decimal point.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let int_digits: String = "0".repeat(int_pad) + int_part;
    let frac_digits: String = frac_part.to_owned() + &"0".repeat(frac_pad);
    let group = |chunk: &[u8]| -> u16 {
        chunk
            .iter()
            .fold(0u16, |acc, digit| acc * 10 + u16::from(digit - b'0'))
    };
    let mut groups: Vec<u16> = int_digits
        .as_bytes()
        .chunks(4)
        .chain(frac_digits.as_bytes().chunks(4))
        .map(group)
        .collect();
    let mut weight = (int_digits.len() / 4) as i32 - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= leading as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let ndigits = u16::try_from(groups.len()).map_err(|_| bad())?;
    let weight = i16::try_from(weight).map_err(|_| bad())?;
    let sign: u16 = if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    };
    for word in [ndigits, weight as u16, sign, dscale] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(())
}

/// A `numeric` as its decimal text, so postgres-types' array impls can carry it.
#[derive(Debug)]
pub(super) struct Numeric<S>(pub(super) S);

impl<'a> FromSql<'a> for Numeric<String> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, CodecError> {
        numeric_to_string(raw).map(Numeric)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

impl<S: AsRef<str> + std::fmt::Debug> ToSql for Numeric<S> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, CodecError> {
        numeric_to_sql(self.0.as_ref(), out)?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    postgres_types::to_sql_checked!();
}
