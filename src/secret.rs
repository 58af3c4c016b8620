//! Random secrets: admin keys, JWT signing secrets, API keys, tickets and
//! webhook signing secrets; and the hex encoding they use.
//!
//! Invariant: every secret comes from the operating system's CSPRNG and carries
//! at least 256 bits of entropy; a prefix says what kind of secret it is, so a
//! leaked value is recognisable in logs and secret scanners.

/// Bytes of entropy in every generated secret.
const SECRET_BYTES: usize = 32;

/// A new secret such as `adm_3f9c…` (the prefix, an underscore, 64 hex digits).
pub fn generate(prefix: &str) -> std::io::Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|err| {
        std::io::Error::other(format!(
            "the operating system's random source failed: {err}"
        ))
    })?;
    Ok(format!("{prefix}_{}", hex(&bytes)))
}

/// Lowercase hex of `bytes` (two digits per byte).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_hex_and_distinct() {
        let first = generate("adm").unwrap();
        let second = generate("adm").unwrap();
        assert!(first.starts_with("adm_"));
        assert_eq!(first.len(), 4 + 64);
        assert!(first[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(first, second);
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
