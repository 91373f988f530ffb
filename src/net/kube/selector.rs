//! Label selectors as the API server parses them (`k8s.io/apimachinery/pkg/labels`), so a
//! mistake in `namespace_selector` is a config error at its line rather than a 400 from
//! the server on every list.
//!
//! `env=prod,team in (a, b),!legacy`: comma-separated requirements, each `key`, `!key`,
//! `key=value`, `key==value`, `key!=value`, `key in (v1, v2)` or `key notin (v1, v2)`.
//! A key is an optional DNS-subdomain prefix and `/`, then a name of at most 63
//! alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric; a value is empty
//! or such a name. The selector itself is sent as written; the server matches it.

/// Checks `text` as a label selector; the error says which requirement is wrong and why.
pub fn validate(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(
            "the selector is empty; omit namespace_selector to read every namespace".into(),
        );
    }
    for requirement in split_requirements(text)? {
        requirement_ok(requirement.trim()).map_err(|e| format!("{:?}: {e}", requirement.trim()))?;
    }
    Ok(())
}

/// Splits at commas outside parentheses.
fn split_requirements(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses".into());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn requirement_ok(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("an empty requirement (a stray comma?)".into());
    }
    if let Some(key) = r.strip_prefix('!') {
        return key_ok(key.trim());
    }
    for op in ["==", "!=", "="] {
        if let Some((key, value)) = r.split_once(op) {
            key_ok(key.trim())?;
            return value_ok(value.trim());
        }
    }
    if let Some(open) = r.find('(') {
        let (head, set) = r.split_at(open);
        let mut words = head.split_whitespace();
        let (Some(key), Some(op), None) = (words.next(), words.next(), words.next()) else {
            return Err("write key in (v1, v2) or key notin (v1, v2)".into());
        };
        if op != "in" && op != "notin" {
            return Err(format!("unknown operator {op:?} (use in or notin)"));
        }
        key_ok(key)?;
        let Some(values) = set
            .trim()
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
        else {
            return Err("the value set must be in parentheses, e.g. (a, b)".into());
        };
        if values.trim().is_empty() {
            return Err("the value set is empty".into());
        }
        for v in values.split(',') {
            value_ok(v.trim())?;
        }
        return Ok(());
    }
    if r.contains(['<', '>']) {
        return Err("the numeric operators < and > are not supported here".into());
    }
    let mut words = r.split_whitespace();
    if let (Some(_), Some(op)) = (words.next(), words.next()) {
        return Err(match op {
            "in" | "notin" => {
                format!("the value set must be in parentheses, e.g. key {op} (a, b)")
            }
            other => format!("unknown operator {other:?} (use =, ==, !=, in or notin)"),
        });
    }
    key_ok(r)
}

fn key_ok(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let labels_ok = p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !labels_ok {
            return Err(format!("the key prefix {p:?} is not a DNS subdomain"));
        }
    }
    if name.is_empty() {
        return Err("a requirement without a key".into());
    }
    name_ok(name).map_err(|e| format!("the key {key:?} {e}"))
}

fn value_ok(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    name_ok(value).map_err(|e| format!("the value {value:?} {e}"))
}

/// A label name or value: at most 63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
fn name_ok(s: &str) -> Result<(), String> {
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    if s.len() > 63 {
        return Err("is longer than 63 characters".into());
    }
    if !s
        .bytes()
        .all(|b| alnum(b) || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("may hold only letters, digits, '-', '_' and '.'".into());
    }
    if !s.bytes().next().is_some_and(alnum) || !s.bytes().last().is_some_and(alnum) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_the_api_server_accepts_are_accepted() {
        for good in [
            "env=prod",
            "env==prod",
            "env!=dev",
            "sonde.example.com/watched",
            "!legacy",
            "team in (a, b),env notin (dev)",
            "kubernetes.io/metadata.name=team-a, tier=",
            "a.b/c_d-e.f=V1.2",
        ] {
            assert_eq!(validate(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        for (bad, why) in [
            ("", "empty"),
            ("env=prod,", "an empty requirement"),
            ("env=pr od", "may hold only"),
            ("-env=prod", "must start and end"),
            ("team in a, b", "must be in parentheses"),
            ("team is a", "unknown operator \"is\""),
            ("team within (a)", "unknown operator"),
            ("team in ()", "the value set is empty"),
            ("replicas>1", "numeric operators"),
            ("Example.com/x=y", "not a DNS subdomain"),
            ("team in (a,b", "unbalanced"),
        ] {
            let e = validate(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
