//! `hale reload` and SIGHUP: apply a changed config file to the running daemon.
//!
//! The new file is loaded and validated first; an invalid file is refused with its errors and
//! nothing changes. Otherwise [`diff`] sorts components into added, removed, changed and
//! unchanged: removed and changed ones are stopped (dependents before their dependencies) and
//! taken out of the monitor, then changed and added ones are registered and started in
//! dependency order. Unchanged components keep running and keep their counters. A component is
//! "changed" when anything in its table differs (its line in the file does not count) or when
//! the contents of its `env_file` differ from what its running instance was started with.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hale::Health;
use serde_json::{Value, json};

use crate::api::Shared;
use crate::config::{self, ComponentConfig, Config, DaemonSettings};

/// How a new config differs from the running one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// In the new file only, in file order.
    pub added: Vec<String>,
    /// In the old file only.
    pub removed: Vec<String>,
    /// In both, with a different definition.
    pub changed: Vec<String>,
    /// In both, identical: left running.
    pub unchanged: Vec<String>,
    /// `[hale]` settings that a reload cannot apply.
    pub warnings: Vec<String>,
}

impl Diff {
    /// The diff as the reload endpoint's JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "ok": true,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "warnings": self.warnings,
        })
    }
}

/// Why a reload changed nothing.
#[derive(Debug)]
pub enum Refused {
    /// The new file is invalid: every error, rendered with file, line and column.
    Invalid(String),
    /// The daemon is shutting down.
    ShuttingDown,
}

/// The contents of each component's env_file, as read now (`None`: no env_file or unreadable).
pub fn env_files(config: &Config) -> HashMap<String, Option<Vec<u8>>> {
    config
        .components
        .iter()
        .map(|c| (c.name.clone(), c.env_file.as_ref().and_then(|p| std::fs::read(p).ok())))
        .collect()
}

fn same_definition(a: &ComponentConfig, b: &ComponentConfig) -> bool {
    let mut b = b.clone();
    b.line = a.line;
    *a == b
}

/// Compare two configs. `old_env` holds the env_file contents the running instances were
/// started with, `new_env` those on disk now.
pub fn diff(
    old: &Config,
    new: &Config,
    old_env: &HashMap<String, Option<Vec<u8>>>,
    new_env: &HashMap<String, Option<Vec<u8>>>,
) -> Diff {
    let mut d = Diff::default();
    for c in &new.components {
        match old.component(&c.name) {
            None => d.added.push(c.name.clone()),
            Some(o) if !same_definition(o, c) => d.changed.push(c.name.clone()),
            Some(_) if old_env.get(&c.name) != new_env.get(&c.name) => {
                d.changed.push(c.name.clone())
            }
            Some(_) => d.unchanged.push(c.name.clone()),
        }
    }
    for c in &old.components {
        if new.component(&c.name).is_none() {
            d.removed.push(c.name.clone());
        }
    }
    d.warnings = settings_warnings(&old.hale, &new.hale);
    d
}

fn settings_warnings(old: &DaemonSettings, new: &DaemonSettings) -> Vec<String> {
    let mut w = Vec::new();
    let mut restart_needed = |key: &str, changed: bool| {
        if changed {
            w.push(format!("[hale] {key} changed: restart the daemon to apply it"));
        }
    };
    restart_needed("state_dir", old.state_dir != new.state_dir);
    restart_needed("http", old.http != new.http);
    restart_needed("http_token", old.http_token != new.http_token);
    restart_needed("grpc_health", old.grpc_health != new.grpc_health);
    if old.log_max_size != new.log_max_size || old.log_keep != new.log_keep {
        w.push(
            "[hale] log_max_size or log_keep changed: applied to added and changed components; \
             the others keep their settings until the daemon restarts"
                .to_owned(),
        );
    }
    if old.on_state_change != new.on_state_change {
        w.push("[hale] on_state_change changed: applied to transitions from now on".to_owned());
    }
    w
}

