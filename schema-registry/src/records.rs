//! The records of the `_schemas` topic, in Confluent Schema Registry's own key/value layout.
//!
//! Using Confluent's layout (JSON keys with a `keytype`, JSON values) means a Confluent Schema
//! Registry pointed at the same topic reads our history, and we read its. Only the record kinds
//! we write or must understand are modelled; anything else is skipped with a warning on replay.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::compat::CompatibilityLevel;
use crate::model::Mode;

/// The key of a `_schemas` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "keytype")]
pub(crate) enum RecordKey {
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
    pub(crate) fn schema(subject: &str, version: u32) -> Self {
        RecordKey::Schema {
            subject: subject.to_string(),
            version,
            magic: 1,
        }
    }

    pub(crate) fn config(subject: Option<&str>) -> Self {
        RecordKey::Config {
            subject: subject.map(str::to_string),
            magic: 0,
        }
    }

    pub(crate) fn mode(subject: Option<&str>) -> Self {
        RecordKey::Mode {
            subject: subject.map(str::to_string),
            magic: 0,
        }
    }

    pub(crate) fn delete_subject(subject: &str) -> Self {
        RecordKey::DeleteSubject {
            subject: subject.to_string(),
            magic: 0,
        }
    }
}

/// A schema reference (another subject's version that this schema uses by name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchemaReference {
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) version: u32,
}

/// The value of a `SCHEMA` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SchemaValue {
    pub(crate) subject: String,
    pub(crate) version: u32,
    pub(crate) id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schema_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) references: Vec<SchemaReference>,
    pub(crate) schema: String,
    #[serde(default)]
    pub(crate) deleted: bool,
}

/// The value of a `CONFIG` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfigValue {
    pub(crate) compatibility_level: Option<CompatibilityLevel>,
}

/// The value of a `MODE` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ModeValue {
    pub(crate) mode: Mode,
}

/// The value of a `DELETE_SUBJECT` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeleteSubjectValue {
    pub(crate) subject: String,
    pub(crate) version: u32,
}

/// A "global or per-subject" setting as the log carries it: `subject` `None` is the global
/// one, `value` `None` clears it (a tombstone, or Confluent's `null` level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting<T> {
    pub(crate) subject: Option<String>,
    pub(crate) value: Option<T>,
}

impl<T> Setting<T> {
    pub(crate) fn new(subject: Option<&str>, value: Option<T>) -> Setting<T> {
        Setting {
            subject: subject.map(str::to_string),
            value,
        }
    }
}

/// One record of the topic, key and value decoded once into what they mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// One version of a subject; `None` is a tombstone (the version is gone for good).
    Schema {
        subject: String,
        version: u32,
        value: Option<SchemaValue>,
    },
    /// A compatibility level, global or of one subject.
    Config(Setting<CompatibilityLevel>),
    /// A mode, global or of one subject.
    Mode(Setting<Mode>),
    /// Every version of `subject` up to `version` is soft-deleted (`None`: a tombstone).
    DeleteSubject {
        subject: String,
        version: Option<u32>,
    },
    /// A record that changes nothing here (`CLEAR_SUBJECT`, `NOOP`).
    Informational(RecordKey),
}

/// Why a record of the topic could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("record has no key")]
    MissingKey,
    #[error("unreadable key: {0}")]
    Key(serde_json::Error),
    #[error("unreadable {kind} value: {source}")]
    Value {
        kind: &'static str,
        source: serde_json::Error,
    },
    #[error("encoding a record: {0}")]
    Encode(serde_json::Error),
}

/// Decodes a value as `T` unless it is a tombstone (absent or empty).
fn value<T: DeserializeOwned>(
    bytes: Option<&[u8]>,
    kind: &'static str,
) -> Result<Option<T>, RecordError> {
    match bytes {
        None | Some([]) => Ok(None),
        Some(bytes) => serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|source| RecordError::Value { kind, source }),
    }
}

