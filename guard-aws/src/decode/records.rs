//! Record envelopes (SQS, SNS, EventBridge, S3, DynamoDB Streams, Kinesis) and direct invocations.
//!
//! Each record becomes a `POST /` request whose body is the record's payload: the SQS `body` (or,
//! for an SNS envelope inside SQS, the SNS `Message`), the SNS `Message`, the EventBridge `detail`,
//! the S3 record, the DynamoDB `dynamodb` object, the decoded Kinesis `data`. Records have no
//! declared content type: a body that starts like JSON (`{` or `[`) is labelled
//! `application/json`, other UTF-8 text `text/plain`, anything else `application/octet-stream`
//! (validation still parses it). A record that cannot be decoded, or whose `eventSource` is not the
//! batch's, is refused on its own: the others still run.

use bytes::Bytes;
use guard_core::GuardRequest;
use guard_core::request::body::BodyCodec;
use guard_core::request::{MessageTrigger, Trigger};
use http::HeaderValue;
use serde_json::Value;

use super::util::{base64_body, path, str_at};
use super::{DecodeError, Refused, Unit};
use crate::event::{EventShape, RecordMeta};
use crate::sns::SnsMessage;

/// Each record of a batch through `decode_one`, after checking that it comes from the batch's
/// source; a record that fails becomes a refusal naming only that record.
fn each<'a>(
    payload: &'a Value,
    shape: EventShape,
    decode_one: impl Fn(&'a Value) -> Result<GuardRequest, DecodeError>,
) -> Vec<Unit> {
    let Some(records) = payload.get("Records").and_then(Value::as_array) else {
        let missing = DecodeError::new(shape, "missing Records");
        return vec![Err(Refused::message(
            missing,
            record_trigger(shape, &Value::Null),
        ))];
    };
    records
        .iter()
        .map(|r| {
            let source = str_at(r, "eventSource").or_else(|| str_at(r, "EventSource"));
            let decoded = if source == Some(event_source(shape)) {
                decode_one(r)
            } else {
                Err(DecodeError::new(shape, "record from another event source"))
            };
            decoded.map_err(|e| Refused::message(e, record_trigger(shape, r)))
        })
        .collect()
}

/// The `eventSource` every record of a `shape` batch carries.
fn event_source(shape: EventShape) -> &'static str {
    match shape {
        EventShape::Sqs { .. } => "aws:sqs",
        EventShape::Sns => "aws:sns",
        EventShape::S3 => "aws:s3",
        EventShape::DynamoDb => "aws:dynamodb",
        _ => "aws:kinesis",
    }
}

/// Who sent a record and how the platform names it (empty where the record does not say):
/// the SQS `messageId`, the SNS `MessageId`, the DynamoDB / Kinesis sequence number (the
/// partial batch failure identifiers), the S3 request id or sequencer.
fn record_trigger(shape: EventShape, r: &Value) -> MessageTrigger {
    let (source, id) = match shape {
        EventShape::Sqs { .. } => (str_at(r, "eventSourceARN"), str_at(r, "messageId")),
        EventShape::Sns => (
            path(r, &["Sns", "TopicArn"]).and_then(Value::as_str),
            path(r, &["Sns", "MessageId"]).and_then(Value::as_str),
        ),
        EventShape::S3 => (
            path(r, &["s3", "bucket", "arn"]).and_then(Value::as_str),
            path(r, &["responseElements", "x-amz-request-id"])
                .or_else(|| path(r, &["s3", "object", "sequencer"]))
                .and_then(Value::as_str),
        ),
        EventShape::DynamoDb => (
            str_at(r, "eventSourceARN"),
            path(r, &["dynamodb", "SequenceNumber"]).and_then(Value::as_str),
        ),
        EventShape::EventBridge => (str_at(r, "source"), str_at(r, "id")),
        _ => (
            str_at(r, "eventSourceARN"),
            path(r, &["kinesis", "sequenceNumber"]).and_then(Value::as_str),
        ),
    };
    MessageTrigger::new(
        shape.as_str(),
        source.unwrap_or_default(),
        id.unwrap_or_default(),
    )
}

