//! The registry's state, rebuilt by applying the `_schemas` log in order.
//!
//! This module never touches the network. Every instance applies the same records in the same
//! order with the same rules, so every instance arrives at the same state. Those rules are also
//! what keeps IDs from colliding when two writers race: a record that would give an existing ID
//! to a different schema, or an existing subject version to a different ID, is rejected on
//! replay by everyone, and the writer that appended it sees the rejection and tries again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use crate::compat::CompatibilityLevel;
/// A schema's references to other subjects' versions, as [`parse_schema`] takes them.
pub use crate::records::SchemaReference;
use crate::records::{Record, SchemaValue, Setting};

/// The largest schema ID and subject version: Confluent's IDs and versions are Java `int`s
/// (signed 32-bit), so clients cannot hold anything larger.
pub(crate) const MAX_ID: u32 = i32::MAX as u32;

/// Confluent's registry modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum Mode {
    #[default]
    #[serde(rename = "READWRITE")]
    ReadWrite,
    #[serde(rename = "READONLY")]
    ReadOnly,
    #[serde(rename = "READONLY_OVERRIDE")]
    ReadOnlyOverride,
    #[serde(rename = "IMPORT")]
    Import,
}

impl std::str::FromStr for Mode {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        match text.to_ascii_uppercase().as_str() {
            "READWRITE" => Ok(Mode::ReadWrite),
            "READONLY" => Ok(Mode::ReadOnly),
            "READONLY_OVERRIDE" => Ok(Mode::ReadOnlyOverride),
            "IMPORT" => Ok(Mode::Import),
            _ => Err(()),
        }
    }
}

/// A parsed schema with the text clients get back and the form used to compare schemas.
#[derive(Debug, Clone)]
pub struct ParsedSchema {
    /// The schema as registered, re-serialized as compact JSON.
    pub text: String,
    pub references: Vec<SchemaReference>,
    pub parsed: Arc<Schema>,
    /// Equal for equivalent schemas whatever their whitespace or key order.
    pub canonical: String,
}

/// Why a schema text could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("Invalid schema: {0}")]
    Invalid(String),
    #[error("Invalid schema: reference {subject} version {version} does not exist")]
    MissingReference { subject: String, version: u32 },
}

/// Parses `text` into a [`ParsedSchema`], given the texts of the schemas its references need
/// (`Model::reference_texts`). Needs no state, so it runs without the model's lock.
///
/// Public, with [`nesting_depth`], `compat::check` and `api::MAX_NESTING_DEPTH`, for the fuzz
/// target, which runs a registration's checks as this example does:
///
/// ```
/// use schema_registry::api::MAX_NESTING_DEPTH;
/// use schema_registry::compat::{check, CompatibilityLevel};
/// use schema_registry::model::{nesting_depth, parse_schema};
///
/// let schema = parse_schema(r#"{"type": "array", "items": "int"}"#, &[], &[])?;
/// assert_eq!(schema.text, r#"{"type":"array","items":"int"}"#);
/// assert!(nesting_depth(&schema.parsed) <= MAX_NESTING_DEPTH);
/// let itself = [(1, schema.parsed.as_ref())];
/// assert!(check(CompatibilityLevel::FullTransitive, &schema.parsed, &itself).is_empty());
/// # Ok::<(), schema_registry::model::SchemaError>(())
/// ```
pub fn parse_schema(
    text: &str,
    references: &[SchemaReference],
    dependencies: &[String],
) -> Result<ParsedSchema, SchemaError> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| SchemaError::Invalid(e.to_string()))?;
    let compact = json.to_string();
    let parsed = if dependencies.is_empty() {
        Schema::parse(&json).map_err(|e| SchemaError::Invalid(e.to_string()))?
    } else {
        Schema::parse_str_with_list(&compact, dependencies)
            .map_err(|e| SchemaError::Invalid(e.to_string()))?
            .0
    };
    let mut canonical =
        serde_json::to_string(&parsed).map_err(|e| SchemaError::Invalid(e.to_string()))?;
    for reference in references {
        canonical.push_str(&format!(
            "|{}={}:{}",
            reference.name, reference.subject, reference.version
        ));
    }
    Ok(ParsedSchema {
        text: compact,
        references: references.to_vec(),
        parsed: Arc::new(parsed),
        canonical,
    })
}

