//! What the client commands print: lines on standard output, progress bars
//! on standard error, and API
//! messages in protobuf's JSON mapping (field names in lowerCamelCase, enums
//! by name, 64-bit integers as strings, well-known types in their JSON form)
//! through `prost-reflect` over the crate's own descriptor set, so the JSON
//! is what any protobuf library would print for the same message.

use std::io::Write as _;
use std::path::Path;

use prost_reflect::DynamicMessage;

use super::ClientError;
use crate::api::proto::{descriptor_pool, v1};

/// Writes one line to standard output.
pub fn line(text: &str) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|source| ClientError::Write {
        path: "standard output".to_string(),
        source,
    })
}

/// `message` (of the protobuf type `full_name`, e.g.
/// `authzed.api.v1.CheckPermissionResponse`) as protobuf JSON: indented
/// when `pretty`, else on one line (for streams: one message per line).
pub fn json(
    message: &impl prost::Message,
    full_name: &str,
    pretty: bool,
) -> Result<String, ClientError> {
    let descriptor = descriptor_pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| ClientError::Input(format!("no message named {full_name} in the API")))?;
    let dynamic =
        DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()).map_err(|e| {
            ClientError::Malformed {
                what: "message",
                reason: e.to_string(),
            }
        })?;
    let text = if pretty {
        serde_json::to_string_pretty(&dynamic)
    } else {
        serde_json::to_string(&dynamic)
    };
    text.map_err(|e| ClientError::Malformed {
        what: "message",
        reason: e.to_string(),
    })
}

/// Prints `message` as indented protobuf JSON.
pub fn print_json(message: &impl prost::Message, full_name: &str) -> Result<(), ClientError> {
    line(&json(message, full_name, true)?)
}

/// Prints one message of a stream as protobuf JSON on one line.
pub fn print_json_line(message: &impl prost::Message, full_name: &str) -> Result<(), ClientError> {
    line(&json(message, full_name, false)?)
}

/// Prints every message of a server stream: as one protobuf JSON line each
/// with `json`, else as the line `text` makes of it (none: nothing). A
/// failed message ends the stream with `call`'s error.
pub async fn print_stream<M: prost::Message>(
    mut stream: tonic::Streaming<M>,
    call: &'static str,
    json: bool,
    full_name: &str,
    mut text: impl FnMut(&M) -> Result<Option<String>, ClientError>,
) -> Result<(), ClientError> {
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| ClientError::call(call, s))?
    {
        if json {
            print_json_line(&message, full_name)?;
        } else if let Some(text) = text(&message)? {
            line(&text)?;
        }
    }
    Ok(())
}

/// A ZedToken's text (empty if the server sent none).
pub fn token(token: Option<&v1::ZedToken>) -> String {
    token.map(|t| t.token.clone()).unwrap_or_default()
}

/// A path as the user wrote it, `-` as "standard input".
pub fn display(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_string()
    } else {
        path.display().to_string()
    }
}

/// A progress bar on stderr drawn with `template`; indicatif hides it when
/// stderr is not a terminal, so pipes and logs stay clean.
pub fn bar(length: u64, template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(length);
    let style = indicatif::ProgressStyle::with_template(template)
        .expect("the templates are constants and valid");
    bar.set_style(style);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_print_in_protobufs_json_mapping() {
        let response = v1::CheckPermissionResponse {
            checked_at: Some(v1::ZedToken {
                token: "abc".into(),
            }),
            permissionship: v1::check_permission_response::Permissionship::HasPermission as i32,
            ..Default::default()
        };
        let text = json(&response, "authzed.api.v1.CheckPermissionResponse", false).expect("json");
        let value: serde_json::Value = serde_json::from_str(&text).expect("parses");
        assert_eq!(value["checkedAt"]["token"], "abc");
        assert_eq!(value["permissionship"], "PERMISSIONSHIP_HAS_PERMISSION");
    }

    #[test]
    fn an_unknown_message_name_is_an_error() {
        let token = v1::ZedToken::default();
        assert!(json(&token, "authzed.api.v1.NoSuchThing", true).is_err());
    }
}