/// The record's trigger, refusing a record without the identifier a failure must name.
fn named_trigger(
    shape: EventShape,
    r: &Value,
    missing: &'static str,
) -> Result<MessageTrigger, DecodeError> {
    let trigger = record_trigger(shape, r);
    if trigger.message_id.is_empty() {
        return Err(DecodeError::new(shape, missing));
    }
    Ok(trigger)
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
pub(super) fn sqs(payload: &Value, shape: EventShape) -> Vec<Unit> {
    each(payload, shape, |r| {
        let mut trigger = named_trigger(shape, r, "record without messageId")?;
        let raw = str_at(r, "body").unwrap_or_default();
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
        let content_type = declared.unwrap_or_else(|| BodyCodec::sniff_media_type(&body));
        let mut req = message_request(body, content_type, trigger, meta);
        if let Some(sns) = envelope {
            req.extensions_mut().insert(sns);
        }
        Ok(req)
    })
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
pub(super) fn sns(payload: &Value) -> Vec<Unit> {
    let shape = EventShape::Sns;
    each(payload, shape, |r| {
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
        let content_type = BodyCodec::sniff_media_type(&body);
        let mut req = message_request(body, content_type, trigger, meta);
        req.extensions_mut().insert(msg);
        Ok(req)
    })
}

/// EventBridge (custom events and scheduled rules): the body is `detail`; the source is `source`.
pub(super) fn eventbridge(payload: &Value) -> Unit {
    let shape = EventShape::EventBridge;
    eventbridge_request(payload).map_err(|e| Refused::message(e, record_trigger(shape, payload)))
}

fn eventbridge_request(payload: &Value) -> Result<GuardRequest, DecodeError> {
    let shape = EventShape::EventBridge;
    let trigger = named_trigger(shape, payload, "missing id")?;
    if trigger.source_id.is_empty() {
        return Err(DecodeError::new(shape, "missing source"));
    }
    let meta = RecordMeta {
        event_name: owned(str_at(payload, "detail-type")),
        region: owned(str_at(payload, "region")),
        account: owned(str_at(payload, "account")),
        ..RecordMeta::default()
    };
    Ok(message_request(
        json_body(payload.get("detail").unwrap_or(&Value::Null)),
        HeaderValue::from_static("application/json"),
        trigger,
        meta,
    ))
}

/// S3 notifications: the body is the whole record; the source is the bucket ARN.
pub(super) fn s3(payload: &Value) -> Vec<Unit> {
    let shape = EventShape::S3;
    each(payload, shape, |r| {
        let trigger = record_trigger(shape, r);
        if trigger.source_id.is_empty() {
            return Err(DecodeError::new(shape, "record without s3.bucket.arn"));
        }
        let meta = RecordMeta {
            event_name: owned(str_at(r, "eventName")),
            region: owned(str_at(r, "awsRegion")),
            ..RecordMeta::default()
        };
        Ok(message_request(
            json_body(r),
            HeaderValue::from_static("application/json"),
            trigger,
            meta,
        ))
    })
}

/// DynamoDB Streams: the body is the `dynamodb` object; `dynamodb.SequenceNumber` identifies it.
pub(super) fn dynamodb(payload: &Value) -> Vec<Unit> {
    let shape = EventShape::DynamoDb;
    each(payload, shape, |r| {
        let trigger = named_trigger(shape, r, "record without dynamodb.SequenceNumber")?;
        let meta = RecordMeta {
            event_name: owned(str_at(r, "eventName")),
            region: owned(str_at(r, "awsRegion")),
            ..RecordMeta::default()
        };
        Ok(message_request(
            json_body(r.get("dynamodb").unwrap_or(&Value::Null)),
            HeaderValue::from_static("application/json"),
            trigger,
            meta,
        ))
    })
}

/// Kinesis: the body is the base64-decoded `kinesis.data`; `kinesis.sequenceNumber` identifies it.
pub(super) fn kinesis(payload: &Value, max_body: usize) -> Vec<Unit> {
    let shape = EventShape::Kinesis;
    each(payload, shape, |r| {
        let k = r
            .get("kinesis")
            .ok_or(DecodeError::new(shape, "record without kinesis"))?;
        let trigger = named_trigger(shape, r, "record without kinesis.sequenceNumber")?;
        let body = base64_body(str_at(k, "data").unwrap_or_default(), max_body, shape)?;
        let meta = RecordMeta {
            region: owned(str_at(r, "awsRegion")),
            partition_key: owned(str_at(k, "partitionKey")),
            ..RecordMeta::default()
        };
        let content_type = BodyCodec::sniff_media_type(&body);
        Ok(message_request(body, content_type, trigger, meta))
    })
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
