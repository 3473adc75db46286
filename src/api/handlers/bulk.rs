//! The stream handling of bulk import and export, in terms of
//! PermissionsService's messages. ImportBulkRelationships and
//! ExportBulkRelationships call these directly; the deprecated
//! ExperimentalService aliases (BulkImportRelationships,
//! BulkExportRelationships), whose messages have the same fields, convert
//! their messages to these and back and call the same functions.

use futures::{Stream, StreamExt as _};
use tonic::Status;
use tonic::codegen::BoxStream;

use crate::api::proto::v1;
use crate::api::{convert, validate};
use crate::datastore::Datastore;
use crate::service::{ExportParams, Import, Services};

/// Imports every relationship of every message in one transaction, opened
/// on the first message; returns how many were loaded. Each message is
/// validated and checked against the schema as it arrives; an error (or
/// the client cancelling) ends the import with nothing written.
pub async fn import_relationships<D, S>(services: &Services<D>, messages: S) -> Result<u64, Status>
where
    D: Datastore,
    S: Stream<Item = Result<v1::ImportBulkRelationshipsRequest, Status>> + Send,
{
    let mut messages = std::pin::pin!(messages);
    let mut import: Option<Import<D>> = None;
    while let Some(message) = messages.next().await {
        let message = message?;
        validate::import_bulk_relationships(&message)?;
        let batch = message
            .relationships
            .iter()
            .enumerate()
            .map(|(i, rel)| convert::relationship(Some(rel), &format!("relationships[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let session = match &mut import {
            Some(session) => session,
            None => import.insert(services.begin_import().await?),
        };
        session.add(batch)?;
    }
    let loaded = match import {
        Some(session) => session.commit().await?.1,
        None => 0,
    };
    Ok(loaded as u64)
}

/// Exports what the request selects as a stream of pages, each read when
/// the client is ready for it (so an export of any size holds one page in
/// memory), each with the cursor that resumes after it.
pub async fn export_relationships<D: Datastore>(
    services: &Services<D>,
    request: &v1::ExportBulkRelationshipsRequest,
) -> Result<BoxStream<v1::ExportBulkRelationshipsResponse>, Status> {
    validate::export_bulk_relationships(request, services.limits())?;
    let consistency = convert::consistency(
        request.consistency.as_ref(),
        services.datastore().unique_id(),
    )?;
    let filter = request
        .optional_relationship_filter
        .as_ref()
        .map(|f| convert::relationship_filter(Some(f), "optional_relationship_filter"))
        .transpose()?;
    let params = ExportParams {
        filter,
        limit: (request.optional_limit > 0).then_some(request.optional_limit as usize),
        cursor: request.optional_cursor.as_ref().map(|c| c.token.clone()),
    };
    let export = services.export_relationships(params, consistency).await?;
    let pages = futures::stream::unfold(Some(export), |export| async move {
        let mut export = export?;
        match export.next_page().await {
            Ok(Some(page)) => {
                let response = v1::ExportBulkRelationshipsResponse {
                    after_result_cursor: Some(v1::Cursor { token: page.cursor }),
                    relationships: page.relationships.iter().map(Into::into).collect(),
                };
                Some((Ok(response), Some(export)))
            }
            Ok(None) => None,
            Err(e) => Some((Err(e.into()), None)),
        }
    });
    Ok(Box::pin(pages))
}
