//! A fake CloudWatch on 127.0.0.1:0 that speaks what the real service speaks to the
//! current Rust SDK: Smithy RPC v2 CBOR.
//!
//! moto answers 404 to this protocol (TESTBED.md), so the `cloudwatch` check is tested
//! against this axum server instead. It serves `GetMetricData` and `DescribeAlarms` at
//! `POST /service/GraniteServiceVersion20100801/operation/<Op>`, decodes each request's
//! CBOR body (kept, with the headers, for the tests to look at), and answers with CBOR
//! bodies shaped as the SDK's deserializers read them: timestamps under tag 1 as epoch
//! seconds, doubles as floats, errors as a map with `__type` and `message` under HTTP
//! 400 or 500, plus the `x-amzn-query-error: Code;Fault` header that the service adds
//! in query-compatible mode (the SDK sends `x-amzn-query-mode: true`).
//!
//! Faults: throttling, an internal error (500), and a delay before every answer.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use minicbor::data::Token;
use tokio::task::JoinHandle;

/// The path prefix of every operation.
pub const OPERATION_PATH: &str = "/service/GraniteServiceVersion20100801/operation/";

// ---------------------------------------------------------------------------------------
// A CBOR value, decoded from and encoded to bytes with minicbor.

/// One CBOR data item.
#[derive(Debug, Clone, PartialEq)]
pub enum Cbor {
    /// Any integer, major types 0 and 1.
    Int(i128),
    /// A float of any width.
    Float(f64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A text string.
    Text(String),
    /// An array.
    Array(Vec<Cbor>),
    /// A map, in wire order.
    Map(Vec<(Cbor, Cbor)>),
    /// A tagged item (tag 1: epoch seconds).
    Tag(u64, Box<Cbor>),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// `undefined`, or a simple value.
    Undefined,
}

impl Cbor {
    /// A text item.
    pub fn text(s: impl Into<String>) -> Cbor {
        Cbor::Text(s.into())
    }

