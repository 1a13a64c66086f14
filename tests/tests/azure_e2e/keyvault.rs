//! Key Vault with the managed identity, against a local server implementing the documented
//! requests: the identity endpoint (`GET $IDENTITY_ENDPOINT?resource=https://vault.azure.net&
//! api-version=2019-08-01`, header `X-IDENTITY-HEADER`; answer `{access_token, expires_on,
//! resource, token_type}`) and Key Vault's secrets API 7.4 (`GET /secrets/{name}`, `GET
//! /secrets/{name}/versions`, `GET /secrets/{name}/{version}`, each `?api-version=7.4` with
//! `Authorization: Bearer`). Response shapes from the Key Vault REST reference (SecretBundle,
//! SecretListResult) and the App Service managed-identity documentation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use guard_tests::http::{Reply, StubServer, response};
use serde_json::json;

use crate::host::{Handler, Mode, app_root};
use crate::{API_KEY, json_from, key_id, now, order, signature_at};

const IDENTITY_HEADER: &str = "e2e-identity-header-value";
const TOKEN: &str = "e2e-managed-identity-token";
const KV_API_KEY: &str = "kv-orders-api-key";
const KV_HMAC_OLD: &str = "kv-webhook-key-old";
const KV_HMAC_NEW: &str = "kv-webhook-key-new";

/// Versions of each secret: (version id, value, created).
type Vault = BTreeMap<String, Vec<(String, String, u64)>>;

fn answer(vault_url: &str, vault: &Vault, request_line: &str, head: &str) -> Vec<u8> {
    let ok = |v: serde_json::Value| {
        response(
            "200 OK",
            &[("content-type", "application/json")],
            v.to_string().as_bytes(),
        )
    };
    let not_found = response(
        "404 Not Found",
        &[("content-type", "application/json")],
        br#"{"error":{"code":"SecretNotFound"}}"#,
    );
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let target = request_line.split_whitespace().nth(1).unwrap_or_default();
    if target == "/msi/token?resource=https://vault.azure.net&api-version=2019-08-01" {
        if header("x-identity-header").as_deref() != Some(IDENTITY_HEADER) {
            return response("400 Bad Request", &[], b"");
        }
        return ok(json!({
            "access_token": TOKEN,
            "expires_on": (crate::now() + 3600).to_string(),
            "resource": "https://vault.azure.net",
            "token_type": "Bearer",
            "client_id": "00000000-0000-0000-0000-000000000001"
        }));
    }
    if header("authorization").as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return response("401 Unauthorized", &[], b"");
    }
    let Some(path) = target.strip_suffix("?api-version=7.4") else {
        return response("400 Bad Request", &[], b"");
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let bundle = |name: &str, (id, value, created): &(String, String, u64)| {
        json!({"value": value, "id": format!("{vault_url}/secrets/{name}/{id}"),
               "attributes": {"enabled": true, "created": created, "updated": created, "recoveryLevel": "Recoverable+Purgeable"}})
    };
    match parts.as_slice() {
        ["secrets", name] => match vault.get(*name).and_then(|v| v.last()) {
            Some(latest) => ok(bundle(name, latest)),
            None => not_found,
        },
        ["secrets", name, "versions"] => match vault.get(*name) {
            Some(versions) => ok(json!({
                "value": versions.iter().map(|(id, _, created)| json!({
                    "id": format!("{vault_url}/secrets/{name}/{id}"),
                    "attributes": {"enabled": true, "created": created, "updated": created}
                })).collect::<Vec<_>>(),
                "nextLink": null
            })),
            None => not_found,
        },
        ["secrets", name, version] => match vault
            .get(*name)
            .and_then(|v| v.iter().find(|(id, ..)| id == version))
        {
            Some(found) => ok(bundle(name, found)),
            None => not_found,
        },
        _ => not_found,
    }
}

