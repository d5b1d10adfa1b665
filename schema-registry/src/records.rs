//! The records of the `_schemas` topic, in Confluent Schema Registry's own key/value layout.
//!
//! Using Confluent's layout (JSON keys with a `keytype`, JSON values) means a Confluent Schema
//! Registry pointed at the same topic reads our history, and we read its. Only the record kinds
//! we write or must understand are modelled; anything else is skipped with a warning on replay.

use serde::{Deserialize, Serialize};

use crate::compat::CompatibilityLevel;
use crate::model::Mode;

/// The key of a `_schemas` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "keytype")]
pub enum RecordKey {
    /// One version of one subject.
    #[serde(rename = "SCHEMA")]
    Schema {
        subject: String,
        version: u32,
        magic: u32,
    },
    /// The compatibility level of a subject, or the global one when `subject` is `None`.
    #[serde(rename = "CONFIG")]
    Config { subject: Option<String>, magic: u32 },
    /// The mode of a subject, or the global one when `subject` is `None`.
    #[serde(rename = "MODE")]
    Mode { subject: Option<String>, magic: u32 },
    /// Marks a subject soft-deleted up to a version (the per-version records carry it too).
    #[serde(rename = "DELETE_SUBJECT")]
    DeleteSubject { subject: String, magic: u32 },
    /// Written by Confluent on permanent deletes; informational here.
    #[serde(rename = "CLEAR_SUBJECT")]
    ClearSubject { subject: String, magic: u32 },
    /// A no-op Confluent writes to find the end of the log.
    #[serde(rename = "NOOP")]
    Noop { magic: u32 },
}

impl RecordKey {
    pub fn schema(subject: &str, version: u32) -> Self {
        RecordKey::Schema {
            subject: subject.to_string(),
            version,
            magic: 1,
        }
    }

    pub fn config(subject: Option<&str>) -> Self {
        RecordKey::Config {
            subject: subject.map(str::to_string),
            magic: 0,
        }
    }

    pub fn mode(subject: Option<&str>) -> Self {
        RecordKey::Mode {
            subject: subject.map(str::to_string),
            magic: 0,
        }
    }

    pub fn delete_subject(subject: &str) -> Self {
        RecordKey::DeleteSubject {
            subject: subject.to_string(),
            magic: 0,
        }
    }
}

/// A schema reference (another subject's version that this schema uses by name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchemaReference {
    pub name: String,
    pub subject: String,
    pub version: u32,
}

/// The value of a `SCHEMA` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaValue {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
    pub schema: String,
    #[serde(default)]
    pub deleted: bool,
}

/// The value of a `CONFIG` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigValue {
    pub compatibility_level: Option<CompatibilityLevel>,
}

/// The value of a `MODE` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeValue {
    pub mode: Mode,
}

/// The value of a `DELETE_SUBJECT` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteSubjectValue {
    pub subject: String,
    pub version: u32,
}

/// One decoded record: its key and, unless it is a tombstone, its value's JSON.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: RecordKey,
    pub value: Option<serde_json::Value>,
}

/// Why a record of the topic could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record has no key")]
    MissingKey,
    #[error("unreadable key: {0}")]
    Key(serde_json::Error),
    #[error("unreadable value: {0}")]
    Value(serde_json::Error),
}

impl Record {
    /// Decodes a raw key and value as found on the topic.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Record, RecordError> {
        let key = key.ok_or(RecordError::MissingKey)?;
        let key: RecordKey = serde_json::from_slice(key).map_err(RecordError::Key)?;
        let value = match value {
            None => None,
            Some([]) => None,
            Some(bytes) => Some(serde_json::from_slice(bytes).map_err(RecordError::Value)?),
        };
        Ok(Record { key, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_key_uses_confluents_layout() -> anyhow::Result<()> {
        let key = serde_json::to_string(&RecordKey::schema("orders-value", 3))?;
        assert_eq!(
            key,
            r#"{"keytype":"SCHEMA","subject":"orders-value","version":3,"magic":1}"#
        );
        Ok(())
    }

    #[test]
    fn global_config_key_has_a_null_subject() -> anyhow::Result<()> {
        let key = serde_json::to_string(&RecordKey::config(None))?;
        assert_eq!(key, r#"{"keytype":"CONFIG","subject":null,"magic":0}"#);
        Ok(())
    }

    #[test]
    fn confluent_schema_value_is_read() -> anyhow::Result<()> {
        let raw = br#"{"subject":"s","version":1,"id":7,"schema":"\"string\"","deleted":false}"#;
        let record = Record::decode(
            Some(br#"{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}"#),
            Some(raw),
        )?;
        let value: SchemaValue = serde_json::from_value(record.value.unwrap_or_default())?;
        assert_eq!(value.id, 7);
        assert_eq!(value.schema, "\"string\"");
        Ok(())
    }

    #[test]
    fn an_empty_value_is_a_tombstone() -> anyhow::Result<()> {
        let record = Record::decode(Some(br#"{"keytype":"NOOP","magic":0}"#), Some(b""))?;
        assert!(record.value.is_none());
        Ok(())
    }
}
