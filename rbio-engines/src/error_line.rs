//! One error as one line: the error and its `source()` chain, as the `rbio` command prints it
//! and the Python package raises it, so both say the same words.

/// The error and its `source()` chain on one line, joined by ": ". A cause whose text the
/// line already holds (many errors print their cause themselves) is not repeated.
pub fn error_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading the mirror")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_are_joined_once_on_one_line() {
        let outer = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(error_line(&outer), "reading the mirror: disk on fire");
        let said = std::io::Error::other("disk on fire");
        assert_eq!(error_line(&said), "disk on fire");
        let two_lines = std::io::Error::other("first\nsecond");
        assert_eq!(error_line(&two_lines), "first second");
    }
}
