//! Schema compatibility, decided the way Confluent Schema Registry decides it for AVRO.
//!
//! The registry exists to promise producers and consumers that a schema accepted under a subject
//! can be used next to the versions already there. Everything that talks to the registry
//! (Confluent serializers, `schema_registry_converter`, CI checks that call
//! `/compatibility/...?verbose=true`) was written against Confluent's registry, so the verdicts
//! must be Confluent's verdicts, and the verbose messages should read like Confluent's. Confluent
//! delegates AVRO compatibility to Avro Java's `org.apache.avro.SchemaCompatibility`; this module
//! re-implements those rules over [`apache_avro::Schema`].
//!
//! apache-avro ships its own `schema_compatibility` module, but it answers a different question:
//! it stops at the first problem, calls a union or enum that only partly overlaps "partially
//! compatible" instead of incompatible, and compares two named references by name only. None of
//! that matches what Confluent would say.
//!
//! The two entry points are `resolve_pair` (one reader/writer pair, every reason it fails) and
//! [`check`] (a candidate against a subject's versions at a [`CompatibilityLevel`], with messages
//! in the shape of Confluent's verbose answer).
//!
//! Where Avro Java and Confluent are quirky this module follows them, because clients compare
//! verdicts:
//! * Record, enum and fixed names match when their *unqualified* names are equal, or when one of
//!   the reader's aliases is the writer's full name.
//! * A reader field that is missing from the writer and has no default, but whose type is an
//!   enum with an enum default, is reported as `TYPE_MISMATCH` "reader type: ENUM not compatible
//!   with writer type: RECORD", as Java does; it is incompatible either way.
//! * Logical types are checked by their underlying type: `timestamp-millis` reads `long`,
//!   and a decimal whose precision or scale changed is still compatible.
//! * Transitive levels check the newest version first and report only the first version that
//!   fails.
//!
//! Where this module departs from Java, it is in the messages only: each (reader type, writer
//! type) pair's problems are listed once, at the first location where they are met (Java
//! repeats them at every use of a named type, which doubles the list with every level of a
//! schema whose named types each use the next one twice), at most `MAX_REPORTED_PROBLEMS` are
//! listed, a reader field that matches two writer fields (by name and by alias) is reported as
//! an incompatibility instead of an exception, and `{oldSchemaVersion: N}` is added whenever
//! anything failed (Confluent's FULL check omits it when only the forward half fails).
//!
//! Schemas that use Confluent schema references should be denormalized first
//! ([`Schema::denormalize`]) so that every named type is defined inside the schema. A named
//! reference that cannot be resolved inside its own schema is compared by name only.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, Name, RecordField, RecordSchema,
    UuidSchema,
};
use apache_avro::Schema;
use serde::{Deserialize, Serialize};

/// Confluent truncates the `{oldSchema: ...}` message beyond this many characters.
const MAX_SCHEMA_SIZE_FOR_MESSAGES: usize = 10 * 1024;

// ---------------------------------------------------------------------------------------------
// Compatibility levels
// ---------------------------------------------------------------------------------------------

/// The seven Confluent compatibility levels.
///
/// `Display`, `FromStr` and serde use the Confluent spellings (`"BACKWARD_TRANSITIVE"`, ...).
/// `FromStr` ignores case; serde does not.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    /// Anything may be registered.
    None,
    /// The candidate must read data written with the latest version.
    #[default]
    Backward,
    /// The candidate must read data written with every version.
    BackwardTransitive,
    /// The latest version must read data written with the candidate.
    Forward,
    /// Every version must read data written with the candidate.
    ForwardTransitive,
    /// Backward and forward against the latest version.
    Full,
    /// Backward and forward against every version.
    FullTransitive,
}

impl CompatibilityLevel {
    /// All seven levels, in Confluent's documentation order.
    pub const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::None,
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
    ];

    /// The Confluent spelling, e.g. `"FULL_TRANSITIVE"`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether the candidate is checked against every existing version, not only the latest.
    pub(crate) fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    /// Whether the candidate must be able to read data written with existing versions.
    pub(crate) fn checks_backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    /// Whether existing versions must be able to read data written with the candidate.
    pub(crate) fn checks_forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the seven Confluent compatibility levels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compatibility level '{0}'; expected one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE")]
pub struct UnknownCompatibilityLevel(pub String);

impl FromStr for CompatibilityLevel {
    type Err = UnknownCompatibilityLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        CompatibilityLevel::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| UnknownCompatibilityLevel(s.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Incompatibilities
// ---------------------------------------------------------------------------------------------

/// Why a reader cannot read a writer's data; mirrors Java's `SchemaIncompatibilityType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum IncompatibilityKind {
    /// A record, enum or fixed changed its name (and the reader has no alias for the old one).
    NameMismatch,
    /// A fixed changed its size.
    FixedSizeMismatch,
    /// The writer has enum symbols the reader lacks, and the reader enum has no default.
    MissingEnumSymbols,
    /// A reader field is absent from the writer and has no default value.
    ReaderFieldMissingDefaultValue,
    /// The types differ and no promotion applies.
    TypeMismatch,
    /// A writer type (or writer union branch) has no matching branch in the reader union.
    MissingUnionBranch,
}

impl IncompatibilityKind {
    /// The Java spelling, e.g. `"READER_FIELD_MISSING_DEFAULT_VALUE"`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            IncompatibilityKind::NameMismatch => "NAME_MISMATCH",
            IncompatibilityKind::FixedSizeMismatch => "FIXED_SIZE_MISMATCH",
            IncompatibilityKind::MissingEnumSymbols => "MISSING_ENUM_SYMBOLS",
            IncompatibilityKind::ReaderFieldMissingDefaultValue => {
                "READER_FIELD_MISSING_DEFAULT_VALUE"
            }
            IncompatibilityKind::TypeMismatch => "TYPE_MISMATCH",
            IncompatibilityKind::MissingUnionBranch => "MISSING_UNION_BRANCH",
        }
    }
}

impl fmt::Display for IncompatibilityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason why data written with a writer schema cannot be read with a reader schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Incompatibility {
    /// What kind of problem this is.
    pub(crate) kind: IncompatibilityKind,
    /// A JSON pointer into the reader schema, e.g. `/fields/2/type/items`; `/` is the root.
    pub(crate) location: String,
    /// Java's detail message (Confluent's `additionalInfo`), e.g. `expected: com.acme.Order`.
    pub(crate) message: String,
}

impl Incompatibility {
    /// Confluent's description sentence, naming the reader's schema `reader` and the writer's
    /// `writer` (Confluent says "new"/"old" when the candidate reads, "old"/"new" otherwise).
    pub(crate) fn description(&self, reader: &str, writer: &str) -> String {
        let path = &self.location;
        let info = &self.message;
        match self.kind {
            IncompatibilityKind::FixedSizeMismatch => format!(
                "The size of FIXED type field at path '{path}' in the {reader} schema does not match with the {writer} schema"
            ),
            IncompatibilityKind::TypeMismatch => format!(
                "The type (path '{path}') of a field in the {reader} schema does not match with the {writer} schema"
            ),
            IncompatibilityKind::NameMismatch => {
                format!("The name of the schema has changed (path '{path}')")
            }
            IncompatibilityKind::MissingEnumSymbols => format!(
                "The {reader} schema is missing enum symbols '{info}' at path '{path}' in the {writer} schema"
            ),
            IncompatibilityKind::MissingUnionBranch => format!(
                "The {reader} schema is missing a type inside a union field at path '{path}' in the {writer} schema"
            ),
            IncompatibilityKind::ReaderFieldMissingDefaultValue => format!(
                "The field '{info}' at path '{path}' in the {reader} schema has no default value and is missing in the {writer} schema"
            ),
        }
    }

    /// The whole Confluent message, `{errorType:'...', description:'...', additionalInfo:'...'}`,
    /// with the reader and writer named as in [`Incompatibility::description`].
    pub(crate) fn confluent_message(&self, reader: &str, writer: &str) -> String {
        format!(
            "{{errorType:'{}', description:'{}', additionalInfo:'{}'}}",
            self.kind,
            self.description(reader, writer),
            self.message
        )
    }
}

impl fmt::Display for Incompatibility {
    /// Confluent's message for a backward check: the reader is the "new" schema.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.confluent_message("new", "old"))
    }
}

// ---------------------------------------------------------------------------------------------
// Public checks
// ---------------------------------------------------------------------------------------------

/// The most problems listed for one reader/writer pair of schemas. Beyond it the list is cut
/// (the verdict stays exact), so that one request cannot make the answer arbitrarily large.
pub(crate) const MAX_REPORTED_PROBLEMS: usize = 100;

/// How deep the check follows nested pairs of types before it gives up on a branch and calls
/// it incompatible. Two recursive types whose cycles have different lengths pair up their
/// members for up to the product of the lengths before a pair repeats; the limit keeps the
/// stack bounded (the registry also refuses schemas nested more than 64 levels).
pub(crate) const MAX_CHECK_DEPTH: usize = 256;

/// The outcome of one reader/writer check: the verdict, and the problems behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolution {
    /// Whether data written with the writer schema can be read with the reader schema.
    pub(crate) compatible: bool,
    /// Why not, each (reader type, writer type) pair listed once, at the first place met.
    pub(crate) problems: Vec<Incompatibility>,
    /// Whether problems beyond the limit were left out.
    pub(crate) truncated: bool,
}

/// Every reason why data written with `writer` cannot be read with `reader` by Avro schema
/// resolution, in the order Avro Java finds them (at most [`MAX_REPORTED_PROBLEMS`]); empty
/// means compatible (what the tests ask; [`check`] uses [`resolve_pair`] directly).
#[cfg(test)]
pub(crate) fn can_read(reader: &Schema, writer: &Schema) -> Vec<Incompatibility> {
    resolve_pair(reader, writer, MAX_REPORTED_PROBLEMS).problems
}

