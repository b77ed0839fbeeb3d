//! Names of POSIX shared-memory segments.
//!
//! A name is one path component below `/dev/shm`, written with a leading
//! slash: `/jobs`. We accept it with or without the slash and keep the
//! normalised form (with exactly one leading slash). The rules:
//!
//! - not empty (a lone `/` is empty too);
//! - no `/` other than the leading one, and no NUL byte;
//! - not `.` or `..`;
//! - at most [`MAX_LEN`] bytes, counting the leading slash.

use std::ffi::CString;

use crate::error::{Error, Result};

/// The longest name accepted, in bytes, counting the leading slash.
pub const MAX_LEN: usize = 255;

/// A validated, normalised segment name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Name {
    normalised: String,
    c: CString,
}

impl Name {
    /// Validates `name` and normalises it to one leading slash.
    pub(crate) fn new(name: &str) -> Result<Name> {
        let invalid = |reason| Error::InvalidName {
            name: name.to_owned(),
            reason,
        };
        let bare = name.strip_prefix('/').unwrap_or(name);
        if bare.is_empty() {
            return Err(invalid("it is empty"));
        }
        if bare.contains('/') {
            return Err(invalid("it contains a '/' other than the leading one"));
        }
        if bare.contains('\0') {
            return Err(invalid("it contains a NUL byte"));
        }
        if bare == "." || bare == ".." {
            return Err(invalid("'.' and '..' are not names"));
        }
        if bare.len() + 1 > MAX_LEN {
            return Err(invalid(
                "it is longer than 255 bytes (counting the leading '/')",
            ));
        }
        let normalised = format!("/{bare}");
        // No NUL inside (checked above).
        let c = CString::new(normalised.clone()).map_err(|_| invalid("it contains a NUL byte"))?;
        Ok(Name { normalised, c })
    }

    /// The name with its leading slash, as `shm_open` takes it.
    pub(crate) fn as_str(&self) -> &str {
        &self.normalised
    }

    /// The name as a C string, for `shm_open` and `shm_unlink`.
    pub(crate) fn as_c(&self) -> &CString {
        &self.c
    }

    /// The segment's path in the file system (`/dev/shm/<name>`).
    pub(crate) fn dev_shm_path(&self) -> CString {
        // The name holds no NUL, so neither does the path.
        CString::new(format!("{}{}", super::mapping::SHM_DIR, self.normalised)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(name: &str) -> &'static str {
        match Name::new(name) {
            Err(Error::InvalidName { name: n, reason }) => {
                assert_eq!(n, name, "the error keeps the name as given");
                reason
            }
            other => panic!("{name:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn adds_one_leading_slash() {
        assert_eq!(Name::new("jobs").unwrap().as_str(), "/jobs");
        assert_eq!(Name::new("/jobs").unwrap().as_str(), "/jobs");
        assert_eq!(Name::new("/jobs").unwrap().as_c().as_bytes(), b"/jobs");
        assert_eq!(
            Name::new("jobs").unwrap().dev_shm_path().as_bytes(),
            b"/dev/shm/jobs"
        );
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(reason(""), "it is empty");
        assert_eq!(reason("/"), "it is empty");
    }

    #[test]
    fn rejects_other_slashes() {
        for n in ["//jobs", "a/b", "/a/b", "jobs/", "/jobs/", "//"] {
            assert!(reason(n).contains('/'), "{n:?}");
        }
    }

    #[test]
    fn rejects_nul() {
        assert_eq!(reason("jo\0bs"), "it contains a NUL byte");
        assert_eq!(reason("/\0"), "it contains a NUL byte");
    }

    #[test]
    fn rejects_dot_names() {
        for n in [".", "..", "/.", "/.."] {
            assert_eq!(reason(n), "'.' and '..' are not names");
        }
        // Dots are fine within a name.
        assert!(Name::new("...").is_ok());
        assert!(Name::new(".hidden").is_ok());
        assert!(Name::new("a.b").is_ok());
    }

    #[test]
    fn length_counts_the_leading_slash() {
        let longest = "x".repeat(MAX_LEN - 1);
        assert_eq!(Name::new(&longest).unwrap().as_str().len(), MAX_LEN);
        assert_eq!(
            Name::new(&format!("/{longest}")).unwrap().as_str().len(),
            MAX_LEN
        );
        let too_long = "x".repeat(MAX_LEN);
        assert!(reason(&too_long).contains("255"));
        assert!(reason(&format!("/{too_long}")).contains("255"));
        // Multi-byte characters count by their bytes.
        let wide = "é".repeat(128); // 256 bytes
        assert!(reason(&wide).contains("255"));
    }

    #[test]
    fn accepts_ordinary_names() {
        for n in [
            "a",
            "psm_1234",
            "shmipc-test-1-2-lock",
            "with space",
            "ünïcödé",
        ] {
            assert_eq!(Name::new(n).unwrap().as_str(), format!("/{n}"));
        }
    }
}
