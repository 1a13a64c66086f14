//! The function app's layout: which functions exist and what triggers them, read from each
//! `<function>/function.json` in the working directory (the files the Functions host reads too).
//!
//! The host does not say in an invocation which queue or topic a message came from; the
//! deployed `function.json` does (`queueName`, `topicName` + `subscriptionName`), so that is
//! where a message's source comes from. `%Setting%` binding expressions are resolved from the
//! environment, as the host resolves them from the app settings.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// What starts a function, from its trigger binding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FunctionTrigger {
    /// `httpTrigger`: the request is in `Data.<binding>`; the answer goes to the HTTP output
    /// binding `output` (`res`, or `$return` for the invocation's return value).
    Http {
        /// The trigger binding's name (`req`).
        binding: String,
        /// The HTTP output binding's name.
        output: String,
    },
    /// A message trigger: `queueTrigger` (kind `azure-queue`), `serviceBusTrigger`
    /// (`azure-servicebus`), `eventGridTrigger` (`eventgrid`), `eventHubTrigger` (`eventhub`).
    Message {
        /// The trigger binding's name (`msg`).
        binding: String,
        /// The `Trigger::Message` kind.
        kind: String,
        /// The source from `function.json` (queue name, `topic/subscription`, hub), or empty
        /// when it names none (Event Grid: the event's own `topic` is used).
        source: String,
    },
}

