//! Record envelopes (SQS, SNS, EventBridge, S3, DynamoDB Streams, Kinesis) and direct invocations.
//!
//! Each record becomes a `POST /` request whose body is the record's payload: the SQS `body` (or,
//! for an SNS envelope inside SQS, the SNS `Message`), the SNS `Message`, the EventBridge `detail`,
//! the S3 record, the DynamoDB `dynamodb` object, the decoded Kinesis `data`. Records have no
//! declared content type: a body that starts like JSON (`{` or `[`) is labelled
//! `application/json`, anything else `application/octet-stream` (validation still parses it).

use bytes::Bytes;
use guard_core::request::{GuardRequest, MessageTrigger, Trigger};
use http::HeaderValue;
use serde_json::Value;

use super::DecodeError;
use super::util::{base64_decode, path, str_at};
use crate::event::{EventShape, RecordMeta};
use crate::sns::SnsMessage;

fn records(payload: &Value, shape: EventShape) -> Result<&Vec<Value>, DecodeError> {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .ok_or(DecodeError::new(shape, "missing Records"))
}

fn sniff_content_type(body: &[u8]) -> HeaderValue {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | Some(b'[') => HeaderValue::from_static("application/json"),
        _ => HeaderValue::from_static("application/octet-stream"),
    }
}

fn message_request(
    body: Bytes,
    content_type: HeaderValue,
    trigger: MessageTrigger,
    meta: RecordMeta,
) -> GuardRequest {
    let mut req = http::Request::new(body);
    *req.method_mut() = http::Method::POST;
    req.headers_mut()
        .insert(http::header::CONTENT_TYPE, content_type);
    req.extensions_mut().insert(Trigger::Message(trigger));
    req.extensions_mut().insert(meta);
    req
}

fn json_body(v: &Value) -> Bytes {
    // Serializing an in-memory `Value` cannot fail.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn owned(v: Option<&str>) -> Option<String> {
    v.filter(|s| !s.is_empty()).map(str::to_owned)
}

/// SQS: one request per message; `messageId` is the partial-failure identifier. An SNS envelope
/// (SNS → SQS without raw delivery) is unwrapped: the body is the SNS `Message` and the envelope is
/// attached as [`SnsMessage`] so its signature can be verified.
pub(super) fn sqs(payload: &Value, shape: EventShape) -> Result<Vec<GuardRequest>, DecodeError> {
    records(payload, shape)?
        .iter()
        .map(|r| {
            let message_id = str_at(r, "messageId")
                .filter(|s| !s.is_empty())
                .ok_or(DecodeError::new(shape, "record without messageId"))?;
            let source = str_at(r, "eventSourceARN").unwrap_or_default();
            let raw = str_at(r, "body").unwrap_or_default();
            let mut trigger = MessageTrigger::new("sqs", source, message_id);
            trigger.attempt = path(r, &["attributes", "ApproximateReceiveCount"])
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok());
            let meta = RecordMeta {
                region: owned(str_at(r, "awsRegion")),
                partition_key: owned(
                    path(r, &["attributes", "MessageGroupId"]).and_then(Value::as_str),
                ),
                ..RecordMeta::default()
            };
            let declared = r
                .get("messageAttributes")
                .and_then(Value::as_object)
                .and_then(|attrs| {
                    attrs
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                })
                .and_then(|(_, v)| str_at(v, "stringValue"))
                .and_then(|s| HeaderValue::from_str(s).ok());
            let envelope = sns_envelope(raw);
            let body = match &envelope {
                Some(sns) => Bytes::copy_from_slice(sns.message.as_bytes()),
                None => Bytes::copy_from_slice(raw.as_bytes()),
            };
            let content_type = declared.unwrap_or_else(|| sniff_content_type(&body));
            let mut req = message_request(body, content_type, trigger, meta);
            if let Some(sns) = envelope {
                req.extensions_mut().insert(sns);
            }
            Ok(req)
        })
        .collect()
}

/// An SQS body that is an SNS notification envelope.
fn sns_envelope(body: &str) -> Option<SnsMessage> {
    if !body.trim_start().starts_with('{') || !body.contains("\"TopicArn\"") {
        return None;
    }
    let msg: SnsMessage = serde_json::from_str(body).ok()?;
    (msg.kind == "Notification" && !msg.topic_arn.is_empty()).then_some(msg)
}

/// SNS: one request per record; the body is the `Message`, the envelope is attached.
pub(super) fn sns(payload: &Value) -> Result<Vec<GuardRequest>, DecodeError> {
    let shape = EventShape::Sns;
    records(payload, shape)?
        .iter()
        .map(|r| {
            let sns = r
                .get("Sns")
                .ok_or(DecodeError::new(shape, "record without Sns"))?;
            let msg: SnsMessage = serde_json::from_value(sns.clone())
                .map_err(|_| DecodeError::new(shape, "Sns is not an SNS message"))?;
            let body = Bytes::copy_from_slice(msg.message.as_bytes());
            let trigger = MessageTrigger::new("sns", &msg.topic_arn, &msg.message_id);
            let meta = RecordMeta {
                region: msg.topic_arn.split(':').nth(3).and_then(|s| owned(Some(s))),
                ..RecordMeta::default()
            };
            let content_type = sniff_content_type(&body);
            let mut req = message_request(body, content_type, trigger, meta);
            req.extensions_mut().insert(msg);
            Ok(req)
        })
        .collect()
}

