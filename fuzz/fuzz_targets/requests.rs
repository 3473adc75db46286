//! Fuzzes the public API's request handling: the first byte picks an RPC,
//! the rest is decoded as that RPC's protobuf request and, if it decodes,
//! handed to the same handlers the gRPC server uses (validation, conversion,
//! the services and the engine over an in-memory datastore). A panic, an
//! overflow, a stack overflow or a hang (libFuzzer's timeout) is a finding:
//! no request a client controls may cause one. Schema text has its own
//! target (`schema_roundtrip`); WriteSchema is left out here because it
//! would replace the schema the other requests are aimed at.

#![no_main]

use std::cell::RefCell;
use std::sync::Arc;

use futures::StreamExt as _;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::Request;

use trellis::api::handlers::Api;
use trellis::api::proto::v1;
use trellis::api::proto::v1::permissions_service_server::PermissionsService;
use trellis::api::proto::v1::schema_service_server::SchemaService;
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};
use trellis::service::Limits;

/// The schema every fresh state starts with: recursion, arrows, caveats,
/// wildcards, exclusion and intersection, so decoded requests that name
/// these types reach every part of the engine.
const SCHEMA: &str = r#"
caveat ip_allowed(allowed string, ip ipaddress) { ip.in_cidr(allowed) }
caveat limited(limit int, count int) { count < limit }
definition user {}
definition group {
    relation member: user | group#member | user with limited
}
definition folder {
    relation parent: folder
    relation viewer: user | group#member | user with ip_allowed
    permission view = viewer + parent->view
    permission all_view = parent.all(view)
}
definition document {
    relation folder: folder
    relation owner: user
    relation viewer: user | user:* | group#member
    relation banned: user | group#member
    permission edit = owner & viewer
    permission view = (viewer + owner + folder->view) - banned
}
"#;

/// Fresh state after this many inputs, so relationships the fuzzer writes
/// do not pile up without bound.
const INPUTS_PER_STATE: u32 = 2_000;

/// At most this many items are read from a streamed response.
const MAX_STREAMED: usize = 64;

struct State {
    runtime: tokio::runtime::Runtime,
    api: Api<MemoryDatastore>,
    inputs: u32,
}

impl State {
    fn fresh() -> State {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
        let datastore = Arc::new(MemoryDatastore::new(
            RevisionConfig::default(),
            Arc::new(SystemClock),
        ));
        let services = trellis::server::services(datastore, Limits::default());
        runtime
            .block_on(services.write_schema(SCHEMA))
            .expect("the fuzzing schema compiles");
        State {
            runtime,
            api: Api::new(services),
            inputs: 0,
        }
    }
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    STATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|s| s.inputs >= INPUTS_PER_STATE) {
            *slot = Some(State::fresh());
        }
        let state = slot.as_mut().expect("just filled");
        state.inputs += 1;
        state.runtime.block_on(call(&state.api, selector, body));
    });
});

/// Decodes `body` as the request `selector` picks and calls its handler;
/// errors are expected answers, only panics and hangs are findings.
async fn call(api: &Api<MemoryDatastore>, selector: u8, body: &[u8]) {
    match selector % 10 {
        0 => {
            if let Ok(r) = v1::CheckPermissionRequest::decode(body) {
                let _ = api.check_permission(Request::new(r)).await;
            }
        }
        1 => {
            if let Ok(r) = v1::CheckBulkPermissionsRequest::decode(body) {
                let _ = api.check_bulk_permissions(Request::new(r)).await;
            }
        }
        2 => {
            if let Ok(r) = v1::WriteRelationshipsRequest::decode(body) {
                let _ = api.write_relationships(Request::new(r)).await;
            }
        }
        3 => {
            if let Ok(r) = v1::DeleteRelationshipsRequest::decode(body) {
                let _ = api.delete_relationships(Request::new(r)).await;
            }
        }
        4 => {
            if let Ok(r) = v1::ExpandPermissionTreeRequest::decode(body) {
                let _ = api.expand_permission_tree(Request::new(r)).await;
            }
        }
        5 => {
            if let Ok(r) = v1::ReadRelationshipsRequest::decode(body)
                && let Ok(stream) = api.read_relationships(Request::new(r)).await
            {
                drain(stream.into_inner()).await;
            }
        }
        6 => {
            if let Ok(r) = v1::LookupResourcesRequest::decode(body)
                && let Ok(stream) = api.lookup_resources(Request::new(r)).await
            {
                drain(stream.into_inner()).await;
            }
        }
        7 => {
            if let Ok(r) = v1::LookupSubjectsRequest::decode(body)
                && let Ok(stream) = api.lookup_subjects(Request::new(r)).await
            {
                drain(stream.into_inner()).await;
            }
        }
        8 => {
            if let Ok(r) = v1::ExportBulkRelationshipsRequest::decode(body)
                && let Ok(stream) = api.export_bulk_relationships(Request::new(r)).await
            {
                drain(stream.into_inner()).await;
            }
        }
        _ => {
            if let Ok(r) = v1::DiffSchemaRequest::decode(body) {
                let _ = api.diff_schema(Request::new(r)).await;
            }
        }
    }
}

async fn drain<S, T>(stream: S)
where
    S: futures::Stream<Item = Result<T, tonic::Status>> + Unpin,
{
    let _ = stream.take(MAX_STREAMED).collect::<Vec<_>>().await;
}
