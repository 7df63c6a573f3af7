//! Small parsers and helpers for config values: sizes, signals, `host:port`, key paths and
//! did-you-mean suggestions.
//!
//! Each parser returns `Err(message)` on bad input; the walker attaches the position.

/// Signals accepted by name in `stop_signal` (Linux numbers), without the `SIG` prefix.
pub(crate) const SIGNALS: &[(&str, i32)] =
    &[("HUP", 1), ("INT", 2), ("QUIT", 3), ("KILL", 9), ("USR1", 10), ("USR2", 12), ("TERM", 15)];

/// Parse a signal name (`SIGTERM`, `TERM`, any case) or number (`"15"`).
pub(crate) fn parse_signal(s: &str) -> Result<i32, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i64>() {
        return check_signal_number(n);
    }
    let upper = t.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(name, _)| *name == bare)
        .map(|&(_, n)| n)
        .ok_or_else(|| format!("unknown signal {s:?}"))
}

/// A signal number must be a real signal: 1 to 64.
pub(crate) fn check_signal_number(n: i64) -> Result<i32, String> {
    if (1..=64).contains(&n) {
        Ok(n as i32)
    } else {
        Err(format!("signal number {n} is out of range (1-64)"))
    }
}

/// Help text for a bad signal.
pub(crate) fn signal_help() -> String {
    let names: Vec<String> = SIGNALS.iter().map(|(n, _)| format!("SIG{n}")).collect();
    format!("use one of {} or a number", names.join(", "))
}

/// Parse a byte size: `"10MiB"`, `"512KiB"`, `"1MB"`, `"1000"`, `"1.5 GiB"`. Units are
/// case-insensitive; `K`, `M`, `G` alone are binary (as in logrotate and Docker).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: String = num.chars().filter(|&c| c != '_').collect();
    if num.is_empty() {
        return Err(format!("invalid size {s:?}: no number"));
    }
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "k" | "ki" | "kib" => 1 << 10,
        "mb" => 1_000_000,
        "m" | "mi" | "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "g" | "gi" | "gib" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "t" | "ti" | "tib" => 1 << 40,
        other => return Err(format!("invalid size {s:?}: unknown unit {other:?}")),
    };
    let bytes = if num.contains('.') {
        let n: f64 = num.parse().map_err(|_| format!("invalid size {s:?}: bad number"))?;
        let b = (n * factor as f64).round();
        if !b.is_finite() || b >= u64::MAX as f64 {
            return Err(format!("size {s:?} is too large"));
        }
        b as u64
    } else {
        let n: u64 = num.parse().map_err(|_| format!("size {s:?} is too large"))?;
        n.checked_mul(factor).ok_or_else(|| format!("size {s:?} is too large"))?
    };
    if bytes == 0 {
        return Err("size must be greater than 0".to_string());
    }
    Ok(bytes)
}

/// Check a `host:port` address (IPv6 hosts in brackets).
pub(crate) fn check_host_port(s: &str) -> Result<(), String> {
    if let Some((scheme, _)) = s.split_once("://") {
        return Err(format!("{s:?} is a URL: write host:port, without {scheme}://"));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} is not host:port"));
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{s:?} has no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("{s:?}: an IPv6 host goes in brackets, e.g. [::1]:8080"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{s:?} has no valid port (1-65535)")),
    }
}

/// Check an `http://` or `https://` URL lightly (scheme and a host).
pub(crate) fn check_url(s: &str) -> Result<(), String> {
    let rest = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://"));
    match rest {
        None => Err(format!("{s:?} is not an http:// or https:// URL")),
        Some(r) if r.is_empty() || r.starts_with('/') => Err(format!("{s:?} has no host")),
        Some(r) if r.contains(char::is_whitespace) => Err(format!("{s:?} contains whitespace")),
        Some(_) => Ok(()),
    }
}

/// Parse an HTTP status range: `"200-399"` or `"204"`.
pub(crate) fn parse_status_range(s: &str) -> Result<(u16, u16), String> {
    let code = |t: &str| -> Result<u16, String> {
        match t.trim().parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => Ok(c),
            _ => Err(format!("{t:?} is not an HTTP status code (100-599)")),
        }
    };
    match s.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                Err(format!("status range {s:?} is empty ({lo} > {hi})"))
            } else {
                Ok((lo, hi))
            }
        }
        None => code(s).map(|c| (c, c)),
    }
}

/// Is `name` a valid component name? They become file names and command-line arguments.
pub(crate) fn check_component_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a component name must not be empty".to_string());
    }
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "component name {name:?} contains {c:?}: use only letters, digits, `_`, `.` and `-`"
        ));
    }
    if name.starts_with(['.', '-']) {
        return Err(format!("component name {name:?} must start with a letter, digit or `_`"));
    }
    if name.len() > 128 {
        return Err("a component name must be at most 128 characters".to_string());
    }
    Ok(())
}

/// A key as it would be written in TOML: bare when possible, else quoted.
pub(crate) fn toml_key(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// `path.key`, quoting `key` when it is not bare.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { toml_key(key) } else { format!("{path}.{}", toml_key(key)) }
}

/// Levenshtein distance over characters, ignoring ASCII case.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if close enough to be a likely typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let normalized = word.replace('-', "_").to_ascii_lowercase();
    candidates
        .iter()
        .map(|&c| (edit_distance(&normalized, &c.replace('-', "_")), c))
        .filter(|&(d, c)| d <= (c.chars().count() / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// "did you mean `x`? " plus the list of valid choices.
pub(crate) fn did_you_mean(word: &str, candidates: &[&str], what: &str) -> String {
    let list = candidates.join(", ");
    match suggest(word, candidates) {
        Some(s) => format!("did you mean `{s}`? valid {what}: {list}"),
        None => format!("valid {what}: {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1.5 kib"), Ok(1536));
        assert_eq!(parse_size("10m"), Ok(10 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("99999999999999999999TiB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size(".").is_err());
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_signal("term"), Ok(15));
        assert_eq!(parse_signal("SIGKILL"), Ok(9));
        assert_eq!(parse_signal("SIGUSR2"), Ok(12));
        assert_eq!(parse_signal("2"), Ok(2));
        assert!(parse_signal("SIGFOO").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn host_port_and_urls() {
        assert!(check_host_port("127.0.0.1:8080").is_ok());
        assert!(check_host_port("[::1]:80").is_ok());
        assert!(check_host_port("localhost").is_err());
        assert!(check_host_port(":80").is_err());
        assert!(check_host_port("h:0").is_err());
        assert!(check_host_port("::1:80").is_err());
        assert!(check_url("http://x/healthz").is_ok());
        assert!(check_url("https://x").is_ok());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("http://").is_err());
    }

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_range("200-399"), Ok((200, 399)));
        assert_eq!(parse_status_range("204"), Ok((204, 204)));
        assert!(parse_status_range("399-200").is_err());
        assert!(parse_status_range("abc").is_err());
        assert!(parse_status_range("700").is_err());
    }

    #[test]
    fn names_and_keys() {
        assert!(check_component_name("api-v2.internal_1").is_ok());
        assert!(check_component_name("").is_err());
        assert!(check_component_name("a/b").is_err());
        assert!(check_component_name("..").is_err());
        assert!(check_component_name("-x").is_err());
        assert_eq!(join("components", "a.b"), "components.\"a.b\"");
        assert_eq!(join("components.web", "comand"), "components.web.comand");
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("comand", &["command", "shell"]), Some("command"));
        assert_eq!(suggest("frobnicate", &["command", "shell"]), None);
        assert_eq!(suggest("on_failure", &["always", "on-failure"]), Some("on-failure"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
