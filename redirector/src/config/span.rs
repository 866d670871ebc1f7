//! From byte offsets to what a person looks for: the 1-based line and
//! column, and the dotted field (`services[1].check.rise`) when the TOML
//! parser itself rejected the text and gave only an offset.

use std::collections::HashMap;

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Best-effort dotted path (`services[1].check.rise`) of the key at a byte
/// offset, for errors reported by the TOML parser itself. Follows table and
/// array-of-tables headers; a value continued over several lines is
/// attributed to the last key seen.
pub(super) fn field_at(text: &str, offset: usize) -> String {
    let mut arrays: HashMap<String, usize> = HashMap::new();
    let mut table = String::new();
    let mut last_key: Option<String> = None;
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let here = offset >= start && (offset < end || end == text.len());
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("[[") {
            let name = rest.split("]]").next().unwrap_or_default();
            let base = resolve_table(name, &arrays);
            let count = arrays.entry(base.clone()).or_insert(0);
            *count += 1;
            table = format!("{base}[{}]", *count - 1);
            last_key = None;
            if here {
                return table;
            }
        } else if let Some(rest) = trimmed.strip_prefix('[') {
            let name = rest.split(']').next().unwrap_or_default();
            table = resolve_table(name, &arrays);
            last_key = None;
            if here {
                return table;
            }
        } else {
            if let Some((key, _)) = trimmed.split_once('=')
                && is_key(key)
            {
                last_key = Some(normalize_key(key));
            }
            if here {
                break;
            }
        }
        start = end;
    }
    match last_key {
        Some(key) if table.is_empty() => key,
        Some(key) => format!("{table}.{key}"),
        None => table,
    }
}

/// A header name with the current index of each enclosing array of tables:
/// `services.members` -> `services[1].members`.
fn resolve_table(name: &str, arrays: &HashMap<String, usize>) -> String {
    let segments: Vec<String> = name.split('.').map(unquote).collect();
    let mut path = String::new();
    for (i, segment) in segments.iter().enumerate() {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(segment);
        if i + 1 < segments.len()
            && let Some(n) = arrays.get(&path)
        {
            path = format!("{path}[{}]", n.saturating_sub(1));
        }
    }
    path
}

fn is_key(key: &str) -> bool {
    let key = key.trim();
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\'' | ' '))
}

fn normalize_key(key: &str) -> String {
    key.split('.').map(unquote).collect::<Vec<_>>().join(".")
}

fn unquote(segment: &str) -> String {
    segment
        .trim()
        .trim_matches('"')
        .trim_matches('\'')
        .to_string()
}