    /// A map with text keys.
    pub fn map<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Cbor)>) -> Cbor {
        Cbor::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Cbor::Text(k.into()), v))
                .collect(),
        )
    }

    /// A timestamp as Smithy writes it: tag 1 around float epoch seconds.
    pub fn timestamp(epoch_seconds: f64) -> Cbor {
        Cbor::Tag(1, Box::new(Cbor::Float(epoch_seconds)))
    }

    /// The value under a text key of a map.
    pub fn get(&self, key: &str) -> Option<&Cbor> {
        match self {
            Cbor::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(k, Cbor::Text(t) if t == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cbor::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The number, if this is an integer or a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            #[allow(clippy::cast_precision_loss)]
            Cbor::Int(i) => Some(*i as f64),
            Cbor::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Epoch seconds, if this is a tag-1 timestamp.
    pub fn as_timestamp(&self) -> Option<f64> {
        match self {
            Cbor::Tag(1, inner) => inner.as_f64(),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> &[Cbor] {
        match self {
            Cbor::Array(items) => items,
            _ => &[],
        }
    }

    /// Encodes as CBOR bytes (definite lengths).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = minicbor::Encoder::new(Vec::new());
        self.write(&mut e);
        e.into_writer()
    }

    fn write(&self, e: &mut minicbor::Encoder<Vec<u8>>) {
        const OK: &str = "writing to a Vec cannot fail";
        match self {
            Cbor::Int(i) => {
                let i = minicbor::data::Int::try_from(*i).expect("integer fits in CBOR");
                e.int(i).expect(OK);
            }
            Cbor::Float(f) => {
                e.f64(*f).expect(OK);
            }
            Cbor::Bytes(b) => {
                e.bytes(b).expect(OK);
            }
            Cbor::Text(t) => {
                e.str(t).expect(OK);
            }
            Cbor::Array(items) => {
                e.array(items.len() as u64).expect(OK);
                for item in items {
                    item.write(e);
                }
            }
            Cbor::Map(pairs) => {
                e.map(pairs.len() as u64).expect(OK);
                for (k, v) in pairs {
                    k.write(e);
                    v.write(e);
                }
            }
            Cbor::Tag(t, inner) => {
                e.tag(minicbor::data::Tag::new(*t)).expect(OK);
                inner.write(e);
            }
            Cbor::Bool(b) => {
                e.bool(*b).expect(OK);
            }
            Cbor::Null => {
                e.null().expect(OK);
            }
            Cbor::Undefined => {
                e.undefined().expect(OK);
            }
        }
    }

    /// Decodes exactly one data item (definite or indefinite lengths).
    pub fn decode(bytes: &[u8]) -> Result<Cbor, String> {
        let mut tokens = minicbor::decode::Tokenizer::new(bytes);
        let first = next(&mut tokens)?;
        let value = read_item(first, &mut tokens)?;
        match tokens.next() {
            None => Ok(value),
            Some(_) => Err("bytes after the first data item".into()),
        }
    }
}

fn next<'b>(tokens: &mut minicbor::decode::Tokenizer<'_, 'b>) -> Result<Token<'b>, String> {
    match tokens.next() {
        Some(Ok(t)) => Ok(t),
        Some(Err(e)) => Err(format!("invalid CBOR: {e}")),
        None => Err("CBOR ends in the middle of an item".into()),
    }
}

fn read_item<'b>(
    first: Token<'b>,
    tokens: &mut minicbor::decode::Tokenizer<'_, 'b>,
) -> Result<Cbor, String> {
    Ok(match first {
        Token::Bool(b) => Cbor::Bool(b),
        Token::U8(n) => Cbor::Int(n.into()),
        Token::U16(n) => Cbor::Int(n.into()),
        Token::U32(n) => Cbor::Int(n.into()),
        Token::U64(n) => Cbor::Int(n.into()),
        Token::I8(n) => Cbor::Int(n.into()),
        Token::I16(n) => Cbor::Int(n.into()),
        Token::I32(n) => Cbor::Int(n.into()),
        Token::I64(n) => Cbor::Int(n.into()),
        Token::Int(n) => Cbor::Int(i128::from(n)),
        Token::F16(f) | Token::F32(f) => Cbor::Float(f64::from(f)),
        Token::F64(f) => Cbor::Float(f),
        Token::Bytes(b) => Cbor::Bytes(b.to_vec()),
        Token::String(s) => Cbor::Text(s.to_string()),
        Token::Array(n) => {
            let mut items = Vec::new();
            for _ in 0..n {
                let t = next(tokens)?;
                items.push(read_item(t, tokens)?);
            }
            Cbor::Array(items)
        }
        Token::BeginArray => {
            let mut items = Vec::new();
            loop {
                match next(tokens)? {
                    Token::Break => break,
                    t => items.push(read_item(t, tokens)?),
                }
            }
            Cbor::Array(items)
        }
        Token::Map(n) => {
            let mut pairs = Vec::new();
            for _ in 0..n {
                let k = next(tokens)?;
                let k = read_item(k, tokens)?;
                let v = next(tokens)?;
                pairs.push((k, read_item(v, tokens)?));
            }
            Cbor::Map(pairs)
        }
        Token::BeginMap => {
            let mut pairs = Vec::new();
            loop {
                let k = match next(tokens)? {
                    Token::Break => break,
                    t => read_item(t, tokens)?,
                };
                let v = next(tokens)?;
                pairs.push((k, read_item(v, tokens)?));
            }
            Cbor::Map(pairs)
        }
        Token::BeginString => {
            let mut out = String::new();
            loop {
                match next(tokens)? {
                    Token::Break => break,
                    Token::String(s) => out.push_str(s),
                    t => return Err(format!("{t} inside an indefinite text string")),
                }
            }
            Cbor::Text(out)
        }
        Token::BeginBytes => {
            let mut out = Vec::new();
            loop {
                match next(tokens)? {
                    Token::Break => break,
                    Token::Bytes(b) => out.extend_from_slice(b),
                    t => return Err(format!("{t} inside an indefinite byte string")),
                }
            }
            Cbor::Bytes(out)
        }
        Token::Tag(t) => {
            let inner = next(tokens)?;
            Cbor::Tag(u64::from(t), Box::new(read_item(inner, tokens)?))
        }
        Token::Null => Cbor::Null,
        Token::Undefined | Token::Simple(_) => Cbor::Undefined,
        Token::Break => return Err("unexpected break".into()),
    })
}

// ---------------------------------------------------------------------------------------
// The fake service.

/// How the fake answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Serve the data.
    Normal,
    /// HTTP 400 with the throttling error, as the service sends it in query-compatible
    /// mode: `__type` `com.amazon.coral.availability#ThrottlingException` and the header
    /// `x-amzn-query-error: Throttling;Sender`.
    Throttling,
    /// HTTP 400 with only `__type: com.amazonaws.cloudwatch#Throttling` (no query
    /// header): the error code the SDK must still read as throttling.
    ThrottlingBare,
    /// HTTP 500 with `InternalServiceFault` (`InternalServiceError;Receiver`).
    InternalError,
    /// HTTP 403 with `AccessDenied` (`AccessDenied;Sender`).
    AccessDenied,
    /// Wait this long, then serve the data.
    Delay(Duration),
}

/// A metric alarm as the fake lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// `AlarmName`.
    pub name: String,
    /// `StateValue`: `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
    /// `Namespace`.
    pub namespace: String,
    /// `MetricName`.
    pub metric: String,
    /// `Dimensions`, as (name, value).
    pub dimensions: Vec<(String, String)>,
}

