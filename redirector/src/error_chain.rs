//! One rendering of an error and its causes for logs, status and CLI output.
//!
//! Library errors keep their cause in `source()`; a reader wants the whole
//! chain on one line. This leaf module depends on nothing of ours so every
//! layer can use it.

use std::error::Error;

/// `err` and its sources joined by ": ", deduplicating repeats (reqwest and
/// io errors often repeat their source's text): a source whose text the
/// previous part already contains is left out.
pub fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a fixed text and an optional cause.
    #[derive(Debug)]
    struct Layer {
        text: &'static str,
        cause: Option<Box<Layer>>,
    }

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.text)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.cause.as_deref().map(|c| c as &(dyn Error + 'static))
        }
    }

    fn chain(texts: &[&'static str]) -> Layer {
        let mut cause = None;
        for text in texts.iter().rev() {
            cause = Some(Box::new(Layer {
                text,
                cause: cause.take(),
            }));
        }
        *cause.expect("at least one text")
    }

    #[test]
    fn causes_are_joined_outermost_first() {
        let e = chain(&["connect", "tls handshake", "certificate expired"]);
        assert_eq!(
            error_chain(&e),
            "connect: tls handshake: certificate expired"
        );
    }

    #[test]
    fn a_cause_the_previous_part_already_shows_is_left_out() {
        let e = chain(&[
            "read failed: Connection reset by peer (os error 104)",
            "Connection reset by peer (os error 104)",
        ]);
        assert_eq!(
            error_chain(&e),
            "read failed: Connection reset by peer (os error 104)"
        );
    }
}
