//! `guard_http::HttpClient` against local servers.

use std::time::{Duration, Instant};

use guard_http::{HttpClient, HttpError};
use guard_tests::http::{Reply, StubServer, response};
use guard_tests::server::within;
use http::HeaderMap;

fn client(timeout: Duration, cap: usize) -> HttpClient {
    HttpClient::builder()
        .timeout(timeout)
        .max_response_bytes(cap)
        .build()
        .unwrap()
}

async fn get(c: &HttpClient, url: &str) -> Result<http::Response<bytes::Bytes>, HttpError> {
    c.allowing_local_http()
        .get(url.parse().unwrap(), HeaderMap::new())
        .await
}

#[tokio::test]
async fn a_redirect_is_returned_and_its_target_never_fetched() {
    let target = StubServer::start(|_| Reply::Respond(response("200 OK", &[], b"moved"))).await;
    let location = target.url("/elsewhere");
    for status in [
        "301 Moved Permanently",
        "302 Found",
        "307 Temporary Redirect",
    ] {
        let to = location.clone();
        let redirecting =
            StubServer::start(move |_| Reply::Respond(response(status, &[("location", &to)], b"")))
                .await;
        let c = client(Duration::from_secs(2), 1024);
        let resp = get(&c, &redirecting.url("/start")).await.unwrap();
        assert_eq!(resp.status().as_str(), &status[..3]);
        assert_eq!(resp.headers()["location"], location.as_str());
        assert_eq!(redirecting.hits(), 1);
    }
    assert_eq!(target.hits(), 0, "the Location was never fetched");
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_declared_or_not() {
    let body = vec![b'x'; 1025];
    let declared = body.clone();
    let with_length =
        StubServer::start(move |_| Reply::Respond(response("200 OK", &[], &declared))).await;
    let until_close = StubServer::start(move |_| {
        let mut r = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        r.extend_from_slice(&body);
        Reply::Respond(r)
    })
    .await;
    let c = client(Duration::from_secs(2), 1024);
    for server in [&with_length, &until_close] {
        let err = get(&c, &server.url("/big")).await.unwrap_err();
        assert_eq!(err, HttpError::TooLarge(1024));
    }
    // At the cap exactly: read whole.
    let exact = StubServer::start(|_| Reply::Respond(response("200 OK", &[], &[b'y'; 1024]))).await;
    assert_eq!(get(&c, &exact.url("/")).await.unwrap().body().len(), 1024);
}

#[tokio::test]
async fn a_server_that_stalls_before_or_during_the_body_is_cut_off_at_the_timeout() {
    let silent = StubServer::stalling().await;
    let trickle = StubServer::start(|_| {
        Reply::StartThenStall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial".to_vec())
    })
    .await;
    let budget = Duration::from_millis(300);
    let c = client(budget, 1024);
    for server in [&silent, &trickle] {
        let started = Instant::now();
        let err = within(budget * 10, get(&c, &server.url("/")))
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(err, HttpError::Timeout(budget));
        assert!(err.is_transient());
        assert!(took >= budget && took < budget * 3, "took {took:?}");
        assert_eq!(server.hits(), 1);
    }
}

#[tokio::test]
async fn plain_http_is_refused_by_the_https_only_rule_not_by_the_network() {
    // A live server on loopback that would answer: the refusal comes before any connection.
    let live = StubServer::start(|_| Reply::Respond(response("200 OK", &[], b"ok"))).await;
    let c = client(Duration::from_secs(2), 1024);
    let err = c
        .get(live.url("/").parse().unwrap(), HeaderMap::new())
        .await
        .unwrap_err();
    assert_eq!(err, HttpError::Refused("plain http is not allowed"));
    assert!(!err.is_transient());
    assert_eq!(live.hits(), 0);
    // The same server, opted in as a local target: answered.
    assert_eq!(
        get(&c, &live.url("/")).await.unwrap().body().as_ref(),
        b"ok"
    );
    assert_eq!(live.hits(), 1);
}

#[tokio::test]
async fn headers_are_sent_and_status_headers_and_body_come_back() {
    let echo = StubServer::start(|seen| {
        let got = seen
            .head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("metadata-flavor:"))
            .unwrap_or("none")
            .to_owned();
        Reply::Respond(response(
            "203 Non-Authoritative Information",
            &[("x-seen", "1")],
            got.as_bytes(),
        ))
    })
    .await;
    let mut headers = HeaderMap::new();
    headers.insert("metadata-flavor", "Google".parse().unwrap());
    let c = client(Duration::from_secs(2), 1024);
    let resp = c
        .allowing_local_http()
        .get(echo.url("/token").parse().unwrap(), headers)
        .await
        .unwrap();
    assert_eq!(resp.status(), 203);
    assert_eq!(resp.headers()["x-seen"], "1");
    assert_eq!(resp.body().as_ref(), b"metadata-flavor: Google");
}
