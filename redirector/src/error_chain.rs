//! An error and its causes as one line, for logs and admin replies.
//! Presentation only: nothing decides on this text.

/// `err` and its sources joined by ": ", deduplicating repeats (reqwest and
/// io errors often repeat their source's text).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
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
