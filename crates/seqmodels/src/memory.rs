//! One rule for sizes: before anything large is allocated (parameters, activations, generation
//! buffers), its bytes are computed with checked arithmetic and compared with the memory the
//! machine has available, so that no input reaches an allocation failure or the OOM killer.

use crate::error::{Error, Result};

/// Memory assumed available where the system does not say (not Linux): 8 GiB.
const FALLBACK_AVAILABLE: u64 = 8 << 30;

/// Bytes of a buffer of `dims` elements of `elem_bytes` bytes each; an error naming `what` when
/// the product overflows.
pub fn bytes_of(what: &str, dims: &[usize], elem_bytes: usize) -> Result<u64> {
    dims.iter().try_fold(elem_bytes as u64, |acc, &d| acc.checked_mul(d as u64)).ok_or_else(|| Error::TooLarge {
        what: what.to_string(),
        bytes: None,
        available: available_bytes(),
    })
}

/// The sum of several sizes (from [`bytes_of`]), checked for overflow.
pub fn sum_bytes(what: &str, parts: &[u64]) -> Result<u64> {
    parts.iter().try_fold(0u64, |acc, &b| acc.checked_add(b)).ok_or_else(|| Error::TooLarge {
        what: what.to_string(),
        bytes: None,
        available: available_bytes(),
    })
}

/// Refuses `bytes` for `what` when they exceed the memory available now.
pub fn check_bytes(what: &str, bytes: u64) -> Result<()> {
    let available = available_bytes();
    if bytes > available {
        return Err(Error::TooLarge { what: what.to_string(), bytes: Some(bytes), available });
    }
    Ok(())
}

/// [`bytes_of`] then [`check_bytes`]: refuses a buffer of `dims` elements that would not fit.
pub fn check_elements(what: &str, dims: &[usize], elem_bytes: usize) -> Result<()> {
    check_bytes(what, bytes_of(what, dims, elem_bytes)?)
}

/// The memory available to new allocations: `MemAvailable` of `/proc/meminfo` on Linux (else
/// `MemTotal`), 8 GiB where there is no such file.
pub fn available_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| meminfo_field(&text, "MemAvailable:").or_else(|| meminfo_field(&text, "MemTotal:")))
        .unwrap_or(FALLBACK_AVAILABLE)
}

/// A `Name:   1234 kB` field of `/proc/meminfo`, in bytes.
fn meminfo_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// A byte count for people: `512 B`, `3.2 GiB`, `2.0e12 TiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if value >= 1e4 => format!("{value:.1e} {}", UNITS[unit]),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_sizes_are_errors_not_panics() {
        assert!(bytes_of("x", &[usize::MAX, 4], 4).is_err());
        assert!(sum_bytes("x", &[u64::MAX, 1]).is_err());
        assert_eq!(bytes_of("x", &[3, 5], 4).unwrap(), 60);
    }

    #[test]
    fn sizes_beyond_the_machine_are_refused_and_named() {
        let e = check_elements("the parameters of the test", &[1 << 40, 1 << 20], 4).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("the parameters of the test") && msg.contains("TiB"), "{msg}");
        assert!(check_elements("small", &[16, 16], 4).is_ok());
    }

    #[test]
    fn meminfo_fields_are_read_in_bytes() {
        let text = "MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(meminfo_field(text, "MemAvailable:"), Some(8_000_000 * 1024));
        assert_eq!(meminfo_field(text, "SwapFree:"), None);
    }
}
