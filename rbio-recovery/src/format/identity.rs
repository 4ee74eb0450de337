//! Keys and identities: the object-key encoder writers use, and the identity each namespace derives.
//!
//! A slot header stores a 64-bit identity, not the key. Validation derives the identity from a
//! checkpoint entry's key and compares. The `object` namespace hashes the whole encoded key; the
//! `legacy` namespace takes the chunk hash out of the key.

use std::fmt;

use blake2::digest::consts::U8;
use blake2::{Blake2b, Digest};

/// How a key's identity is derived (spec: "Keys and identities").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyNamespace {
    /// Keys from [`ObjectKey`]; identity = BLAKE2b-8 of the key (LMCache's default).
    #[default]
    Object,
    /// Keys `model@world_size@worker_id@<chunk hash hex>@<dtype>[@...]`; identity = chunk hash.
    Legacy,
}

impl KeyNamespace {
    /// The identity a slot header holds for `key`.
    ///
    /// # Errors
    ///
    /// Only in the legacy namespace: an [`IdentityError`] when the key has no chunk hash field
    /// or it is not hexadecimal (validation then counts the entry as stale).
    pub fn identity(self, key: &str) -> Result<u64, IdentityError> {
        match self {
            KeyNamespace::Object => Ok(object_identity(key)),
            KeyNamespace::Legacy => legacy_identity(key),
        }
    }

    /// The namespace's name in LMCache's configuration: `object` or `legacy`.
    pub fn name(self) -> &'static str {
        match self {
            KeyNamespace::Object => "object",
            KeyNamespace::Legacy => "legacy",
        }
    }
}

impl fmt::Display for KeyNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Object-namespace identity: BLAKE2b with its output-length parameter set to 8 bytes over the
/// UTF-8 key, read as little-endian `u64`.
///
/// `Blake2b<U8>` sets the parameter block's digest length to 8, exactly as
/// `Blake2bVar::new(8)` and Python's `blake2b(digest_size=8)` do; that is not a truncated
/// 64-byte digest, and the spec's test vectors tell the two apart.
pub fn object_identity(key: &str) -> u64 {
    let digest: [u8; 8] = Blake2b::<U8>::digest(key.as_bytes()).into();
    u64::from_le_bytes(digest)
}

/// Legacy-namespace identity: the fourth `@`-separated field read as Python's `int(field, 16)`
/// and masked to 64 bits.
///
/// Accepted, as Python does: surrounding whitespace, a `+` or `-` sign (a negative value is
/// masked as its two's complement), a `0x` prefix, single `_` between digits, and any number of
/// digits (only the low 64 bits are kept). Unlike Python, only ASCII digits are accepted, and
/// the other fields (world size, worker id, dtype, tags) are not checked.
///
/// # Errors
///
/// [`IdentityError`] when the key has fewer than 5 fields or the chunk hash is not hexadecimal.
pub fn legacy_identity(key: &str) -> Result<u64, IdentityError> {
    const LEGACY_FIELD_COUNT_MIN: usize = 5;
    const CHUNK_HASH_FIELD_INDEX: usize = 3;
    let field_count = key.split('@').count();
    if field_count < LEGACY_FIELD_COUNT_MIN {
        return Err(IdentityError::LegacyTooFewFields { field_count });
    }
    let chunk_hash = key
        .split('@')
        .nth(CHUNK_HASH_FIELD_INDEX)
        .unwrap_or_default();
    parse_python_hex(chunk_hash).ok_or_else(|| IdentityError::LegacyChunkHashNotHex {
        chunk_hash: chunk_hash.to_owned(),
    })
}

/// Python's `int(text, 16) & (2**64 - 1)` for ASCII digits, or `None` where Python raises.
fn parse_python_hex(text: &str) -> Option<u64> {
    let text = text.trim();
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // After a `0x` prefix Python allows one underscore before the first digit.
    let digits = match unsigned.get(..2) {
        Some("0x" | "0X") => unsigned[2..].strip_prefix('_').unwrap_or(&unsigned[2..]),
        _ => unsigned,
    };
    let mut value: u64 = 0;
    let mut previous_was_digit = false;
    for byte in digits.bytes() {
        if byte == b'_' && previous_was_digit {
            previous_was_digit = false;
            continue;
        }
        let digit = char::from(byte).to_digit(16)?;
        // Shifting drops the high bits: what is left is the value modulo 2^64.
        value = (value << 4) | u64::from(digit);
        previous_was_digit = true;
    }
    if !previous_was_digit {
        return None; // empty, or ends in `_`
    }
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

/// The fields of an object-namespace key, as LMCache's `ObjectKey` holds them.
///
/// Its `Display` (and so `to_string`) is the encoded key:
/// `quote(model_name, safe="")@{kv_rank:#010x}@{object_group_id:x}@{chunk_hash hex}[@salt]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey<'a> {
    /// Model name; percent-encoded in the key.
    pub model_name: &'a str,
    /// KV rank; written as `0x` and 8 lowercase hex digits.
    pub kv_rank: u32,
    /// Object group; written as lowercase hex without prefix.
    pub object_group_id: u64,
    /// Chunk hash bytes; written as lowercase hex.
    pub chunk_hash: &'a [u8],
    /// Cache salt, appended raw after `@`; `None` or empty adds nothing (Python's `if salt:`).
    pub cache_salt: Option<&'a str>,
}

