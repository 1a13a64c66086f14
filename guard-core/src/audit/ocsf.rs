//! Security events as OCSF 1.5.0 events (feature `ocsf`): class API Activity (6003, category
//! Application Activity 6) with the `security_control` and `cloud` profiles, one JSON object per
//! line from [`JsonLinesSink::ocsf`](super::JsonLinesSink::ocsf) (`[audit] format = "ocsf"`).
//!
//! | OCSF attribute | from Guard |
//! |---|---|
//! | `class_uid` / `category_uid` | 6003 / 6 |
//! | `activity_id` | HTTP method: `POST` 1 Create, `GET`/`HEAD` 2 Read, `PUT`/`PATCH` 3 Update, `DELETE` 4 Delete, other methods and messages 99 Other |
//! | `type_uid` | `class_uid * 100 + activity_id` |
//! | `time` | when the event was written (ms since the epoch) |
//! | `duration` | `latency_us` / 1000 (ms) |
//! | `action_id` | `allow` → 1 Allowed, `deny` → 2 Denied |
//! | `disposition_id` | allow → 1 Allowed; 401 → 26 Unauthorized; 403 → 2 Blocked; other 4xx (ingress, rate limit, validation) → 25 Rejected; 5xx → 27 Error |
//! | `severity_id` | allow → 1 Informational; rate limit, ingress, validation → 2 Low; verification → 3 Medium; 5xx → 4 High |
//! | `status_id` / `status_code` / `status_detail` | 1 Success when allowed with a status below 400, else 2 Failure / the HTTP status / `reason` |
//! | `metadata` | `product` {`name` Guard, `vendor_name` Guard, `version`}, `version` 1.5.0, `profiles`, `event_code` = `code`, `uid` = `request_id`, `correlation_uid` = `trace_id`, `log_name` `guard::security` |
//! | `policy` | `uid` = `code`, `name` = `layer` |
//! | `actor.user` | `uid` = `principal` (`kind:subject`); `name` `anonymous` when none was verified |
//! | `src_endpoint` | `ip` = `peer`; for messages `svc_name` = `source_id`; else `name` `unknown` |
//! | `api` | `operation` = HTTP method or trigger kind (`sqs`, `pubsub`...), `service.name` = `function`, `request.uid` = `request_id` |
//! | `http_request` | `http_method` (HTTP triggers) |
//! | `cloud` | `provider` (`AWS`, `Azure`, `GCP`, `local`) |
//! | `unmapped` | `trigger`, `layer` |

use serde_json::{Value, json};

use super::event::{Outcome, SecurityEvent};

/// The OCSF schema version the events follow.
const OCSF_VERSION: &str = "1.5.0";
const API_ACTIVITY: u64 = 6003;
const APPLICATION_ACTIVITY: u64 = 6;