/// Reload the daemon's config file and apply it. Reloads are serialised; during a shutdown
/// they are refused.
pub async fn apply(shared: &Arc<Shared>) -> Result<Diff, Refused> {
    let _one_at_a_time = shared.reload_lock.lock().await;
    if *shared.shutdown.borrow() {
        return Err(Refused::ShuttingDown);
    }
    let old = shared.config();
    let new = match config::load(&old.path) {
        Ok(new) => new,
        Err(errors) => return Err(Refused::Invalid(format!("{errors}\n{}", errors.summary()))),
    };
    // Build every new or changed component before touching anything: one that cannot be
    // built (an unreadable env_file, say) refuses the whole reload.
    let new_env = env_files(&new);
    let old_env = shared.env_files.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let d = diff(&old, &new, &old_env, &new_env);
    for name in d.added.iter().chain(&d.changed) {
        if let Some(c) = new.component(name)
            && let Err(e) = crate::plan::component(c, &new.base_dir, &mut |_| None)
        {
            return Err(Refused::Invalid(format!(
                "{}:{}: error: {e:#}\nthe new config was refused; nothing changed",
                new.path.display(),
                c.line
            )));
        }
    }

    let going: HashSet<&str> = d.removed.iter().chain(&d.changed).map(String::as_str).collect();
    for name in &going {
        shared.cancel_wait(name);
    }
    stop_set(shared, &old, &going).await;
    for name in &going {
        if let Err(e) = shared.monitor.remove(name).await {
            tracing::warn!("reload: removing {name}: {e}");
        }
    }
    shared.set_config(new.clone(), new_env);
    let coming: HashSet<&str> = d.added.iter().chain(&d.changed).map(String::as_str).collect();
    for i in config::dependency_order(&new) {
        let c = &new.components[i];
        if coming.contains(c.name.as_str())
            && let Err(e) = crate::daemon::launch(shared, &new, i).await
        {
            tracing::warn!("reload: starting {}: {e:#}", c.name);
        }
    }
    shared.reloaded.send_modify(|n| *n += 1);
    Ok(d)
}

/// Stop the components in `names` (as `config` describes them), each once the ones among them
/// that depend on it have stopped, and wait until all are settled.
pub async fn stop_set(shared: &Shared, config: &Config, names: &HashSet<&str>) {
    let monitor = &shared.monitor;
    let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
    for c in config.components.iter().filter(|c| names.contains(c.name.as_str())) {
        for (dep, _) in &c.depends_on {
            dependents.entry(dep.as_str()).or_default().push(c.name.as_str());
        }
    }
    let stops = config.components.iter().filter(|c| names.contains(c.name.as_str())).map(|c| {
        let deps = dependents.get(c.name.as_str()).cloned().unwrap_or_default();
        async move {
            for d in deps {
                let _ = monitor.wait_for(d, Health::is_settled).await;
            }
            let _ = monitor.stop(&c.name).await;
            let _ = monitor.wait_for(&c.name, Health::is_settled).await;
        }
    });
    futures_util::future::join_all(stops).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Config {
        config::parse(text, Path::new("/tmp/hale.toml")).unwrap()
    }

    const BASE: &str = r#"
[components.db]
command = ["sleep", "100"]

[components.api]
command = ["sleep", "100"]
depends_on = { db = "healthy" }

[components.worker]
shell = "sleep 100"
"#;

    #[test]
    fn sorts_each_kind_of_change() {
        let old = parse(BASE);
        let new = parse(
            r#"
# a comment moves every table down a line: not a change
[components.db]
command = ["sleep", "100"]

[components.api]
command = ["sleep", "200"]
depends_on = { db = "healthy" }

[components.cache]
command = ["sleep", "100"]
"#,
        );
        let none = HashMap::new();
        let d = diff(&old, &new, &none, &none);
        assert_eq!(d.added, ["cache"]);
        assert_eq!(d.removed, ["worker"]);
        assert_eq!(d.changed, ["api"]);
        assert_eq!(d.unchanged, ["db"]);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn an_identical_file_changes_nothing_and_env_file_contents_count() {
        let old = parse(BASE);
        let none = HashMap::new();
        let d = diff(&old, &parse(BASE), &none, &none);
        assert_eq!(d.unchanged, ["db", "api", "worker"]);
        assert!(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty());

        let before = HashMap::from([("db".to_owned(), Some(b"A=1\n".to_vec()))]);
        let after = HashMap::from([("db".to_owned(), Some(b"A=2\n".to_vec()))]);
        let d = diff(&old, &parse(BASE), &before, &after);
        assert_eq!(d.changed, ["db"]);
    }

    #[test]
    fn daemon_settings_that_need_a_restart_are_named() {
        let old = parse(BASE);
        let new = parse(&format!("[hale]\nhttp = \"127.0.0.1:9999\"\nlog_keep = 2\n{BASE}"));
        let none = HashMap::new();
        let d = diff(&old, &new, &none, &none);
        assert_eq!(d.unchanged.len(), 3);
        assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
        assert!(d.warnings[0].contains("[hale] http changed: restart the daemon"));
        assert!(d.warnings[1].contains("log_keep"));
    }
}