impl ObjectKey<'_> {
    /// The encoded key string.
    pub fn encode(&self) -> String {
        self.to_string()
    }

    /// The encoded key's identity: [`object_identity`] of [`ObjectKey::encode`].
    pub fn identity(&self) -> u64 {
        object_identity(&self.encode())
    }
}

impl fmt::Display for ObjectKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_quoted(f, self.model_name)?;
        write!(f, "@{:#010x}@{:x}@", self.kv_rank, self.object_group_id)?;
        for byte in self.chunk_hash {
            write!(f, "{byte:02x}")?;
        }
        match self.cache_salt {
            Some(salt) if !salt.is_empty() => write!(f, "@{salt}"),
            _ => Ok(()),
        }
    }
}

/// Python's `urllib.parse.quote(text, safe="")`: `A-Za-z0-9_.-~` stay, every other UTF-8 byte
/// becomes `%XX` in uppercase hex.
fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-' | b'~') {
            f.write_str(char::from(byte).encode_utf8(&mut [0; 4]))?;
        } else {
            write!(f, "%{byte:02X}")?;
        }
    }
    Ok(())
}

/// Why a key's identity cannot be derived; validation counts such an entry as stale.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// A legacy key with fewer than the 5 `@`-separated fields it needs.
    LegacyTooFewFields {
        /// Fields found.
        field_count: usize,
    },
    /// A legacy key whose chunk hash field is not a hexadecimal integer.
    LegacyChunkHashNotHex {
        /// The fourth field, as found.
        chunk_hash: String,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::LegacyTooFewFields { field_count } => write!(
                f,
                "legacy key has {field_count} '@'-separated fields, needs at least 5"
            ),
            IdentityError::LegacyChunkHashNotHex { chunk_hash } => write!(
                f,
                "legacy key chunk hash \"{}\" is not hexadecimal",
                chunk_hash.escape_debug()
            ),
        }
    }
}

impl std::error::Error for IdentityError {}

#[cfg(test)]
mod tests {
    use super::*;

    const BENCH_KEY: &str = "raw-block-bringup-bench@0x00000000@0@00000000000000000000000000000000";
    const RAG_KEY: &str =
        "meta-llama%2FLlama-3.1-8B@0x00000001@2a@000102030405060708090a0b0c0d0e0f@rag:app1";

    #[test]
    fn spec_test_vectors() {
        assert_eq!(object_identity(BENCH_KEY), 0x5dee_3588_eb85_f2bf);
        assert_eq!(object_identity(RAG_KEY), 0x1b22_aad9_b4be_42d8);
        assert_eq!(object_identity(""), 0xb4b2_7974_57a0_a6e4);
    }

    #[test]
    fn fixture_identity() {
        let key = "Qwen%2FQwen3-8B@0x00000001@0@b93c978427ba99e0f89eb89b73c4a4b9e1c4c3ee8fe9070b2a26ad3b138bb4c7";
        assert_eq!(
            KeyNamespace::Object.identity(key),
            Ok(3_102_607_904_847_366_319)
        );
    }

    #[test]
    fn object_key_encodes_spec_vectors() {
        let hash: Vec<u8> = (0..16).collect();
        let rag = ObjectKey {
            model_name: "meta-llama/Llama-3.1-8B",
            kv_rank: 1,
            object_group_id: 0x2a,
            chunk_hash: &hash,
            cache_salt: Some("rag:app1"),
        };
        assert_eq!(rag.encode(), RAG_KEY);
        assert_eq!(rag.identity(), 0x1b22_aad9_b4be_42d8);
        let bench = ObjectKey {
            model_name: "raw-block-bringup-bench",
            kv_rank: 0,
            object_group_id: 0,
            chunk_hash: &[0; 16],
            cache_salt: None,
        };
        assert_eq!(bench.encode(), BENCH_KEY);
        assert_eq!(
            ObjectKey {
                cache_salt: Some(""),
                ..bench
            }
            .encode(),
            BENCH_KEY
        );
    }

