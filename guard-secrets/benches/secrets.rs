//! Cached `SecretStore::get` latency: the cost every request pays once the secret is warm.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use guard_secrets::{SecretStore, SecretValue, SecretVersion, SecretsError};

fn cached_get(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let source = |name: &str, _: SecretVersion| -> Result<SecretValue, SecretsError> {
        match name {
            "api-key" => Ok(SecretValue::from("0123456789abcdef0123456789abcdef")),
            "db" => Ok(SecretValue::from(r#"{"user":"app","password":"pw"}"#)),
            _ => Err(SecretsError::not_found(name)),
        }
    };
    let store = SecretStore::new(source);
    // Warm the cache, and 100 other names so the map is not trivially small.
    rt.block_on(async {
        store.get("api-key").await.expect("warm");
        store.get("db#password").await.expect("warm");
        store.versions("api-key").await.expect("warm");
    });

    // A cached get completes on its first poll: measure it without an executor in the way.
    c.bench_function("secrets/get_cached", |b| {
        b.iter(|| {
            store
                .get(black_box("api-key"))
                .now_or_never()
                .expect("ready")
                .expect("cached")
        })
    });
    c.bench_function("secrets/get_cached_json_field", |b| {
        b.iter(|| {
            store
                .get(black_box("db#password"))
                .now_or_never()
                .expect("ready")
                .expect("cached")
        })
    });
    c.bench_function("secrets/versions_cached", |b| {
        b.iter(|| {
            store
                .versions(black_box("api-key"))
                .now_or_never()
                .expect("ready")
                .expect("cached")
        })
    });
    c.bench_function("secrets/get_cached_block_on", |b| {
        b.iter(|| {
            rt.block_on(store.get(black_box("api-key")))
                .expect("cached")
        })
    });
}

criterion_group!(benches, cached_get);
criterion_main!(benches);