/// Decides whether `reader` can read data written with `writer`, listing at most `limit`
/// problems.
///
/// Time and memory are polynomial in the sizes of the two schemas whatever their shape: the
/// verdict of each (reader type, writer type) pair is computed once, and a pair met again at
/// another place (a named type used twice) is not listed again. Listing every path instead
/// grows as 2^depth for a schema whose named types each use the next one twice.
pub(crate) fn resolve_pair(reader: &Schema, writer: &Schema, limit: usize) -> Resolution {
    let reader_names = NameTable::of(reader);
    let writer_names = NameTable::of(writer);
    let mut checker = Checker {
        reader_names: &reader_names,
        writer_names: &writer_names,
        memo: HashMap::new(),
        depth: 0,
    };
    let reader = Node {
        schema: reader,
        namespace: None,
    };
    let writer = Node {
        schema: writer,
        namespace: None,
    };
    let compatible = checker.verdict(reader, writer);
    let mut report = Report::new(limit);
    if !compatible {
        checker.report(reader, writer, &mut report);
    }
    Resolution {
        compatible,
        problems: report.problems,
        truncated: report.truncated,
    }
}

/// Checks `candidate` against a subject's non-deleted versions `existing` (oldest first, each
/// with its version number) at `level`.
///
/// Non-transitive levels compare with the latest version only, transitive levels with every
/// version, newest first, stopping at the first version that fails (as Confluent does).
/// BACKWARD: the candidate reads old data; FORWARD: old versions read the candidate's data;
/// FULL: both; NONE: always compatible.
///
/// Returns Confluent's verbose messages (empty means compatible): one
/// `{errorType:..., description:..., additionalInfo:...}` per problem (at most
/// `MAX_REPORTED_PROBLEMS` per direction, then `{truncated: '...'}` if some were left out),
/// then `{oldSchemaVersion: N}`, `{oldSchema: '...'}` and
/// `{validateFields: 'false', compatibility: 'LEVEL'}`.
pub fn check(
    level: CompatibilityLevel,
    candidate: &Schema,
    existing: &[(u32, &Schema)],
) -> Vec<String> {
    if level == CompatibilityLevel::None {
        return Vec::new();
    }
    let against: Vec<&(u32, &Schema)> = if level.is_transitive() {
        existing.iter().rev().collect()
    } else {
        existing.last().into_iter().collect()
    };
    for (version, old) in against {
        let mut messages = Vec::new();
        let mut compatible = true;
        let mut truncated = false;
        if level.checks_forward() {
            let forward = resolve_pair(old, candidate, MAX_REPORTED_PROBLEMS);
            compatible &= forward.compatible;
            truncated |= forward.truncated;
            messages.extend(
                forward
                    .problems
                    .iter()
                    .map(|i| i.confluent_message("old", "new")),
            );
        }
        if level.checks_backward() {
            let backward = resolve_pair(candidate, old, MAX_REPORTED_PROBLEMS);
            compatible &= backward.compatible;
            truncated |= backward.truncated;
            messages.extend(
                backward
                    .problems
                    .iter()
                    .map(|i| i.confluent_message("new", "old")),
            );
        }
        if !compatible {
            if truncated {
                messages.push(format!(
                    "{{truncated: 'more problems were found; only the first {MAX_REPORTED_PROBLEMS} of each direction are listed'}}"
                ));
            }
            messages.push(format!("{{oldSchemaVersion: {version}}}"));
            messages.push(old_schema_message(old));
            messages.push(format!(
                "{{validateFields: 'false', compatibility: '{level}'}}"
            ));
            return messages;
        }
    }
    Vec::new()
}

/// `{oldSchema: '<json>'}`, truncated like Confluent's beyond 10 KiB.
fn old_schema_message(old: &Schema) -> String {
    let json = serde_json::to_string(old).unwrap_or_else(|_| old.canonical_form());
    if json.chars().count() <= MAX_SCHEMA_SIZE_FOR_MESSAGES {
        format!("{{oldSchema: '{json}'}}")
    } else {
        let head: String = json.chars().take(MAX_SCHEMA_SIZE_FOR_MESSAGES).collect();
        format!("{{oldSchema: <truncated> '{head}...'}}")
    }
}

// ---------------------------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------------------------

/// Every named type defined inside one schema, by full name (and by full alias), so that
/// `Schema::Ref` can be followed to its definition.
///
/// Built by hand rather than with `ResolvedSchema` so that a schema with an undefined or
/// duplicated name still gets checked instead of failing outright.
struct NameTable<'s> {
    definitions: HashMap<Name, &'s Schema>,
}

impl<'s> NameTable<'s> {
    fn of(schema: &'s Schema) -> Self {
        let mut table = NameTable {
            definitions: HashMap::new(),
        };
        table.collect(schema, None);
        table
    }

    fn collect(&mut self, schema: &'s Schema, namespace: Option<&str>) {
        match schema {
            Schema::Array(array) => self.collect(&array.items, namespace),
            Schema::Map(map) => self.collect(&map.types, namespace),
            Schema::Union(union) => {
                for branch in union.variants() {
                    self.collect(branch, namespace);
                }
            }
            Schema::Record(record) => {
                self.define(&record.name, record.aliases.as_deref(), schema, namespace);
                let inner = record.name.namespace().or(namespace);
                for field in &record.fields {
                    self.collect(&field.schema, inner);
                }
            }
            Schema::Enum(EnumSchema { name, aliases, .. })
            | Schema::Fixed(FixedSchema { name, aliases, .. })
            | Schema::Duration(FixedSchema { name, aliases, .. })
            | Schema::Uuid(UuidSchema::Fixed(FixedSchema { name, aliases, .. }))
            | Schema::Decimal(DecimalSchema {
                inner: InnerDecimalSchema::Fixed(FixedSchema { name, aliases, .. }),
                ..
            }) => self.define(name, aliases.as_deref(), schema, namespace),
            _ => {}
        }
    }

    fn define(
        &mut self,
        name: &Name,
        aliases: Option<&[apache_avro::schema::Alias]>,
        schema: &'s Schema,
        namespace: Option<&str>,
    ) {
        let full = name.fully_qualified_name(namespace).into_owned();
        let own_namespace = full.namespace().map(str::to_string);
        // The first definition wins; a duplicate is the parser's problem, not ours.
        self.definitions.entry(full).or_insert(schema);
        for alias in aliases.unwrap_or_default() {
            let full_alias = alias
                .fully_qualified_name(own_namespace.as_deref())
                .into_owned();
            self.definitions.entry(full_alias).or_insert(schema);
        }
    }

    /// The definition a reference points to, with the namespace its own fields live in.
    fn resolve<'t>(
        &'t self,
        name: &Name,
        namespace: Option<&str>,
    ) -> Option<(&'t Name, &'s Schema)> {
        let full = name.fully_qualified_name(namespace);
        self.definitions
            .get_key_value(full.as_ref())
            .or_else(|| self.definitions.get_key_value(name))
            .map(|(key, schema)| (key, *schema))
    }
}

/// A schema node together with the namespace that encloses it (needed to resolve references
/// and to qualify unqualified names).
#[derive(Clone, Copy)]
struct Node<'a> {
    schema: &'a Schema,
    namespace: Option<&'a str>,
}