    #[test]
    #[rustfmt::skip]
    fn object_key_quotes_like_python() {
        let key = |model_name, kv_rank, object_group_id| {
            ObjectKey { model_name, kv_rank, object_group_id, chunk_hash: &[0xAB], cache_salt: None }.encode()
        };
        assert_eq!(key("A-Za-z0-9_.~", 0, 0), "A-Za-z0-9_.~@0x00000000@0@ab");
        assert_eq!(key("a b/c@d%e+f", 0, 0), "a%20b%2Fc%40d%25e%2Bf@0x00000000@0@ab");
        assert_eq!(key("modèle", 0, 0), "mod%C3%A8le@0x00000000@0@ab");
        assert_eq!(key("😀", 0, 0), "%F0%9F%98%80@0x00000000@0@ab");
        assert_eq!(key("", u32::MAX, u64::MAX), "@0xffffffff@ffffffffffffffff@ab");
        assert_eq!(key("m", 0xABCDEF, 0xABC), "m@0x00abcdef@abc@ab");
    }

    fn check_legacy(key: &str, expected: Result<u64, &str>) {
        let actual = KeyNamespace::Legacy
            .identity(key)
            .map_err(|e| e.to_string());
        assert_eq!(actual, expected.map_err(str::to_owned), "{key:?}");
    }

    #[test]
    #[rustfmt::skip]
    fn legacy_identity_cases() {
        check_legacy("m@1@0@1a@bfloat16", Ok(0x1a));
        check_legacy("m@1@0@1A@bfloat16@3@tag%v", Ok(0x1a));
        check_legacy("m@1@0@-1a@half", Ok(0x1au64.wrapping_neg()));
        check_legacy("m@1@0@-1@half", Ok(u64::MAX));
        check_legacy("m@1@0@+ff@half", Ok(0xff));
        check_legacy("m@1@0@0x_ff@half", Ok(0xff));
        check_legacy("m@1@0@-0XfF@half", Ok(0xffu64.wrapping_neg()));
        check_legacy("m@1@0@f_f@half", Ok(0xff));
        check_legacy("m@1@0@ 7 @half", Ok(7));
        check_legacy("m@1@0@ffffffffffffffff@half", Ok(u64::MAX));
        check_legacy("m@1@0@123456789abcdef0123456789abcdef0@half", Ok(0x1234_5678_9abc_def0));
        check_legacy("m@1@0@-10000000000000000@half", Ok(0));
        check_legacy("m@1@0@-10000000000000001@half", Ok(u64::MAX));
        check_legacy("m@1@0@0@half", Ok(0));
        check_legacy("m@1@0@1a", Err("legacy key has 4 '@'-separated fields, needs at least 5"));
        check_legacy("", Err("legacy key has 1 '@'-separated fields, needs at least 5"));
        check_legacy("m@1@0@@half", Err("legacy key chunk hash \"\" is not hexadecimal"));
        check_legacy("m@1@0@xyz@half", Err("legacy key chunk hash \"xyz\" is not hexadecimal"));
        check_legacy("m@1@0@0x@half", Err("legacy key chunk hash \"0x\" is not hexadecimal"));
        check_legacy("m@1@0@f__f@half", Err("legacy key chunk hash \"f__f\" is not hexadecimal"));
        check_legacy("m@1@0@_f@half", Err("legacy key chunk hash \"_f\" is not hexadecimal"));
        check_legacy("m@1@0@f_@half", Err("legacy key chunk hash \"f_\" is not hexadecimal"));
        check_legacy("m@1@0@--1@half", Err("legacy key chunk hash \"--1\" is not hexadecimal"));
        check_legacy("m@1@0@é@half", Err("legacy key chunk hash \"é\" is not hexadecimal"));
    }

    #[test]
    fn object_namespace_never_fails() {
        for key in ["", "@", "m@1@0@xyz@half", "\u{0}"] {
            assert!(KeyNamespace::Object.identity(key).is_ok());
        }
        assert_eq!(KeyNamespace::default().to_string(), "object");
        assert_eq!(KeyNamespace::Legacy.to_string(), "legacy");
    }
}