impl Alarm {
    /// An `AWS/EC2` alarm on one instance.
    pub fn ec2(name: &str, metric: &str, instance_id: &str, state: &str) -> Alarm {
        Alarm {
            name: name.into(),
            state: state.into(),
            namespace: "AWS/EC2".into(),
            metric: metric.into(),
            dimensions: vec![("InstanceId".into(), instance_id.into())],
        }
    }

    fn to_cbor(&self, region: &str) -> Cbor {
        let now = now_secs();
        let dims = self
            .dimensions
            .iter()
            .map(|(n, v)| {
                Cbor::map([
                    ("Name", Cbor::text(n.clone())),
                    ("Value", Cbor::text(v.clone())),
                ])
            })
            .collect();
        Cbor::map([
            ("AlarmName", Cbor::text(self.name.clone())),
            (
                "AlarmArn",
                Cbor::text(format!(
                    "arn:aws:cloudwatch:{region}:123456789012:alarm:{}",
                    self.name
                )),
            ),
            (
                "AlarmConfigurationUpdatedTimestamp",
                Cbor::timestamp(now - 86_400.0),
            ),
            ("ActionsEnabled", Cbor::Bool(true)),
            ("OKActions", Cbor::Array(vec![])),
            (
                "AlarmActions",
                Cbor::Array(vec![Cbor::text(format!(
                    "arn:aws:sns:{region}:123456789012:harena-alerts"
                ))]),
            ),
            ("InsufficientDataActions", Cbor::Array(vec![])),
            ("StateValue", Cbor::text(self.state.clone())),
            (
                "StateReason",
                Cbor::text(
                    "Threshold Crossed: 1 datapoint was not greater than the threshold (1.0).",
                ),
            ),
            ("StateUpdatedTimestamp", Cbor::timestamp(now - 3_600.0)),
            ("StateTransitionedTimestamp", Cbor::timestamp(now - 3_600.0)),
            ("MetricName", Cbor::text(self.metric.clone())),
            ("Namespace", Cbor::text(self.namespace.clone())),
            ("Statistic", Cbor::text("Maximum")),
            ("Dimensions", Cbor::Array(dims)),
            ("Period", Cbor::Int(60)),
            ("EvaluationPeriods", Cbor::Int(2)),
            ("Threshold", Cbor::Float(1.0)),
            (
                "ComparisonOperator",
                Cbor::text("GreaterThanOrEqualToThreshold"),
            ),
            ("TreatMissingData", Cbor::text("breaching")),
        ])
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// `POST` or another method.
    pub method: String,
    /// The whole path.
    pub path: String,
    /// The operation, from the path (`GetMetricData`), or empty.
    pub operation: String,
    /// The headers, names lowercase.
    pub headers: BTreeMap<String, String>,
    /// The decoded body (`Cbor::Null` when empty or not CBOR).
    pub body: Cbor,
}

impl SeenRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Datapoints of one (namespace, metric, statistic) for one instance.
type SeriesKey = (String, String, String);

#[derive(Debug)]
struct FakeState {
    mode: Mode,
    /// Modes of single operations, over `mode`.
    overrides: BTreeMap<String, Mode>,
    region: String,
    instance_id: String,
    /// (epoch seconds, value), any order.
    datapoints: BTreeMap<SeriesKey, Vec<(f64, f64)>>,
    alarms: Vec<Alarm>,
    seen: Vec<SeenRequest>,
}

/// The fake's server task, stopped when dropped.
pub struct FakeCloudWatch {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    task: JoinHandle<()>,
}

impl Drop for FakeCloudWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Now, in epoch seconds.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

impl FakeCloudWatch {
    /// Starts the fake on a free port of 127.0.0.1, serving data of `instance_id` in
    /// `region` (the region only shows in ARNs).
    pub async fn start(instance_id: &str, region: &str) -> FakeCloudWatch {
        let state = Arc::new(Mutex::new(FakeState {
            mode: Mode::Normal,
            overrides: BTreeMap::new(),
            region: region.into(),
            instance_id: instance_id.into(),
            datapoints: BTreeMap::new(),
            alarms: Vec::new(),
            seen: Vec::new(),
        }));
        let app = Router::new()
            .route(&format!("{OPERATION_PATH}{{op}}"), post(operation))
            .fallback(not_found)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake CloudWatch");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("serve the fake CloudWatch");
        });
        FakeCloudWatch { addr, state, task }
    }

    /// The `endpoint_url` to give the check.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes how the fake answers every operation from now on.
    pub fn set_mode(&self, mode: Mode) {
        let mut s = self.state.lock().unwrap();
        s.mode = mode;
        s.overrides.clear();
    }

    /// Changes how the fake answers one operation (until the next `set_mode`).
    pub fn set_mode_for(&self, operation: &str, mode: Mode) {
        self.state
            .lock()
            .unwrap()
            .overrides
            .insert(operation.to_string(), mode);
    }

    /// Replaces the datapoints of one series of the instance: (epoch seconds, value).
    pub fn set_datapoints(&self, namespace: &str, metric: &str, stat: &str, points: &[(f64, f64)]) {
        self.state.lock().unwrap().datapoints.insert(
            (namespace.into(), metric.into(), stat.into()),
            points.to_vec(),
        );
    }

    /// Replaces the alarms.
    pub fn set_alarms(&self, alarms: Vec<Alarm>) {
        self.state.lock().unwrap().alarms = alarms;
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The requests for one operation.
    pub fn requests_for(&self, operation: &str) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.operation == operation)
            .collect()
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        self.state.lock().unwrap().seen.clear();
    }
}