#[test]
fn key_vault_with_managed_identity() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let vault: Arc<Mutex<Vault>> = Arc::new(Mutex::new(BTreeMap::from([
        (
            "orders-api-key".to_owned(),
            vec![("a1b2c3".to_owned(), KV_API_KEY.to_owned(), 1_700_000_000)],
        ),
        (
            "orders-webhook-hmac".to_owned(),
            vec![("d4e5f6".to_owned(), KV_HMAC_OLD.to_owned(), 1_700_000_000)],
        ),
    ])));
    let seen: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let url = Arc::new(Mutex::new(String::new()));
    let stub = {
        let (vault, seen, url) = (vault.clone(), seen.clone(), url.clone());
        rt.block_on(StubServer::start(move |req| {
            let line = req.head.lines().next().unwrap_or_default().to_owned();
            seen.lock().unwrap().push(req.head.clone());
            let base = url.lock().unwrap().clone();
            Reply::Respond(answer(&base, &vault.lock().unwrap(), &line, &req.head))
        }))
    };
    let base = stub.url("");
    *url.lock().unwrap() = base.clone();
    let identity = stub.url("/msi/token");
    let h = Handler::start(
        &app_root(),
        &[
            ("GUARD_SECRETS_PROVIDER", "azure"),
            ("GUARD_AZURE_KEYVAULT_URL", &base),
            ("IDENTITY_ENDPOINT", &identity),
            ("IDENTITY_HEADER", IDENTITY_HEADER),
        ],
    );

    let ok = order().to_string();
    for (i, mode) in [Mode::Invocation, Mode::Proxy, Mode::Invocation]
        .into_iter()
        .enumerate()
    {
        let r = h.client(
            mode,
            "POST",
            &json_from(&format!("203.0.113.{}", 50 + i)),
            &ok,
        );
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.json()["key_id"], key_id(KV_API_KEY));
        assert_ne!(r.json()["key_id"], key_id(API_KEY));
    }
    let signed = |key: &str, t: u64| {
        let mut headers = json_from("198.18.7.7");
        headers.push(("x-guard-signature", signature_at(key, t, &ok)));
        headers
    };
    let t = now();
    assert_eq!(
        h.client(Mode::Proxy, "POST", &signed(KV_HMAC_OLD, t), &ok)
            .status,
        201
    );

    // Rotation: a new version of the webhook key. A signature with it fails against the cached
    // key, the verifier forces a refresh and the new version is followed.
    vault
        .lock()
        .unwrap()
        .get_mut("orders-webhook-hmac")
        .unwrap()
        .push(("f7a8b9".to_owned(), KV_HMAC_NEW.to_owned(), 1_700_000_100));
    let r = h.client(Mode::Invocation, "POST", &signed(KV_HMAC_NEW, t - 1), &ok);
    assert_eq!(r.status, 201, "rotated key followed: {}", r.body);
    // The previous version is still accepted during the grace window.
    let r = h.client(Mode::Proxy, "POST", &signed(KV_HMAC_OLD, t - 2), &ok);
    assert_eq!(r.status, 201, "previous key accepted: {}", r.body);

    let heads = seen.lock().unwrap().clone();
    let lines: Vec<&str> = heads
        .iter()
        .map(|h| h.lines().next().unwrap_or_default())
        .collect();
    let token_requests: Vec<&String> = heads
        .iter()
        .filter(|h| h.starts_with("GET /msi/token"))
        .collect();
    assert_eq!(token_requests.len(), 1, "one token per lifetime: {lines:?}");
    assert!(token_requests[0].starts_with(
        "GET /msi/token?resource=https://vault.azure.net&api-version=2019-08-01 HTTP/1.1"
    ));
    assert!(
        token_requests[0]
            .to_ascii_lowercase()
            .contains(&format!("x-identity-header: {IDENTITY_HEADER}"))
    );
    for head in heads.iter().filter(|h| !h.starts_with("GET /msi/token")) {
        let line = head.lines().next().unwrap();
        assert!(
            line.starts_with("GET /secrets/") && line.ends_with("?api-version=7.4 HTTP/1.1"),
            "{line}"
        );
        assert!(
            head.to_ascii_lowercase().contains(&format!(
                "authorization: bearer {}",
                TOKEN.to_ascii_lowercase()
            )),
            "{head}"
        );
    }
    assert!(
        lines.contains(&"GET /secrets/orders-api-key?api-version=7.4 HTTP/1.1"),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"GET /secrets/orders-webhook-hmac?api-version=7.4 HTTP/1.1"),
        "{lines:?}"
    );
    // The previous version comes from the versions list, then by its id.
    assert!(
        lines.contains(&"GET /secrets/orders-webhook-hmac/versions?api-version=7.4 HTTP/1.1"),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"GET /secrets/orders-webhook-hmac/d4e5f6?api-version=7.4 HTTP/1.1"),
        "{lines:?}"
    );
    let api_key_reads = lines
        .iter()
        .filter(|l| l.starts_with("GET /secrets/orders-api-key?"))
        .count();
    assert_eq!(api_key_reads, 1, "prefetched once and cached: {lines:?}");

    let events = h.wait_for_decisions(6);
    assert_eq!(events.len(), 6, "{events:?}");
    let output = h.all_output();
    for secret in [TOKEN, IDENTITY_HEADER, KV_API_KEY, KV_HMAC_OLD, KV_HMAC_NEW] {
        assert!(!output.contains(secret), "{secret} appeared in the output");
    }
    drop(h);
    drop(stub);
}
