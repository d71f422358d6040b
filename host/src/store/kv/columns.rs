//! The types a table's keys and values may have, and their byte encoding.
//!
//! The encoding of a key preserves its order: `encode(a) < encode(b)` (compared bytewise, as
//! PostgreSQL compares `bytea`) exactly when `a < b`. So a backend that keeps keys as bytes can
//! answer a range of keys with a range of bytes. The redb backend does not use the encoding (it
//! keeps its own typed tables, so files made before this layer open unchanged); a byte-keyed
//! backend does.
//!
//! - `u64`, `u32`: big-endian, fixed width.
//! - `&str`: its bytes with each 0x00 written as 0x00 0xFF, then 0x00 0x01. The terminator sorts
//!   below every byte a string may continue with (0x01.. and the escaped 0x00 0xFF), so a string
//!   sorts before the strings it is a prefix of, and a tuple's next component never decides an
//!   order its strings already decide.
//! - tuples: their components' encodings one after another.
//! - `()`: nothing. `&[u8]` (a value only, never a key): its bytes as they are.

use std::fmt::Debug;

/// A stored value that is not what its type's encoding says (a decoding of bytes another
/// backend wrote).
#[derive(Debug, thiserror::Error)]
#[error("a stored {0} is malformed")]
pub struct Malformed(pub &'static str);

/// A type a table's values (or, with [`Key`], keys) may have.
pub trait Column: redb::Value + 'static {
    /// What a read hands back: the value, owning its bytes.
    type Owned: Debug;

    /// The owned form of a value as redb lends it.
    fn to_owned(value: Self::SelfType<'_>) -> Self::Owned;

    /// Appends the value's encoding to `out`.
    fn encode(value: &Self::SelfType<'_>, out: &mut Vec<u8>);

    /// Reads one value from the front of `bytes`, leaving the rest.
    fn decode(bytes: &mut &[u8]) -> Result<Self::Owned, Malformed>;
}

/// A type a table's keys may have: its [`Column::encode`] preserves its order.
pub trait Key: Column + redb::Key {}

/// A key's order-preserving encoding.
pub fn encode_key<K: Key>(key: &K::SelfType<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    K::encode(key, &mut out);
    out
}

/// A key read back from its encoding; the whole of `bytes` must be the key.
pub fn decode_key<K: Key>(mut bytes: &[u8]) -> Result<K::Owned, Malformed> {
    let key = K::decode(&mut bytes)?;
    if bytes.is_empty() {
        Ok(key)
    } else {
        Err(Malformed("key (bytes after its end)"))
    }
}

/// The first `N` bytes of `bytes`, taken off it.
fn take<const N: usize>(bytes: &mut &[u8], what: &'static str) -> Result<[u8; N], Malformed> {
    let (head, rest) = bytes.split_first_chunk::<N>().ok_or(Malformed(what))?;
    *bytes = rest;
    Ok(*head)
}

impl Column for u64 {
    type Owned = u64;

    fn to_owned(value: u64) -> u64 {
        value
    }

    fn encode(value: &u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&value.to_be_bytes());
    }

    fn decode(bytes: &mut &[u8]) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(take(bytes, "u64")?))
    }
}
impl Key for u64 {}

impl Column for u32 {
    type Owned = u32;

    fn to_owned(value: u32) -> u32 {
        value
    }

    fn encode(value: &u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&value.to_be_bytes());
    }

    fn decode(bytes: &mut &[u8]) -> Result<u32, Malformed> {
        Ok(u32::from_be_bytes(take(bytes, "u32")?))
    }
}
impl Key for u32 {}

impl Column for () {
    type Owned = ();

    fn to_owned(_: ()) {}

    fn encode(_: &(), _: &mut Vec<u8>) {}

    fn decode(_: &mut &[u8]) -> Result<(), Malformed> {
        Ok(())
    }
}
impl Key for () {}

/// Escapes 0x00 as 0x00 0xFF; a string ends with 0x00 0x01.
const STRING_END: [u8; 2] = [0x00, 0x01];
const ESCAPED_ZERO: [u8; 2] = [0x00, 0xFF];

impl Column for &'static str {
    type Owned = String;

    fn to_owned(value: &str) -> String {
        value.to_string()
    }

    fn encode(value: &&str, out: &mut Vec<u8>) {
        for &byte in value.as_bytes() {
            if byte == 0 {
                out.extend_from_slice(&ESCAPED_ZERO);
            } else {
                out.push(byte);
            }
        }
        out.extend_from_slice(&STRING_END);
    }

    fn decode(bytes: &mut &[u8]) -> Result<String, Malformed> {
        let mut text = Vec::new();
        loop {
            match take::<1>(bytes, "string (no end)")? {
                [0] => match take::<1>(bytes, "string (no end)")? {
                    [0x01] => break,
                    [0xFF] => text.push(0),
                    _ => return Err(Malformed("string (a bare 0x00)")),
                },
                [byte] => text.push(byte),
            }
        }
        String::from_utf8(text).map_err(|_| Malformed("string (not UTF-8)"))
    }
}
impl Key for &'static str {}

impl Column for &'static [u8] {
    type Owned = Vec<u8>;

    fn to_owned(value: &[u8]) -> Vec<u8> {
        value.to_vec()
    }

    fn encode(value: &&[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(value);
    }

    /// The rest of `bytes`: a byte string is only ever a whole value.
    fn decode(bytes: &mut &[u8]) -> Result<Vec<u8>, Malformed> {
        Ok(std::mem::take(bytes).to_vec())
    }
}

