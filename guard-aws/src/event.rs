//! Request extensions specific to AWS, set by [`decode`](crate::decode::decode) next to the neutral
//! `Trigger`, `Peer` and `Invocation`.
//!
//! ```
//! use guard_aws::event::EventShape;
//!
//! let mut req = http::Request::new(bytes::Bytes::new());
//! req.extensions_mut().insert(EventShape::FunctionUrl);
//! assert!(req.extensions().get::<EventShape>().unwrap().is_http());
//! ```

/// The Lambda event envelope a request was decoded from (and that its response is encoded into).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventShape {
    /// API Gateway REST API, payload format 1.0 (`multiValueHeaders`).
    ApiGatewayV1,
    /// API Gateway HTTP API, payload format 2.0.
    ApiGatewayV2,
    /// A Lambda Function URL (payload format 2.0 on a `*.lambda-url.*.on.aws` domain).
    FunctionUrl,
    /// An Application Load Balancer target request; `multi_value` when the target group has
    /// multi-value headers on (the response must use the same form).
    Alb {
        /// Whether the request (and so the response) uses `multiValueHeaders`.
        multi_value: bool,
    },
    /// An API Gateway WebSocket route (`$connect`, `$disconnect`, messages).
    WebSocket,
    /// An SQS batch; `fifo` when the queue is a FIFO queue (records are then handled in order and
    /// the first failure stops the batch).
    Sqs {
        /// Whether the queue ARN ends with `.fifo`.
        fifo: bool,
    },
    /// SNS records delivered to Lambda.
    Sns,
    /// An EventBridge event (including scheduled events).
    EventBridge,
    /// S3 event notifications.
    S3,
    /// A DynamoDB Streams batch.
    DynamoDb,
    /// A Kinesis Data Streams batch.
    Kinesis,
    /// A direct invocation with an arbitrary payload.
    Direct,
}

impl EventShape {
    /// A stable lower-case name (`apigw-v1`, `function-url`, `sqs`, ...).
    ///
    /// ```
    /// assert_eq!(guard_aws::event::EventShape::Sqs { fifo: true }.as_str(), "sqs");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            EventShape::ApiGatewayV1 => "apigw-v1",
            EventShape::ApiGatewayV2 => "apigw-v2",
            EventShape::FunctionUrl => "function-url",
            EventShape::Alb { .. } => "alb",
            EventShape::WebSocket => "websocket",
            EventShape::Sqs { .. } => "sqs",
            EventShape::Sns => "sns",
            EventShape::EventBridge => "eventbridge",
            EventShape::S3 => "s3",
            EventShape::DynamoDb => "dynamodb",
            EventShape::Kinesis => "kinesis",
            EventShape::Direct => "direct",
        }
    }

    /// Whether the event is an HTTP request whose response goes back to a client.
    ///
    /// ```
    /// use guard_aws::event::EventShape;
    /// assert!(EventShape::ApiGatewayV1.is_http());
    /// assert!(!EventShape::Kinesis.is_http());
    /// ```
    pub fn is_http(self) -> bool {
        matches!(
            self,
            EventShape::ApiGatewayV1
                | EventShape::ApiGatewayV2
                | EventShape::FunctionUrl
                | EventShape::Alb { .. }
                | EventShape::WebSocket
        )
    }

    /// Whether the source accepts a partial batch failure response
    /// (`{"batchItemFailures": [...]}`): SQS, Kinesis and DynamoDB Streams.
    ///
    /// ```
    /// use guard_aws::event::EventShape;
    /// assert!(EventShape::DynamoDb.reports_batch_failures());
    /// assert!(!EventShape::Sns.reports_batch_failures());
    /// ```
    pub fn reports_batch_failures(self) -> bool {
        matches!(
            self,
            EventShape::Sqs { .. } | EventShape::Kinesis | EventShape::DynamoDb
        )
    }

    /// Whether records must be handled one after the other and the batch stop at the first failure
    /// (SQS FIFO, and the ordered streams: Lambda resumes a shard from the first reported record).
    ///
    /// ```
    /// use guard_aws::event::EventShape;
    /// assert!(EventShape::Sqs { fifo: true }.is_ordered());
    /// assert!(!EventShape::Sqs { fifo: false }.is_ordered());
    /// ```
    pub fn is_ordered(self) -> bool {
        matches!(
            self,
            EventShape::Sqs { fifo: true } | EventShape::Kinesis | EventShape::DynamoDb
        )
    }
}

/// Facts about one record that do not fit the neutral `Trigger` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordMeta {
    /// S3 / DynamoDB `eventName`, EventBridge `detail-type`.
    pub event_name: Option<String>,
    /// `awsRegion` / `region`.
    pub region: Option<String>,
    /// The account that owns the source (EventBridge `account`).
    pub account: Option<String>,
    /// Kinesis `partitionKey`, SQS FIFO `MessageGroupId`.
    pub partition_key: Option<String>,
}

/// The invocation payload as the Lambda runtime delivered it: the JSON text, checked to be JSON
/// but not parsed into a tree. [`run`](crate::run) and [`serve`](crate::serve) have the runtime
/// deserialize each invocation into it, and [`GuardService`](crate::GuardService) decodes API
/// Gateway HTTP API and Function URL events from the text in one typed pass (every other event
/// through a `serde_json::Value`, as a `LambdaEvent<Value>` would be).
///
/// ```
/// let raw = guard_aws::event::RawEvent::from_json(r#"{"Records": []}"#).unwrap();
/// assert_eq!(raw.as_str(), r#"{"Records": []}"#);
/// assert!(guard_aws::event::RawEvent::from_json("{").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct RawEvent(Box<serde_json::value::RawValue>);

impl RawEvent {
    /// Checks that `text` is one JSON value and keeps it.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text).map(RawEvent)
    }

    /// The payload text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl From<&serde_json::Value> for RawEvent {
    /// The text of `value` (for tests and tools that hold a parsed event).
    fn from(value: &serde_json::Value) -> Self {
        RawEvent(serde_json::value::to_raw_value(value).unwrap_or_else(|_| {
            serde_json::value::RawValue::from_string("null".into())
                .unwrap_or_else(|_| unreachable!("null is JSON"))
        }))
    }
}

impl<'de> serde::Deserialize<'de> for RawEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<serde_json::value::RawValue>::deserialize(d).map(RawEvent)
    }
}
