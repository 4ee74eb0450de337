//! Why a checkpoint payload, or one of its entries, is not used: parse errors and apply rules.

use std::fmt;

use super::layout::SlotOffsetError;

/// The type of a JSON value, for messages about a value of the wrong type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JsonKind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Null => "null",
            JsonKind::Bool => "a boolean",
            JsonKind::Number => "a number",
            JsonKind::String => "a string",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        })
    }
}

/// Why a field that must be a non-negative 64-bit integer is not one.
///
/// Displays as what the value is ("negative"), to follow "{field} is".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IntegerProblem {
    /// The field is absent.
    Missing,
    /// The value is not a number.
    WrongType {
        /// What it is instead.
        found: JsonKind,
    },
    /// The number is below zero.
    Negative,
    /// The number has a fraction or an exponent (LMCache writes plain integers only).
    NotAnInteger,
    /// The integer does not fit in 64 bits.
    TooLarge,
}

impl fmt::Display for IntegerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntegerProblem::Missing => write!(f, "missing"),
            IntegerProblem::WrongType { found } => write!(f, "{found}, not an integer"),
            IntegerProblem::Negative => write!(f, "negative"),
            IntegerProblem::NotAnInteger => write!(f, "a floating-point number, not an integer"),
            IntegerProblem::TooLarge => write!(f, "larger than 2^64 - 1"),
        }
    }
}

/// Why a checkpoint payload cannot be read at all (the whole checkpoint is then ignored).
#[derive(Debug)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The payload is not UTF-8 (LMCache decodes it strictly too).
    NotUtf8(std::str::Utf8Error),
    /// The payload is not JSON.
    Json(serde_json::Error),
    /// The payload is JSON but not an object.
    NotAnObject {
        /// What it is instead.
        found: JsonKind,
    },
    /// A top-level field has the wrong type.
    FieldType {
        /// The field's name.
        field: &'static str,
        /// The type it must have.
        expected: JsonKind,
        /// The type it has.
        found: JsonKind,
    },
    /// A top-level integer field is missing (`version` only) or not a 64-bit integer.
    FieldInteger {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        problem: IntegerProblem,
    },
    /// `version` is not 1, so the meaning of the rest is unknown.
    UnsupportedVersion {
        /// The version found.
        version: u64,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::NotUtf8(error) => write!(
                f,
                "checkpoint payload is not UTF-8 after byte {}",
                error.valid_up_to()
            ),
            CheckpointError::Json(error) => write!(
                f,
                "checkpoint payload is not JSON at line {} column {}",
                error.line(),
                error.column()
            ),
            CheckpointError::NotAnObject { found } => {
                write!(f, "checkpoint payload is {found}, not an object")
            }
            CheckpointError::FieldType {
                field,
                expected,
                found,
            } => {
                write!(f, "{field} is {found}, expected {expected}")
            }
            CheckpointError::FieldInteger { field, problem } => write!(f, "{field} is {problem}"),
            CheckpointError::UnsupportedVersion { version } => {
                write!(f, "checkpoint version {version}, only version 1 is known")
            }
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::NotUtf8(error) => Some(error),
            CheckpointError::Json(error) => Some(error),
            _ => None,
        }
    }
}

/// Why an entry's fields could not be read from the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryProblem {
    /// The entry's value is not a JSON object.
    NotAnObject {
        /// What it is instead.
        found: JsonKind,
    },
    /// The key has a lone UTF-16 surrogate escape; `key` holds it with U+FFFD in its place.
    KeyNotUnicode,
    /// `"offset"` is missing or not a non-negative 64-bit integer.
    Offset(IntegerProblem),
    /// `"size"` is missing or not a non-negative 64-bit integer.
    Size(IntegerProblem),
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryProblem::NotAnObject { found } => write!(f, "entry is {found}, not an object"),
            EntryProblem::KeyNotUnicode => write!(f, "key has a lone surrogate escape"),
            EntryProblem::Offset(problem) => write!(f, "offset is {problem}"),
            EntryProblem::Size(problem) => write!(f, "size is {problem}"),
        }
    }
}

impl std::error::Error for EntryProblem {}

/// Why an entry is skipped at apply (spec: "Per entry").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryRejection {
    /// The entry's fields could not be read.
    Malformed(EntryProblem),
    /// The offset names no slot.
    Offset(SlotOffsetError),
    /// The size is 0.
    SizeZero,
    /// The size exceeds `slot_bytes - header_bytes`.
    SizeTooLarge {
        /// Size in the entry.
        size_bytes: u64,
        /// What a slot holds after its header.
        payload_capacity_bytes: u64,
    },
}

impl fmt::Display for EntryRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryRejection::Malformed(problem) => write!(f, "malformed entry: {problem}"),
            EntryRejection::Offset(error) => write!(f, "{error}"),
            EntryRejection::SizeZero => write!(f, "size is 0"),
            EntryRejection::SizeTooLarge {
                size_bytes,
                payload_capacity_bytes,
            } => write!(
                f,
                "size {size_bytes} exceeds the slot payload capacity {payload_capacity_bytes}"
            ),
        }
    }
}

impl std::error::Error for EntryRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EntryRejection::Malformed(problem) => Some(problem),
            EntryRejection::Offset(error) => Some(error),
            _ => None,
        }
    }
}

/// Why a whole checkpoint is ignored at apply (spec: "Apply rules").
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplyRejection {
    /// The recorded `device_path` is non-empty and differs from the configured one.
    DevicePathMismatch {
        /// Path in the checkpoint.
        checkpoint: String,
        /// Path configured (empty when none was given).
        configured: String,
    },
    /// A recorded layout field differs from the configuration.
    LayoutMismatch {
        /// The field's name in the payload.
        field: &'static str,
        /// Value in the checkpoint.
        checkpoint: u64,
        /// Value configured.
        configured: u64,
    },
    /// The recorded `meta_magic` differs from the configuration.
    MetaMagicMismatch {
        /// Text in the checkpoint.
        checkpoint: String,
        /// Magic configured.
        configured: [u8; 8],
    },
    /// `next_slot` exceeds `max_slots`.
    NextSlotOutOfRange {
        /// Value in the checkpoint.
        next_slot: u64,
        /// Slots on the device as configured.
        max_slots: u64,
    },
}

impl fmt::Display for ApplyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyRejection::DevicePathMismatch {
                checkpoint,
                configured,
            } => write!(
                f,
                "device_path \"{}\" in checkpoint, \"{}\" configured",
                checkpoint.escape_debug(),
                configured.escape_debug()
            ),
            ApplyRejection::LayoutMismatch {
                field,
                checkpoint,
                configured,
            } => {
                write!(
                    f,
                    "{field} {checkpoint} in checkpoint, {configured} configured"
                )
            }
            ApplyRejection::MetaMagicMismatch {
                checkpoint,
                configured,
            } => write!(
                f,
                "meta_magic \"{}\" in checkpoint, \"{}\" configured",
                checkpoint.escape_debug(),
                configured.escape_ascii()
            ),
            ApplyRejection::NextSlotOutOfRange {
                next_slot,
                max_slots,
            } => write!(
                f,
                "next_slot {next_slot} in checkpoint exceeds max_slots {max_slots}"
            ),
        }
    }
}

impl std::error::Error for ApplyRejection {}
