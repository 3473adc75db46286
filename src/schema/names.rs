//! The shapes names must have, as SpiceDB's protocol validation requires them
//! (inventory §2.5): lowercase ASCII segments of 3 to 64 characters.

pub const RELATION_NAME_RULE: &str = "must be 3 to 64 characters: a lowercase letter, then lowercase letters, digits or `_`, ending in a letter or digit";
pub const DEFINITION_NAME_RULE: &str = "each `/`-separated segment must be 3 to 64 characters: a lowercase letter, then lowercase letters, digits or `_`, ending in a letter or digit (at most 128 bytes in all)";

/// `[a-z][a-z0-9_]{min_mid,62}[a-z0-9]`
fn is_segment(s: &str, max_len: usize) -> bool {
    let b = s.as_bytes();
    (3..=max_len).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_lowercase() | b[b.len() - 1].is_ascii_digit()
        && b[1..b.len() - 1]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// Relation and permission names: `^[a-z][a-z0-9_]{1,62}[a-z0-9]$`.
pub fn is_relation_name(s: &str) -> bool {
    is_segment(s, 64)
}

fn is_prefixed(s: &str, max_prefix_len: usize) -> bool {
    if s.len() > 128 {
        return false;
    }
    let mut segments = s.split('/').peekable();
    while let Some(segment) = segments.next() {
        let max = if segments.peek().is_some() {
            max_prefix_len
        } else {
            64
        };
        if !is_segment(segment, max) {
            return false;
        }
    }
    true
}

/// Definition names: segments as relation names, optionally prefixed.
pub fn is_definition_name(s: &str) -> bool {
    is_prefixed(s, 64)
}

/// A subject type in a relation's type list. SpiceDB's pattern for these
/// allows one character less in prefix segments than for definition names.
pub fn is_subject_type_name(s: &str) -> bool {
    is_prefixed(s, 63)
}

/// Caveat names: `^[a-zA-Z0-9_][a-zA-Z0-9/_|-]{0,127}$`.
pub fn is_caveat_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'|' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_names() {
        assert!(is_relation_name("abc"));
        assert!(is_relation_name("a_1"));
        assert!(!is_relation_name("ab"));
        assert!(!is_relation_name("abc_"));
        assert!(!is_relation_name("Abc"));
        assert!(!is_relation_name("1bc"));
        assert!(is_relation_name(&"a".repeat(64)));
        assert!(!is_relation_name(&"a".repeat(65)));
    }

    #[test]
    fn definition_names() {
        assert!(is_definition_name("user"));
        assert!(is_definition_name("tenant/sub/doc"));
        assert!(!is_definition_name("tenant//doc"));
        assert!(!is_definition_name("te/doc"));
        assert!(!is_definition_name(&format!("{}/doc", "a".repeat(125))));
        assert!(is_definition_name(&format!("{}/doc", "a".repeat(64))));
        assert!(!is_subject_type_name(&format!("{}/doc", "a".repeat(64))));
    }

    #[test]
    fn caveat_names() {
        assert!(is_caveat_name("ip_allowlist"));
        assert!(is_caveat_name("tenant/Cav-1"));
        assert!(!is_caveat_name("-x"));
        assert!(!is_caveat_name(""));
    }
}