/// How deeply the types of `schema` nest (a record, array, map or union is one level).
pub fn nesting_depth(schema: &Schema) -> usize {
    match schema {
        Schema::Array(array) => 1 + nesting_depth(&array.items),
        Schema::Map(map) => 1 + nesting_depth(&map.types),
        Schema::Union(union) => {
            1 + union
                .variants()
                .iter()
                .map(nesting_depth)
                .max()
                .unwrap_or(0)
        }
        Schema::Record(record) => {
            1 + record
                .fields
                .iter()
                .map(|field| nesting_depth(&field.schema))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// One version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VersionEntry {
    pub(crate) id: u32,
    pub(crate) deleted: bool,
}

/// Which version a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionSpec {
    Latest,
    Number(u32),
}

/// A setting that has a global value and may be overridden per subject (compatibility level
/// and mode); the default applies while neither is set.
#[derive(Debug)]
pub(crate) struct PerSubject<T> {
    global: Option<T>,
    subjects: BTreeMap<String, T>,
}

impl<T> Default for PerSubject<T> {
    fn default() -> Self {
        PerSubject {
            global: None,
            subjects: BTreeMap::new(),
        }
    }
}

impl<T: Copy + Default> PerSubject<T> {
    /// Sets or clears the global value or a subject's.
    fn apply(&mut self, setting: Setting<T>) {
        match (setting.subject, setting.value) {
            (None, value) => self.global = value,
            (Some(subject), Some(value)) => {
                self.subjects.insert(subject, value);
            }
            (Some(subject), None) => {
                self.subjects.remove(&subject);
            }
        }
    }

    /// The global value (the default when none is set).
    pub(crate) fn global(&self) -> T {
        self.global.unwrap_or_default()
    }

    /// The subject's own value, if it has one.
    pub(crate) fn subject(&self, subject: &str) -> Option<T> {
        self.subjects.get(subject).copied()
    }

    /// What `GET /config/{subject}` or `/mode/{subject}` shows: the subject's own value, else
    /// the global one if `default_to_global`, else nothing.
    pub(crate) fn shown(&self, subject: &str, default_to_global: bool) -> Option<T> {
        self.subject(subject)
            .or_else(|| default_to_global.then(|| self.global()))
    }

    /// The value that applies to `subject`: its own, else the global one.
    pub(crate) fn effective(&self, subject: &str) -> T {
        self.subject(subject).unwrap_or_else(|| self.global())
    }
}

/// The whole state of the registry.
#[derive(Debug, Default)]
pub(crate) struct Model {
    schemas: BTreeMap<u32, ParsedSchema>,
    by_canonical: HashMap<String, u32>,
    subjects: BTreeMap<String, BTreeMap<u32, VersionEntry>>,
    levels: PerSubject<CompatibilityLevel>,
    modes: PerSubject<Mode>,
    max_id: u32,
}

/// What happened to a record on replay.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Applied,
    /// Skipped for the reason given; every instance skips it the same way.
    Rejected(String),
}

impl Model {
    /// Parses `text` (with its references resolved against this state) into a [`ParsedSchema`].
    pub(crate) fn parse(
        &self,
        text: &str,
        references: &[SchemaReference],
    ) -> Result<ParsedSchema, SchemaError> {
        parse_schema(text, references, &self.reference_texts(references)?)
    }

    /// The texts of every schema `references` needs, dependencies first (what
    /// [`parse_schema`] needs from the state; cloned, so the parse can run without a lock).
    pub(crate) fn reference_texts(
        &self,
        references: &[SchemaReference],
    ) -> Result<Vec<String>, SchemaError> {
        let mut texts = Vec::new();
        let mut stack: Vec<&SchemaReference> = references.iter().rev().collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(reference) = stack.pop() {
            let missing = || SchemaError::MissingReference {
                subject: reference.subject.clone(),
                version: reference.version,
            };
            let entry = self
                .subjects
                .get(&reference.subject)
                .and_then(|versions| versions.get(&reference.version))
                .ok_or_else(missing)?;
            let schema = self.schemas.get(&entry.id).ok_or_else(missing)?;
            if seen.insert(entry.id) {
                texts.push(schema.text.clone());
                stack.extend(schema.references.iter());
            }
        }
        texts.reverse();
        Ok(texts)
    }

