//! SchemaService: reading and writing the schema.

use tonic::{Request, Response, Status};

use super::Api;
use crate::api::proto::v1;
use crate::api::proto::v1::schema_service_server::SchemaService;
use crate::api::validate;
use crate::datastore::Datastore;

#[tonic::async_trait]
impl<D: Datastore> SchemaService for Api<D> {
    async fn read_schema(
        &self,
        request: Request<v1::ReadSchemaRequest>,
    ) -> Result<Response<v1::ReadSchemaResponse>, Status> {
        validate::read_schema(request.get_ref())?;
        let (schema_text, revision) = self.services.read_schema().await?;
        Ok(Response::new(v1::ReadSchemaResponse {
            schema_text,
            read_at: Some(self.token(revision)),
        }))
    }

    async fn write_schema(
        &self,
        request: Request<v1::WriteSchemaRequest>,
    ) -> Result<Response<v1::WriteSchemaResponse>, Status> {
        let req = request.into_inner();
        validate::write_schema(&req)?;
        let revision = self.services.write_schema(&req.schema).await?;
        Ok(Response::new(v1::WriteSchemaResponse {
            written_at: Some(self.token(revision)),
        }))
    }
}