/// EventBridge (custom events and scheduled rules): the body is `detail`; the source is `source`.
pub(super) fn eventbridge(payload: &Value) -> Result<GuardRequest, DecodeError> {
    let shape = EventShape::EventBridge;
    let id = str_at(payload, "id").ok_or(DecodeError::new(shape, "missing id"))?;
    let source = str_at(payload, "source").ok_or(DecodeError::new(shape, "missing source"))?;
    let detail = payload.get("detail").unwrap_or(&Value::Null);
    let meta = RecordMeta {
        event_name: owned(str_at(payload, "detail-type")),
        region: owned(str_at(payload, "region")),
        account: owned(str_at(payload, "account")),
        ..RecordMeta::default()
    };
    Ok(message_request(
        json_body(detail),
        HeaderValue::from_static("application/json"),
        MessageTrigger::new("eventbridge", source, id),
        meta,
    ))
}

/// S3 notifications: the body is the whole record; the source is the bucket ARN.
pub(super) fn s3(payload: &Value) -> Result<Vec<GuardRequest>, DecodeError> {
    let shape = EventShape::S3;
    records(payload, shape)?
        .iter()
        .map(|r| {
            let bucket = path(r, &["s3", "bucket", "arn"])
                .and_then(Value::as_str)
                .ok_or(DecodeError::new(shape, "record without s3.bucket.arn"))?;
            let id = path(r, &["responseElements", "x-amz-request-id"])
                .or_else(|| path(r, &["s3", "object", "sequencer"]))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let meta = RecordMeta {
                event_name: owned(str_at(r, "eventName")),
                region: owned(str_at(r, "awsRegion")),
                ..RecordMeta::default()
            };
            Ok(message_request(
                json_body(r),
                HeaderValue::from_static("application/json"),
                MessageTrigger::new("s3", bucket, id),
                meta,
            ))
        })
        .collect()
}

/// DynamoDB Streams: the body is the `dynamodb` object; `dynamodb.SequenceNumber` identifies it.
pub(super) fn dynamodb(payload: &Value) -> Result<Vec<GuardRequest>, DecodeError> {
    let shape = EventShape::DynamoDb;
    records(payload, shape)?
        .iter()
        .map(|r| {
            let seq = path(r, &["dynamodb", "SequenceNumber"])
                .and_then(Value::as_str)
                .ok_or(DecodeError::new(
                    shape,
                    "record without dynamodb.SequenceNumber",
                ))?;
            let source = str_at(r, "eventSourceARN").unwrap_or_default();
            let meta = RecordMeta {
                event_name: owned(str_at(r, "eventName")),
                region: owned(str_at(r, "awsRegion")),
                ..RecordMeta::default()
            };
            Ok(message_request(
                json_body(r.get("dynamodb").unwrap_or(&Value::Null)),
                HeaderValue::from_static("application/json"),
                MessageTrigger::new("dynamodb", source, seq),
                meta,
            ))
        })
        .collect()
}

/// Kinesis: the body is the base64-decoded `kinesis.data`; `kinesis.sequenceNumber` identifies it.
pub(super) fn kinesis(payload: &Value) -> Result<Vec<GuardRequest>, DecodeError> {
    let shape = EventShape::Kinesis;
    records(payload, shape)?
        .iter()
        .map(|r| {
            let k = r
                .get("kinesis")
                .ok_or(DecodeError::new(shape, "record without kinesis"))?;
            let seq = str_at(k, "sequenceNumber").ok_or(DecodeError::new(
                shape,
                "record without kinesis.sequenceNumber",
            ))?;
            let body = base64_decode(str_at(k, "data").unwrap_or_default())
                .ok_or(DecodeError::new(shape, "kinesis.data is not valid base64"))?;
            let source = str_at(r, "eventSourceARN").unwrap_or_default();
            let meta = RecordMeta {
                region: owned(str_at(r, "awsRegion")),
                partition_key: owned(str_at(k, "partitionKey")),
                ..RecordMeta::default()
            };
            let content_type = sniff_content_type(&body);
            Ok(message_request(
                body,
                content_type,
                MessageTrigger::new("kinesis", source, seq),
                meta,
            ))
        })
        .collect()
}

/// A direct invocation: the payload as a JSON body, no source the platform vouches for.
pub(super) fn direct(payload: &Value) -> GuardRequest {
    let mut req = http::Request::new(json_body(payload));
    *req.method_mut() = http::Method::POST;
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    req.extensions_mut().insert(Trigger::Direct);
    req
}
