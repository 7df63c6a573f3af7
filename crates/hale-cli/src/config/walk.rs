//! The validating walk over the spanned TOML tree.
//!
//! The text is parsed once into `toml::de::DeTable` (every key and value keeps its byte
//! span); each table is then read by hand: unknown keys, wrong types and bad values are
//! recorded as errors and the walk goes on with a default in their place, so one pass finds
//! every problem. Cross-component checks (unknown dependencies, cycles) run at the end.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ConfigErrors, LineIndex};
use super::values::{
    check_component_name, check_host_port, check_signal_number, check_url, did_you_mean, join,
    parse_signal, parse_size, parse_status_range, signal_help, suggest, toml_key,
};
use super::{
    CheckConfig, ComponentConfig, Config, DEFAULT_FILE_MAX_AGE, DEFAULT_HOOK_TIMEOUT,
    DEFAULT_LOG_WITHIN, DEFAULT_RESTART_TIMEOUT, DEFAULT_START_TIMEOUT, DEFAULT_STOP_SIGNAL,
    DEFAULT_STOP_TIMEOUT, DaemonSettings, DependCondition, Hook, HookAction, NotifyAccess,
    ProbeConfig, ProbeKind, ReadyMode, RestartPolicy, RestartSettings, Run,
};

const ROOT_KEYS: &[&str] = &["hale", "components"];
const HALE_KEYS: &[&str] = &[
    "state_dir",
    "http",
    "http_token",
    "grpc_health",
    "log_max_size",
    "log_keep",
    "on_state_change",
];
const HOOK_KEYS: &[&str] = &["command", "url", "timeout"];
const COMPONENT_KEYS: &[&str] = &[
    "command",
    "shell",
    "docker",
    "start",
    "stop",
    "restart",
    "cwd",
    "env",
    "env_file",
    "depends_on",
    "ready",
    "watchdog",
    "notify_access",
    "start_timeout",
    "stop_signal",
    "stop_timeout",
    "restart_timeout",
    "success_exit_status",
    "restart_prevent_exit_status",
    "restart_force_exit_status",
    "startup",
    "liveness",
    "readiness",
    "on_state_change",
];
const RESTART_KEYS: &[&str] = &[
    "policy",
    "max_restarts",
    "window",
    "min_uptime",
    "initial_backoff",
    "max_backoff",
    "multiplier",
    "action",
];
const PROBE_KEYS: &[&str] = &[
    "initial_delay",
    "period",
    "timeout",
    "failure_threshold",
    "success_threshold",
    "termination_grace",
];
const CHECK_KEYS: &[&str] =
    &["exec", "sh", "tcp", "http", "grpc", "process", "docker", "file", "log"];
const HTTP_KEYS: &[&str] =
    &["url", "method", "headers", "status", "body_contains", "ca_file", "insecure"];
const GRPC_KEYS: &[&str] = &["address", "service", "tls"];
const PROCESS_KEYS: &[&str] = &["pidfile"];
const FILE_KEYS: &[&str] = &["path", "max_age"];
const LOG_KEYS: &[&str] = &["pattern", "within"];
const CONDITIONS: &[(&str, DependCondition)] = &[
    ("started", DependCondition::Started),
    ("ready", DependCondition::Ready),
    ("healthy", DependCondition::Healthy),
    ("completed", DependCondition::Completed),
    ("completed_successfully", DependCondition::CompletedSuccessfully),
];
const POLICIES: &[(&str, RestartPolicy)] = &[
    ("always", RestartPolicy::Always),
    ("on-failure", RestartPolicy::OnFailure),
    ("never", RestartPolicy::Never),
];
const READY_MODES: &[(&str, ReadyMode)] =
    &[("probe", ReadyMode::Probe), ("notify", ReadyMode::Notify)];
const NOTIFY_ACCESS: &[(&str, NotifyAccess)] =
    &[("main", NotifyAccess::Main), ("all", NotifyAccess::All)];
const DURATION_HELP: &str = "durations are strings such as \"500ms\", \"10s\" or \"1m30s\"";

type Value<'i> = Spanned<DeValue<'i>>;

/// One `key = value` of a table, with its full key path.
struct Item<'t, 'i> {
    name: &'t str,
    path: String,
    key_span: Range<usize>,
    val: &'t Value<'i>,
}

impl Item<'_, '_> {
    fn span(&self) -> Range<usize> {
        self.val.span()
    }
}

/// A table's entries in file order.
struct Tbl<'t, 'i> {
    path: String,
    span: Range<usize>,
    items: Vec<Item<'t, 'i>>,
}

impl<'t, 'i> Tbl<'t, 'i> {
    fn new(path: &str, span: Range<usize>, table: &'t DeTable<'i>) -> Self {
        let mut items: Vec<Item<'t, 'i>> = table
            .iter()
            .map(|(k, v)| Item {
                name: k.get_ref().as_ref(),
                path: join(path, k.get_ref()),
                key_span: k.span(),
                val: v,
            })
            .collect();
        items.sort_by_key(|it| it.key_span.start);
        Tbl { path: path.to_string(), span, items }
    }

    fn get(&self, name: &str) -> Option<&Item<'t, 'i>> {
        self.items.iter().find(|it| it.name == name)
    }
}

/// "a string \"ten\"", "an integer 5", "a table": what was found instead.
fn found(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => {
            let short: String = s.chars().take(40).collect();
            let dots = if short.len() < s.len() { "..." } else { "" };
            format!("a string \"{}{dots}\"", short.escape_debug())
        }
        DeValue::Integer(i) => format!("an integer {i}"),
        DeValue::Float(x) => format!("a float {x}"),
        DeValue::Boolean(b) => format!("a boolean {b}"),
        DeValue::Datetime(d) => format!("a datetime {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// The integer value of a TOML integer, if it fits an i64.
fn int_value(v: &DeValue<'_>) -> Option<Result<i64, ()>> {
    match v {
        DeValue::Integer(i) => Some(i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| ())),
        _ => None,
    }
}

/// Split a shell-ish command string on whitespace for an argv suggestion.
fn argv_example(s: &str) -> String {
    let parts: Vec<String> = s.split_whitespace().map(|p| format!("{p:?}")).collect();
    format!("[{}]", parts.join(", "))
}

/// A dependency as written, kept for the cross-component checks.
struct DepRef {
    name: String,
    path: String,
    key_span: Range<usize>,
}

/// Whether the walk reads the files the config names (`env_file`, `ca_file`): [`super::load`]
/// does, [`super::parse`] (pure, and fuzzed) does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Files {
    /// Read them and report what is wrong with them at the key that names them.
    Read,
    /// Take the paths as given.
    Skip,
}

struct Walker<'a> {
    text: &'a str,
    file: &'a Path,
    base: &'a Path,
    files: Files,
    index: LineIndex<'a>,
    errors: Vec<ConfigError>,
}

/// Parse and validate `text` (see [`super::parse`] and [`super::load`]).
pub(crate) fn parse(
    text: &str,
    file: &Path,
    base: &Path,
    files: Files,
) -> Result<Config, ConfigErrors> {
    let mut w = Walker { text, file, base, files, index: LineIndex::new(text), errors: Vec::new() };
    let config = match DeTable::parse(text) {
        Ok(doc) => Some(w.root(doc.span(), doc.get_ref())),
        Err(err) => {
            w.syntax_error(&err);
            None
        }
    };
    match config {
        Some(config) if w.errors.is_empty() => Ok(config),
        _ => {
            w.errors.sort_by_key(|e| e.position.map(|p| (p.line, p.column)));
            Err(ConfigErrors { errors: w.errors })
        }
    }
}