    /// Applies one record of the log.
    pub(crate) fn apply(&mut self, record: Record) -> Outcome {
        match record {
            Record::Schema {
                subject,
                version,
                value: Some(value),
            } => self.put_version(&subject, version, value),
            Record::Schema {
                subject,
                version,
                value: None,
            } => self.remove_version(&subject, version),
            Record::Config(setting) => {
                self.levels.apply(setting);
                Outcome::Applied
            }
            Record::Mode(setting) => {
                self.modes.apply(setting);
                Outcome::Applied
            }
            Record::DeleteSubject {
                subject,
                version: Some(up_to),
            } => {
                if let Some(versions) = self.subjects.get_mut(&subject) {
                    for (_, entry) in versions.range_mut(..=up_to) {
                        entry.deleted = true;
                    }
                }
                Outcome::Applied
            }
            Record::DeleteSubject { version: None, .. } | Record::Informational(_) => {
                Outcome::Applied
            }
        }
    }

    fn put_version(&mut self, subject: &str, version: u32, value: SchemaValue) -> Outcome {
        if let Some(kind) = value.schema_type.as_deref() {
            if !kind.eq_ignore_ascii_case("AVRO") {
                return Outcome::Rejected(format!("schema type {kind} is not supported"));
            }
        }
        if value.subject != subject || value.version != version {
            return Outcome::Rejected("key and value disagree".to_string());
        }
        if !(1..=MAX_ID).contains(&version) || !(1..=MAX_ID).contains(&value.id) {
            return Outcome::Rejected(format!(
                "id {} or version {version} is outside 1..={MAX_ID}",
                value.id
            ));
        }
        let parsed = match self.parse(&value.schema, &value.references) {
            Ok(parsed) => parsed,
            Err(e) => return Outcome::Rejected(e.to_string()),
        };
        if let Some(existing) = self.schemas.get(&value.id) {
            if existing.canonical != parsed.canonical {
                return Outcome::Rejected(format!(
                    "id {} already belongs to another schema",
                    value.id
                ));
            }
        }
        if let Some(entry) = self.subjects.get(subject).and_then(|v| v.get(&version)) {
            if entry.id != value.id {
                return Outcome::Rejected(format!(
                    "{subject} version {version} already has id {}",
                    entry.id
                ));
            }
        }
        self.max_id = self.max_id.max(value.id);
        self.by_canonical
            .entry(parsed.canonical.clone())
            .or_insert(value.id);
        self.schemas.entry(value.id).or_insert(parsed);
        self.subjects
            .entry(subject.to_string())
            .or_default()
            .insert(
                version,
                VersionEntry {
                    id: value.id,
                    deleted: value.deleted,
                },
            );
        Outcome::Applied
    }

    fn remove_version(&mut self, subject: &str, version: u32) -> Outcome {
        if let Some(versions) = self.subjects.get_mut(subject) {
            versions.remove(&version);
            if versions.is_empty() {
                self.subjects.remove(subject);
            }
        }
        Outcome::Applied
    }

    // ---- queries ----

    pub(crate) fn schema(&self, id: u32) -> Option<&ParsedSchema> {
        self.schemas.get(&id)
    }

    /// The ID already given to an equivalent schema, if any.
    pub(crate) fn id_of(&self, schema: &ParsedSchema) -> Option<u32> {
        self.by_canonical.get(&schema.canonical).copied()
    }

    /// The ID the next new schema gets; IDs are never reused. `None` once [`MAX_ID`] is used.
    pub(crate) fn next_id(&self) -> Option<u32> {
        self.max_id.checked_add(1).filter(|id| *id <= MAX_ID)
    }

    /// The version the next registration under `subject` gets (soft-deleted versions count).
    /// `None` once version [`MAX_ID`] is used.
    pub(crate) fn next_version(&self, subject: &str) -> Option<u32> {
        self.subjects
            .get(subject)
            .and_then(|versions| versions.keys().next_back())
            .map_or(Some(1), |v| v.checked_add(1))
            .filter(|version| *version <= MAX_ID)
    }