fn headers_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

async fn not_found(
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    State(state): State<Arc<Mutex<FakeState>>>,
) -> Response {
    state.lock().unwrap().seen.push(SeenRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        operation: String::new(),
        headers: headers_map(&headers),
        body: Cbor::Null,
    });
    (StatusCode::NOT_FOUND, "not found").into_response()
}

async fn operation(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let decoded = if body.is_empty() {
        Ok(Cbor::Null)
    } else {
        Cbor::decode(&body)
    };
    let mode = {
        let mut s = state.lock().unwrap();
        s.seen.push(SeenRequest {
            method: "POST".into(),
            path: format!("{OPERATION_PATH}{op}"),
            operation: op.clone(),
            headers: headers_map(&headers),
            body: decoded.clone().unwrap_or(Cbor::Null),
        });
        s.overrides.get(&op).copied().unwrap_or(s.mode)
    };
    let input = match decoded {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "com.amazonaws.cloudwatch#SerializationException",
                "SerializationException;Sender",
                &e,
            );
        }
    };
    match mode {
        Mode::Normal => {}
        Mode::Delay(d) => tokio::time::sleep(d).await,
        Mode::Throttling => {
            return error(
                StatusCode::BAD_REQUEST,
                "com.amazon.coral.availability#ThrottlingException",
                "Throttling;Sender",
                "Rate exceeded",
            );
        }
        Mode::ThrottlingBare => {
            return error_without_query_header(
                StatusCode::BAD_REQUEST,
                "com.amazonaws.cloudwatch#Throttling",
                "Rate exceeded",
            );
        }
        Mode::InternalError => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "com.amazonaws.cloudwatch#InternalServiceFault",
                "InternalServiceError;Receiver",
                "Internal service error",
            );
        }
        Mode::AccessDenied => {
            return error(
                StatusCode::FORBIDDEN,
                "com.amazon.coral.service#AccessDeniedException",
                "AccessDenied;Sender",
                "User: arn:aws:sts::123456789012:assumed-role/harena-ec2-role is not authorized to perform this action",
            );
        }
    }
    let s = state.lock().unwrap();
    let output = match op.as_str() {
        "GetMetricData" => get_metric_data(&s, &input),
        "DescribeAlarms" => describe_alarms(&s, &input),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "com.amazonaws.cloudwatch#UnknownOperationException",
                "UnknownOperationException;Sender",
                "unknown operation",
            );
        }
    };
    match output {
        Ok(body) => cbor_response(StatusCode::OK, body.encode(), None),
        Err(message) => error(
            StatusCode::BAD_REQUEST,
            "com.amazonaws.cloudwatch#InvalidParameterValueException",
            "InvalidParameterValue;Sender",
            &message,
        ),
    }
}