impl<'a> Walker<'a> {
    fn error(
        &mut self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        let (position, line, width) = self.index.locate(&span);
        // Never echo a secret back into a terminal or a log.
        let source_line = (!key.ends_with("http_token")).then_some(line);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            position: Some(position),
            key: key.to_string(),
            message: message.into(),
            help,
            source_line,
            width,
        });
    }

    fn syntax_error(&mut self, err: &toml::de::Error) {
        let span = err.span().unwrap_or(0..0);
        let msg = err.message().trim().replace('\n', "; ");
        let (_, line, _) = self.index.locate(&span);
        let start = span.start.min(self.text.len());
        if msg.starts_with("duplicate key") {
            self.duplicate(span, &line);
            return;
        }
        let key = context_key(self.text, start);
        let at = self.text.get(start..).unwrap_or_default();
        let (message, help) = match at.chars().next() {
            // A control character (NUL, a stray escape) is invisible: name it.
            Some(c) if c.is_control() && c != '\n' && c != '\r' && c != '\t' => (
                format!("invalid TOML: {msg}: found the control character U+{:04X}", c as u32),
                "remove it: TOML allows no control character but tab in strings and comments; inside a string write it as an escape such as \\u0000"
                    .to_string(),
            ),
            _ => (format!("invalid TOML: {msg}"), syntax_help(&msg, at, &line)),
        };
        self.error(span, &key, message, Some(help));
    }

    /// TOML refused a key or table defined twice; say which, in hale's terms.
    fn duplicate(&mut self, span: Range<usize>, line: &str) {
        let header = line.trim_start().starts_with('[').then(|| header_parts(line));
        match header {
            Some(parts) => {
                let path = parts.iter().fold(String::new(), |p, k| join(&p, k));
                let (message, help) = match parts.as_slice() {
                    [c, _] if c == "components" => (
                        "this component is already defined: component names must be unique",
                        "rename one of the components or merge the two tables",
                    ),
                    // `restart = [argv]` (an external action) and a `[components.X.restart]`
                    // table cannot both exist: TOML sees the key defined twice.
                    [c, name, r]
                        if c == "components"
                            && r == "restart"
                            && self.component_sets_restart(name) =>
                    {
                        (
                            "`restart` is both an action (`restart = [...]`) and the restart settings table",
                            "move the action into the table as `action = [...]` under this header",
                        )
                    }
                    _ => (
                        "this table is already defined",
                        "a table may appear only once; merge the two",
                    ),
                };
                self.error(span, &path, message, Some(help.to_string()));
            }
            None => {
                // `key = ...` repeated in a table body, or in an inline table: the span is the
                // second key, which may be nested inside the line's own key.
                let start = span.start.min(self.text.len());
                let mut path = context_key(self.text, start);
                let repeated = key_at(self.text.get(start..).unwrap_or_default());
                if !repeated.is_empty()
                    && !path.ends_with(&format!(".{}", toml_key(&repeated)))
                    && path != toml_key(&repeated)
                {
                    path = join(&path, &repeated);
                }
                self.error(
                    span,
                    &path,
                    "this key is already set in this table",
                    Some("a key may appear only once in a table; remove one".to_string()),
                )
            }
        }
    }

    /// Does the body of `[components.NAME]` (as written, before any sub-table) set `restart`?
    fn component_sets_restart(&self, name: &str) -> bool {
        let mut inside = false;
        for line in self.text.lines() {
            let t = line.trim_start();
            if t.starts_with('[') {
                let parts = header_parts(line);
                inside = parts.len() == 2 && parts[0] == "components" && parts[1] == name;
            } else if inside && line_key(line).is_some_and(|(k, _)| k == ["restart"]) {
                return true;
            }
        }
        false
    }

    // ------------------------------------------------------------------ generic readers

    fn wrong_type(&mut self, it: &Item<'_, '_>, expected: &str, help: Option<String>) {
        let what = if it.name == "http_token" {
            // Never echo a secret: name the type only.
            let t = it.val.get_ref().type_str();
            format!("a value of type {t}")
        } else {
            found(it.val.get_ref())
        };
        let msg = format!("expected {expected}, found {what}");
        self.error(it.span(), &it.path, msg, help);
    }

    /// Report keys of `tbl` not in `allowed`; `hint` may add a key-specific help prefix.
    fn unknown_keys(
        &mut self,
        tbl: &Tbl<'_, '_>,
        allowed: &[&str],
        hint: &dyn Fn(&str) -> Option<String>,
    ) {
        for it in &tbl.items {
            if allowed.contains(&it.name) {
                continue;
            }
            let mut help = did_you_mean(it.name, allowed, "keys");
            if suggest(it.name, allowed).is_none()
                && let Some(h) = hint(it.name)
            {
                help = format!("{h}; {help}");
            }
            self.error(it.key_span.clone(), &it.path, "unknown key", Some(help));
        }
    }

    fn table<'t, 'i>(&mut self, it: &Item<'t, 'i>, help: Option<String>) -> Option<Tbl<'t, 'i>> {
        match it.val.get_ref() {
            DeValue::Table(t) => Some(Tbl::new(&it.path, it.span(), t)),
            _ => {
                self.wrong_type(it, "a table", help);
                None
            }
        }
    }

    fn string(&mut self, it: &Item<'_, '_>, example: &str) -> Option<String> {
        match it.val.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            // `shell = ["./c", "--flag"]`: an argv list under the key for a command line.
            DeValue::Array(arr)
                if matches!(it.name, "shell" | "sh")
                    && !arr.is_empty()
                    && arr.iter().all(|el| matches!(el.get_ref(), DeValue::String(_))) =>
            {
                let words: Vec<&str> = arr
                    .iter()
                    .filter_map(|el| match el.get_ref() {
                        DeValue::String(w) => Some(w.as_ref()),
                        _ => None,
                    })
                    .collect();
                let argv_key = if it.name == "shell" { "command" } else { "exec" };
                let quoted: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
                let help = format!(
                    "write {} = {:?}, or {argv_key} = [{}] to run it without a shell",
                    it.name,
                    words.join(" "),
                    quoted.join(", "),
                );
                self.wrong_type(it, "a string", Some(help));
                None
            }
            _ => {
                let help = format!("write {} = {example}", it.name);
                self.wrong_type(it, "a string", Some(help));
                None
            }
        }
    }

    fn nonempty_string(&mut self, it: &Item<'_, '_>, example: &str) -> Option<String> {
        let s = self.string(it, example)?;
        if s.trim().is_empty() {
            let help = format!("write {} = {example}", it.name);
            self.error(it.span(), &it.path, "must not be empty", Some(help));
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, it: &Item<'_, '_>) -> Option<bool> {
        match it.val.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                let help = format!("write {} = true or {} = false", it.name, it.name);
                self.wrong_type(it, "a boolean", Some(help));
                None
            }
        }
    }

    fn int(&mut self, it: &Item<'_, '_>, min: i64, max: i64, example: &str) -> Option<i64> {
        match int_value(it.val.get_ref()) {
            Some(Ok(n)) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                let msg = format!("must be between {min} and {max}");
                let help = format!("write {} = {example}", it.name);
                self.error(it.span(), &it.path, msg, Some(help));
                None
            }
            None => {
                let help = format!("write {} = {example}", it.name);
                self.wrong_type(it, "an integer", Some(help));
                None
            }
        }
    }

    fn u32(&mut self, it: &Item<'_, '_>, example: &str) -> Option<u32> {
        self.int(it, 0, i64::from(u32::MAX), example).and_then(|n| u32::try_from(n).ok())
    }

    fn float(&mut self, it: &Item<'_, '_>, example: &str) -> Option<f64> {
        let v = match it.val.get_ref() {
            DeValue::Float(x) => x.as_str().parse::<f64>().ok(),
            DeValue::Integer(_) => match int_value(it.val.get_ref()) {
                Some(Ok(n)) => Some(n as f64),
                _ => None,
            },
            _ => {
                let help = format!("write {} = {example}", it.name);
                self.wrong_type(it, "a number", Some(help));
                return None;
            }
        };
        match v {
            Some(x) if x.is_finite() => Some(x),
            _ => {
                let help = format!("write {} = {example}", it.name);
                self.error(it.span(), &it.path, "must be a finite number", Some(help));
                None
            }
        }
    }

    fn duration(&mut self, it: &Item<'_, '_>) -> Option<Duration> {
        let DeValue::String(s) = it.val.get_ref() else {
            let help = format!("{DURATION_HELP}: write {} = \"10s\"", it.name);
            self.wrong_type(it, "a duration string", Some(help));
            return None;
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                let msg = format!("invalid duration {:?}: {e}", s.as_ref());
                self.error(it.span(), &it.path, msg, Some(DURATION_HELP.to_string()));
                None
            }
        }
    }

    fn positive_duration(&mut self, it: &Item<'_, '_>) -> Option<Duration> {
        let d = self.duration(it)?;
        if d.is_zero() {
            let help = format!("write {} = \"1s\", for example", it.name);
            self.error(it.span(), &it.path, "must be greater than 0", Some(help));
            return None;
        }
        Some(d)
    }

    fn path(&mut self, it: &Item<'_, '_>, example: &str) -> Option<PathBuf> {
        self.nonempty_string(it, example).map(|s| self.base.join(s))
    }

    /// A non-empty array of strings whose first element is non-empty.
    fn argv(&mut self, it: &Item<'_, '_>, example: &str) -> Option<Vec<String>> {
        let DeValue::Array(arr) = it.val.get_ref() else {
            let help = match it.val.get_ref() {
                DeValue::String(s) if it.name == "command" => format!(
                    "write command = {} (an argv list), or shell = {:?} to run it with /bin/sh -c",
                    argv_example(s),
                    s.as_ref()
                ),
                DeValue::String(s) => {
                    format!("write {} = {} (an argv list)", it.name, argv_example(s))
                }
                _ => format!("write {} = {example}", it.name),
            };
            self.wrong_type(it, "an array of strings", Some(help));
            return None;
        };
        let mut out = Vec::with_capacity(arr.len());
        let mut ok = true;
        for (i, el) in arr.iter().enumerate() {
            match el.get_ref() {
                DeValue::String(s) => out.push(s.to_string()),
                other => {
                    let msg = format!("expected a string, found {}", found(other));
                    let path = format!("{}[{i}]", it.path);
                    let help = "quote every argument, e.g. \"8080\"".to_string();
                    self.error(el.span(), &path, msg, Some(help));
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        if out.first().is_none_or(|p| p.is_empty()) {
            let help = format!("write {} = {example}", it.name);
            let msg = "must name a program: the list is empty or starts with \"\"";
            self.error(it.span(), &it.path, msg, Some(help));
            return None;
        }
        Some(out)
    }

    /// A table of strings (env, headers). With `scalars`, integers and booleans are
    /// accepted and written as text.
    fn string_map(
        &mut self,
        it: &Item<'_, '_>,
        scalars: bool,
        example: &str,
    ) -> Option<Vec<(String, String)>> {
        let help = format!("write {} = {example}", it.name);
        let tbl = self.table(it, Some(help))?;
        let mut out = Vec::with_capacity(tbl.items.len());
        for kv in &tbl.items {
            let value = match kv.val.get_ref() {
                DeValue::String(s) => s.to_string(),
                DeValue::Integer(i) if scalars => match int_value(kv.val.get_ref()) {
                    Some(Ok(n)) => n.to_string(),
                    _ => i.to_string(),
                },
                DeValue::Boolean(b) if scalars => b.to_string(),
                _ => {
                    let what = if scalars { "a string, integer or boolean" } else { "a string" };
                    self.wrong_type(kv, what, Some(format!("write {} = \"...\"", kv.name)));
                    continue;
                }
            };
            if kv.name.is_empty() || kv.name.contains(['=', '\0']) {
                let help = "a name is not empty and has no `=`: e.g. RUST_LOG = \"info\"";
                self.error(
                    kv.key_span.clone(),
                    &kv.path,
                    "invalid name: empty or contains `=` or NUL",
                    Some(help.to_string()),
                );
                continue;
            }
            if value.contains('\0') {
                let help = "remove the \\u0000: a process's environment cannot hold a NUL";
                self.error(
                    kv.span(),
                    &kv.path,
                    "the value contains a NUL byte",
                    Some(help.to_string()),
                );
                continue;
            }
            out.push((kv.name.to_string(), value));
        }
        Some(out)
    }

    fn exit_statuses(&mut self, it: &Item<'_, '_>) -> Option<Vec<i32>> {
        let DeValue::Array(arr) = it.val.get_ref() else {
            let help = format!("write {} = [1, 2]", it.name);
            self.wrong_type(it, "an array of exit codes", Some(help));
            return None;
        };
        let mut out = Vec::with_capacity(arr.len());
        for (i, el) in arr.iter().enumerate() {
            let path = format!("{}[{i}]", it.path);
            match int_value(el.get_ref()) {
                Some(Ok(n)) if (0..=255).contains(&n) => out.push(n as i32),
                Some(_) => self.error(
                    el.span(),
                    &path,
                    "an exit code is between 0 and 255",
                    Some(format!("write {} = [1, 2] with codes from 0 to 255", it.name)),
                ),
                None => {
                    let msg =
                        format!("expected an exit code (integer), found {}", found(el.get_ref()));
                    let help = format!("write {} = [1, 2], numbers without quotes", it.name);
                    self.error(el.span(), &path, msg, Some(help));
                }
            }
        }
        Some(out)
    }

    fn choice<T: Copy>(&mut self, it: &Item<'_, '_>, choices: &[(&str, T)]) -> Option<T> {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let DeValue::String(s) = it.val.get_ref() else {
            let help = format!("valid values: {}", names.join(", "));
            self.wrong_type(it, "a string", Some(help));
            return None;
        };
        if let Some(&(_, v)) = choices.iter().find(|(n, _)| *n == s.as_ref()) {
            return Some(v);
        }
        let msg = format!("invalid value {:?}", s.as_ref());
        let help = did_you_mean(s, &names, "values");
        self.error(it.span(), &it.path, msg, Some(help));
        None
    }

    fn host_port(&mut self, it: &Item<'_, '_>, example: &str) -> Option<String> {
        let s = self.string(it, example)?;
        match check_host_port(&s) {
            Ok(()) => Some(s),
            Err(msg) => {
                let help = format!("write {} = {example}", it.name);
                self.error(it.span(), &it.path, msg, Some(help));
                None
            }
        }
    }

    // ------------------------------------------------------------------ the document

    fn root(&mut self, span: Range<usize>, doc: &DeTable<'_>) -> Config {
        let root = Tbl::new("", span.clone(), doc);
        for it in &root.items {
            if ROOT_KEYS.contains(&it.name) {
                continue;
            }
            let mut help = did_you_mean(it.name, ROOT_KEYS, "keys");
            if suggest(it.name, ROOT_KEYS).is_none() {
                // `[services.web]` (Compose's word) is a table of components under another name;
                // anything else is most likely a daemon setting written outside [hale].
                let hint = match it.val.get_ref() {
                    // `[web]` with `command = ...`: a component without its `components.`.
                    DeValue::Table(t)
                        if t.keys().any(|k| COMPONENT_KEYS.contains(&k.get_ref().as_ref())) =>
                    {
                        let name = toml_key(it.name);
                        format!(
                            "components are [components.NAME] tables: write [components.{name}]"
                        )
                    }
                    // `[services.web]`: a table of components under another name.
                    DeValue::Table(t)
                        if !t.is_empty()
                            && t.values().all(|v| matches!(v.get_ref(), DeValue::Table(_))) =>
                    {
                        let first =
                            t.keys().next().map(|k| toml_key(k.get_ref())).unwrap_or_default();
                        format!(
                            "components are [components.NAME] tables: write [components.{first}]"
                        )
                    }
                    _ if HALE_KEYS.contains(&it.name) => {
                        format!("`{}` is a daemon setting: it goes in the [hale] table", it.name)
                    }
                    _ if COMPONENT_KEYS.contains(&it.name) => format!(
                        "`{}` is a component's key: it goes in a [components.NAME] table",
                        it.name
                    ),
                    _ => "daemon settings go in [hale], components in [components.NAME] tables"
                        .to_string(),
                };
                help = format!("{hint}; {help}");
            }
            self.error(it.key_span.clone(), &it.path, "unknown key", Some(help));
        }
        let hale = match root.get("hale") {
            Some(it) => self.hale(it),
            None => DaemonSettings::defaults(self.base),
        };
        let mut components = Vec::new();
        let mut deps = Vec::new();
        const ADD_ONE: &str = "add a component: [components.web] with command = [\"./web\"]";
        match root.get("components") {
            Some(it) => {
                let help = "write [components.NAME] tables".to_string();
                if let Some(tbl) = self.table(it, Some(help)) {
                    if tbl.items.is_empty() {
                        let msg = "no components: [components] has no [components.NAME] table";
                        self.error(it.key_span.clone(), "components", msg, Some(ADD_ONE.into()));
                    }
                    for c in &tbl.items {
                        if let Some((comp, d)) = self.component(c) {
                            components.push(comp);
                            deps.push(d);
                        }
                    }
                }
            }
            // A file without components supervises nothing: an empty file, the wrong file, or
            // components spelt some other way (reported above as an unknown key).
            None => {
                let end = self.text.len();
                let msg = "no components: the file defines nothing to supervise";
                self.error(end..end, "components", msg, Some(ADD_ONE.into()));
            }
        }
        self.check_dependencies(&components, &deps);
        Config {
            path: self.file.to_path_buf(),
            base_dir: self.base.to_path_buf(),
            hale,
            components,
        }
    }

    fn hale(&mut self, it: &Item<'_, '_>) -> DaemonSettings {
        let mut s = DaemonSettings::defaults(self.base);
        let Some(tbl) = self.table(it, Some("write a [hale] table".to_string())) else {
            return s;
        };
        self.unknown_keys(&tbl, HALE_KEYS, &|_| None);
        if let Some(v) = tbl.get("state_dir").and_then(|i| self.path(i, "\".hale\"")) {
            s.state_dir = v;
        }
        s.http = tbl.get("http").and_then(|i| self.host_port(i, "\"127.0.0.1:9464\""));
        s.http_token =
            tbl.get("http_token").and_then(|i| self.nonempty_string(i, "\"a-long-random-secret\""));
        s.grpc_health =
            tbl.get("grpc_health").and_then(|i| self.host_port(i, "\"127.0.0.1:9465\""));
        if let Some(i) = tbl.get("log_max_size") {
            let size = match i.val.get_ref() {
                DeValue::String(text) => parse_size(text),
                DeValue::Integer(_) => match int_value(i.val.get_ref()) {
                    Some(Ok(n)) if n > 0 => Ok(n as u64),
                    _ => Err("size must be greater than 0".to_string()),
                },
                other => Err(format!("expected a size, found {}", found(other))),
            };
            match size {
                Ok(n) => s.log_max_size = n,
                Err(msg) => {
                    let help = "sizes are bytes or strings such as \"10MiB\", \"512KiB\", \"1MB\"";
                    self.error(i.span(), &i.path, msg, Some(help.to_string()));
                }
            }
        }
        if let Some(v) = tbl.get("log_keep").and_then(|i| self.u32(i, "5")) {
            s.log_keep = v;
        }
        s.on_state_change = tbl.get("on_state_change").and_then(|i| self.hook(i));
        s
    }

    /// `on_state_change`: an argv list, a webhook URL, or `{ command | url, timeout }`.
    fn hook(&mut self, it: &Item<'_, '_>) -> Option<Hook> {
        const EXAMPLE: &str = "[\"./notify.sh\"], \"http://127.0.0.1:9000/hook\", or { command = [\"./notify.sh\"], timeout = \"10s\" }";
        match it.val.get_ref() {
            DeValue::Array(_) => {
                let argv = self.argv(it, "[\"./notify.sh\"]")?;
                Some(Hook { action: HookAction::Command(argv), timeout: DEFAULT_HOOK_TIMEOUT })
            }
            DeValue::String(url) => {
                self.url(it, url)?;
                Some(Hook {
                    action: HookAction::Webhook(url.to_string()),
                    timeout: DEFAULT_HOOK_TIMEOUT,
                })
            }
            DeValue::Table(_) => {
                let tbl = self.table(it, None)?;
                self.unknown_keys(&tbl, HOOK_KEYS, &|_| None);
                let timeout = match tbl.get("timeout") {
                    Some(i) => self.positive_duration(i)?,
                    None => DEFAULT_HOOK_TIMEOUT,
                };
                let action = match (tbl.get("command"), tbl.get("url")) {
                    (Some(c), None) => HookAction::Command(self.argv(c, "[\"./notify.sh\"]")?),
                    (None, Some(u)) => {
                        let url = self.nonempty_string(u, "\"http://127.0.0.1:9000/hook\"")?;
                        self.url(u, &url)?;
                        HookAction::Webhook(url)
                    }
                    (Some(_), Some(u)) => {
                        let msg = "a hook is a command or a url, not both";
                        self.error(
                            u.key_span.clone(),
                            &u.path,
                            msg,
                            Some("remove one of them".to_string()),
                        );
                        return None;
                    }
                    (None, None) => {
                        self.missing(
                            &tbl,
                            "command",
                            "command = [\"./notify.sh\"] or url = \"http://127.0.0.1:9000/hook\"",
                        );
                        return None;
                    }
                };
                Some(Hook { action, timeout })
            }
            _ => {
                self.wrong_type(
                    it,
                    "an argv list, a URL or a table",
                    Some(format!("write on_state_change = {EXAMPLE}")),
                );
                None
            }
        }
    }

    // ------------------------------------------------------------------ components

    fn component(&mut self, it: &Item<'_, '_>) -> Option<(ComponentConfig, Vec<DepRef>)> {
        if let Err(msg) = check_component_name(it.name) {
            let help = "names become file names: e.g. [components.api-v2]".to_string();
            self.error(it.key_span.clone(), &it.path, msg, Some(help));
        }
        let tbl =
            self.table(it, Some(format!("write a [{}] table with command = [...]", it.path)))?;
        let restart_tbl = match tbl.get("restart") {
            Some(r) if matches!(r.val.get_ref(), DeValue::Table(_)) => self.table(r, None),
            _ => None,
        };
        let path = tbl.path.clone();
        let probe_like: Vec<&str> = tbl
            .items
            .iter()
            .filter(|i| match i.val.get_ref() {
                DeValue::Table(t) => t.keys().any(|k| CHECK_KEYS.contains(&k.get_ref().as_ref())),
                _ => false,
            })
            .map(|i| i.name)
            .collect();
        self.unknown_keys(&tbl, COMPONENT_KEYS, &|key| {
            if probe_like.contains(&key) {
                Some(format!(
                    "a probe table is [{path}.startup], [{path}.liveness] or [{path}.readiness]"
                ))
            } else if RESTART_KEYS.contains(&key) {
                Some(format!("`{key}` belongs in the [{path}.restart] table"))
            } else if CHECK_KEYS.contains(&key) || PROBE_KEYS.contains(&key) {
                Some(format!(
                    "`{key}` belongs in a probe table: [{path}.liveness], .startup or .readiness"
                ))
            } else {
                None
            }
        });

        let run = self.run(&tbl, restart_tbl.as_ref());
        let is_process = run.as_ref().is_some_and(Run::is_process);
        let (line, ..) = self.index.locate(&tbl.span);
        let mut c = ComponentConfig {
            name: it.name.to_string(),
            line: line.line,
            run: run.unwrap_or(Run::Command(Vec::new())),
            cwd: None,
            env: Vec::new(),
            env_file: None,
            depends_on: Vec::new(),
            ready: ReadyMode::Probe,
            watchdog: None,
            notify_access: NotifyAccess::Main,
            start_timeout: DEFAULT_START_TIMEOUT,
            stop_signal: DEFAULT_STOP_SIGNAL,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            restart_timeout: DEFAULT_RESTART_TIMEOUT,
            success_exit_status: Vec::new(),
            restart_prevent_exit_status: Vec::new(),
            restart_force_exit_status: Vec::new(),
            restart: RestartSettings::default(),
            startup: None,
            liveness: None,
            readiness: None,
            on_state_change: None,
        };
        c.on_state_change = tbl.get("on_state_change").and_then(|i| self.hook(i));
        c.cwd = tbl.get("cwd").and_then(|i| self.path(i, "\"services/api\""));
        if let Some(v) =
            tbl.get("env").and_then(|i| self.string_map(i, true, "{ RUST_LOG = \"info\" }"))
        {
            c.env = v;
        }
        if let Some(i) = tbl.get("env_file") {
            c.env_file = self.path(i, "\".env\"");
            if let (Some(path), Files::Read) = (&c.env_file, self.files) {
                self.env_file(i, path);
            }
        }
        let mut deps = Vec::new();
        if let Some(i) = tbl.get("depends_on") {
            deps = self.depends_on(i, &mut c.depends_on);
        }
        // sd_notify and the watchdog need a process that hale spawned.
        let external = run_known(&c.run) && !is_process;
        let needs_process = |w: &mut Self, i: &Item<'_, '_>| {
            if external {
                let msg = "only a process component (command or shell) can use sd_notify";
                w.error(i.key_span.clone(), &i.path, msg, Some(format!("remove `{}`", i.name)));
            }
        };
        if let Some(i) = tbl.get("ready")
            && let Some(v) = self.choice(i, READY_MODES)
        {
            c.ready = v;
            if v == ReadyMode::Notify {
                needs_process(self, i);
            }
        }
        if let Some(i) = tbl.get("watchdog") {
            c.watchdog = self.positive_duration(i);
            needs_process(self, i);
        }
        if let Some(i) = tbl.get("notify_access") {
            if let Some(v) = self.choice(i, NOTIFY_ACCESS) {
                c.notify_access = v;
            }
            needs_process(self, i);
        }
        if let Some(v) = tbl.get("start_timeout").and_then(|i| self.positive_duration(i)) {
            c.start_timeout = v;
        }
        if let Some(i) = tbl.get("stop_signal") {
            let sig = match i.val.get_ref() {
                DeValue::String(s) => parse_signal(s),
                DeValue::Integer(_) => match int_value(i.val.get_ref()) {
                    Some(Ok(n)) => check_signal_number(n),
                    _ => Err("signal number out of range".to_string()),
                },
                other => Err(format!("expected a signal name, found {}", found(other))),
            };
            match sig {
                Ok(n) => c.stop_signal = n,
                Err(msg) => self.error(i.span(), &i.path, msg, Some(signal_help())),
            }
        }
        if let Some(v) = tbl.get("stop_timeout").and_then(|i| self.duration(i)) {
            c.stop_timeout = v;
        }
        if let Some(v) = tbl.get("restart_timeout").and_then(|i| self.positive_duration(i)) {
            c.restart_timeout = v;
        }
        if let Some(v) = tbl.get("success_exit_status").and_then(|i| self.exit_statuses(i)) {
            c.success_exit_status = v;
        }
        if let Some(v) = tbl.get("restart_prevent_exit_status").and_then(|i| self.exit_statuses(i))
        {
            c.restart_prevent_exit_status = v;
        }
        if let Some(v) = tbl.get("restart_force_exit_status").and_then(|i| self.exit_statuses(i)) {
            c.restart_force_exit_status = v;
        }
        if let Some(r) = &restart_tbl {
            c.restart = self.restart(r);
        }
        for kind in [ProbeKind::Startup, ProbeKind::Liveness, ProbeKind::Readiness] {
            if let Some(i) = tbl.get(kind.as_str()) {
                let probe = self.probe(i, kind, external).map(Box::new);
                match kind {
                    ProbeKind::Startup => c.startup = probe,
                    ProbeKind::Liveness => c.liveness = probe,
                    ProbeKind::Readiness => c.readiness = probe,
                }
            }
        }
        Some((c, deps))
    }

    /// Exactly one of command / shell / docker / actions (start, stop, restart = [...],
    /// restart.action). `None` after reporting when there is none or several.
    fn run(&mut self, tbl: &Tbl<'_, '_>, restart_tbl: Option<&Tbl<'_, '_>>) -> Option<Run> {
        #[derive(PartialEq, Clone, Copy)]
        enum Family {
            Command,
            Shell,
            Docker,
            Actions,
        }
        let mut present: Vec<(Family, &Item<'_, '_>)> = Vec::new();
        for it in &tbl.items {
            let fam = match it.name {
                "command" => Family::Command,
                "shell" => Family::Shell,
                "docker" => Family::Docker,
                "start" | "stop" => Family::Actions,
                "restart" => match it.val.get_ref() {
                    DeValue::Table(_) => continue,
                    DeValue::Array(_) => Family::Actions,
                    _ => {
                        let help = format!(
                            "restart settings go in a table: [{}.restart] with policy = \"always\"; an external component's restart action is an argv list",
                            tbl.path
                        );
                        self.wrong_type(it, "a table or an array", Some(help));
                        continue;
                    }
                },
                _ => continue,
            };
            present.push((fam, it));
        }
        if let Some(action) = restart_tbl.and_then(|r| r.get("action")) {
            present.push((Family::Actions, action));
            present.sort_by_key(|(_, it)| it.key_span.start);
        }
        let Some(&(first, first_item)) = present.first() else {
            let msg = "no run key: a component needs one of command, shell, docker, or start/stop/restart actions";
            let help = "add command = [\"program\", \"arg\"] (or shell = \"...\" or docker = \"container\")";
            self.error(tbl.span.clone(), &tbl.path, msg, Some(help.to_string()));
            return None;
        };
        let mut conflict = false;
        let (first_pos, ..) = self.index.locate(&first_item.key_span);
        for (fam, it) in &present {
            if *fam != first {
                conflict = true;
                let msg = format!(
                    "conflicts with `{}` on line {}: a component has exactly one of command, shell, docker, or start/stop/restart actions",
                    first_item.name, first_pos.line
                );
                let help = format!("remove `{}` or `{}`", it.name, first_item.name);
                self.error(it.key_span.clone(), &it.path, msg, Some(help));
            }
        }
        if conflict {
            // Still report what is wrong inside each of them.
            for (fam, it) in &present {
                match fam {
                    Family::Command | Family::Actions => {
                        self.argv(it, "[\"program\", \"arg\"]");
                    }
                    Family::Shell | Family::Docker => {
                        self.nonempty_string(it, "\"...\"");
                    }
                }
            }
            return None;
        }
        match first {
            Family::Command => {
                self.argv(first_item, "[\"./api\", \"--port\", \"8080\"]").map(Run::Command)
            }
            Family::Shell => {
                self.nonempty_string(first_item, "\"./api --port 8080\"").map(Run::Shell)
            }
            Family::Docker => {
                self.nonempty_string(first_item, "\"container-name\"").map(Run::Docker)
            }
            Family::Actions => {
                let mut start = None;
                let mut stop = None;
                let mut restart = None;
                let mut ok = true;
                for (_, it) in &present {
                    let verb = if it.name == "action" { "restart" } else { it.name };
                    let v = self.argv(it, &format!("[\"systemctl\", \"{verb}\", \"thing\"]"));
                    ok &= v.is_some();
                    match it.name {
                        "start" => start = v,
                        "stop" => stop = v,
                        _ => restart = v,
                    }
                }
                ok.then_some(Run::Actions { start, stop, restart })
            }
        }
    }

    fn depends_on(
        &mut self,
        it: &Item<'_, '_>,
        out: &mut Vec<(String, DependCondition)>,
    ) -> Vec<DepRef> {
        let mut refs = Vec::new();
        match it.val.get_ref() {
            DeValue::Table(t) => {
                let tbl = Tbl::new(&it.path, it.span(), t);
                for d in &tbl.items {
                    if let Some(cond) = self.choice(d, CONDITIONS) {
                        out.push((d.name.to_string(), cond));
                    }
                    refs.push(DepRef {
                        name: d.name.to_string(),
                        path: d.path.clone(),
                        key_span: d.key_span.clone(),
                    });
                }
            }
            // Short form, as in Compose: a list of names, each meaning "started".
            DeValue::Array(arr) => {
                for (i, el) in arr.iter().enumerate() {
                    let path = format!("{}[{i}]", it.path);
                    match el.get_ref() {
                        DeValue::String(name) => {
                            if out.iter().any(|(n, _)| n == name.as_ref()) {
                                self.error(
                                    el.span(),
                                    &path,
                                    format!("`{name}` is listed twice"),
                                    Some("remove the second one".to_string()),
                                );
                                continue;
                            }
                            out.push((name.to_string(), DependCondition::Started));
                            refs.push(DepRef { name: name.to_string(), path, key_span: el.span() });
                        }
                        other => {
                            let msg = format!("expected a component name, found {}", found(other));
                            let help =
                                "write depends_on = [\"db\"] or depends_on = { db = \"healthy\" }";
                            self.error(el.span(), &path, msg, Some(help.to_string()));
                        }
                    }
                }
            }
            _ => {
                let help = "write depends_on = { db = \"healthy\" }".to_string();
                self.wrong_type(it, "a table of component = condition", Some(help));
            }
        }
        refs
    }

    fn check_dependencies(&mut self, comps: &[ComponentConfig], deps: &[Vec<DepRef>]) {
        let names: Vec<&str> = comps.iter().map(|c| c.name.as_str()).collect();
        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        // Edges to known components; unknown ones are reported here.
        let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); comps.len()];
        for (i, refs) in deps.iter().enumerate() {
            for (j, d) in refs.iter().enumerate() {
                match index.get(d.name.as_str()) {
                    Some(&target) => edges[i].push((target, j)),
                    None => {
                        let msg = format!("unknown component `{}`", d.name);
                        let help = match suggest(&d.name, &names) {
                            Some(s) => {
                                format!("did you mean `{s}`? components: {}", names.join(", "))
                            }
                            None if names.is_empty() => "there are no components".to_string(),
                            None => format!("components: {}", names.join(", ")),
                        };
                        self.error(d.key_span.clone(), &d.path, msg, Some(help));
                    }
                }
            }
        }
        // Depth-first search; each back edge closes one cycle, reported at that edge.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut mark = vec![Mark::New; comps.len()];
        for start in 0..comps.len() {
            if mark[start] != Mark::New {
                continue;
            }
            // Stack of (node, next edge index); `path` holds the active nodes in order.
            let mut stack = vec![(start, 0usize)];
            let mut path = vec![start];
            mark[start] = Mark::Active;
            while let Some(top) = stack.last_mut() {
                let (node, next) = *top;
                top.1 += 1;
                if let Some(&(target, dep)) = edges[node].get(next) {
                    match mark[target] {
                        Mark::New => {
                            mark[target] = Mark::Active;
                            stack.push((target, 0));
                            path.push(target);
                        }
                        Mark::Active => {
                            let from = path.iter().position(|&n| n == target).unwrap_or(0);
                            let mut cycle: Vec<&str> =
                                path[from..].iter().map(|&n| names[n]).collect();
                            cycle.push(names[target]);
                            if let Some(d) = deps.get(node).and_then(|r| r.get(dep)) {
                                let msg = format!("dependency cycle: {}", cycle.join(" -> "));
                                let help = "remove one of these dependencies".to_string();
                                self.error(d.key_span.clone(), &d.path, msg, Some(help));
                            }
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[node] = Mark::Done;
                    stack.pop();
                    path.pop();
                }
            }
        }
    }

    // ------------------------------------------------------------------ restart

    fn restart(&mut self, tbl: &Tbl<'_, '_>) -> RestartSettings {
        let mut r = RestartSettings::default();
        self.unknown_keys(tbl, RESTART_KEYS, &|_| None);
        if let Some(v) = tbl.get("policy").and_then(|i| self.choice(i, POLICIES)) {
            r.policy = v;
        }
        if let Some(v) = tbl.get("max_restarts").and_then(|i| self.u32(i, "10")) {
            r.max_restarts = v;
        }
        if let Some(v) = tbl.get("window").and_then(|i| self.positive_duration(i)) {
            r.window = v;
        }
        if let Some(v) = tbl.get("min_uptime").and_then(|i| self.duration(i)) {
            r.min_uptime = v;
        }
        let initial = tbl.get("initial_backoff");
        let max = tbl.get("max_backoff");
        let initial_ok = initial.map(|i| self.duration(i));
        let max_ok = max.map(|i| self.duration(i));
        if let Some(Some(v)) = initial_ok {
            r.initial_backoff = v;
        }
        if let Some(Some(v)) = max_ok {
            r.max_backoff = v;
        }
        // Compare only values that parsed (or are defaults).
        if !matches!(initial_ok, Some(None))
            && !matches!(max_ok, Some(None))
            && r.max_backoff < r.initial_backoff
            && let Some(at) = max.or(initial)
        {
            let msg = format!(
                "max_backoff ({}{}) is less than initial_backoff ({}{})",
                humantime::format_duration(r.max_backoff),
                if max.is_none() { ", the default" } else { "" },
                humantime::format_duration(r.initial_backoff),
                if initial.is_none() { ", the default" } else { "" },
            );
            let help = format!(
                "raise max_backoff to at least {}, or lower initial_backoff",
                humantime::format_duration(r.initial_backoff)
            );
            self.error(at.span(), &at.path, msg, Some(help));
        }
        if let Some(i) = tbl.get("multiplier")
            && let Some(m) = self.float(i, "2.0")
        {
            if m < 1.0 {
                let msg = format!("must be at least 1 (found {m})");
                let help = "1 keeps the delay constant; 2.0 doubles it each time".to_string();
                self.error(i.span(), &i.path, msg, Some(help));
            } else {
                r.multiplier = m;
            }
        }
        r
    }

    // ------------------------------------------------------------------ probes

    fn probe(&mut self, it: &Item<'_, '_>, kind: ProbeKind, external: bool) -> Option<ProbeConfig> {
        let help = format!(
            "write a [{}] table with one check key, e.g. tcp = \"127.0.0.1:8080\"",
            it.path
        );
        let tbl = self.table(it, Some(help))?;
        let allowed: Vec<&str> = CHECK_KEYS.iter().chain(PROBE_KEYS).copied().collect();
        self.unknown_keys(&tbl, &allowed, &|_| None);

        let checks: Vec<&Item<'_, '_>> =
            tbl.items.iter().filter(|i| CHECK_KEYS.contains(&i.name)).collect();
        let check = match checks.as_slice() {
            [] => {
                let msg =
                    format!("no check: a {} probe needs exactly one check key", kind.as_str());
                let help = format!("add one of {}", CHECK_KEYS.join(", "));
                self.error(tbl.span.clone(), &tbl.path, msg, Some(help));
                None
            }
            [one] => self.check(one, external).and_then(|c| self.library_check(one, c)),
            [first, rest @ ..] => {
                let (pos, ..) = self.index.locate(&first.key_span);
                for extra in rest {
                    let msg = format!(
                        "conflicts with `{}` on line {}: a probe has exactly one check key",
                        first.name, pos.line
                    );
                    let help = format!("move `{}` into another probe or remove it", extra.name);
                    self.error(extra.key_span.clone(), &extra.path, msg, Some(help));
                }
                None
            }
        };

        let mut p = ProbeConfig::with_defaults(
            kind,
            check.clone().unwrap_or(CheckConfig::Sh(String::new())),
        );
        if let Some(v) = tbl.get("initial_delay").and_then(|i| self.duration(i)) {
            p.initial_delay = v;
        }
        if let Some(v) = tbl.get("period").and_then(|i| self.positive_duration(i)) {
            p.period = v;
        }
        if let Some(v) = tbl.get("timeout").and_then(|i| self.positive_duration(i)) {
            p.timeout = v;
        }
        if let Some(i) = tbl.get("failure_threshold")
            && let Some(v) = self.u32(i, "3")
        {
            if v == 0 {
                let help = "write failure_threshold = 3, for example".to_string();
                self.error(i.span(), &i.path, "must be greater than 0", Some(help));
            } else {
                p.failure_threshold = v;
            }
        }
        if let Some(i) = tbl.get("success_threshold")
            && let Some(v) = self.u32(i, "1")
        {
            if v == 0 {
                let help = "write success_threshold = 1, or remove the key".to_string();
                self.error(i.span(), &i.path, "must be greater than 0", Some(help));
            } else if v != 1 && kind != ProbeKind::Readiness {
                let msg = format!("must be 1 for a {} probe (found {v})", kind.as_str());
                let help =
                    "only a readiness probe may need several successes; remove the key".to_string();
                self.error(i.span(), &i.path, msg, Some(help));
            } else {
                p.success_threshold = v;
            }
        }
        if let Some(i) = tbl.get("termination_grace") {
            if kind == ProbeKind::Readiness {
                let msg = "only startup and liveness probes take termination_grace: readiness never stops the component";
                self.error(i.key_span.clone(), &i.path, msg, Some("remove the key".to_string()));
            } else {
                p.termination_grace = self.duration(i);
            }
        }
        check.map(|_| p)
    }

    fn check(&mut self, it: &Item<'_, '_>, external: bool) -> Option<CheckConfig> {
        let v = it.val.get_ref();
        match it.name {
            "exec" => self.argv(it, "[\"pg_isready\", \"-q\"]").map(CheckConfig::Exec),
            "sh" => self.nonempty_string(it, "\"curl -fs localhost:8080\"").map(CheckConfig::Sh),
            "tcp" => self.host_port(it, "\"127.0.0.1:8080\"").map(CheckConfig::Tcp),
            "docker" => self.nonempty_string(it, "\"container-name\"").map(CheckConfig::Docker),
            "http" => match v {
                DeValue::Table(_) => self.http_table(it),
                _ => {
                    let url = self.string(it, "\"http://127.0.0.1:8080/healthz\"")?;
                    self.url(it, &url)?;
                    Some(CheckConfig::Http {
                        url,
                        method: "GET".to_string(),
                        headers: Vec::new(),
                        status: (200, 399),
                        body_contains: None,
                        ca_file: None,
                        insecure: false,
                    })
                }
            },
            "grpc" => {
                match v {
                    DeValue::Table(_) => {
                        let tbl = self.table(it, None)?;
                        self.unknown_keys(&tbl, GRPC_KEYS, &|_| None);
                        let address = match tbl.get("address") {
                            Some(a) => self.host_port(a, "\"127.0.0.1:50051\""),
                            None => {
                                self.missing(&tbl, "address", "address = \"127.0.0.1:50051\"");
                                None
                            }
                        };
                        let service = tbl
                            .get("service")
                            .and_then(|s| self.string(s, "\"my.Service\""))
                            .unwrap_or_default();
                        let tls = tbl.get("tls").and_then(|t| self.boolean(t)).unwrap_or(false);
                        address.map(|address| CheckConfig::Grpc { address, service, tls })
                    }
                    _ => self.host_port(it, "\"127.0.0.1:50051\"").map(|address| {
                        CheckConfig::Grpc { address, service: String::new(), tls: false }
                    }),
                }
            }
            "process" => match v {
                DeValue::Boolean(true) => {
                    if external {
                        let msg = "`process = true` watches the process hale spawned; this component has none";
                        let help = "give a pid file: process = { pidfile = \"/run/thing.pid\" }";
                        self.error(it.span(), &it.path, msg, Some(help.to_string()));
                        return None;
                    }
                    Some(CheckConfig::Process { pidfile: None })
                }
                DeValue::Boolean(false) => {
                    let msg = "`process = false` is not a check";
                    let help = "write process = true, or remove the key";
                    self.error(it.span(), &it.path, msg, Some(help.to_string()));
                    None
                }
                DeValue::Table(_) => {
                    let tbl = self.table(it, None)?;
                    self.unknown_keys(&tbl, PROCESS_KEYS, &|_| None);
                    let pidfile = match tbl.get("pidfile") {
                        Some(p) => Some(self.path(p, "\"/run/thing.pid\"")?),
                        None if external => {
                            self.missing(&tbl, "pidfile", "pidfile = \"/run/thing.pid\"");
                            return None;
                        }
                        None => None,
                    };
                    Some(CheckConfig::Process { pidfile })
                }
                _ => {
                    let help = "write process = true or process = { pidfile = \"path\" }";
                    self.wrong_type(it, "true or a table", Some(help.to_string()));
                    None
                }
            },
            "file" => {
                let help = "write file = { path = \"/tmp/heartbeat\", max_age = \"30s\" }";
                let tbl = self.table(it, Some(help.to_string()))?;
                self.unknown_keys(&tbl, FILE_KEYS, &|_| None);
                let path = match tbl.get("path") {
                    Some(p) => self.path(p, "\"/tmp/heartbeat\""),
                    None => {
                        self.missing(&tbl, "path", "path = \"/tmp/heartbeat\"");
                        None
                    }
                };
                let max_age = match tbl.get("max_age") {
                    Some(m) => self.positive_duration(m)?,
                    None => DEFAULT_FILE_MAX_AGE,
                };
                path.map(|path| CheckConfig::File { path, max_age })
            }
            "log" => {
                let help = "write log = { pattern = \"listening on\", within = \"60s\" }";
                let tbl = self.table(it, Some(help.to_string()))?;
                if external {
                    let msg = "a log check reads the output of a process hale runs; this component has none";
                    let help = "check it another way: http, tcp, grpc, exec or docker";
                    self.error(it.key_span.clone(), &it.path, msg, Some(help.to_string()));
                }
                self.unknown_keys(&tbl, LOG_KEYS, &|_| None);
                let pattern = match tbl.get("pattern") {
                    Some(p) => self.nonempty_string(p, "\"listening on\""),
                    None => {
                        self.missing(&tbl, "pattern", "pattern = \"listening on\"");
                        None
                    }
                };
                let within = match tbl.get("within") {
                    Some(w) => self.positive_duration(w)?,
                    None => DEFAULT_LOG_WITHIN,
                };
                pattern.filter(|_| !external).map(|pattern| CheckConfig::Log { pattern, within })
            }
            _ => None,
        }
    }

    /// Build the library's check from `check` as `hale up` will, so that what the library
    /// refuses (a URL that does not parse, a header that cannot be sent, a regex that does not
    /// compile) is reported here at its key, not later without a position. With [`Files::Read`]
    /// an http check's `ca_file` is read too. `it` is the check key.
    fn library_check(&mut self, it: &Item<'_, '_>, check: CheckConfig) -> Option<CheckConfig> {
        use hale::probe;
        // (the key whose value is wrong, its span, the library's message, how to fix it)
        type Refusal = (String, Range<usize>, String, String);
        let whole = |e: probe::InvalidProbe, help: &str| -> Refusal {
            (it.path.clone(), it.span(), e.message().to_string(), help.to_string())
        };
        let part = |key: &str, e: probe::InvalidProbe, help: &str| -> Refusal {
            let (path, span) = sub_item(it, &[key]);
            (path, span, e.message().to_string(), help.to_string())
        };
        let result: Result<(), Refusal> = match &check {
            CheckConfig::Exec(argv) => probe::Exec::new(argv.clone())
                .map(drop)
                .map_err(|e| whole(e, "write exec = [\"program\", \"arg\"]")),
            CheckConfig::Sh(script) => probe::Exec::sh(script.clone())
                .map(drop)
                .map_err(|e| whole(e, "write sh = \"curl -fs localhost:8080\"")),
            CheckConfig::Tcp(address) => probe::Tcp::new(address.clone())
                .map(drop)
                .map_err(|e| whole(e, "write tcp = \"127.0.0.1:8080\"")),
            CheckConfig::Grpc { address, .. } => probe::Grpc::new(address.clone())
                .map(drop)
                .map_err(|e| part("address", e, "write \"127.0.0.1:50051\"")),
            CheckConfig::Process { pidfile: Some(path) } => probe::Process::pidfile(path.clone())
                .map(drop)
                .map_err(|e| part("pidfile", e, "write pidfile = \"/run/thing.pid\"")),
            CheckConfig::Process { pidfile: None } | CheckConfig::Docker(_) => Ok(()),
            CheckConfig::File { path, max_age } => probe::File::new(path.clone(), *max_age)
                .map(drop)
                .map_err(|e| part("path", e, "write path = \"/tmp/heartbeat\"")),
            CheckConfig::Log { pattern, within } => {
                probe::Log::new(pattern, *within).map(drop).map_err(|e| {
                    let help = "write a regular expression (Rust regex syntax): escape ( ) [ ] { } . * + ? | with \\\\, e.g. \"listening on \\\\(port \\\\d+\\\\)\"";
                    part("pattern", e, help)
                })
            }
            CheckConfig::Http { url, method, headers, ca_file, .. } => (|| {
                const URL_HELP: &str = "write a URL such as \"http://127.0.0.1:8080/healthz\"";
                let mut h = probe::Http::get(url).map_err(|e| match it.val.get_ref() {
                    DeValue::Table(_) => part("url", e, URL_HELP),
                    _ => whole(e, URL_HELP),
                })?;
                h = h
                    .method(method)
                    .map_err(|e| part("method", e, "write method = \"GET\", \"HEAD\", \"POST\" ..."))?;
                // Each header on its own, so that every bad one is reported.
                let mut refused = None;
                for (name, value) in headers {
                    let checked = h.clone().header(name, value).map_err(|e| {
                        let (path, key_span, value_span) = sub_key(it, &["headers", name]);
                        let span = if e.message().contains("invalid header name") {
                            key_span
                        } else {
                            value_span
                        };
                        let help = "a header name has only letters, digits and `-` and no spaces; a value is one line of text";
                        (path, span, e.message().to_string(), help.to_string())
                    });
                    if let Err(refusal) = checked
                        && let Some((path, span, message, help)) = refused.replace(refusal)
                    {
                        self.error(span, &path, message, Some(help));
                    }
                }
                if let Some(last) = refused {
                    return Err(last);
                }
                if let (Some(path), Files::Read) = (ca_file, self.files) {
                    h.ca_file(path).map_err(|e| {
                        let (key_path, span) = sub_item(it, &["ca_file"]);
                        let written = match it.val.get_ref() {
                            DeValue::Table(t) => t
                                .get("ca_file")
                                .and_then(|v| match v.get_ref() {
                                    DeValue::String(s) => Some(s.to_string()),
                                    _ => None,
                                })
                                .unwrap_or_default(),
                            _ => String::new(),
                        };
                        // Name the file as the user wrote it, not as resolved.
                        let msg = e.message().replace(&path.display().to_string(), &written);
                        let help = "give a file of PEM certificates (-----BEGIN CERTIFICATE-----); a relative path is relative to the config file's directory";
                        (key_path, span, msg, help.to_string())
                    })?;
                }
                Ok(())
            })(),
        };
        match result {
            Ok(()) => Some(check),
            Err((path, span, message, help)) => {
                self.error(span, &path, message, Some(help));
                None
            }
        }
    }

    /// Read `env_file` as `hale up` will, and report what stops it at the key.
    fn env_file(&mut self, it: &Item<'_, '_>, path: &Path) {
        let Err(err) = crate::plan::read_env_file(path) else { return };
        let written = match it.val.get_ref() {
            DeValue::String(s) => s.to_string(),
            _ => path.display().to_string(),
        };
        let (message, help) = match err.downcast_ref::<std::io::Error>() {
            Some(io) => (
                format!("cannot read the env file {written:?}: {io}"),
                "create the file or correct the path; a relative path is relative to the config file's directory",
            ),
            None => (
                format!("env file {written:?}: {err}"),
                "each line of an env file is KEY=VALUE, export KEY=VALUE, a # comment or blank",
            ),
        };
        self.error(it.span(), &it.path, message, Some(help.to_string()));
    }

    fn missing(&mut self, tbl: &Tbl<'_, '_>, key: &str, example: &str) {
        let msg = format!("missing key `{key}`");
        self.error(tbl.span.clone(), &tbl.path, msg, Some(format!("add {example}")));
    }

    fn url(&mut self, it: &Item<'_, '_>, url: &str) -> Option<()> {
        match check_url(url) {
            Ok(()) => Some(()),
            Err(msg) => {
                let help = "write a URL such as \"http://127.0.0.1:8080/healthz\"".to_string();
                self.error(it.span(), &it.path, msg, Some(help));
                None
            }
        }
    }

    fn http_table(&mut self, it: &Item<'_, '_>) -> Option<CheckConfig> {
        let tbl = self.table(it, None)?;
        self.unknown_keys(&tbl, HTTP_KEYS, &|_| None);
        let mut ok = true;
        let url = match tbl.get("url") {
            Some(u) => self
                .string(u, "\"http://127.0.0.1:8080/healthz\"")
                .and_then(|s| self.url(u, &s).map(|()| s)),
            None => {
                self.missing(&tbl, "url", "url = \"http://127.0.0.1:8080/healthz\"");
                None
            }
        };
        let mut method = "GET".to_string();
        if let Some(m) = tbl.get("method") {
            match self.nonempty_string(m, "\"GET\"") {
                Some(s) if s.chars().all(|c| c.is_ascii_alphabetic()) => {
                    method = s.to_ascii_uppercase()
                }
                Some(s) => {
                    let msg = format!("invalid HTTP method {s:?}");
                    self.error(
                        m.span(),
                        &m.path,
                        msg,
                        Some("write method = \"GET\", \"HEAD\", \"POST\" ...".to_string()),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        let mut headers = Vec::new();
        if let Some(h) = tbl.get("headers") {
            match self.string_map(h, false, "{ Host = \"example.com\" }") {
                Some(v) => headers = v,
                None => ok = false,
            }
        }
        let mut status = (200, 399);
        if let Some(s) = tbl.get("status") {
            let parsed = match s.val.get_ref() {
                DeValue::String(text) => parse_status_range(text),
                DeValue::Integer(_) => match int_value(s.val.get_ref()) {
                    Some(Ok(n)) => parse_status_range(&n.to_string()),
                    _ => Err("not an HTTP status code".to_string()),
                },
                other => Err(format!("expected a status range, found {}", found(other))),
            };
            match parsed {
                Ok(r) => status = r,
                Err(msg) => {
                    let help = "write status = \"200-399\" or status = \"204\"".to_string();
                    self.error(s.span(), &s.path, msg, Some(help));
                    ok = false;
                }
            }
        }
        let body_contains = match tbl.get("body_contains") {
            Some(b) => {
                let v = self.nonempty_string(b, "\"ok\"");
                ok &= v.is_some();
                v
            }
            None => None,
        };
        let ca_file = match tbl.get("ca_file") {
            Some(c) => {
                let v = self.path(c, "\"certs/ca.pem\"");
                ok &= v.is_some();
                v
            }
            None => None,
        };
        let insecure = match tbl.get("insecure") {
            Some(i) => {
                let v = self.boolean(i);
                ok &= v.is_some();
                v.unwrap_or(false)
            }
            None => false,
        };
        if let Some(u) = &url
            && u.starts_with("http://")
        {
            for key in ["ca_file", "insecure"] {
                if let Some(k) = tbl.get(key) {
                    let msg = format!("`{key}` applies to https:// URLs only");
                    self.error(
                        k.key_span.clone(),
                        &k.path,
                        msg,
                        Some("remove it or use https://".to_string()),
                    );
                    ok = false;
                }
            }
        }
        let url = url?;
        ok.then_some(CheckConfig::Http {
            url,
            method,
            headers,
            status,
            body_contains,
            ca_file,
            insecure,
        })
    }
}

/// The key path and value span of `keys` inside the table value of `it`, or `it`'s own when
/// it is not a table or lacks them.
fn sub_item(it: &Item<'_, '_>, keys: &[&str]) -> (String, Range<usize>) {
    let (path, _, span) = sub_key(it, keys);
    (path, span)
}

/// Like [`sub_item`], with the span of the last key itself too.
fn sub_key(it: &Item<'_, '_>, keys: &[&str]) -> (String, Range<usize>, Range<usize>) {
    let mut path = it.path.clone();
    let mut key_span = it.key_span.clone();
    let mut span = it.span();
    let mut value: &Value<'_> = it.val;
    for key in keys {
        let DeValue::Table(t) = value.get_ref() else { break };
        let Some((k, v)) = t.get_key_value(*key) else { break };
        path = join(&path, key);
        key_span = k.span();
        span = v.span();
        value = v;
    }
    (path, key_span, span)
}

/// The parts of a `[a.b."c.d"]` or `[[a.b]]` header line, unquoted; as much as can be read of
/// a broken one.
fn header_parts(line: &str) -> Vec<String> {
    let inner = line.trim_start().trim_start_matches('[');
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in inner.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None => match c {
                '"' | '\'' => quote = Some(c),
                '.' => parts.push(std::mem::take(&mut cur).trim().to_string()),
                ']' | '#' => break,
                _ => cur.push(c),
            },
        }
    }
    let last = cur.trim().to_string();
    if !last.is_empty() || !parts.is_empty() {
        parts.push(last);
    }
    parts
}

/// The key at the start of a `key = value` line, as its dotted parts with quotes removed,
/// and the byte offset of its `=` in the line when the line has one outside quotes.
fn line_key(line: &str) -> Option<(Vec<String>, Option<usize>)> {
    let t = line.trim_start();
    let lead = line.len() - t.len();
    if t.is_empty() || t.starts_with(['[', '#', '{']) {
        return None;
    }
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for (i, c) in t.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None => match c {
                '"' | '\'' => quote = Some(c),
                '.' => parts.push(std::mem::take(&mut cur)),
                '=' => {
                    parts.push(cur);
                    return (!parts.iter().all(String::is_empty))
                        .then_some((parts, Some(lead + i)));
                }
                ':' | '#' => break,
                c if c.is_whitespace() => {}
                _ => cur.push(c),
            },
        }
    }
    // No `=`: a key being written (or YAML's `key:`), if the line starts with a bare word.
    let word: String =
        t.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
    (!word.is_empty()).then(|| (vec![word], None))
}

/// The bare or quoted key at the start of `text` (where TOML points at a repeated key).
fn key_at(text: &str) -> String {
    match text.chars().next() {
        Some(q @ ('"' | '\'')) => text[1..].split(q).next().unwrap_or_default().to_string(),
        _ => text
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect(),
    }
}

/// The key path where byte `offset` of `text` is, for an error that TOML (or UTF-8) found
/// before any tree exists: the last `[header]` above it, plus the line's own key when the
/// offset is in that key's value (or the line is a key with nothing after it). Empty at the
/// top of a file outside any key. A heuristic: it reads lines, not TOML, so a multi-line string
/// that contains a `[` line can mislead it; it only names where to look.
pub(crate) fn context_key(text: &str, offset: usize) -> String {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[line_start..line_end];
    if line.trim_start().starts_with('[') {
        return header_parts(line).iter().fold(String::new(), |p, k| join(&p, k));
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('['))
        .map(|l| header_parts(l).iter().fold(String::new(), |p, k| join(&p, k)))
        .unwrap_or_default();
    match line_key(line) {
        Some((key, Some(eq))) if offset - line_start > eq => {
            key.iter().fold(table, |p, k| join(&p, k))
        }
        Some((key, None)) => key.iter().fold(table, |p, k| join(&p, k)),
        _ => table,
    }
}

/// How to fix a TOML syntax error, from TOML's message and the text at and around it.
fn syntax_help(msg: &str, at: &str, line: &str) -> String {
    let token: String =
        at.chars().take_while(|c| !matches!(c, ',' | ']' | '}' | '#' | '\n' | '\r')).collect();
    let token = token.trim();
    if msg.contains("string values must be quoted") {
        if token.is_empty() {
            return "give the key a value after `=`, e.g. key = \"text\", key = 10 or key = true"
                .to_string();
        }
        return format!("strings go in double quotes: write \"{}\"", token.escape_debug());
    }
    if msg.contains("unclosed table") {
        return "end the header with `]`, e.g. [components.web]".to_string();
    }
    if msg.contains("array") {
        return "separate the elements of an array with commas and close it with `]`".to_string();
    }
    if msg.contains("inline table") {
        return "an inline table is written on one line: { key = \"value\", other = 1 }"
            .to_string();
    }
    if msg.contains("basic string") || msg.contains("literal string") {
        return "close the string on the same line; a string of several lines is written \"\"\"...\"\"\""
            .to_string();
    }
    if msg.contains("invalid unquoted key") {
        return "a bare key has only letters, digits, `-` and `_`; put any other key in double quotes"
            .to_string();
    }
    if msg.contains("key with no value") {
        if line.contains(':') {
            return "hale.toml is TOML: write key = value, with `=` rather than `:`".to_string();
        }
        return "write key = value".to_string();
    }
    if line.trim_start().starts_with('{') {
        return "hale.toml is TOML, not JSON: write [components.NAME] tables of key = value lines"
            .to_string();
    }
    "see https://toml.io for the syntax".to_string()
}

/// Was the run key understood (not the placeholder left after an error)?
fn run_known(run: &Run) -> bool {
    !matches!(run, Run::Command(argv) if argv.is_empty())
}