/// A node reduced to what Avro schema resolution looks at: logical types are replaced by their
/// underlying type and references by their definition.
#[derive(Clone, Copy)]
enum Shape<'a> {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array(&'a Schema),
    Map(&'a Schema),
    Union(&'a [Schema]),
    Record(&'a RecordSchema),
    Enum(&'a EnumSchema),
    Fixed(&'a FixedSchema),
    /// A reference whose definition is not inside the schema.
    Unresolved(&'a Name),
}

impl Shape<'_> {
    /// Java's `Schema.Type` name, as used in Java's messages.
    fn type_name(&self) -> String {
        match self {
            Shape::Null => "NULL".into(),
            Shape::Boolean => "BOOLEAN".into(),
            Shape::Int => "INT".into(),
            Shape::Long => "LONG".into(),
            Shape::Float => "FLOAT".into(),
            Shape::Double => "DOUBLE".into(),
            Shape::Bytes => "BYTES".into(),
            Shape::String => "STRING".into(),
            Shape::Array(_) => "ARRAY".into(),
            Shape::Map(_) => "MAP".into(),
            Shape::Union(_) => "UNION".into(),
            Shape::Record(_) => "RECORD".into(),
            Shape::Enum(_) => "ENUM".into(),
            Shape::Fixed(_) => "FIXED".into(),
            Shape::Unresolved(name) => format!("unresolved reference '{}'", name.fullname(None)),
        }
    }

    /// The name of a named type (record, enum, fixed or unresolved reference).
    fn name(&self) -> Option<&Name> {
        match self {
            Shape::Record(record) => Some(&record.name),
            Shape::Enum(enumeration) => Some(&enumeration.name),
            Shape::Fixed(fixed) => Some(&fixed.name),
            Shape::Unresolved(name) => Some(name),
            _ => None,
        }
    }

    /// The aliases of a named type.
    fn aliases(&self) -> &[apache_avro::schema::Alias] {
        let aliases = match self {
            Shape::Record(record) => record.aliases.as_deref(),
            Shape::Enum(enumeration) => enumeration.aliases.as_deref(),
            Shape::Fixed(fixed) => fixed.aliases.as_deref(),
            _ => None,
        };
        aliases.unwrap_or_default()
    }
}

/// A node after following references: the definition itself (its address identifies the pair
/// for memoization), its shape, and the namespace its children live in.
#[derive(Clone, Copy)]
struct Resolved<'a> {
    schema: &'a Schema,
    shape: Shape<'a>,
    /// The enclosing namespace for this node's own name.
    namespace: Option<&'a str>,
}

impl<'a> Resolved<'a> {
    /// The namespace this node's children inherit.
    fn inner_namespace(&self) -> Option<&'a str> {
        match self.shape {
            Shape::Record(record) => record.name.namespace().or(self.namespace),
            _ => self.namespace,
        }
    }

    fn child(&self, schema: &'a Schema) -> Node<'a> {
        Node {
            schema,
            namespace: self.inner_namespace(),
        }
    }

    /// This node's full name, e.g. `com.acme.Order`.
    fn full_name(&self) -> String {
        self.shape
            .name()
            .map(|name| name.fullname(self.namespace))
            .unwrap_or_default()
    }
}

/// The JSON pointer of `path` (steps from the root), escaped as RFC 6901 asks.
fn pointer<'s>(path: impl IntoIterator<Item = &'s str>) -> String {
    let steps: Vec<String> = path
        .into_iter()
        .map(|step| step.replace('~', "~0").replace('/', "~1"))
        .collect();
    format!("/{}", steps.join("/"))
}

/// What the reporting walk has found so far, and where it is.
struct Report {
    /// Steps from the root to the pair being looked at.
    path: Vec<String>,
    problems: Vec<Incompatibility>,
    limit: usize,
    truncated: bool,
    /// Pairs already reported (or being reported): each is listed once.
    seen: HashSet<(usize, usize)>,
}

impl Report {
    fn new(limit: usize) -> Self {
        Report {
            path: Vec::new(),
            problems: Vec::new(),
            limit,
            truncated: false,
            seen: HashSet::new(),
        }
    }

    /// Records a problem at the current place, or `steps` below it.
    fn add(&mut self, kind: IncompatibilityKind, steps: &[&str], message: impl Into<String>) {
        if self.problems.len() >= self.limit {
            self.truncated = true;
            return;
        }
        let location = pointer(
            self.path
                .iter()
                .map(String::as_str)
                .chain(steps.iter().copied()),
        );
        self.problems.push(Incompatibility {
            kind,
            location,
            message: message.into(),
        });
    }
}

/// Adds a problem (`steps` below the current place) when reporting; either way, the pair is
/// incompatible.
fn problem(
    report: &mut Option<&mut Report>,
    kind: IncompatibilityKind,
    steps: &[&str],
    message: impl Into<String>,
) -> bool {
    if let Some(report) = report.as_deref_mut() {
        report.add(kind, steps, message);
    }
    false
}

enum Memo {
    InProgress,
    Done(bool),
}

/// Java's `ReaderWriterCompatibilityChecker`: memoizes the verdict of every (reader, writer)
/// pair by identity, and treats a pair that is already being checked (a recursive type) as
/// compatible.
///
/// The verdicts are computed first ([`Checker::verdict`]); then, only for an incompatible
/// root, a second walk ([`Checker::report`]) lists the problems, descending only into
/// incompatible pairs and visiting each pair once.
struct Checker<'a> {
    reader_names: &'a NameTable<'a>,
    writer_names: &'a NameTable<'a>,
    memo: HashMap<(usize, usize), Memo>,
    /// How many pairs are being checked inside each other right now.
    depth: usize,
}

fn pair_key(reader: &Resolved<'_>, writer: &Resolved<'_>) -> (usize, usize) {
    (
        reader.schema as *const Schema as usize,
        writer.schema as *const Schema as usize,
    )
}

impl<'a> Checker<'a> {
    /// Can `reader` read what `writer` wrote?
    fn verdict(&mut self, reader: Node<'a>, writer: Node<'a>) -> bool {
        let reader = resolve(reader, self.reader_names);
        let writer = resolve(writer, self.writer_names);
        let key = pair_key(&reader, &writer);
        match self.memo.get(&key) {
            Some(Memo::InProgress) => return true,
            Some(Memo::Done(compatible)) => return *compatible,
            None => {}
        }
        if self.depth >= MAX_CHECK_DEPTH {
            return false;
        }
        self.memo.insert(key, Memo::InProgress);
        self.depth += 1;
        let compatible = self.examine(reader, writer, None);
        self.depth -= 1;
        self.memo.insert(key, Memo::Done(compatible));
        compatible
    }

    /// Lists the problems of an incompatible pair, unless it was listed already.
    fn report(&mut self, reader: Node<'a>, writer: Node<'a>, report: &mut Report) {
        let reader = resolve(reader, self.reader_names);
        let writer = resolve(writer, self.writer_names);
        if report.truncated || !report.seen.insert(pair_key(&reader, &writer)) {
            return;
        }
        if self.depth >= MAX_CHECK_DEPTH {
            report.add(
                IncompatibilityKind::TypeMismatch,
                &[],
                format!("types nested more than {MAX_CHECK_DEPTH} deep are not checked"),
            );
            return;
        }
        self.depth += 1;
        self.examine(reader, writer, Some(report));
        self.depth -= 1;
    }

    /// A child pair at `steps` below the current one: its verdict and, when reporting and
    /// it is incompatible, its problems.
    fn child(
        &mut self,
        reader: Node<'a>,
        writer: Node<'a>,
        steps: &[&str],
        report: &mut Option<&mut Report>,
    ) -> bool {
        let compatible = self.verdict(reader, writer);
        if let (false, Some(report)) = (compatible, report.as_deref_mut()) {
            let depth = report.path.len();
            report.path.extend(steps.iter().map(|s| s.to_string()));
            self.report(reader, writer, report);
            report.path.truncate(depth);
        }
        compatible
    }

    /// One pair's rules. Without a report it only decides; with one it also lists problems
    /// (every child is still visited, so the memo holds the same verdicts as Java's).
    fn examine(
        &mut self,
        reader: Resolved<'a>,
        writer: Resolved<'a>,
        mut report: Option<&mut Report>,
    ) -> bool {
        use Shape as S;
        let report = &mut report;
        match (reader.shape, writer.shape) {
            // Same type.
            (S::Null, S::Null)
            | (S::Boolean, S::Boolean)
            | (S::Int, S::Int)
            | (S::Long, S::Long)
            | (S::Float, S::Float)
            | (S::Double, S::Double)
            | (S::Bytes, S::Bytes)
            | (S::String, S::String) => true,
            (S::Array(r), S::Array(w)) => {
                self.child(reader.child(r), writer.child(w), &["items"], report)
            }
            (S::Map(r), S::Map(w)) => {
                self.child(reader.child(r), writer.child(w), &["values"], report)
            }
            (S::Fixed(r), S::Fixed(w)) => {
                let mut compatible = check_names(&reader, &writer, report);
                if r.size != w.size {
                    compatible = problem(
                        report,
                        IncompatibilityKind::FixedSizeMismatch,
                        &["size"],
                        format!("expected: {}, found: {}", w.size, r.size),
                    );
                }
                compatible
            }
            (S::Enum(r), S::Enum(w)) => {
                let names = check_names(&reader, &writer, report);
                check_enum_symbols(r, w, report) && names
            }
            (S::Record(r), S::Record(w)) => {
                let names = check_names(&reader, &writer, report);
                self.check_fields(r, &reader, w, &writer, report) && names
            }
            (S::Union(_), S::Union(branches)) => {
                // Every writer branch must be readable by the reader union.
                let reader_node = Node {
                    schema: reader.schema,
                    namespace: reader.namespace,
                };
                let mut compatible = true;
                for (index, branch) in branches.iter().enumerate() {
                    let branch_node = writer.child(branch);
                    if !self.verdict(reader_node, branch_node) {
                        let branch_type = resolve(branch_node, self.writer_names).shape.type_name();
                        compatible = problem(
                            report,
                            IncompatibilityKind::MissingUnionBranch,
                            &[&index.to_string()],
                            format!("reader union lacking writer type: {branch_type}"),
                        );
                    }
                }
                compatible
            }
            // Different types: a writer union is readable if each of its branches is.
            (_, S::Union(branches)) => {
                let reader_node = Node {
                    schema: reader.schema,
                    namespace: reader.namespace,
                };
                let mut compatible = true;
                for (index, branch) in branches.iter().enumerate() {
                    let step = index.to_string();
                    compatible &= self.child(reader_node, writer.child(branch), &[&step], report);
                }
                compatible
            }
            // A reader union reads a writer type if any of its branches does.
            (S::Union(branches), _) => {
                let writer_node = Node {
                    schema: writer.schema,
                    namespace: writer.namespace,
                };
                for branch in branches {
                    if self.verdict(reader.child(branch), writer_node) {
                        return true;
                    }
                }
                problem(
                    report,
                    IncompatibilityKind::MissingUnionBranch,
                    &[],
                    format!(
                        "reader union lacking writer type: {}",
                        writer.shape.type_name()
                    ),
                )
            }
            // A reference we cannot see into: compare names only.
            (S::Unresolved(_), S::Unresolved(_) | S::Record(_) | S::Enum(_) | S::Fixed(_))
            | (S::Record(_) | S::Enum(_) | S::Fixed(_), S::Unresolved(_)) => {
                check_names(&reader, &writer, report)
            }
            // Promotions.
            (S::Long, S::Int)
            | (S::Float, S::Int | S::Long)
            | (S::Double, S::Int | S::Long | S::Float)
            | (S::Bytes, S::String)
            | (S::String, S::Bytes) => true,
            _ => problem(
                report,
                IncompatibilityKind::TypeMismatch,
                &[],
                type_mismatch(&reader, &writer),
            ),
        }
    }

    fn check_fields(
        &mut self,
        reader_record: &'a RecordSchema,
        reader: &Resolved<'a>,
        writer_record: &'a RecordSchema,
        writer: &Resolved<'a>,
        report: &mut Option<&mut Report>,
    ) -> bool {
        let mut compatible = true;
        for (position, reader_field) in reader_record.fields.iter().enumerate() {
            let position = position.to_string();
            let matches = lookup_writer_fields(writer_record, reader_field);
            let field_compatible = match matches.as_slice() {
                [writer_field] => self.child(
                    reader.child(&reader_field.schema),
                    writer.child(&writer_field.schema),
                    &["fields", &position, "type"],
                    report,
                ),
                [] if reader_field.default.is_some() => true,
                [] => {
                    let field_node = reader.child(&reader_field.schema);
                    let field_shape = resolve(field_node, self.reader_names).shape;
                    match field_shape {
                        // Java compares the enum with the writer *record* here, which can only
                        // be a type mismatch; kept for identical messages.
                        Shape::Enum(enumeration) if enumeration.default.is_some() => {
                            let writer_node = Node {
                                schema: writer.schema,
                                namespace: writer.namespace,
                            };
                            self.child(
                                field_node,
                                writer_node,
                                &["fields", &position, "type"],
                                report,
                            )
                        }
                        _ => problem(
                            report,
                            IncompatibilityKind::ReaderFieldMissingDefaultValue,
                            &["fields", &position],
                            reader_field.name.clone(),
                        ),
                    }
                }
                several => {
                    let names: Vec<&str> = several.iter().map(|f| f.name.as_str()).collect();
                    problem(
                        report,
                        IncompatibilityKind::TypeMismatch,
                        &["fields", &position],
                        format!(
                            "reader field '{}' matches several writer fields: {}",
                            reader_field.name,
                            names.join(", ")
                        ),
                    )
                }
            };
            compatible &= field_compatible;
        }
        compatible
    }
}

/// Follows a reference to its definition and reduces logical types to their underlying type.
fn resolve<'a>(node: Node<'a>, names: &'a NameTable<'a>) -> Resolved<'a> {
    let (schema, namespace) = match node.schema {
        Schema::Ref { name } => match names.resolve(name, node.namespace) {
            Some((full_name, definition)) => (definition, full_name.namespace()),
            None => {
                return Resolved {
                    schema: node.schema,
                    shape: Shape::Unresolved(name),
                    namespace: node.namespace,
                }
            }
        },
        other => (other, node.namespace),
    };
    let shape = match schema {
        Schema::Null => Shape::Null,
        Schema::Boolean => Shape::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Shape::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Shape::Long,
        Schema::Float => Shape::Float,
        Schema::Double => Shape::Double,
        Schema::Bytes
        | Schema::BigDecimal
        | Schema::Uuid(UuidSchema::Bytes)
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Bytes,
            ..
        }) => Shape::Bytes,
        Schema::String | Schema::Uuid(UuidSchema::String) => Shape::String,
        Schema::Array(array) => Shape::Array(&array.items),
        Schema::Map(map) => Shape::Map(&map.types),
        Schema::Union(union) => Shape::Union(union.variants()),
        Schema::Record(record) => Shape::Record(record),
        Schema::Enum(enumeration) => Shape::Enum(enumeration),
        Schema::Fixed(fixed)
        | Schema::Duration(fixed)
        | Schema::Uuid(UuidSchema::Fixed(fixed))
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(fixed),
            ..
        }) => Shape::Fixed(fixed),
        // A definition is never a reference, but an unresolvable chain must not loop.
        Schema::Ref { name } => Shape::Unresolved(name),
    };
    Resolved {
        schema,
        shape,
        namespace,
    }
}