/// The functions of one app, by name.
#[derive(Debug, Clone, Default)]
pub struct Functions {
    by_name: BTreeMap<String, FunctionTrigger>,
    /// HTTP functions the host only runs with a key (`authLevel` `function` or `admin`), by
    /// name, with their route (`route`, or the name).
    keyed: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionJson {
    #[serde(default)]
    bindings: Vec<Binding>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Binding {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    direction: String,
    #[serde(default)]
    name: String,
    queue_name: Option<String>,
    auth_level: Option<String>,
    route: Option<String>,
    topic_name: Option<String>,
    subscription_name: Option<String>,
    event_hub_name: Option<String>,
}

impl Functions {
    /// Reads `dir/*/function.json`. Directories without one, and files that are not a
    /// function definition with a trigger, are skipped (the host reports those itself).
    pub fn load(dir: &Path) -> Self {
        let mut functions = Self::default();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return functions;
        };
        for entry in entries.flatten() {
            let path = entry.path().join("function.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            if Self::parse(&text).is_none() {
                tracing::warn!(target: "guard::azure", function = %name, "function.json has no trigger Guard understands");
            }
            functions = functions.with_function_json(name, &text);
        }
        functions
    }

    /// Adds function `name` as its `function.json` text describes it (what [`load`](Self::load)
    /// does for each file): its trigger and, for an HTTP function, whether the host requires a
    /// key (`authLevel` `function` or `admin`) and on which route. A text without a supported
    /// trigger adds nothing.
    ///
    /// ```
    /// use guard_azure::functions::Functions;
    /// let f = Functions::default().with_function_json(
    ///     "orders-events",
    ///     r#"{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"function"},
    ///                     {"type":"http","direction":"out","name":"res"}]}"#,
    /// );
    /// assert!(f.requires_key("orders-events"));
    /// assert_eq!(f.keyed_function_at("/api/orders-events"), Some("orders-events"));
    /// ```
    pub fn with_function_json(mut self, name: impl Into<String>, text: &str) -> Self {
        let name = name.into();
        let Some(trigger) = Self::parse(text) else {
            return self;
        };
        if matches!(trigger, FunctionTrigger::Http { .. })
            && let Some(route) = keyed_route(text)
        {
            let route = route.unwrap_or_else(|| name.clone());
            self.keyed.insert(name.clone(), route);
        }
        self.by_name.insert(name, trigger);
        self
    }

    /// Whether the host runs HTTP function `name` only for a request with its key (so the
    /// request was authenticated by the platform before the handler sees it).
    pub fn requires_key(&self, name: &str) -> bool {
        self.keyed.contains_key(name)
    }

    /// The keyed HTTP function (see [`requires_key`](Self::requires_key)) whose route matches a
    /// proxied request's `path` (`/api/<route>`; `{parameter}` segments match any one segment).
    pub fn keyed_function_at(&self, path: &str) -> Option<&str> {
        let rest = path.strip_prefix("/api/")?.trim_end_matches('/');
        self.keyed
            .iter()
            .find(|(_, route)| route_matches(route, rest))
            .map(|(name, _)| name.as_str())
    }

    /// Adds a function (for tests and apps that do not ship `function.json`).
    ///
    /// ```
    /// use guard_azure::functions::{FunctionTrigger, Functions};
    /// let f = Functions::default().with(
    ///     "orders",
    ///     Functions::parse(r#"{"bindings":[{"type":"httpTrigger","direction":"in","name":"req"},
    ///                                       {"type":"http","direction":"out","name":"res"}]}"#).unwrap(),
    /// );
    /// assert!(matches!(f.get("orders"), Some(FunctionTrigger::Http { .. })));
    /// ```
    pub fn with(mut self, name: impl Into<String>, trigger: FunctionTrigger) -> Self {
        self.by_name.insert(name.into(), trigger);
        self
    }

    /// The trigger of function `name`.
    pub fn get(&self, name: &str) -> Option<&FunctionTrigger> {
        self.by_name.get(name)
    }

    /// How many functions are known.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no function is known.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The trigger a `function.json` text describes, `None` when it has no supported trigger.
    ///
    /// ```
    /// use guard_azure::functions::{FunctionTrigger, Functions};
    /// let t = Functions::parse(
    ///     r#"{"bindings":[{"type":"queueTrigger","direction":"in","name":"msg","queueName":"orders"}]}"#,
    /// ).unwrap();
    /// assert_eq!(t, FunctionTrigger::Message { binding: "msg".into(), kind: "azure-queue".into(), source: "orders".into() });
    /// ```
    pub fn parse(text: &str) -> Option<FunctionTrigger> {
        Self::parse_with(text, |k| std::env::var(k).ok())
    }

    fn parse_with(text: &str, var: impl Fn(&str) -> Option<String>) -> Option<FunctionTrigger> {
        let def: FunctionJson = serde_json::from_str(text).ok()?;
        let trigger = def
            .bindings
            .iter()
            .find(|b| b.direction.eq_ignore_ascii_case("in") && b.kind.ends_with("Trigger"))?;
        let resolve = |s: &Option<String>| resolve_setting(s.as_deref().unwrap_or(""), &var);
        match trigger.kind.as_str() {
            "httpTrigger" => {
                let output = def
                    .bindings
                    .iter()
                    .find(|b| b.kind == "http" && b.direction.eq_ignore_ascii_case("out"))
                    .map_or_else(|| "$return".to_owned(), |b| b.name.clone());
                Some(FunctionTrigger::Http {
                    binding: trigger.name.clone(),
                    output,
                })
            }
            "queueTrigger" => Some(message(
                trigger,
                "azure-queue",
                resolve(&trigger.queue_name),
            )),
            "serviceBusTrigger" => {
                let source = match &trigger.queue_name {
                    Some(_) => resolve(&trigger.queue_name),
                    None => format!(
                        "{}/{}",
                        resolve(&trigger.topic_name),
                        resolve(&trigger.subscription_name)
                    ),
                };
                Some(message(trigger, "azure-servicebus", source))
            }
            "eventGridTrigger" => Some(message(trigger, "eventgrid", String::new())),
            "eventHubTrigger" => Some(message(
                trigger,
                "eventhub",
                resolve(&trigger.event_hub_name),
            )),
            _ => None,
        }
    }
}

/// `Some(route)` when the HTTP trigger of `text` requires a key (`authLevel` `function` or
/// `admin`; the host's default is `function`), with its `route` if it names one.
fn keyed_route(text: &str) -> Option<Option<String>> {
    let def: FunctionJson = serde_json::from_str(text).ok()?;
    let http = def
        .bindings
        .iter()
        .find(|b| b.kind == "httpTrigger" && b.direction.eq_ignore_ascii_case("in"))?;
    let level = http.auth_level.as_deref().unwrap_or("function");
    (level.eq_ignore_ascii_case("function") || level.eq_ignore_ascii_case("admin")).then(|| {
        http.route
            .as_deref()
            .map(|r| r.trim_matches('/').to_owned())
            .filter(|r| !r.is_empty())
    })
}

fn route_matches(route: &str, path: &str) -> bool {
    let (route, path): (Vec<&str>, Vec<&str>) =
        (route.split('/').collect(), path.split('/').collect());
    route.len() == path.len()
        && route.iter().zip(&path).all(|(r, p)| {
            (r.starts_with('{') && r.ends_with('}') && !p.is_empty()) || r.eq_ignore_ascii_case(p)
        })
}

fn message(b: &Binding, kind: &str, source: String) -> FunctionTrigger {
    FunctionTrigger::Message {
        binding: b.name.clone(),
        kind: kind.to_owned(),
        source,
    }
}

/// `%Name%` → the setting's value (empty when unset, which no allow-list entry matches).
fn resolve_setting(value: &str, var: impl Fn(&str) -> Option<String>) -> String {
    match value.strip_prefix('%').and_then(|v| v.strip_suffix('%')) {
        Some(name) if !name.is_empty() => var(name).unwrap_or_default(),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_name_from_an_app_setting() {
        let text = r#"{"bindings":[{"type":"queueTrigger","direction":"in","name":"msg","queueName":"%ORDERS_QUEUE%"}]}"#;
        let t = Functions::parse_with(text, |k| (k == "ORDERS_QUEUE").then(|| "orders".into()));
        assert_eq!(
            t,
            Some(FunctionTrigger::Message {
                binding: "msg".into(),
                kind: "azure-queue".into(),
                source: "orders".into()
            })
        );
    }

    #[test]
    fn service_bus_topic_is_topic_slash_subscription() {
        let text = r#"{"bindings":[{"type":"serviceBusTrigger","direction":"in","name":"m","topicName":"t","subscriptionName":"s"}]}"#;
        let Some(FunctionTrigger::Message { kind, source, .. }) = Functions::parse(text) else {
            panic!("not a message trigger");
        };
        assert_eq!(
            (kind.as_str(), source.as_str()),
            ("azure-servicebus", "t/s")
        );
    }

    #[test]
    fn only_functions_with_a_key_are_keyed_and_found_by_route() {
        let http = |level: &str, route: &str| {
            format!(
                r#"{{"bindings":[{{"type":"httpTrigger","direction":"in","name":"req"{level}{route}}}]}}"#
            )
        };
        let f = Functions::default()
            .with_function_json("open", &http(r#","authLevel":"anonymous""#, ""))
            .with_function_json("default-level", &http("", ""))
            .with_function_json(
                "events",
                &http(r#","authLevel":"Function""#, r#","route":"hooks/{topic}/events""#),
            )
            .with_function_json(
                "queue",
                r#"{"bindings":[{"type":"queueTrigger","direction":"in","name":"msg","queueName":"q"}]}"#,
            );
        assert!(!f.requires_key("open"));
        assert!(f.requires_key("default-level"));
        assert!(f.requires_key("events"));
        assert!(!f.requires_key("queue"));
        assert_eq!(f.keyed_function_at("/api/open"), None);
        assert_eq!(
            f.keyed_function_at("/api/default-level/"),
            Some("default-level")
        );
        assert_eq!(
            f.keyed_function_at("/api/hooks/orders/events"),
            Some("events")
        );
        assert_eq!(f.keyed_function_at("/api/hooks//events"), None);
        assert_eq!(f.keyed_function_at("/api/hooks/orders"), None);
        assert_eq!(f.keyed_function_at("/default-level"), None);
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn http_output_defaults_to_return_value() {
        let text = r#"{"bindings":[{"type":"httpTrigger","direction":"in","name":"req"}]}"#;
        assert_eq!(
            Functions::parse(text),
            Some(FunctionTrigger::Http {
                binding: "req".into(),
                output: "$return".into()
            })
        );
        assert_eq!(Functions::parse("not json"), None);
        assert_eq!(Functions::parse(r#"{"bindings":[]}"#), None);
    }
}