impl Record {
    /// Decodes a raw key and value as found on the topic.
    pub(crate) fn decode(
        key: Option<&[u8]>,
        value_bytes: Option<&[u8]>,
    ) -> Result<Record, RecordError> {
        let key = key.ok_or(RecordError::MissingKey)?;
        let key: RecordKey = serde_json::from_slice(key).map_err(RecordError::Key)?;
        Ok(match key {
            RecordKey::Schema {
                subject, version, ..
            } => Record::Schema {
                value: value(value_bytes, "schema")?,
                subject,
                version,
            },
            RecordKey::Config { subject, .. } => Record::Config(Setting {
                value: value::<ConfigValue>(value_bytes, "config")?
                    .and_then(|config| config.compatibility_level),
                subject,
            }),
            RecordKey::Mode { subject, .. } => Record::Mode(Setting {
                value: value::<ModeValue>(value_bytes, "mode")?.map(|mode| mode.mode),
                subject,
            }),
            RecordKey::DeleteSubject { subject, .. } => Record::DeleteSubject {
                version: value::<DeleteSubjectValue>(value_bytes, "delete")?
                    .map(|delete| delete.version),
                subject,
            },
            key @ (RecordKey::ClearSubject { .. } | RecordKey::Noop { .. }) => {
                Record::Informational(key)
            }
        })
    }

    /// The raw key and value (`None`: a tombstone) in Confluent's layout.
    pub(crate) fn encode(&self) -> Result<(Vec<u8>, Option<Vec<u8>>), RecordError> {
        fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, RecordError> {
            serde_json::to_vec(value).map_err(RecordError::Encode)
        }
        let (key, value) = match self {
            Record::Schema {
                subject,
                version,
                value,
            } => (
                RecordKey::schema(subject, *version),
                value.as_ref().map(json).transpose()?,
            ),
            Record::Config(setting) => (
                RecordKey::config(setting.subject.as_deref()),
                setting
                    .value
                    .map(|level| {
                        json(&ConfigValue {
                            compatibility_level: Some(level),
                        })
                    })
                    .transpose()?,
            ),
            Record::Mode(setting) => (
                RecordKey::mode(setting.subject.as_deref()),
                setting
                    .value
                    .map(|mode| json(&ModeValue { mode }))
                    .transpose()?,
            ),
            Record::DeleteSubject { subject, version } => (
                RecordKey::delete_subject(subject),
                version
                    .map(|version| {
                        json(&DeleteSubjectValue {
                            subject: subject.clone(),
                            version,
                        })
                    })
                    .transpose()?,
            ),
            Record::Informational(key) => (key.clone(), None),
        };
        Ok((json(&key)?, value))
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
        let Record::Schema {
            value: Some(value), ..
        } = record
        else {
            anyhow::bail!("not a schema: {record:?}");
        };
        assert_eq!(value.id, 7);
        assert_eq!(value.schema, "\"string\"");
        Ok(())
    }

    #[test]
    fn an_empty_value_is_a_tombstone() -> anyhow::Result<()> {
        let record = Record::decode(
            Some(br#"{"keytype":"MODE","subject":"s","magic":0}"#),
            Some(b""),
        )?;
        assert_eq!(
            record,
            Record::Mode(Setting {
                subject: Some("s".to_string()),
                value: None
            })
        );
        Ok(())
    }

    #[test]
    fn an_unreadable_value_is_refused_when_decoded() {
        let key = br#"{"keytype":"CONFIG","subject":null,"magic":0}"#;
        let error = Record::decode(Some(key), Some(br#"{"compatibilityLevel":"SIDEWAYS"}"#));
        assert!(
            matches!(error, Err(RecordError::Value { kind: "config", .. })),
            "{error:?}"
        );
    }

    #[test]
    fn every_record_we_write_reads_back_the_same() -> anyhow::Result<()> {
        let records = [
            Record::Schema {
                subject: "s".to_string(),
                version: 2,
                value: Some(SchemaValue {
                    subject: "s".to_string(),
                    version: 2,
                    id: 9,
                    schema_type: None,
                    references: vec![],
                    schema: "\"int\"".to_string(),
                    deleted: true,
                }),
            },
            Record::Schema {
                subject: "s".to_string(),
                version: 2,
                value: None,
            },
            Record::Config(Setting {
                subject: None,
                value: Some(CompatibilityLevel::Full),
            }),
            Record::Config(Setting {
                subject: Some("s".to_string()),
                value: None,
            }),
            Record::Mode(Setting {
                subject: Some("s".to_string()),
                value: Some(Mode::ReadOnly),
            }),
            Record::DeleteSubject {
                subject: "s".to_string(),
                version: Some(3),
            },
        ];
        for record in records {
            let (key, value) = record.encode()?;
            assert_eq!(Record::decode(Some(&key), value.as_deref())?, record);
        }
        Ok(())
    }
}