/// Java's `schemaNameEquals`: equal unqualified names, or a reader alias equal to the writer's
/// full name.
fn check_names(
    reader: &Resolved<'_>,
    writer: &Resolved<'_>,
    report: &mut Option<&mut Report>,
) -> bool {
    let (Some(reader_name), Some(writer_name)) = (reader.shape.name(), writer.shape.name()) else {
        return true;
    };
    let writer_full = writer.full_name();
    let reader_namespace = reader_name.namespace().or(reader.namespace);
    let matches = reader_name.name() == writer_name.name()
        || reader.shape.aliases().iter().any(|alias| {
            alias.fully_qualified_name(reader_namespace).fullname(None) == writer_full
        });
    matches
        || problem(
            report,
            IncompatibilityKind::NameMismatch,
            &["name"],
            format!("expected: {writer_full}"),
        )
}

/// Every writer symbol must be a reader symbol, unless the reader enum has a default.
fn check_enum_symbols(
    reader: &EnumSchema,
    writer: &EnumSchema,
    report: &mut Option<&mut Report>,
) -> bool {
    let mut missing: Vec<&str> = writer
        .symbols
        .iter()
        .filter(|symbol| !reader.symbols.contains(symbol))
        .map(String::as_str)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let reader_has_default = reader
        .default
        .as_ref()
        .is_some_and(|default| reader.symbols.contains(default));
    missing.is_empty()
        || reader_has_default
        || problem(
            report,
            IncompatibilityKind::MissingEnumSymbols,
            &["symbols"],
            format!("[{}]", missing.join(", ")),
        )
}

/// Java's `lookupWriterField`: the writer field with the reader field's name, and those with
/// one of its aliases. Writer aliases are not consulted.
fn lookup_writer_fields<'w>(
    writer: &'w RecordSchema,
    reader_field: &RecordField,
) -> Vec<&'w RecordField> {
    let mut matches: Vec<&'w RecordField> = Vec::new();
    for wanted in std::iter::once(&reader_field.name).chain(reader_field.aliases.iter()) {
        if let Some(field) = writer.fields.iter().find(|f| &f.name == wanted) {
            if !matches.iter().any(|m| std::ptr::eq(*m, field)) {
                matches.push(field);
            }
        }
    }
    matches
}

