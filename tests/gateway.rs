//! The HTTP/JSON gateway end to end: a real server with `--http-enabled`
//! on a free loopback port, called with real HTTP/1.1 requests (hyper's
//! client), JSON bodies in the canonical protobuf mapping, server streams
//! read as newline-delimited JSON, errors, auth and `/healthz` as
//! grpc-gateway answers them.

#[path = "common/server.rs"]
mod server;

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use server::{KEY, TestServer, free_addr};
use trellis::config::Config;
use trellis::datastore::RevisionConfig;
use trellis::gateway::GatewaySettings;

const SCHEMA: &str = "definition user {}

definition document {
    relation viewer: user
    permission view = viewer
}";

/// A server with the gateway on; the server stops when this is dropped.
struct Gateway {
    addr: SocketAddr,
    server: TestServer,
}

async fn start() -> Gateway {
    let addr = free_addr().await;
    let config = Config {
        gateway: GatewaySettings {
            enabled: true,
            addr,
        },
        ..Config::default()
    };
    let server = TestServer::start(config, RevisionConfig::default()).await;
    Gateway { addr, server }
}

/// An HTTP answer: status, headers, body text.
struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The body as NDJSON: one value per line.
    fn lines(&self) -> Vec<Value> {
        self.body
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

impl Gateway {
    /// Sends one request on a fresh connection (retrying the connect while
    /// the gateway is not listening yet).
    async fn send(&self, method: Method, path: &str, key: Option<&str>, body: &str) -> Answer {
        let stream = loop {
            match tokio::net::TcpStream::connect(self.addr).await {
                Ok(stream) => break stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("valid request");
        let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
            .await
            .expect("an answer within 30 s")
            .expect("an HTTP answer");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the whole body")
            .to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).expect("utf-8 body"),
        }
    }

    /// POST with the server's key.
    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(KEY), &body.to_string())
            .await
    }

    async fn write_schema(&self) -> String {
        let answer = self
            .post("/v1/schema/write", json!({ "schema": SCHEMA }))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        token(&answer.json()["writtenAt"])
    }

    async fn touch(&self, relationships: &[(&str, &str)]) -> String {
        let updates: Vec<Value> = relationships
            .iter()
            .map(|(doc, user)| {
                json!({
                    "operation": "OPERATION_TOUCH",
                    "relationship": {
                        "resource": { "objectType": "document", "objectId": doc },
                        "relation": "viewer",
                        "subject": { "object": { "objectType": "user", "objectId": user } },
                    },
                })
            })
            .collect();
        let answer = self
            .post("/v1/relationships/write", json!({ "updates": updates }))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        token(&answer.json()["writtenAt"])
    }

    async fn check(&self, doc: &str, user: &str, consistency: Value) -> Value {
        let answer = self
            .post(
                "/v1/permissions/check",
                json!({
                    "consistency": consistency,
                    "resource": { "objectType": "document", "objectId": doc },
                    "permission": "view",
                    "subject": { "object": { "objectType": "user", "objectId": user } },
                }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.json()
    }
}

fn token(zed_token: &Value) -> String {
    zed_token["token"]
        .as_str()
        .unwrap_or_else(|| panic!("a ZedToken, got {zed_token}"))
        .to_string()
}

#[tokio::test]
async fn write_then_check_with_the_written_token() {
    let gateway = start().await;
    gateway.write_schema().await;
    let written = gateway.touch(&[("readme", "emilia")]).await;

    let fresh = json!({ "atLeastAsFresh": { "token": written } });
    let has = gateway.check("readme", "emilia", fresh.clone()).await;
    assert_eq!(has["permissionship"], "PERMISSIONSHIP_HAS_PERMISSION");
    let no = gateway.check("readme", "beatrice", fresh).await;
    assert_eq!(no["permissionship"], "PERMISSIONSHIP_NO_PERMISSION");

    // Every field is present, unset messages as null (grpc-gateway's
    // EmitUnpopulated), and the token read at is a real one.
    assert_eq!(has["partialCaveatInfo"], Value::Null);
    assert!(has.as_object().expect("object").contains_key("debugTrace"));
    let checked_at = token(&has["checkedAt"]);
    // The token the check answered with reads at (at least) the write's revision.
    let again = gateway
        .check(
            "readme",
            "emilia",
            json!({ "atExactSnapshot": { "token": checked_at } }),
        )
        .await;
    assert_eq!(again["permissionship"], "PERMISSIONSHIP_HAS_PERMISSION");
}

#[tokio::test]
async fn server_streams_come_back_as_ndjson_results() {
    let gateway = start().await;
    gateway.write_schema().await;
    gateway
        .touch(&[
            ("a", "emilia"),
            ("b", "emilia"),
            ("c", "emilia"),
            ("d", "beatrice"),
        ])
        .await;

    let answer = gateway
        .post(
            "/v1/permissions/resources",
            json!({
                "consistency": { "fullyConsistent": true },
                "resourceObjectType": "document",
                "permission": "view",
                "subject": { "object": { "objectType": "user", "objectId": "emilia" } },
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/json");
    let mut ids: Vec<String> = answer
        .lines()
        .iter()
        .map(|line| {
            let result = &line["result"];
            assert_eq!(
                result["permissionship"],
                "LOOKUP_PERMISSIONSHIP_HAS_PERMISSION"
            );
            result["resourceObjectId"]
                .as_str()
                .expect("an id")
                .to_string()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "b", "c"]);

    let answer = gateway
        .post(
            "/v1/relationships/read",
            json!({
                "consistency": { "fullyConsistent": true },
                "relationshipFilter": { "resourceType": "document", "optionalResourceId": "d" },
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let lines = answer.lines();
    assert_eq!(lines.len(), 1, "{}", answer.body);
    let relationship = &lines[0]["result"]["relationship"];
    assert_eq!(relationship["subject"]["object"]["objectId"], "beatrice");
    assert_eq!(relationship["optionalCaveat"], Value::Null);
    assert!(lines[0]["result"]["afterResultCursor"]["token"].is_string());
}

#[tokio::test]
async fn a_client_stream_reads_ndjson_requests() {
    let gateway = start().await;
    gateway.write_schema().await;
    let batch = |doc: &str| {
        json!({ "relationships": [{
            "resource": { "objectType": "document", "objectId": doc },
            "relation": "viewer",
            "subject": { "object": { "objectType": "user", "objectId": "emilia" } },
        }] })
        .to_string()
    };
    let body = format!("{}\n{}\n", batch("x"), batch("y"));
    let answer = gateway
        .send(
            Method::POST,
            "/v1/relationships/importbulk",
            Some(KEY),
            &body,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // uint64 travels as a string in the JSON mapping.
    assert_eq!(answer.json()["numLoaded"], "2");
}

#[tokio::test]
async fn errors_carry_the_grpc_code_message_and_details() {
    let gateway = start().await;
    gateway.write_schema().await;

    // A request the API's validation refuses: INVALID_ARGUMENT, 400.
    let answer = gateway
        .post(
            "/v1/permissions/check",
            json!({
                "resource": { "objectType": "document", "objectId": "readme" },
                "permission": "view",
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["code"], 3, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("subject"),
        "{body}"
    );
    assert_eq!(body["details"], json!([]));

    // An unknown definition: FAILED_PRECONDITION (400 too) with SpiceDB's
    // ErrorInfo as a typed detail.
    let answer = gateway
        .post(
            "/v1/permissions/check",
            json!({
                "resource": { "objectType": "folder", "objectId": "f" },
                "permission": "view",
                "subject": { "object": { "objectType": "user", "objectId": "emilia" } },
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["code"], 9, "{body}");
    let detail = &body["details"][0];
    assert_eq!(detail["@type"], "type.googleapis.com/google.rpc.ErrorInfo");
    assert_eq!(detail["reason"], "ERROR_REASON_UNKNOWN_DEFINITION");
    assert_eq!(detail["domain"], "authzed.com");

    // A stream that fails before its first message answers like a unary call.
    let answer = gateway
        .post(
            "/v1/permissions/resources",
            json!({ "resourceObjectType": "folder", "permission": "view",
                    "subject": { "object": { "objectType": "user", "objectId": "emilia" } } }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(answer.json()["code"], 9);
}

#[tokio::test]
async fn malformed_json_is_a_bad_request_naming_the_problem() {
    let gateway = start().await;
    let answer = gateway
        .send(
            Method::POST,
            "/v1/permissions/check",
            Some(KEY),
            "{\"permission\": ",
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["code"], 3);
    let message = body["message"].as_str().expect("message");
    assert!(message.starts_with("invalid request body: "), "{message}");
    assert!(message.contains("line 1 column"), "{message}");

    let answer = gateway
        .send(
            Method::POST,
            "/v1/permissions/check",
            Some(KEY),
            r#"{"permission": ["view"]}"#,
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(answer.json()["code"], 3);
}

#[tokio::test]
async fn auth_is_the_grpc_apis_with_grpc_gateways_statuses() {
    let gateway = start().await;
    for path in ["/v1/schema/read", "/v1/watch"] {
        let missing = gateway.send(Method::POST, path, None, "").await;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{}", missing.body);
        assert_eq!(missing.json()["code"], 16);
        assert!(missing.headers.contains_key("www-authenticate"));

        let wrong = gateway.send(Method::POST, path, Some("nope"), "").await;
        assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.body);
        assert_eq!(wrong.json()["code"], 7);
        assert_eq!(
            wrong.json()["message"],
            "invalid preshared key: invalid token"
        );
    }
    // The right key and no body: the empty request, as grpc-gateway reads it.
    let read = gateway
        .send(Method::POST, "/v1/schema/read", Some(KEY), "")
        .await;
    assert_eq!(
        read.status,
        StatusCode::NOT_FOUND,
        "no schema yet: {}",
        read.body
    );
    gateway.write_schema().await;
    let read = gateway
        .send(Method::POST, "/v1/schema/read", Some(KEY), "")
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert!(
        read.json()["schemaText"]
            .as_str()
            .expect("text")
            .contains("definition document")
    );
}

#[tokio::test]
async fn unknown_paths_wrong_verbs_and_health() {
    let gateway = start().await;
    let answer = gateway.send(Method::GET, "/", None, "").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(
        answer.json(),
        json!({ "code": 5, "message": "Not Found", "details": [] })
    );
    let answer = gateway
        .send(Method::POST, "/v1/permissions/nope", Some(KEY), "{}")
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    let answer = gateway
        .send(Method::GET, "/v1/permissions/check", Some(KEY), "")
        .await;
    assert_eq!(answer.status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(
        answer.json(),
        json!({ "code": 12, "message": "Method Not Allowed", "details": [] })
    );

    // Health needs no key and reports the gRPC health service's status.
    let health = gateway.send(Method::GET, "/healthz", None, "").await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    assert_eq!(health.json(), json!({ "status": "SERVING" }));
    let health = gateway
        .send(
            Method::GET,
            "/healthz?service=authzed.api.v1.PermissionsService",
            None,
            "",
        )
        .await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    let unknown = gateway
        .send(Method::GET, "/healthz?service=nope", None, "")
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
}

#[tokio::test]
async fn watch_streams_changes_as_ndjson_lines() {
    let mut gateway = start().await;
    let schema_written = gateway.write_schema().await;
    gateway.touch(&[("readme", "emilia")]).await;

    // Watch never ends by itself: read its first line, then hang up.
    let stream = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("gateway listening");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let body = json!({ "optionalStartCursor": { "token": schema_written } }).to_string();
    let request = Request::post("/v1/watch")
        .header("host", gateway.addr.to_string())
        .header("authorization", format!("Bearer {KEY}"))
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
        .await
        .expect("the first change within 30 s")
        .expect("an HTTP answer");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = Vec::new();
    while !received.contains(&b'\n') {
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
            .await
            .expect("a line within 30 s")
            .expect("the stream goes on")
            .expect("a readable frame");
        if let Ok(data) = frame.into_data() {
            received.extend_from_slice(&data);
        }
    }
    let line = std::str::from_utf8(&received).expect("utf-8");
    let first: Value = serde_json::from_str(line.lines().next().expect("a line")).expect("JSON");
    let update = &first["result"]["updates"][0];
    assert_eq!(update["operation"], "OPERATION_TOUCH", "{first}");
    assert_eq!(update["relationship"]["resource"]["objectId"], "readme");
    assert!(first["result"]["changesThrough"]["token"].is_string());

    // Shutdown ends the open stream with its last line, UNAVAILABLE, and
    // the answer completes rather than being cut.
    gateway.server.stop();
    let rest = tokio::time::timeout(Duration::from_secs(30), body.collect())
        .await
        .expect("the stream ends within 30 s of shutdown")
        .expect("a complete body")
        .to_bytes();
    received.extend_from_slice(&rest);
    let text = String::from_utf8(received).expect("utf-8");
    let last: Value = serde_json::from_str(text.lines().last().expect("lines")).expect("JSON");
    assert_eq!(last["error"]["code"], 14, "{text}");
}

#[tokio::test]
async fn gateway_calls_count_in_the_grpc_metrics() {
    let metrics_addr = free_addr().await;
    let addr = free_addr().await;
    let config = Config {
        gateway: GatewaySettings {
            enabled: true,
            addr,
        },
        metrics_addr: Some(metrics_addr),
        ..Config::default()
    };
    let gateway = Gateway {
        addr,
        server: TestServer::start(config, RevisionConfig::default()).await,
    };
    gateway.write_schema().await;
    // No other test of this process expands, so the series is this call's.
    let answer = gateway
        .post(
            "/v1/permissions/expand",
            json!({
                "consistency": { "fullyConsistent": true },
                "resource": { "objectType": "document", "objectId": "readme" },
                "permission": "view",
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.json()["treeRoot"]["expandedObject"]["objectId"],
        "readme"
    );
    let (status, body) = server::get(metrics_addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let series = body
        .lines()
        .find(|line| {
            line.starts_with("grpc_server_handled_total{")
                && line.contains(r#"grpc_method="ExpandPermissionTree""#)
        })
        .unwrap_or_else(|| panic!("no ExpandPermissionTree series in:\n{body}"));
    assert!(series.contains(r#"grpc_code="OK""#), "{series}");
    assert!(series.contains(r#"grpc_type="unary""#), "{series}");
    assert!(series.ends_with(" 1"), "{series}");
}

#[tokio::test]
async fn http2_without_tls_is_served_too() {
    let gateway = start().await;
    let stream = loop {
        match tokio::net::TcpStream::connect(gateway.addr).await {
            Ok(stream) => break stream,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(connection);
    let request = Request::get(format!("http://{}/healthz", gateway.addr))
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    let response = sender.send_request(request).await.expect("an h2 answer");
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], br#"{"status":"SERVING"}"#);
}
