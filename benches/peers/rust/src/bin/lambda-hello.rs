//! `lambda-hello`: the cold-start floor (benches/peers/cold). A bare `lambda_runtime` function on
//! the same `Value` event type, answering 201 without looking at the event: what any Rust Lambda
//! pays to start and answer once, before a perimeter adds anything.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_event: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({
            "statusCode": 201,
            "headers": {"content-type": "application/json"},
            "body": "{\"accepted\":true}"
        }))
    }))
    .await
}