fn type_mismatch(reader: &Resolved<'_>, writer: &Resolved<'_>) -> String {
    format!(
        "reader type: {} not compatible with writer type: {}",
        reader.shape.type_name(),
        writer.shape.type_name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(schema: &Value) -> Schema {
        Schema::parse_str(&schema.to_string())
            .unwrap_or_else(|e| panic!("test schema must parse: {e}\n{schema}"))
    }

    fn order(fields: Value) -> Value {
        json!({"type": "record", "name": "Order", "namespace": "com.acme", "fields": fields})
    }

    /// `can_read` on two JSON schemas, as (kind, location, message) triples.
    fn problems(reader: &Value, writer: &Value) -> Vec<(IncompatibilityKind, String, String)> {
        can_read(&parse(reader), &parse(writer))
            .into_iter()
            .map(|i| (i.kind, i.location, i.message))
            .collect()
    }

    fn readable(reader: &Value, writer: &Value) -> bool {
        problems(reader, writer).is_empty()
    }

    fn one(
        kind: IncompatibilityKind,
        location: &str,
        message: &str,
    ) -> Vec<(IncompatibilityKind, String, String)> {
        vec![(kind, location.to_string(), message.to_string())]
    }

    use IncompatibilityKind::*;

    // -- Primitives and promotions -------------------------------------------------------------

    #[test]
    fn every_primitive_reads_itself() {
        for primitive in [
            "null", "boolean", "int", "long", "float", "double", "bytes", "string",
        ] {
            assert!(
                readable(&json!(primitive), &json!(primitive)),
                "{primitive}"
            );
        }
    }

    #[test]
    fn int_is_promoted_to_long_float_and_double() {
        for reader in ["long", "float", "double"] {
            assert!(
                readable(&json!(reader), &json!("int")),
                "{reader} reads int"
            );
        }
    }

    #[test]
    fn long_is_promoted_to_float_and_double_but_not_narrowed_to_int() {
        assert!(readable(&json!("float"), &json!("long")));
        assert!(readable(&json!("double"), &json!("long")));
        assert_eq!(
            problems(&json!("int"), &json!("long")),
            one(
                TypeMismatch,
                "/",
                "reader type: INT not compatible with writer type: LONG"
            )
        );
    }

    #[test]
    fn float_is_promoted_to_double_only() {
        assert!(readable(&json!("double"), &json!("float")));
        assert!(!readable(&json!("long"), &json!("float")));
        assert!(!readable(&json!("float"), &json!("double")));
    }

    #[test]
    fn string_and_bytes_read_each_other() {
        assert!(readable(&json!("string"), &json!("bytes")));
        assert!(readable(&json!("bytes"), &json!("string")));
    }

    #[test]
    fn unrelated_types_are_a_type_mismatch_at_the_root() {
        assert_eq!(
            problems(&json!("boolean"), &json!("int")),
            one(
                TypeMismatch,
                "/",
                "reader type: BOOLEAN not compatible with writer type: INT"
            )
        );
        assert_eq!(
            problems(
                &json!({"type": "array", "items": "int"}),
                &json!({"type": "map", "values": "int"})
            ),
            one(
                TypeMismatch,
                "/",
                "reader type: ARRAY not compatible with writer type: MAP"
            )
        );
    }

    // -- Records -------------------------------------------------------------------------------

    #[test]
    fn records_with_different_names_are_a_name_mismatch() {
        let reader =
            json!({"type": "record", "name": "Purchase", "namespace": "com.acme", "fields": []});
        assert_eq!(
            problems(&reader, &order(json!([]))),
            one(NameMismatch, "/name", "expected: com.acme.Order")
        );
    }

    #[test]
    fn record_names_are_compared_without_their_namespace() {
        let reader =
            json!({"type": "record", "name": "Order", "namespace": "org.other", "fields": []});
        assert!(readable(&reader, &order(json!([]))));
    }

    #[test]
    fn a_reader_alias_equal_to_the_writer_full_name_matches_the_name() {
        let reader = json!({
            "type": "record", "name": "Purchase", "namespace": "com.acme",
            "aliases": ["Order"], "fields": []
        });
        assert!(readable(&reader, &order(json!([]))));
        // The alias is qualified with the reader's namespace, so it names com.acme.Order only.
        let elsewhere = json!({
            "type": "record", "name": "Purchase", "namespace": "org.other",
            "aliases": ["Order"], "fields": []
        });
        assert!(!readable(&elsewhere, &order(json!([]))));
    }

    #[test]
    fn a_writer_alias_does_not_match_the_name() {
        let writer = json!({
            "type": "record", "name": "Purchase", "namespace": "com.acme",
            "aliases": ["Order"], "fields": []
        });
        assert!(!readable(&order(json!([])), &writer));
    }

    #[test]
    fn a_reader_field_missing_from_the_writer_needs_a_default() {
        let writer = order(json!([{"name": "id", "type": "string"}]));
        let reader = order(json!([
            {"name": "id", "type": "string"},
            {"name": "currency", "type": "string"}
        ]));
        assert_eq!(
            problems(&reader, &writer),
            one(ReaderFieldMissingDefaultValue, "/fields/1", "currency")
        );
    }

    #[test]
    fn a_reader_field_with_a_default_may_be_missing_from_the_writer() {
        let writer = order(json!([{"name": "id", "type": "string"}]));
        let reader = order(json!([
            {"name": "id", "type": "string"},
            {"name": "currency", "type": "string", "default": "EUR"},
            {"name": "note", "type": ["null", "string"], "default": null}
        ]));
        assert!(readable(&reader, &writer));
    }

    #[test]
    fn a_writer_field_missing_from_the_reader_is_skipped() {
        let writer =
            order(json!([{"name": "id", "type": "string"}, {"name": "old", "type": "int"}]));
        let reader = order(json!([{"name": "id", "type": "string"}]));
        assert!(readable(&reader, &writer));
    }

    #[test]
    fn a_reader_field_alias_finds_the_renamed_writer_field() {
        let writer = order(json!([{"name": "total", "type": "int"}]));
        let reader = order(json!([{"name": "amount", "aliases": ["total"], "type": "long"}]));
        assert!(readable(&reader, &writer));
        let narrowing = order(json!([{"name": "amount", "aliases": ["total"], "type": "string"}]));
        assert_eq!(
            problems(&narrowing, &writer),
            one(
                TypeMismatch,
                "/fields/0/type",
                "reader type: STRING not compatible with writer type: INT"
            )
        );
    }

    #[test]
    fn a_writer_field_alias_is_not_used_to_find_the_reader_field() {
        let writer = order(json!([{"name": "amount", "aliases": ["total"], "type": "int"}]));
        let reader = order(json!([{"name": "total", "type": "int"}]));
        assert_eq!(
            problems(&reader, &writer),
            one(ReaderFieldMissingDefaultValue, "/fields/0", "total")
        );
    }

    #[test]
    fn a_reader_field_matching_two_writer_fields_is_incompatible() {
        let writer = order(json!([{"name": "a", "type": "int"}, {"name": "b", "type": "int"}]));
        let reader = order(json!([{"name": "a", "aliases": ["b"], "type": "int"}]));
        let found = problems(&reader, &writer);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, "/fields/0");
    }

    #[test]
    fn nested_problems_report_their_full_path() {
        let writer = order(json!([
            {"name": "id", "type": "string"},
            {"name": "lines", "type": {"type": "array", "items": {
                "type": "record", "name": "Line", "fields": [{"name": "qty", "type": "int"}]
            }}}
        ]));
        let reader = order(json!([
            {"name": "id", "type": "string"},
            {"name": "lines", "type": {"type": "array", "items": {
                "type": "record", "name": "Line", "fields": [{"name": "qty", "type": "boolean"}]
            }}}
        ]));
        assert_eq!(
            problems(&reader, &writer),
            one(
                TypeMismatch,
                "/fields/1/type/items/fields/0/type",
                "reader type: BOOLEAN not compatible with writer type: INT"
            )
        );
    }

    #[test]
    fn every_problem_is_reported_in_order() {
        let writer =
            json!({"type": "record", "name": "Old", "fields": [{"name": "a", "type": "int"}]});
        let reader = json!({"type": "record", "name": "New", "fields": [
            {"name": "a", "type": "boolean"},
            {"name": "b", "type": "int"}
        ]});
        let kinds: Vec<_> = problems(&reader, &writer)
            .into_iter()
            .map(|p| (p.0, p.1))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (NameMismatch, "/name".to_string()),
                (TypeMismatch, "/fields/0/type".to_string()),
                (ReaderFieldMissingDefaultValue, "/fields/1".to_string()),
            ]
        );
    }

    #[test]
    fn a_missing_enum_field_with_only_an_enum_default_is_reported_like_java() {
        // Java compares the reader's enum with the writer record here: a TYPE_MISMATCH.
        let writer = order(json!([{"name": "id", "type": "string"}]));
        let reader = order(json!([
            {"name": "id", "type": "string"},
            {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"], "default": "NEW"}}
        ]));
        assert_eq!(
            problems(&reader, &writer),
            one(
                TypeMismatch,
                "/fields/1/type",
                "reader type: ENUM not compatible with writer type: RECORD"
            )
        );
    }

    // -- Enums and fixed -----------------------------------------------------------------------

    fn status(symbols: &[&str], default: Option<&str>) -> Value {
        let mut schema =
            json!({"type": "enum", "name": "Status", "namespace": "com.acme", "symbols": symbols});
        if let Some(default) = default {
            schema["default"] = json!(default);
        }
        schema
    }

    #[test]
    fn a_reader_enum_must_have_every_writer_symbol() {
        assert!(readable(
            &status(&["A", "B", "C"], None),
            &status(&["A", "B"], None)
        ));
        assert_eq!(
            problems(&status(&["B"], None), &status(&["D", "A", "B", "C"], None)),
            one(MissingEnumSymbols, "/symbols", "[A, C, D]")
        );
    }

    #[test]
    fn a_reader_enum_default_accepts_unknown_writer_symbols() {
        assert!(readable(
            &status(&["UNKNOWN", "A"], Some("UNKNOWN")),
            &status(&["UNKNOWN", "A", "B"], None)
        ));
    }

    #[test]
    fn a_writer_enum_default_does_not_help_the_reader() {
        assert!(!readable(
            &status(&["UNKNOWN", "A"], None),
            &status(&["UNKNOWN", "A", "B"], Some("UNKNOWN"))
        ));
    }

    #[test]
    fn enums_with_different_names_are_a_name_mismatch() {
        let reader =
            json!({"type": "enum", "name": "State", "namespace": "com.acme", "symbols": ["A"]});
        assert_eq!(
            problems(&reader, &status(&["A"], None)),
            one(NameMismatch, "/name", "expected: com.acme.Status")
        );
    }

    fn fixed(name: &str, size: usize) -> Value {
        json!({"type": "fixed", "name": name, "size": size})
    }

    #[test]
    fn fixed_types_must_agree_on_size() {
        assert!(readable(&fixed("Hash", 16), &fixed("Hash", 16)));
        assert_eq!(
            problems(&fixed("Hash", 8), &fixed("Hash", 16)),
            one(FixedSizeMismatch, "/size", "expected: 16, found: 8")
        );
    }

    #[test]
    fn fixed_types_must_agree_on_name() {
        assert_eq!(
            problems(&fixed("Digest", 16), &fixed("Hash", 16)),
            one(NameMismatch, "/name", "expected: Hash")
        );
    }

    // -- Arrays and maps -----------------------------------------------------------------------

    #[test]
    fn array_items_are_checked_under_items() {
        assert!(readable(
            &json!({"type": "array", "items": "long"}),
            &json!({"type": "array", "items": "int"})
        ));
        assert_eq!(
            problems(
                &json!({"type": "array", "items": "int"}),
                &json!({"type": "array", "items": "long"})
            ),
            one(
                TypeMismatch,
                "/items",
                "reader type: INT not compatible with writer type: LONG"
            )
        );
    }

    #[test]
    fn map_values_are_checked_under_values() {
        assert!(readable(
            &json!({"type": "map", "values": "double"}),
            &json!({"type": "map", "values": "float"})
        ));
        assert_eq!(
            problems(
                &json!({"type": "map", "values": "string"}),
                &json!({"type": "map", "values": "int"})
            ),
            one(
                TypeMismatch,
                "/values",
                "reader type: STRING not compatible with writer type: INT"
            )
        );
    }

    // -- Unions --------------------------------------------------------------------------------

    #[test]
    fn every_branch_of_a_writer_union_must_be_readable_by_a_plain_reader() {
        assert_eq!(
            problems(&json!("string"), &json!(["null", "string"])),
            one(
                TypeMismatch,
                "/0",
                "reader type: STRING not compatible with writer type: NULL"
            )
        );
        assert!(readable(&json!("long"), &json!(["int", "long"])));
    }

    #[test]
    fn a_reader_union_reads_a_plain_writer_if_any_branch_does() {
        assert!(readable(&json!(["null", "long"]), &json!("int")));
        assert_eq!(
            problems(&json!(["null", "string"]), &json!("boolean")),
            one(
                MissingUnionBranch,
                "/",
                "reader union lacking writer type: BOOLEAN"
            )
        );
    }

    #[test]
    fn each_writer_union_branch_needs_a_reader_union_branch() {
        assert!(readable(
            &json!(["null", "string", "int"]),
            &json!(["null", "string"])
        ));
        assert!(readable(
            &json!(["null", "double"]),
            &json!(["int", "null"])
        ));
        assert_eq!(
            problems(
                &json!(["null", "string"]),
                &json!(["null", "string", "int"])
            ),
            one(
                MissingUnionBranch,
                "/2",
                "reader union lacking writer type: INT"
            )
        );
    }

    #[test]
    fn union_branches_match_named_types_by_name() {
        let a = json!({"type": "record", "name": "A", "fields": []});
        let b = json!({"type": "record", "name": "B", "fields": []});
        assert!(readable(
            &json!(["null", a.clone(), b.clone()]),
            &json!([b.clone(), "null"])
        ));
        assert_eq!(
            problems(&json!(["null", a]), &json!(["null", b])),
            one(
                MissingUnionBranch,
                "/1",
                "reader union lacking writer type: RECORD"
            )
        );
    }

    // -- Logical types -------------------------------------------------------------------------

    #[test]
    fn logical_types_are_checked_by_their_underlying_type() {
        let timestamp = json!({"type": "long", "logicalType": "timestamp-millis"});
        let date = json!({"type": "int", "logicalType": "date"});
        let uuid = json!({"type": "string", "logicalType": "uuid"});
        assert!(readable(&timestamp, &json!("long")));
        assert!(readable(&json!("long"), &timestamp));
        assert!(readable(&timestamp, &date), "int promotes to long");
        assert!(!readable(&date, &timestamp), "long does not narrow to int");
        assert!(readable(&uuid, &json!("string")));
        assert!(readable(&json!("bytes"), &uuid));
    }

    #[test]
    fn a_decimal_may_change_precision_and_scale() {
        let narrow =
            json!({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2});
        let wide = json!({"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4});
        assert!(readable(&wide, &narrow));
        assert!(readable(&narrow, &wide));
        assert!(readable(&json!("bytes"), &narrow));
    }

    #[test]
    fn a_fixed_decimal_is_checked_as_a_fixed() {
        let small = json!({"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 10, "scale": 2});
        let large = json!({"type": "fixed", "name": "Money", "size": 16, "logicalType": "decimal", "precision": 20, "scale": 2});
        assert_eq!(
            problems(&large, &small),
            one(FixedSizeMismatch, "/size", "expected: 8, found: 16")
        );
        assert!(readable(
            &json!({"type": "fixed", "name": "Money", "size": 8}),
            &small
        ));
    }

    // -- Named references and recursion --------------------------------------------------------

    #[test]
    fn named_references_are_followed_in_each_schema() {
        let address = |extra: Value| {
            let mut fields = vec![json!({"name": "street", "type": "string"})];
            if !extra.is_null() {
                fields.push(extra);
            }
            json!({"type": "record", "name": "Address", "fields": fields})
        };
        let writer = order(json!([
            {"name": "billing", "type": address(Value::Null)},
            {"name": "shipping", "type": "Address"}
        ]));
        let reader = order(json!([
            {"name": "billing", "type": address(json!({"name": "zip", "type": "string"}))},
            {"name": "shipping", "type": "com.acme.Address"}
        ]));
        assert_eq!(
            problems(&reader, &writer),
            vec![(
                ReaderFieldMissingDefaultValue,
                "/fields/0/type/fields/1".to_string(),
                "zip".to_string()
            ),],
            "the shipping Address is the same pair of types, listed once"
        );
        assert!(
            readable(&writer, &reader),
            "the old Address ignores the new zip field"
        );
    }

    /// `levels` records, each using the next one twice (once by definition, once by name);
    /// the last holds one field of type `leaf`. Listing every path gives 2^levels problems.
    pub(super) fn doubling(levels: usize, leaf: &str) -> Value {
        let mut schema = json!({"type": "record", "name": format!("L{levels}"), "fields": [
            {"name": "v", "type": leaf}
        ]});
        for level in (0..levels).rev() {
            let next = format!("L{}", level + 1);
            schema = json!({"type": "record", "name": format!("L{level}"), "fields": [
                {"name": "a", "type": schema},
                {"name": "b", "type": next}
            ]});
        }
        schema
    }

    #[test]
    fn a_pair_of_types_used_on_many_paths_is_listed_once() {
        let found = problems(&doubling(30, "boolean"), &doubling(30, "int"));
        let path = format!("{}/fields/0/type", "/fields/0/type".repeat(30));
        assert_eq!(
            found,
            one(
                TypeMismatch,
                &path,
                "reader type: BOOLEAN not compatible with writer type: INT"
            )
        );
        assert!(readable(&doubling(30, "long"), &doubling(30, "int")));
    }

    #[test]
    fn problems_beyond_the_limit_are_cut_but_the_verdict_stays() {
        let fields = |kind: &str| -> Value {
            (0..MAX_REPORTED_PROBLEMS + 50)
                .map(|i| json!({"name": format!("f{i}"), "type": kind}))
                .collect()
        };
        let reader = parse(&order(fields("boolean")));
        let writer = parse(&order(fields("int")));
        let resolution = resolve_pair(&reader, &writer, MAX_REPORTED_PROBLEMS);
        assert!(!resolution.compatible);
        assert!(resolution.truncated);
        assert_eq!(resolution.problems.len(), MAX_REPORTED_PROBLEMS);
        let messages = check(CompatibilityLevel::Backward, &reader, &[(1, &writer)]);
        assert_eq!(messages.len(), MAX_REPORTED_PROBLEMS + 4);
        assert!(messages[MAX_REPORTED_PROBLEMS].starts_with("{truncated: "));
    }

    #[test]
    fn a_pair_first_met_inside_a_union_is_still_listed_where_it_fails() {
        // The reader union tries its Address branch against the writer Address first (and
        // discards that attempt); the same pair then fails in a plain field.
        let address = |zip: bool| {
            let mut fields = vec![json!({"name": "street", "type": "string"})];
            if zip {
                fields.push(json!({"name": "zip", "type": "string"}));
            }
            json!({"type": "record", "name": "Address", "fields": fields})
        };
        let writer = order(json!([
            {"name": "maybe", "type": address(false)},
            {"name": "home", "type": "Address"}
        ]));
        let reader = order(json!([
            {"name": "maybe", "type": ["null", address(true), "string"]},
            {"name": "home", "type": "Address"}
        ]));
        let found = problems(&reader, &writer);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, MissingUnionBranch);
        assert_eq!(found[0].1, "/fields/0/type");
        assert_eq!(
            (found[1].0, found[1].1.as_str()),
            (ReaderFieldMissingDefaultValue, "/fields/1/type/fields/1")
        );
    }

    fn linked_list(value_type: &str, extra: Option<Value>) -> Value {
        let mut fields = vec![
            json!({"name": "value", "type": value_type}),
            json!({"name": "next", "type": ["null", "Node"], "default": null}),
        ];
        fields.extend(extra);
        json!({"type": "record", "name": "Node", "fields": fields})
    }

    #[test]
    fn recursive_types_are_checked_without_looping() {
        assert!(readable(
            &linked_list("long", None),
            &linked_list("int", None)
        ));
        assert_eq!(
            problems(&linked_list("int", None), &linked_list("long", None)),
            one(
                TypeMismatch,
                "/fields/0/type",
                "reader type: INT not compatible with writer type: LONG"
            )
        );
        assert_eq!(
            problems(
                &linked_list("int", Some(json!({"name": "label", "type": "string"}))),
                &linked_list("int", None)
            ),
            one(ReaderFieldMissingDefaultValue, "/fields/2", "label")
        );
    }

    #[test]
    fn mutually_recursive_types_are_checked_without_looping() {
        let tree = |leaf: &str| {
            json!({"type": "record", "name": "Tree", "fields": [
                {"name": "leaf", "type": leaf},
                {"name": "children", "type": {"type": "array", "items": {
                    "type": "record", "name": "Edge", "fields": [{"name": "to", "type": "Tree"}]
                }}}
            ]})
        };
        assert!(readable(&tree("double"), &tree("float")));
        assert!(!readable(&tree("float"), &tree("double")));
    }

    #[test]
    fn unresolved_references_are_compared_by_name() {
        let thing = |name: &str| Schema::Ref {
            name: Name::new(name).expect("valid name"),
        };
        assert!(can_read(&thing("com.other.Thing"), &thing("com.other.Thing")).is_empty());
        let found = can_read(&thing("com.other.Other"), &thing("com.other.Thing"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, NameMismatch);
        assert_eq!(
            can_read(&Schema::Int, &thing("com.other.Thing"))[0].kind,
            TypeMismatch
        );
    }

    // -- Messages ------------------------------------------------------------------------------

    #[test]
    fn display_reads_like_confluent() {
        let found = Incompatibility {
            kind: ReaderFieldMissingDefaultValue,
            location: "/fields/3".into(),
            message: "x".into(),
        };
        assert_eq!(
            found.to_string(),
            "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'x' at path '/fields/3' in the new schema has no default value and is missing in the old schema', additionalInfo:'x'}"
        );
    }

    #[test]
    fn locations_are_escaped_as_json_pointers() {
        assert_eq!(pointer(["c~d", "a/b"]), "/c~0d/a~1b");
        assert_eq!(pointer([]), "/");
    }

    // -- check() ------------------------------------------------------------------------------

    fn v(fields: Value) -> Schema {
        parse(&order(fields))
    }

    #[test]
    fn check_at_none_is_always_compatible() {
        let old = v(json!([{"name": "a", "type": "int"}]));
        let new = parse(&json!("string"));
        assert!(check(CompatibilityLevel::None, &new, &[(1, &old)]).is_empty());
    }

    #[test]
    fn check_without_existing_versions_is_compatible_at_every_level() {
        let new = v(json!([]));
        for level in CompatibilityLevel::ALL {
            assert!(check(level, &new, &[]).is_empty(), "{level}");
        }
    }

    #[test]
    fn check_reports_the_failing_version_and_level_like_confluent() {
        let old = v(json!([{"name": "a", "type": "int"}]));
        let new = v(json!([{"name": "a", "type": "int"}, {"name": "x", "type": "string"}]));
        let messages = check(CompatibilityLevel::Backward, &new, &[(7, &old)]);
        assert_eq!(messages.len(), 4, "{messages:#?}");
        assert_eq!(
            messages[0],
            "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'x' at path '/fields/1' in the new schema has no default value and is missing in the old schema', additionalInfo:'x'}"
        );
        assert_eq!(messages[1], "{oldSchemaVersion: 7}");
        assert!(
            messages[2].starts_with("{oldSchema: '{") && messages[2].contains("com.acme"),
            "{}",
            messages[2]
        );
        assert_eq!(
            messages[3],
            "{validateFields: 'false', compatibility: 'BACKWARD'}"
        );
    }

    #[test]
    fn check_forward_names_the_old_schema_as_the_reader() {
        let old = v(json!([{"name": "a", "type": "int"}, {"name": "b", "type": "string"}]));
        let new = v(json!([{"name": "a", "type": "int"}]));
        let messages = check(CompatibilityLevel::Forward, &new, &[(1, &old)]);
        assert_eq!(
            messages[0],
            "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'b' at path '/fields/1' in the old schema has no default value and is missing in the new schema', additionalInfo:'b'}"
        );
        assert_eq!(
            messages.last().map(String::as_str),
            Some("{validateFields: 'false', compatibility: 'FORWARD'}")
        );
    }

    #[test]
    fn check_full_reports_the_forward_problems_then_the_backward_ones() {
        let old = v(json!([{"name": "a", "type": "int"}]));
        let new = v(json!([{"name": "b", "type": "int"}]));
        let messages = check(CompatibilityLevel::Full, &new, &[(1, &old)]);
        assert!(
            messages[0].contains("'a' at path '/fields/0' in the old schema"),
            "{messages:#?}"
        );
        assert!(
            messages[1].contains("'b' at path '/fields/0' in the new schema"),
            "{messages:#?}"
        );
        assert_eq!(messages[2], "{oldSchemaVersion: 1}");
        assert_eq!(
            messages[4],
            "{validateFields: 'false', compatibility: 'FULL'}"
        );
    }

    #[test]
    fn check_non_transitive_levels_compare_with_the_latest_version_only() {
        let v1 = v(json!([{"name": "a", "type": "string"}]));
        let v2 = v(json!([{"name": "a", "type": "int"}]));
        let candidate = v(json!([{"name": "a", "type": "long"}]));
        assert!(check(
            CompatibilityLevel::Backward,
            &candidate,
            &[(1, &v1), (2, &v2)]
        )
        .is_empty());
        assert!(!check(
            CompatibilityLevel::BackwardTransitive,
            &candidate,
            &[(1, &v1), (2, &v2)]
        )
        .is_empty());
    }

    #[test]
    fn check_transitive_levels_report_the_newest_failing_version_only() {
        let v1 = v(json!([{"name": "a", "type": "string"}]));
        let v2 = v(json!([{"name": "a", "type": "boolean"}]));
        let v3 = v(json!([{"name": "a", "type": "int"}]));
        let candidate = v(json!([{"name": "a", "type": "long"}]));
        let messages = check(
            CompatibilityLevel::BackwardTransitive,
            &candidate,
            &[(1, &v1), (2, &v2), (3, &v3)],
        );
        assert!(
            messages.contains(&"{oldSchemaVersion: 2}".to_string()),
            "{messages:#?}"
        );
        assert!(
            !messages.iter().any(|m| m == "{oldSchemaVersion: 1}"),
            "{messages:#?}"
        );
        assert_eq!(
            messages
                .iter()
                .filter(|m| m.starts_with("{errorType"))
                .count(),
            1
        );
        assert_eq!(
            messages.last().map(String::as_str),
            Some("{validateFields: 'false', compatibility: 'BACKWARD_TRANSITIVE'}")
        );
    }

    // -- Levels --------------------------------------------------------------------------------

    #[test]
    fn levels_use_the_confluent_spellings() {
        let spellings = [
            "NONE",
            "BACKWARD",
            "BACKWARD_TRANSITIVE",
            "FORWARD",
            "FORWARD_TRANSITIVE",
            "FULL",
            "FULL_TRANSITIVE",
        ];
        for (level, spelling) in CompatibilityLevel::ALL.into_iter().zip(spellings) {
            assert_eq!(level.to_string(), spelling);
            assert_eq!(spelling.parse::<CompatibilityLevel>(), Ok(level));
            assert_eq!(
                spelling.to_lowercase().parse::<CompatibilityLevel>(),
                Ok(level)
            );
            assert_eq!(
                serde_json::to_value(level).expect("serializes"),
                json!(spelling)
            );
            assert_eq!(
                serde_json::from_value::<CompatibilityLevel>(json!(spelling))
                    .expect("deserializes"),
                level
            );
        }
    }

    #[test]
    fn an_unknown_level_is_refused() {
        let error = "SIDEWAYS"
            .parse::<CompatibilityLevel>()
            .expect_err("not a level");
        assert!(error.to_string().contains("SIDEWAYS"));
    }

    #[test]
    fn the_default_level_is_backward() {
        assert_eq!(CompatibilityLevel::default(), CompatibilityLevel::Backward);
    }

    // -- The evolution table -------------------------------------------------------------------

    const OK: bool = true;
    const NO: bool = false;

    /// One schema change, its versions (oldest first; the last is the candidate), and the
    /// expected verdict at NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE,
    /// FULL, FULL_TRANSITIVE. The verdicts come from the rules, worked out by hand:
    /// BACKWARD = the candidate reads the old data, FORWARD = the old schema reads the
    /// candidate's data.
    struct Change {
        what: &'static str,
        versions: Vec<Value>,
        expected: [bool; 7],
    }

    fn change(what: &'static str, versions: Vec<Value>, expected: [bool; 7]) -> Change {
        Change {
            what,
            versions,
            expected,
        }
    }

    fn record_named(name: &str, aliases: &[&str]) -> Value {
        json!({"type": "record", "name": name, "namespace": "com.acme", "aliases": aliases,
               "fields": [{"name": "a", "type": "int"}]})
    }

    fn with_status(symbols: &[&str], default: Option<&str>) -> Value {
        order(json!([{"name": "status", "type": status(symbols, default)}]))
    }

    fn with_address(address_fields: Value) -> Value {
        order(json!([
            {"name": "id", "type": "string"},
            {"name": "address", "type": {"type": "record", "name": "Address", "fields": address_fields}}
        ]))
    }

    fn evolution_table() -> Vec<Change> {
        let a = json!({"name": "a", "type": "int"});
        let street = json!({"name": "street", "type": "string"});
        vec![
            // Verdicts: [NONE, BACKWARD, BACKWARD_T, FORWARD, FORWARD_T, FULL, FULL_T].
            change(
                "field added with a default",
                vec![
                    order(json!([a])),
                    order(json!([a, {"name": "b", "type": "string", "default": ""}])),
                ],
                [OK, OK, OK, OK, OK, OK, OK],
            ),
            change(
                "field added without a default",
                vec![
                    order(json!([a])),
                    order(json!([a, {"name": "b", "type": "string"}])),
                ],
                [OK, NO, NO, OK, OK, NO, NO],
            ),
            change(
                "field without a default removed",
                vec![
                    order(json!([a, {"name": "b", "type": "string"}])),
                    order(json!([a])),
                ],
                [OK, OK, OK, NO, NO, NO, NO],
            ),
            change(
                "field with a default removed",
                vec![
                    order(json!([a, {"name": "b", "type": "string", "default": ""}])),
                    order(json!([a])),
                ],
                [OK, OK, OK, OK, OK, OK, OK],
            ),
            change(
                "field renamed, new field has the old name as alias",
                vec![
                    order(json!([a, {"name": "b", "type": "string"}])),
                    order(json!([a, {"name": "c", "aliases": ["b"], "type": "string"}])),
                ],
                [OK, OK, OK, NO, NO, NO, NO],
            ),
            change(
                "field renamed without an alias",
                vec![
                    order(json!([a, {"name": "b", "type": "string"}])),
                    order(json!([a, {"name": "c", "type": "string"}])),
                ],
                [OK, NO, NO, NO, NO, NO, NO],
            ),
            change(
                "field type promoted from int to long",
                vec![
                    order(json!([{"name": "a", "type": "int"}])),
                    order(json!([{"name": "a", "type": "long"}])),
                ],
                [OK, OK, OK, NO, NO, NO, NO],
            ),
            change(
                "field type changed from int to string",
                vec![
                    order(json!([{"name": "a", "type": "int"}])),
                    order(json!([{"name": "a", "type": "string"}])),
                ],
                [OK, NO, NO, NO, NO, NO, NO],
            ),
            change(
                "enum symbol added",
                vec![
                    with_status(&["A", "B"], None),
                    with_status(&["A", "B", "C"], None),
                ],
                [OK, OK, OK, NO, NO, NO, NO],
            ),
            change(
                "enum symbol removed",
                vec![
                    with_status(&["A", "B", "C"], None),
                    with_status(&["A", "B"], None),
                ],
                [OK, NO, NO, OK, OK, NO, NO],
            ),
            change(
                "enum symbol added, the enum has a default",
                vec![
                    with_status(&["UNKNOWN", "A", "B"], Some("UNKNOWN")),
                    with_status(&["UNKNOWN", "A", "B", "C"], Some("UNKNOWN")),
                ],
                [OK, OK, OK, OK, OK, OK, OK],
            ),
            change(
                "enum symbol removed, the enum has a default",
                vec![
                    with_status(&["UNKNOWN", "A", "B", "C"], Some("UNKNOWN")),
                    with_status(&["UNKNOWN", "A", "B"], Some("UNKNOWN")),
                ],
                [OK, OK, OK, OK, OK, OK, OK],
            ),
            change(
                "nested record field added without a default",
                vec![
                    with_address(json!([street])),
                    with_address(json!([street, {"name": "zip", "type": "string"}])),
                ],
                [OK, NO, NO, OK, OK, NO, NO],
            ),
            change(
                "nested record field added with a default",
                vec![
                    with_address(json!([street])),
                    with_address(json!([street, {"name": "zip", "type": "string", "default": ""}])),
                ],
                [OK, OK, OK, OK, OK, OK, OK],
            ),
            change(
                "array item type changed from int to string",
                vec![
                    order(json!([{"name": "tags", "type": {"type": "array", "items": "int"}}])),
                    order(json!([{"name": "tags", "type": {"type": "array", "items": "string"}}])),
                ],
                [OK, NO, NO, NO, NO, NO, NO],
            ),
            change(
                "array item type promoted from int to long",
                vec![
                    order(json!([{"name": "tags", "type": {"type": "array", "items": "int"}}])),
                    order(json!([{"name": "tags", "type": {"type": "array", "items": "long"}}])),
                ],
                [OK, OK, OK, NO, NO, NO, NO],
            ),
            change(
                "union branch added",
                vec![
                    order(json!([{"name": "x", "type": ["null", "string"]}])),
                    order(json!([{"name": "x", "type": ["null", "string", "int"]}])),
                ],
                [OK, OK, OK, NO, NO, NO, NO],
            ),
            change(
                "union branch removed",
                vec![
                    order(json!([{"name": "x", "type": ["null", "string", "int"]}])),
                    order(json!([{"name": "x", "type": ["null", "string"]}])),
                ],
                [OK, NO, NO, OK, OK, NO, NO],
            ),
            change(
                "field made optional (string to [null, string])",
                vec![
                    order(json!([{"name": "x", "type": "string"}])),
                    order(json!([{"name": "x", "type": ["null", "string"], "default": null}])),
                ],
                [OK, OK, OK, NO, NO, NO, NO],
            ),
            change(
                "record renamed",
                vec![record_named("Order", &[]), record_named("Purchase", &[])],
                [OK, NO, NO, NO, NO, NO, NO],
            ),
            change(
                "record renamed, new name has the old full name as alias",
                vec![
                    record_named("Order", &[]),
                    record_named("Purchase", &["com.acme.Order"]),
                ],
                [OK, OK, OK, NO, NO, NO, NO],
            ),
            // Three versions: the candidate passes against the latest but not against v1.
            change(
                "v1 without b, v2 adds b with a default, v3 drops the default",
                vec![
                    order(json!([a])),
                    order(json!([a, {"name": "b", "type": "string", "default": ""}])),
                    order(json!([a, {"name": "b", "type": "string"}])),
                ],
                [OK, OK, NO, OK, OK, OK, NO],
            ),
            change(
                "v1 with required b, v2 gives b a default, v3 removes b",
                vec![
                    order(json!([a, {"name": "b", "type": "string"}])),
                    order(json!([a, {"name": "b", "type": "string", "default": ""}])),
                    order(json!([a])),
                ],
                [OK, OK, OK, OK, NO, OK, NO],
            ),
        ]
    }

    #[test]
    fn the_evolution_table_gives_the_expected_verdict_at_every_level() {
        let mut wrong = Vec::new();
        for change in evolution_table() {
            let schemas: Vec<Schema> = change.versions.iter().map(parse).collect();
            let Some((candidate, old)) = schemas.split_last() else {
                panic!("{}: no versions", change.what);
            };
            let existing: Vec<(u32, &Schema)> = (1..).zip(old.iter()).collect();
            for (level, expected) in CompatibilityLevel::ALL.into_iter().zip(change.expected) {
                let messages = check(level, candidate, &existing);
                if messages.is_empty() != expected {
                    wrong.push(format!(
                        "{} at {level}: expected {}, got {messages:#?}",
                        change.what,
                        if expected {
                            "compatible"
                        } else {
                            "incompatible"
                        }
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    // -- Properties ----------------------------------------------------------------------------

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use serde_json::{json, Value};

        const PRIMITIVES: [&str; 8] = [
            "null", "boolean", "int", "long", "float", "double", "bytes", "string",
        ];

        /// A schema shape; names are handed out when it is rendered, so they are unique.
        #[derive(Debug, Clone)]
        enum Gen {
            Primitive(&'static str),
            Logical(usize),
            Array(Box<Gen>),
            Map(Box<Gen>),
            /// Distinct primitives, then at most one named type.
            Union(Vec<&'static str>, Option<Box<Gen>>),
            Record(Vec<Gen>),
            Enum(usize, bool),
            Fixed(usize),
            /// A reference to a named type defined earlier (or being defined: recursion).
            Reference(usize),
        }

        fn logical(index: usize) -> Value {
            match index % 5 {
                0 => json!({"type": "int", "logicalType": "date"}),
                1 => json!({"type": "long", "logicalType": "timestamp-millis"}),
                2 => json!({"type": "long", "logicalType": "time-micros"}),
                3 => json!({"type": "string", "logicalType": "uuid"}),
                _ => json!({"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}),
            }
        }

        struct Renderer {
            prefix: &'static str,
            counter: usize,
            defined: Vec<String>,
        }

        impl Renderer {
            fn name(&mut self) -> String {
                self.counter += 1;
                format!("{}{}", self.prefix, self.counter)
            }

            fn render(&mut self, gen: &Gen) -> Value {
                match gen {
                    Gen::Primitive(p) => json!(p),
                    Gen::Logical(i) => logical(*i),
                    Gen::Array(items) => json!({"type": "array", "items": self.render(items)}),
                    Gen::Map(values) => json!({"type": "map", "values": self.render(values)}),
                    Gen::Union(primitives, named) => {
                        let mut branches: Vec<Value> =
                            primitives.iter().map(|p| json!(p)).collect();
                        if let Some(named) = named {
                            branches.push(self.render(named));
                        }
                        Value::Array(branches)
                    }
                    Gen::Record(fields) => {
                        let name = self.name();
                        self.defined.push(name.clone());
                        let fields: Vec<Value> = fields
                            .iter()
                            .enumerate()
                            .map(|(i, f)| json!({"name": format!("f{i}"), "type": self.render(f)}))
                            .collect();
                        json!({"type": "record", "name": name, "fields": fields})
                    }
                    Gen::Enum(symbols, has_default) => {
                        let name = self.name();
                        self.defined.push(name.clone());
                        let symbols: Vec<String> = (0..*symbols).map(|i| format!("S{i}")).collect();
                        let mut schema = json!({"type": "enum", "name": name, "symbols": symbols});
                        if *has_default {
                            schema["default"] = json!("S0");
                        }
                        schema
                    }
                    Gen::Fixed(size) => {
                        let name = self.name();
                        self.defined.push(name.clone());
                        json!({"type": "fixed", "name": name, "size": size})
                    }
                    Gen::Reference(i) => match self.defined.len() {
                        0 => json!("string"),
                        n => json!(self.defined[i % n]),
                    },
                }
            }
        }

        fn named(inner: impl Strategy<Value = Gen> + Clone) -> impl Strategy<Value = Gen> {
            prop_oneof![
                prop::collection::vec(inner, 0..3).prop_map(Gen::Record),
                (1..4usize, any::<bool>()).prop_map(|(n, d)| Gen::Enum(n, d)),
                (1..20usize).prop_map(Gen::Fixed),
            ]
        }

        fn gen(with_references: bool) -> impl Strategy<Value = Gen> {
            let reference_weight = if with_references { 1 } else { 0 };
            let leaf = prop_oneof![
                4 => prop::sample::select(PRIMITIVES.to_vec()).prop_map(Gen::Primitive),
                1 => (0..5usize).prop_map(Gen::Logical),
                1 => (1..4usize, any::<bool>()).prop_map(|(n, d)| Gen::Enum(n, d)),
                1 => (1..20usize).prop_map(Gen::Fixed),
                reference_weight => any::<usize>().prop_map(Gen::Reference),
            ];
            leaf.prop_recursive(4, 40, 4, |inner| {
                prop_oneof![
                    inner.clone().prop_map(|g| Gen::Array(Box::new(g))),
                    inner.clone().prop_map(|g| Gen::Map(Box::new(g))),
                    (
                        prop::sample::subsequence(PRIMITIVES.to_vec(), 1..4),
                        prop::option::of(named(inner.clone()).prop_map(Box::new)),
                    )
                        .prop_map(|(p, n)| Gen::Union(p, n)),
                    prop::collection::vec(inner, 0..5).prop_map(Gen::Record),
                ]
            })
        }

        /// A JSON default value that is valid for `gen`.
        fn default_for(gen: &Gen) -> Value {
            match gen {
                Gen::Primitive("null") => Value::Null,
                Gen::Primitive("boolean") => json!(false),
                Gen::Primitive("int" | "long") => json!(0),
                Gen::Primitive("float" | "double") => json!(0.0),
                Gen::Primitive(_) => json!(""),
                Gen::Logical(i) => match i % 5 {
                    0..=2 => json!(0),
                    3 => json!("00000000-0000-0000-0000-000000000000"),
                    _ => json!("\u{0}"),
                },
                Gen::Array(_) => json!([]),
                Gen::Map(_) => json!({}),
                Gen::Union(primitives, named) => match (primitives.first(), named) {
                    (Some(first), _) => default_for(&Gen::Primitive(first)),
                    (None, Some(named)) => default_for(named),
                    (None, None) => Value::Null,
                },
                Gen::Record(fields) => Value::Object(
                    fields
                        .iter()
                        .enumerate()
                        .map(|(i, f)| (format!("f{i}"), default_for(f)))
                        .collect(),
                ),
                Gen::Enum(_, _) => json!("S0"),
                Gen::Fixed(size) => json!("a".repeat(*size)),
                Gen::Reference(_) => json!(""),
            }
        }

        fn render(gen: &Gen) -> Value {
            Renderer {
                prefix: "T",
                counter: 0,
                defined: Vec::new(),
            }
            .render(gen)
        }

        fn parse(value: &Value) -> Result<Schema, TestCaseError> {
            Schema::parse_str(&value.to_string()).map_err(|e| {
                TestCaseError::fail(format!("generated schema does not parse: {e}\n{value}"))
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_schema_is_compatible_with_itself_at_every_level(shape in gen(true)) {
                let json = render(&shape);
                // Two separate parses, so that nothing is equal merely by identity.
                let first = parse(&json)?;
                let second = parse(&json)?;
                let third = parse(&json)?;
                prop_assert!(can_read(&first, &second).is_empty(), "{}", json);
                for level in CompatibilityLevel::ALL {
                    let messages = check(level, &first, &[(1, &second), (2, &third)]);
                    prop_assert!(messages.is_empty(), "{} at {}: {:?}", json, level, messages);
                }
            }

            #[test]
            fn adding_a_field_with_a_default_is_backward_compatible(
                fields in prop::collection::vec(gen(true), 0..5),
                added in gen(false),
            ) {
                let mut renderer = Renderer { prefix: "T", counter: 0, defined: Vec::new() };
                let old = json!({
                    "type": "record", "name": "Root", "namespace": "com.example.gen",
                    "fields": fields.iter().enumerate()
                        .map(|(i, f)| json!({"name": format!("f{i}"), "type": renderer.render(f)}))
                        .collect::<Vec<_>>(),
                });
                let mut new = old.clone();
                let added_type = Renderer { prefix: "Added", counter: 0, defined: Vec::new() }.render(&added);
                let added_field = json!({"name": "added", "type": added_type, "default": default_for(&added)});
                match new["fields"].as_array_mut() {
                    Some(fields) => fields.push(added_field),
                    None => return Err(TestCaseError::fail("fields is an array")),
                }
                let old_schema = parse(&old)?;
                let new_schema = parse(&new)?;
                for level in [
                    CompatibilityLevel::Backward,
                    CompatibilityLevel::BackwardTransitive,
                    CompatibilityLevel::Full,
                    CompatibilityLevel::FullTransitive,
                ] {
                    let messages = check(level, &new_schema, &[(1, &old_schema)]);
                    prop_assert!(messages.is_empty(), "{} at {}: {:?}", new, level, messages);
                }
            }
        }
    }
}