    /// Subject names, sorted; soft-deleted subjects only when asked.
    pub(crate) fn subjects(&self, include_deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, versions)| include_deleted || versions.values().any(|e| !e.deleted))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The versions of a subject; `None` when it has none (visible under the flag).
    pub(crate) fn versions(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Option<Vec<(u32, VersionEntry)>> {
        let versions: Vec<(u32, VersionEntry)> = self
            .subjects
            .get(subject)?
            .iter()
            .filter(|(_, e)| include_deleted || !e.deleted)
            .map(|(v, e)| (*v, *e))
            .collect();
        (!versions.is_empty()).then_some(versions)
    }

    /// Whether the subject has any version at all, deleted or not.
    pub(crate) fn has_subject(&self, subject: &str) -> bool {
        self.subjects.contains_key(subject)
    }

    /// One version of a subject. `Latest` is the newest visible one.
    pub(crate) fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        include_deleted: bool,
    ) -> Option<(u32, VersionEntry)> {
        let versions = self.subjects.get(subject)?;
        match spec {
            VersionSpec::Latest => versions
                .iter()
                .rev()
                .find(|(_, e)| include_deleted || !e.deleted)
                .map(|(v, e)| (*v, *e)),
            VersionSpec::Number(n) => versions
                .get(&n)
                .filter(|e| include_deleted || !e.deleted)
                .map(|e| (n, *e)),
        }
    }

    /// The version under `subject` holding a schema equivalent to `schema`, if any.
    pub(crate) fn find_in_subject(
        &self,
        subject: &str,
        schema: &ParsedSchema,
        include_deleted: bool,
    ) -> Option<(u32, VersionEntry)> {
        let id = self.id_of(schema)?;
        self.subjects
            .get(subject)?
            .iter()
            .rev()
            .find(|(_, e)| e.id == id && (include_deleted || !e.deleted))
            .map(|(v, e)| (*v, *e))
    }

    /// Every (subject, version) that uses schema `id`.
    pub(crate) fn usages(&self, id: u32, include_deleted: bool) -> Vec<(String, u32)> {
        self.subjects
            .iter()
            .flat_map(|(subject, versions)| {
                versions
                    .iter()
                    .filter(move |(_, e)| e.id == id && (include_deleted || !e.deleted))
                    .map(move |(v, _)| (subject.clone(), *v))
            })
            .collect()
    }

    /// IDs of the live schemas that reference `subject` version `version`.
    pub(crate) fn referenced_by(&self, subject: &str, version: u32) -> Vec<u32> {
        self.schemas
            .iter()
            .filter(|(id, schema)| {
                schema
                    .references
                    .iter()
                    .any(|r| r.subject == subject && r.version == version)
                    && !self.usages(**id, false).is_empty()
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Compatibility levels, global and per subject.
    pub(crate) fn levels(&self) -> &PerSubject<CompatibilityLevel> {
        &self.levels
    }

    /// Modes, global and per subject.
    pub(crate) fn modes(&self) -> &PerSubject<Mode> {
        &self.modes
    }

    /// Whether any schema has been registered (Confluent refuses IMPORT mode then, unless forced).
    pub(crate) fn is_empty(&self) -> bool {
        self.schemas.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_record(subject: &str, version: u32, id: u32, schema: &str) -> Record {
        Record::Schema {
            subject: subject.to_string(),
            version,
            value: Some(SchemaValue {
                subject: subject.to_string(),
                version,
                id,
                schema_type: None,
                references: vec![],
                schema: schema.to_string(),
                deleted: false,
            }),
        }
    }

    const A: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#;
    const B: &str = r#"{"type":"record","name":"B","fields":[{"name":"y","type":"string"}]}"#;

    #[test]
    fn equivalent_texts_have_one_canonical_form() -> anyhow::Result<()> {
        let model = Model::default();
        let spaced = "{ \"fields\": [ {\"type\":\"int\", \"name\":\"x\"} ], \"name\": \"A\", \"type\": \"record\" }";
        assert_eq!(
            model.parse(A, &[])?.canonical,
            model.parse(spaced, &[])?.canonical
        );
        Ok(())
    }

    #[test]
    fn an_id_given_to_another_schema_is_rejected_on_replay() {
        let mut model = Model::default();
        assert_eq!(model.apply(schema_record("a", 1, 1, A)), Outcome::Applied);
        assert!(matches!(
            model.apply(schema_record("b", 1, 1, B)),
            Outcome::Rejected(_)
        ));
        assert_eq!(model.subjects(true), vec!["a".to_string()]);
        assert_eq!(model.next_id(), Some(2));
    }

    #[test]
    fn a_subject_version_given_twice_keeps_the_first() {
        let mut model = Model::default();
        assert_eq!(model.apply(schema_record("a", 1, 1, A)), Outcome::Applied);
        assert!(matches!(
            model.apply(schema_record("a", 1, 2, B)),
            Outcome::Rejected(_)
        ));
        assert_eq!(
            model
                .version("a", VersionSpec::Latest, false)
                .map(|v| v.1.id),
            Some(1)
        );
    }

    #[test]
    fn a_tombstone_removes_the_version_but_not_the_id_watermark() {
        let mut model = Model::default();
        model.apply(schema_record("a", 1, 5, A));
        model.apply(Record::Schema {
            subject: "a".to_string(),
            version: 1,
            value: None,
        });
        assert!(model.subjects(true).is_empty());
        assert_eq!(model.next_id(), Some(6));
    }

    #[test]
    fn ids_and_versions_beyond_a_signed_32_bit_int_are_rejected_on_replay() {
        let mut model = Model::default();
        let too_big = MAX_ID + 1;
        assert!(matches!(
            model.apply(schema_record("a", 1, too_big, A)),
            Outcome::Rejected(_)
        ));
        assert!(matches!(
            model.apply(schema_record("a", too_big, 1, A)),
            Outcome::Rejected(_)
        ));
        assert!(model.subjects(true).is_empty());
        assert_eq!(model.next_id(), Some(1));
    }

    #[test]
    fn the_last_id_and_version_leave_no_next_one() {
        let mut model = Model::default();
        assert_eq!(
            model.apply(schema_record("a", MAX_ID, MAX_ID, A)),
            Outcome::Applied
        );
        assert_eq!(model.next_id(), None);
        assert_eq!(model.next_version("a"), None);
        assert_eq!(model.next_version("b"), Some(1));
    }

    #[test]
    fn nesting_depth_counts_records_arrays_maps_and_unions() -> anyhow::Result<()> {
        let model = Model::default();
        assert_eq!(nesting_depth(&model.parse(r#""int""#, &[])?.parsed), 0);
        assert_eq!(nesting_depth(&model.parse(A, &[])?.parsed), 1);
        let nested = r#"{"type":"record","name":"R","fields":[{"name":"x","type":{"type":"array","items":["null",{"type":"map","values":"int"}]}}]}"#;
        assert_eq!(nesting_depth(&model.parse(nested, &[])?.parsed), 4);
        Ok(())
    }

    #[test]
    fn subject_config_falls_back_to_global() {
        let mut model = Model::default();
        model.apply(Record::Config(Setting {
            subject: None,
            value: Some(CompatibilityLevel::Full),
        }));
        assert_eq!(model.levels().effective("x"), CompatibilityLevel::Full);
        model.apply(Record::Config(Setting {
            subject: Some("x".to_string()),
            value: Some(CompatibilityLevel::None),
        }));
        assert_eq!(model.levels().effective("x"), CompatibilityLevel::None);
        model.apply(Record::Config(Setting {
            subject: Some("x".to_string()),
            value: None,
        }));
        assert_eq!(model.levels().effective("x"), CompatibilityLevel::Full);
    }

    #[test]
    fn a_mode_is_global_or_per_subject_like_a_level() {
        let mut model = Model::default();
        assert_eq!(model.modes().global(), Mode::ReadWrite);
        model.apply(Record::Mode(Setting {
            subject: Some("x".to_string()),
            value: Some(Mode::ReadOnly),
        }));
        assert_eq!(model.modes().effective("x"), Mode::ReadOnly);
        assert_eq!(model.modes().subject("y"), None);
        assert_eq!(model.modes().effective("y"), Mode::ReadWrite);
    }
}