fn cbor_response(status: StatusCode, body: Vec<u8>, query_error: Option<&str>) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/cbor"));
    h.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    h.insert(
        "x-amzn-requestid",
        HeaderValue::from_static("5e1f6a3c-0b1d-4c8e-9a57-2f0f5c3d9b11"),
    );
    if let Some(q) = query_error {
        h.insert(
            "x-amzn-query-error",
            HeaderValue::from_str(q).expect("ASCII header"),
        );
    }
    response
}

fn error(status: StatusCode, type_: &str, query_error: &str, message: &str) -> Response {
    let body = Cbor::map([
        ("__type", Cbor::text(type_)),
        ("message", Cbor::text(message)),
    ]);
    cbor_response(status, body.encode(), Some(query_error))
}

fn error_without_query_header(status: StatusCode, type_: &str, message: &str) -> Response {
    let body = Cbor::map([
        ("__type", Cbor::text(type_)),
        ("message", Cbor::text(message)),
    ]);
    cbor_response(status, body.encode(), None)
}

/// `GetMetricData`: each `MetricStat` query gets the datapoints of its series inside
/// `[StartTime, EndTime)` when its dimensions are exactly `InstanceId=<the instance>`,
/// in the order `ScanBy` asks (newest first by default), as the service does.
fn get_metric_data(s: &FakeState, input: &Cbor) -> Result<Cbor, String> {
    let start = input
        .get("StartTime")
        .and_then(Cbor::as_timestamp)
        .ok_or("StartTime is required")?;
    let end = input
        .get("EndTime")
        .and_then(Cbor::as_timestamp)
        .ok_or("EndTime is required")?;
    if end <= start {
        return Err("The parameter StartTime must be less than the parameter EndTime.".into());
    }
    let ascending = input.get("ScanBy").and_then(Cbor::as_str) == Some("TimestampAscending");
    let queries = input
        .get("MetricDataQueries")
        .map(Cbor::as_array)
        .ok_or("MetricDataQueries is required")?;
    if queries.is_empty() || queries.len() > 500 {
        return Err("MetricDataQueries must have 1 to 500 members".into());
    }
    let mut results = Vec::new();
    for q in queries {
        let id = q
            .get("Id")
            .and_then(Cbor::as_str)
            .ok_or("a query without Id")?;
        if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(format!(
                "The value {id} for parameter MetricDataQueries.member.Id is not valid: it must start with a lowercase letter."
            ));
        }
        let stat = q.get("MetricStat").ok_or("a query without MetricStat")?;
        let metric = stat.get("Metric").ok_or("MetricStat without Metric")?;
        let namespace = metric
            .get("Namespace")
            .and_then(Cbor::as_str)
            .unwrap_or_default();
        let name = metric
            .get("MetricName")
            .and_then(Cbor::as_str)
            .unwrap_or_default();
        let statistic = stat
            .get("Stat")
            .and_then(Cbor::as_str)
            .ok_or("MetricStat without Stat")?;
        let period = stat
            .get("Period")
            .and_then(Cbor::as_f64)
            .ok_or("MetricStat without Period")?;
        if period < 1.0 {
            return Err("Period must be at least 1".into());
        }
        let dims: Vec<(String, String)> = metric
            .get("Dimensions")
            .map(Cbor::as_array)
            .unwrap_or_default()
            .iter()
            .map(|d| {
                (
                    d.get("Name")
                        .and_then(Cbor::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    d.get("Value")
                        .and_then(Cbor::as_str)
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        let ours = dims == [("InstanceId".to_string(), s.instance_id.clone())];
        let mut points: Vec<(f64, f64)> = if ours {
            s.datapoints
                .get(&(
                    namespace.to_string(),
                    name.to_string(),
                    statistic.to_string(),
                ))
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(t, _)| *t >= start && *t < end)
                .collect()
        } else {
            Vec::new()
        };
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !ascending {
            points.reverse();
        }
        let label = q
            .get("Label")
            .and_then(Cbor::as_str)
            .unwrap_or(name)
            .to_string();
        results.push(Cbor::map([
            ("Id", Cbor::text(id)),
            ("Label", Cbor::text(label)),
            (
                "Timestamps",
                Cbor::Array(points.iter().map(|(t, _)| Cbor::timestamp(*t)).collect()),
            ),
            (
                "Values",
                Cbor::Array(points.iter().map(|(_, v)| Cbor::Float(*v)).collect()),
            ),
            ("StatusCode", Cbor::text("Complete")),
        ]));
    }
    Ok(Cbor::map([
        ("MetricDataResults", Cbor::Array(results)),
        ("Messages", Cbor::Array(vec![])),
    ]))
}

/// `DescribeAlarms`: metric alarms, `MaxRecords` (1 to 100, default 50) per page, with
/// a `NextToken` while more remain.
fn describe_alarms(s: &FakeState, input: &Cbor) -> Result<Cbor, String> {
    let max = match input.get("MaxRecords").and_then(Cbor::as_f64) {
        None => 50,
        Some(n) if (1.0..=100.0).contains(&n) => n as usize,
        Some(n) => return Err(format!("MaxRecords {n} is not between 1 and 100")),
    };
    let from = match input.get("NextToken").and_then(Cbor::as_str) {
        None => 0,
        Some(t) => t
            .strip_prefix("page-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or("The service cannot process the NextToken")?,
    };
    let types: Vec<&str> = input
        .get("AlarmTypes")
        .map(Cbor::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(Cbor::as_str)
        .collect();
    let metric_alarms = types.is_empty() || types.contains(&"MetricAlarm");
    let all: Vec<&Alarm> = if metric_alarms {
        s.alarms.iter().collect()
    } else {
        Vec::new()
    };
    let page: Vec<Cbor> = all
        .iter()
        .skip(from)
        .take(max)
        .map(|a| a.to_cbor(&s.region))
        .collect();
    let mut out = vec![
        ("MetricAlarms", Cbor::Array(page)),
        ("CompositeAlarms", Cbor::Array(vec![])),
    ];
    if from + max < all.len() {
        out.push(("NextToken", Cbor::text(format!("page-{}", from + max))));
    }
    Ok(Cbor::map(out))
}

#[cfg(test)]
mod cbor_tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = Cbor::map([
            ("a", Cbor::Int(-3)),
            (
                "b",
                Cbor::Array(vec![Cbor::Float(1.5), Cbor::timestamp(1.0e9)]),
            ),
            ("c", Cbor::Bool(true)),
        ]);
        assert_eq!(Cbor::decode(&v.encode()), Ok(v));
        // Indefinite map {"k": "v"}.
        let indef = [0xbf, 0x61, b'k', 0x61, b'v', 0xff];
        assert_eq!(
            Cbor::decode(&indef),
            Ok(Cbor::map([("k", Cbor::text("v"))]))
        );
    }
}
