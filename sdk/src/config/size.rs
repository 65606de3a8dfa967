//! Disk sizes (`disk_size`): `"10240"` (MiB), `"10G"`, `"10GiB"`, `"512M"`, `"1T"` → bytes.

use std::fmt;

use serde_json::Value;

use super::value::{describe, ConfigValue, Shape};
use crate::hcl::CtyType;

/// A disk size, parsed from Packer's `disk_size` syntax and kept in bytes.
///
/// Accepted: a whole number with an optional unit, case-insensitive: `B`, `K`/`KB`/`KiB`,
/// `M`/`MB`/`MiB`, `G`/`GB`/`GiB`, `T`/`TB`/`TiB`, `P`/`PB`/`PiB`. Units are binary (1K = 1024),
/// like `qemu-img`'s. A bare number means **mebibytes** (Packer's rule: `"10240"` = 10 GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size {
    bytes: u64,
}

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not `<digits>[unit]`.
    #[error("invalid size {0:?}; write a whole number with an optional unit, e.g. \"10240\" (MiB), \"512M\", \"20G\" or \"1T\"")]
    Invalid(String),
    /// Unknown unit.
    #[error("unknown unit {unit:?} in size {input:?}; use B, K, M, G, T or P (optionally followed by B or iB)")]
    UnknownUnit {
        /// The unit found.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// Does not fit in 64 bits.
    #[error("size {0:?} is too large")]
    Overflow(String),
}

impl Size {
    /// A size of `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Size { bytes }
    }
    /// A size of `mib` mebibytes.
    pub const fn from_mib(mib: u64) -> Self {
        Size { bytes: mib.saturating_mul(1 << 20) }
    }
    /// The size in bytes.
    pub const fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Whether the size is zero (Packer treats `"0"` as "use the default").
    pub const fn is_zero(&self) -> bool {
        self.bytes == 0
    }
    /// The size rounded down to whole mebibytes.
    pub const fn mib(&self) -> u64 {
        self.bytes >> 20
    }

    /// Parses a size string (see the type's documentation).
    pub fn parse(input: &str) -> Result<Size, SizeError> {
        let s = input.trim();
        let digits = s.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(SizeError::Invalid(input.to_string()));
        }
        let number: u64 = s[..digits].parse().map_err(|_| SizeError::Overflow(input.to_string()))?;
        let unit = s[digits..].trim_start();
        let shift = match unit.to_ascii_lowercase().as_str() {
            "" => 20,
            "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            "p" | "pb" | "pib" => 50,
            _ if unit.starts_with('.') || unit.starts_with(',') => return Err(SizeError::Invalid(input.to_string())),
            _ => return Err(SizeError::UnknownUnit { unit: unit.to_string(), input: input.to_string() }),
        };
        let bytes = number.checked_mul(1u64 << shift).ok_or_else(|| SizeError::Overflow(input.to_string()))?;
        Ok(Size { bytes })
    }
}

impl std::str::FromStr for Size {
    type Err = SizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Size::parse(s)
    }
}

impl fmt::Display for Size {
    /// The largest binary unit that divides the size exactly, in `qemu-img` syntax: `"40960M"` is
    /// shown as `"40G"`, `1536` bytes as `"1536"`… (the bytes count with no unit when nothing fits).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bytes == 0 {
            return f.write_str("0");
        }
        for (shift, unit) in [(50, "P"), (40, "T"), (30, "G"), (20, "M"), (10, "K")] {
            if self.bytes.trailing_zeros() >= shift {
                return write!(f, "{}{unit}", self.bytes >> shift);
            }
        }
        write!(f, "{}", self.bytes)
    }
}

impl ConfigValue for Size {
    fn shape() -> Shape {
        Shape::Attr(CtyType::String)
    }
    fn type_label() -> String {
        "size".to_string()
    }
    fn expected() -> String {
        "a size such as \"10240\" (MiB), \"512M\" or \"20G\"".to_string()
    }
    fn decode(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Size::parse(s).map_err(|e| e.to_string()),
            Value::Number(n) => match n.as_u64() {
                Some(mib) => Size::parse(&mib.to_string()).map_err(|e| e.to_string()),
                None => match n.as_f64() {
                    Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 1e15 => {
                        Size::parse(&(f as u64).to_string()).map_err(|e| e.to_string())
                    }
                    _ => Err(format!("expected {}, got the number {n}", Self::expected())),
                },
            },
            other => Err(format!("expected {}, got {}", Self::expected(), describe(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn parses_sizes() {
        for (s, want) in [
            ("10240", 10240 * MIB),
            ("10G", 10 * GIB),
            ("10g", 10 * GIB),
            ("10GiB", 10 * GIB),
            ("10GB", 10 * GIB),
            ("512M", 512 * MIB),
            ("512mib", 512 * MIB),
            ("1T", 1 << 40),
            ("4096K", 4 * MIB),
            ("1024b", 1024),
            ("1024B", 1024),
            (" 20 G ", 20 * GIB),
            ("0", 0),
        ] {
            assert_eq!(Size::parse(s).map(|s| s.bytes()), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(Size::parse(""), Err(SizeError::Invalid(_))));
        assert!(matches!(Size::parse("G"), Err(SizeError::Invalid(_))));
        assert!(matches!(Size::parse("-5G"), Err(SizeError::Invalid(_))));
        assert!(matches!(Size::parse("1.5G"), Err(SizeError::Invalid(_))));
        assert!(matches!(Size::parse("10X"), Err(SizeError::UnknownUnit { .. })));
        assert!(matches!(Size::parse("10GG"), Err(SizeError::UnknownUnit { .. })));
        assert!(matches!(Size::parse("99999999999999999999"), Err(SizeError::Overflow(_))));
        assert!(matches!(Size::parse("99999999999T"), Err(SizeError::Overflow(_))));
    }

    #[test]
    fn displays_in_largest_unit() {
        assert_eq!(Size::parse("40960M").unwrap().to_string(), "40G");
        assert_eq!(Size::parse("1536M").unwrap().to_string(), "1536M");
        assert_eq!(Size::from_bytes(1000).to_string(), "1000");
        assert_eq!(Size::from_mib(3).mib(), 3);
    }

    #[test]
    fn decodes_json_numbers_as_mib() {
        assert_eq!(Size::decode(&serde_json::json!(10240)), Ok(Size::from_mib(10240)));
        assert_eq!(Size::decode(&serde_json::json!(512.0)), Ok(Size::from_mib(512)));
        assert!(Size::decode(&serde_json::json!(1.5)).is_err());
        assert!(Size::decode(&serde_json::json!(true)).is_err());
    }
}
