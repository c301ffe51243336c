//! Validation of every name that becomes part of a path: projects, versions, spiders, job ids.
//! One place decides what may touch the disk, before anything does.

use crate::error::ApiError;

/// The longest name accepted, in bytes (file names are limited to 255 bytes and we add suffixes).
pub const MAX_NAME_LEN: usize = 200;

/// Checks that `name` can be used as one path component: not empty, not `.` or `..`, no `/`,
/// `\`, NUL or other control characters, at most [`MAX_NAME_LEN`] bytes.
pub fn is_safe(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= MAX_NAME_LEN
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// Refuses an unsafe name with `DirectoryTraversalError: <name>` (or a length message).
pub fn check(name: &str) -> Result<(), ApiError> {
    if name.len() > MAX_NAME_LEN
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(ApiError::new(format!(
            "name too long: {} bytes (at most {MAX_NAME_LEN})",
            name.len()
        )));
    }
    if is_safe(name) {
        Ok(())
    } else {
        Err(ApiError::traversal(name))
    }
}

/// A decimal id as Scrapy Cloud writes them (no sign, no leading zero, fits in 53 bits): a
/// project, spider or job number.
pub fn decimal_id(text: &str) -> Option<i64> {
    if text.is_empty()
        || text.len() > 15
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_names_that_alias_or_escape_a_folder() {
        for bad in [
            "", ".", "..", "../p", "a/b", "a\\b", "/abs", "x/..", "a\0b", "a\nb", "\u{7f}",
            "a\u{85}b",
        ] {
            assert!(!is_safe(bad), "{bad:?} should be refused");
            assert!(check(bad).is_err());
        }
        assert_eq!(
            check("../p").unwrap_err().message,
            "DirectoryTraversalError: ../p"
        );
    }

    #[test]
    fn accepts_ordinary_names() {
        for good in [
            "p",
            "my-project",
            "1.0",
            "...",
            ".hidden",
            "a b",
            "ñ",
            "araña1",
            "r23-master",
        ] {
            assert!(is_safe(good), "{good:?} should be accepted");
        }
    }

    #[test]
    fn long_names_get_their_own_message() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(
            check(&long)
                .unwrap_err()
                .message
                .starts_with("name too long")
        );
        assert!(check(&"a".repeat(MAX_NAME_LEN)).is_ok());
    }
}