/// The event as an OCSF API Activity object. `method`: the HTTP method of an HTTP trigger;
/// `time_ms`: milliseconds since the Unix epoch.
///
/// One function on purpose, though long: the `json!` literal mirrors the OCSF 6003 object field
/// by field, so the whole mapping (and every value taken from the event) reads in one place.
pub(super) fn to_ocsf(e: &SecurityEvent, method: Option<&http::Method>, time_ms: u64) -> Value {
    let (activity_id, activity) = match method.map(http::Method::as_str) {
        Some("POST") => (1, "Create"),
        Some("GET" | "HEAD") => (2, "Read"),
        Some("PUT" | "PATCH") => (3, "Update"),
        Some("DELETE") => (4, "Delete"),
        _ => (99, "Other"),
    };
    let allowed = e.outcome == Outcome::Allow;
    let (action_id, action) = if allowed {
        (1, "Allowed")
    } else {
        (2, "Denied")
    };
    let (disposition_id, disposition) = match (allowed, e.status) {
        (true, _) => (1, "Allowed"),
        (false, 401) => (26, "Unauthorized"),
        (false, 403) => (2, "Blocked"),
        (false, s) if s >= 500 => (27, "Error"),
        (false, _) => (25, "Rejected"),
    };
    let (severity_id, severity) = match (allowed, e.status, e.layer.as_str()) {
        (true, _, _) => (1, "Informational"),
        (false, s, _) if s >= 500 => (4, "High"),
        (false, _, "verify") => (3, "Medium"),
        (false, _, _) => (2, "Low"),
    };
    let success = allowed && e.status < 400;
    let (status_id, status) = if success {
        (1, "Success")
    } else {
        (2, "Failure")
    };

    let mut metadata = json!({
        "product": {"name": "Guard", "vendor_name": "Guard", "version": env!("CARGO_PKG_VERSION")},
        "version": OCSF_VERSION,
        "profiles": ["security_control", "cloud"],
        "event_code": e.code,
        "log_name": "guard::security",
    });
    insert_opt(&mut metadata, "uid", e.request_id.as_deref());
    insert_opt(&mut metadata, "correlation_uid", e.trace_id.as_deref());

    let actor = match &e.principal {
        Some(p) => json!({"user": {"uid": p}}),
        None => json!({"user": {"name": "anonymous"}}),
    };
    let src_endpoint = match (&e.peer, &e.source_id) {
        (Some(ip), _) => json!({"ip": ip}),
        (None, Some(source)) => json!({"svc_name": source}),
        (None, None) => json!({"name": "unknown"}),
    };
    let mut api = json!({"operation": method.map_or(e.trigger.as_str(), http::Method::as_str)});
    if let Some(f) = &e.function {
        api["service"] = json!({"name": f});
    }
    if let Some(id) = &e.request_id {
        api["request"] = json!({"uid": id});
    }
    let provider = match e.cloud.as_str() {
        "aws" => "AWS",
        "azure" => "Azure",
        "gcp" => "GCP",
        other => other,
    };

    let mut out = json!({
        "class_uid": API_ACTIVITY,
        "class_name": "API Activity",
        "category_uid": APPLICATION_ACTIVITY,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": API_ACTIVITY * 100 + activity_id,
        "type_name": format!("API Activity: {activity}"),
        "time": time_ms,
        "duration": e.latency_us / 1000,
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "status_code": e.status.to_string(),
        "action_id": action_id,
        "action": action,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "metadata": metadata,
        "policy": {"uid": e.code, "name": e.layer},
        "actor": actor,
        "src_endpoint": src_endpoint,
        "api": api,
        "cloud": {"provider": provider},
        "unmapped": {"trigger": e.trigger, "layer": e.layer},
    });
    insert_opt(&mut out, "status_detail", e.reason.as_deref());
    if let Some(m) = method {
        out["http_request"] = json!({"http_method": m.as_str()});
    }
    out
}

fn insert_opt(obj: &mut Value, key: &str, value: Option<&str>) {
    if let (Some(map), Some(v)) = (obj.as_object_mut(), value) {
        map.insert(key.to_owned(), Value::String(v.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(outcome: Outcome, status: u16, layer: &str, code: &str) -> SecurityEvent {
        SecurityEvent {
            event: "guard.decision".into(),
            outcome,
            code: code.into(),
            status,
            layer: layer.into(),
            reason: None,
            cloud: "aws".into(),
            function: Some("f".into()),
            request_id: Some("r-1".into()),
            trace_id: None,
            trigger: "http".into(),
            source_id: None,
            peer: Some("203.0.113.9".into()),
            principal: None,
            latency_us: 2500,
        }
    }

    #[test]
    fn a_denied_post_is_a_denied_create_with_the_guard_code() {
        let e = event(
            Outcome::Deny,
            403,
            "verify",
            "guard.verify.forbidden_address",
        );
        let o = to_ocsf(&e, Some(&http::Method::POST), 1_700_000_000_000);
        assert_eq!(o["type_uid"], 600301);
        assert_eq!(o["action_id"], 2);
        assert_eq!(o["disposition_id"], 2);
        assert_eq!(o["severity_id"], 3);
        assert_eq!(o["status_id"], 2);
        assert_eq!(
            o["metadata"]["event_code"],
            "guard.verify.forbidden_address"
        );
        assert_eq!(o["src_endpoint"]["ip"], "203.0.113.9");
        assert_eq!(o["duration"], 2);
    }

    #[test]
    fn a_message_without_a_method_is_other_from_its_source() {
        let mut e = event(Outcome::Allow, 200, "handler", "guard.allow");
        e.trigger = "sqs".into();
        e.peer = None;
        e.source_id = Some("arn:aws:sqs:us-east-1:1:q".into());
        e.principal = Some("event_source:arn:aws:sqs:us-east-1:1:q".into());
        let o = to_ocsf(&e, None, 0);
        assert_eq!(o["type_uid"], 600399);
        assert_eq!(o["api"]["operation"], "sqs");
        assert_eq!(o["src_endpoint"]["svc_name"], "arn:aws:sqs:us-east-1:1:q");
        assert!(o.get("http_request").is_none());
        assert_eq!(
            (o["action_id"].clone(), o["status_id"].clone()),
            (json!(1), json!(1))
        );
    }
}