macro_rules! tuple_columns {
    ($($name:ident $index:tt),+) => {
        impl<$($name: Key),+> Column for ($($name,)+) {
            type Owned = ($($name::Owned,)+);

            fn to_owned(value: Self::SelfType<'_>) -> Self::Owned {
                ($($name::to_owned(value.$index),)+)
            }

            fn encode(value: &Self::SelfType<'_>, out: &mut Vec<u8>) {
                $($name::encode(&value.$index, out);)+
            }

            fn decode(bytes: &mut &[u8]) -> Result<Self::Owned, Malformed> {
                Ok(($($name::decode(bytes)?,)+))
            }
        }
        impl<$($name: Key),+> Key for ($($name,)+) {}
    };
}
tuple_columns!(A 0, B 1);
tuple_columns!(A 0, B 1, C 2);
tuple_columns!(A 0, B 1, C 2, D 3);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string of up to three characters over an alphabet with the characters an
    /// encoding could get wrong: 0x00 (escaped), 0x01 (the terminator's second byte), and a
    /// multi-byte character whose bytes are above every ASCII byte.
    fn strings() -> Vec<String> {
        let alphabet = ["\0", "\u{1}", "a", "b", "\u{ff}"];
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..3 {
            last = last
                .iter()
                .flat_map(|prefix| alphabet.iter().map(move |c| format!("{prefix}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    /// Checks that the encodings of `values` order as the values do (and as redb orders
    /// them, the order the store relies on), and decode back to them.
    fn check_order<K: Key>(values: &[K::SelfType<'_>])
    where
        K::Owned: Ord,
    {
        let encoded: Vec<(Vec<u8>, Vec<u8>, K::Owned)> = values
            .iter()
            .map(|value| {
                let redb_bytes = K::as_bytes(value).as_ref().to_vec();
                let owned = K::to_owned(K::from_bytes(&redb_bytes));
                (encode_key::<K>(value), redb_bytes, owned)
            })
            .collect();
        for (bytes, _, owned) in &encoded {
            assert_eq!(&decode_key::<K>(bytes).unwrap(), owned);
        }
        for (a_bytes, a_redb, a) in &encoded {
            for (b_bytes, b_redb, b) in &encoded {
                let order = a_bytes.cmp(b_bytes);
                assert_eq!(
                    order,
                    a.cmp(b),
                    "{a:?} against {b:?}: {a_bytes:?}, {b_bytes:?}"
                );
                assert_eq!(
                    order,
                    K::compare(a_redb, b_redb),
                    "{a:?} against {b:?} in redb"
                );
            }
        }
    }

    #[test]
    fn strings_order_as_their_encodings_prefixes_and_zero_bytes_included() {
        let strings = strings();
        let values: Vec<&str> = strings.iter().map(String::as_str).collect();
        check_order::<&str>(&values);
    }

    #[test]
    fn numbers_order_as_their_encodings() {
        let numbers = [0, 1, 255, 256, 65_535, 1 << 32, u64::MAX - 1, u64::MAX];
        check_order::<u64>(&numbers);
        let small: Vec<u32> = [0, 1, 255, 256, u32::MAX].to_vec();
        check_order::<u32>(&small);
    }

    #[test]
    fn tuples_order_component_by_component_whatever_their_strings() {
        let strings = strings();
        let numbers = [0u64, 1, 256, u64::MAX];
        let pairs: Vec<(&str, u64)> = strings
            .iter()
            .flat_map(|text| numbers.iter().map(move |&n| (text.as_str(), n)))
            .collect();
        check_order::<(&str, u64)>(&pairs);
        let flipped: Vec<(u64, &str)> = pairs.iter().map(|&(text, n)| (n, text)).collect();
        check_order::<(u64, &str)>(&flipped);
        let short: Vec<&str> = strings.iter().take(31).map(String::as_str).collect();
        let two_strings: Vec<(&str, &str)> = short
            .iter()
            .flat_map(|&a| short.iter().map(move |&b| (a, b)))
            .collect();
        check_order::<(&str, &str)>(&two_strings);
        let quads: Vec<(u64, u64, &str, u32)> = numbers
            .iter()
            .flat_map(|&a| {
                let short = &short;
                numbers.iter().flat_map(move |&b| {
                    short
                        .iter()
                        .take(7)
                        .flat_map(move |&c| [0u32, 7, u32::MAX].map(|d| (a, b, c, d)))
                })
            })
            .collect();
        check_order::<(u64, u64, &str, u32)>(&quads);
    }

    #[test]
    fn malformed_bytes_are_refused_not_misread() {
        assert!(decode_key::<u64>(&[1, 2, 3]).is_err());
        assert!(decode_key::<&str>(b"abc").is_err(), "no terminator");
        assert!(decode_key::<&str>(&[b'a', 0, 7]).is_err(), "a bare zero");
        assert!(decode_key::<&str>(&[0xC3, 0, 1]).is_err(), "not UTF-8");
        let mut bytes = encode_key::<u64>(&7);
        bytes.push(0);
        assert!(decode_key::<u64>(&bytes).is_err(), "bytes after the key");
        assert_eq!(
            decode_key::<(u64, &str)>(&encode_key::<(u64, &str)>(&(9, "a\0b"))).unwrap(),
            (9, "a\0b".to_string())
        );
    }
}
