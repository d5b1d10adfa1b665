//! Mapping between [`OrderEvent`] and Avro [`Value`]s of the contract schema, by hand.
//!
//! Why by hand and not through serde: the schema uses logical types (`decimal`,
//! `timestamp-millis`, `uuid`) whose serde mapping in `apache-avro` is implicit and easy to
//! get subtly wrong (a decimal serialized as a float, a timestamp as a string), and decoding
//! must re-run every domain rule. Writing the [`Value`] tree explicitly keeps the wire shape
//! visible in one place and lets [`OrderEvent::from_avro`] report *all* broken fields of a
//! record as one [`DomainError`] instead of panicking or stopping at the first.
//!
//! Decimals are written as 8-byte big-endian two's complement (sign-extended `i64` cents),
//! not in the minimal length. Both are valid Avro; the fixed width matters because
//! `apache-avro`'s schema resolution refuses a `decimal(18, 2)` value stored in fewer bytes
//! than 18 digits need, so minimal-length values written by *other* producers are widened the
//! same way before resolution (see [`widen_decimals`]).

use std::collections::HashMap;

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Decimal;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{
    Currency, CustomerId, EventType, ItemId, Money, Order, OrderEvent, OrderId, OrderItem,
    OrderStatus, Quantity,
};
use crate::error::{ContractError, DomainError, FieldError, Violation};
use crate::schema::order_event_schema;

/// The number of bytes of every decimal this crate writes: enough for precision 18.
pub const DECIMAL_BYTES: usize = 8;

impl OrderEvent {
    /// The event as an Avro record of the contract schema: fields in schema order, amounts as
    /// [`Value::Decimal`], timestamps as [`Value::TimestampMillis`], the event id as
    /// [`Value::Uuid`] and enums as [`Value::Enum`].
    pub fn to_avro(&self) -> Value {
        let order = self.order();
        let items = order
            .items()
            .iter()
            .map(|item| {
                Value::Record(vec![
                    (
                        "itemId".to_owned(),
                        Value::String(item.item_id().as_str().to_owned()),
                    ),
                    (
                        "quantity".to_owned(),
                        Value::Int(i32::from(item.quantity())),
                    ),
                    ("price".to_owned(), decimal(item.price())),
                ])
            })
            .collect();
        Value::Record(vec![
            (
                "orderId".to_owned(),
                Value::String(order.order_id().as_str().to_owned()),
            ),
            (
                "customerId".to_owned(),
                Value::String(order.customer_id().as_str().to_owned()),
            ),
            (
                "orderDate".to_owned(),
                Value::TimestampMillis(order.order_date().timestamp_millis()),
            ),
            ("items".to_owned(), Value::Array(items)),
            ("totalAmount".to_owned(), decimal(order.total_amount())),
            (
                "currency".to_owned(),
                Value::String(order.currency().code().to_owned()),
            ),
            (
                "status".to_owned(),
                Value::Enum(
                    order.status().avro_index(),
                    order.status().as_str().to_owned(),
                ),
            ),
            ("eventId".to_owned(), Value::Uuid(self.event_id())),
            (
                "eventType".to_owned(),
                Value::Enum(
                    self.event_type().avro_index(),
                    self.event_type().as_str().to_owned(),
                ),
            ),
            ("version".to_owned(), Value::Long(self.version())),
            (
                "occurredAt".to_owned(),
                Value::TimestampMillis(self.occurred_at().timestamp_millis()),
            ),
        ])
    }

    /// The event as an Avro binary datum of the contract schema (no framing, no header).
    pub fn to_avro_datum(&self) -> Result<Vec<u8>, ContractError> {
        let schema = order_event_schema()?;
        GenericDatumWriter::builder(schema)
            .build()
            .and_then(|writer| writer.write_value_to_vec(self.to_avro()))
            .map_err(|e| ContractError::Encode(e.to_string()))
    }

    /// Reads an event from an Avro record **already resolved to the contract schema** (extra
    /// writer fields dropped, defaults filled in), re-checking every domain rule.
    ///
    /// Never panics: a value of the wrong shape, or one that breaks domain rules, becomes a
    /// [`DomainError`] listing every failing field (with paths like `items[2].price`).
    pub fn from_avro(value: Value) -> Result<OrderEvent, DomainError> {
        let mut record = Record::new(value, "")?;

        let mut order_errs = Errors::default();
        let order_id = order_errs.keep(record.string("orderId").and_then(OrderId::parse));
        let customer_id = order_errs.keep(record.string("customerId").and_then(CustomerId::parse));
        let order_date = order_errs.keep(record.timestamp("orderDate"));
        let items = order_errs.keep(record.take("items").and_then(items_from_avro));
        let total_amount = order_errs.keep(record.money("totalAmount"));
        let currency = order_errs.keep(record.string("currency").and_then(|s| Currency::parse(&s)));
        let status = order_errs.keep(record.symbol("status").and_then(|s| OrderStatus::parse(&s)));

        let mut meta_errs = Errors::default();
        let event_id = meta_errs.keep(record.uuid("eventId"));
        let event_type = meta_errs.keep(
            record
                .symbol("eventType")
                .and_then(|s| EventType::parse(&s)),
        );
        let version = meta_errs.keep(record.long("version"));
        let occurred_at = meta_errs.keep(record.timestamp("occurredAt"));

        let order = match (
            order_id,
            customer_id,
            order_date,
            items,
            total_amount,
            currency,
            status,
        ) {
            (
                Some(order_id),
                Some(customer_id),
                Some(order_date),
                Some(items),
                Some(total_amount),
                Some(currency),
                Some(status),
            ) => Order::new(
                order_id,
                customer_id,
                order_date,
                items,
                total_amount,
                currency,
                status,
            ),
            _ => Err(order_errs.into_error()),
        };
        match (event_id, event_type, version, occurred_at) {
            (Some(event_id), Some(event_type), Some(version), Some(occurred_at)) => {
                // Reports the order's errors and the metadata rules' together.
                OrderEvent::assemble(event_id, event_type, version, occurred_at, order)
            }
            _ => {
                let mut all = Errors::default();
                all.keep(order);
                all.0.extend(meta_errs.0);
                Err(all.into_error())
            }
        }
    }
}

/// Widens every [`Value::Decimal`] in `value` shorter than [`DECIMAL_BYTES`] to that length
/// (sign-extended, so the number is unchanged).
///
/// `apache-avro` 0.22 rejects resolving a decimal whose byte length could not hold the
/// reader's precision, even though the Avro specification lets writers use any length (Java
/// writes the minimal one). Widening before resolution makes such values readable; values
/// longer than that are left alone and range-checked by [`OrderEvent::from_avro`].
pub fn widen_decimals(value: Value) -> Value {
    match value {
        Value::Decimal(d) => match <Vec<u8>>::try_from(&d) {
            Ok(bytes) if bytes.len() < DECIMAL_BYTES => {
                let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
                let mut wide = vec![if negative { 0xFF } else { 0x00 }; DECIMAL_BYTES];
                wide[DECIMAL_BYTES - bytes.len()..].copy_from_slice(&bytes);
                Value::Decimal(Decimal::from(wide))
            }
            _ => Value::Decimal(d),
        },
        Value::Record(fields) => Value::Record(
            fields
                .into_iter()
                .map(|(name, v)| (name, widen_decimals(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(widen_decimals).collect()),
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k, widen_decimals(v)))
                .collect(),
        ),
        Value::Union(i, inner) => Value::Union(i, Box::new(widen_decimals(*inner))),
        other => other,
    }
}

fn decimal(money: Money) -> Value {
    Value::Decimal(Decimal::from(money.cents().to_be_bytes()))
}

/// Collects field errors while parsing, so every broken field is reported.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn keep<T>(&mut self, result: Result<T, DomainError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.extend(e.into_errors());
                None
            }
        }
    }

    /// The result if no error was collected, else every collected error plus the result's
    /// own.
    fn finish<T>(mut self, result: Result<T, DomainError>) -> Result<T, DomainError> {
        match result {
            Ok(v) if self.0.is_empty() => Ok(v),
            Ok(_) => Err(self.into_error()),
            Err(e) => {
                self.0.extend(e.into_errors());
                Err(self.into_error())
            }
        }
    }

    /// All collected errors; only called after at least one `keep` failed.
    fn into_error(self) -> DomainError {
        DomainError::from_errors(self.0).unwrap_or_else(|| {
            DomainError::new("event", Violation::Malformed("invalid record".into()))
        })
    }
}

/// The fields of an Avro record by name, with typed accessors that name the field (under
/// `path`) in their errors.
struct Record {
    path: String,
    fields: HashMap<String, Value>,
}

impl Record {
    fn new(value: Value, path: &str) -> Result<Self, DomainError> {
        match unwrap_union(value) {
            Value::Record(fields) => Ok(Record {
                path: path.to_owned(),
                fields: fields.into_iter().collect(),
            }),
            other => Err(malformed(
                if path.is_empty() { "event" } else { path },
                "a record",
                &other,
            )),
        }
    }

    fn path(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    fn take(&mut self, field: &str) -> Result<Value, DomainError> {
        self.fields.remove(field).map(unwrap_union).ok_or_else(|| {
            DomainError::new(
                self.path(field),
                Violation::Malformed("is missing from the record".into()),
            )
        })
    }

    fn string(&mut self, field: &str) -> Result<String, DomainError> {
        let path = self.path(field);
        match self.take(field)? {
            Value::String(s) => Ok(s),
            other => Err(malformed(&path, "a string", &other)),
        }
    }

    fn symbol(&mut self, field: &str) -> Result<String, DomainError> {
        let path = self.path(field);
        match self.take(field)? {
            Value::Enum(_, s) | Value::String(s) => Ok(s),
            other => Err(malformed(&path, "an enum symbol", &other)),
        }
    }

    fn long(&mut self, field: &str) -> Result<i64, DomainError> {
        let path = self.path(field);
        match self.take(field)? {
            Value::Long(v) => Ok(v),
            Value::Int(v) => Ok(i64::from(v)),
            other => Err(malformed(&path, "a long", &other)),
        }
    }

    fn timestamp(&mut self, field: &str) -> Result<DateTime<Utc>, DomainError> {
        let path = self.path(field);
        let millis = match self.take(field)? {
            Value::TimestampMillis(v) | Value::Long(v) => v,
            other => return Err(malformed(&path, "a timestamp-millis", &other)),
        };
        DateTime::from_timestamp_millis(millis)
            .ok_or_else(|| DomainError::new(path, Violation::TimestampOutOfRange(millis)))
    }

    fn uuid(&mut self, field: &str) -> Result<Uuid, DomainError> {
        let path = self.path(field);
        match self.take(field)? {
            Value::Uuid(u) => Ok(u),
            Value::String(s) => {
                Uuid::parse_str(&s).map_err(|_| DomainError::new(path, Violation::NotAUuid(s)))
            }
            other => Err(malformed(&path, "a uuid", &other)),
        }
    }

    fn money(&mut self, field: &str) -> Result<Money, DomainError> {
        let path = self.path(field);
        let bytes = match self.take(field)? {
            Value::Decimal(d) => <Vec<u8>>::try_from(&d)
                .map_err(|e| DomainError::new(path.clone(), Violation::Malformed(e.to_string())))?,
            Value::Bytes(b) => b,
            other => return Err(malformed(&path, "a decimal", &other)),
        };
        match unscaled_to_i128(&bytes).map(i64::try_from) {
            Some(Ok(cents)) => Money::from_cents(cents).map_err(|e| e.renamed(Money::FIELD, &path)),
            Some(Err(_)) | None if bytes.first().is_some_and(|b| b & 0x80 != 0) => {
                Err(DomainError::new(path, Violation::Negative))
            }
            _ => Err(DomainError::new(
                path,
                Violation::TooLarge {
                    max: Money::MAX.to_string(),
                    actual: format!("a {}-byte unscaled value", bytes.len()),
                },
            )),
        }
    }

    fn quantity(&mut self, field: &str) -> Result<Quantity, DomainError> {
        let path = self.path(field);
        match self.take(field)? {
            Value::Int(v) => Quantity::new(i64::from(v)),
            Value::Long(v) => Quantity::new(v),
            other => return Err(malformed(&path, "an int", &other)),
        }
        .map_err(|e| e.renamed(Quantity::FIELD, &path))
    }
}

fn items_from_avro(value: Value) -> Result<Vec<OrderItem>, DomainError> {
    let values = match value {
        Value::Array(values) => values,
        other => return Err(malformed("items", "an array", &other)),
    };
    let mut errs = Errors::default();
    let mut items = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let path = format!("items[{i}]");
        let item = Record::new(v, &path).and_then(|mut r| {
            let mut item_errs = Errors::default();
            let item_id_path = r.path("itemId");
            let item_id = item_errs.keep(r.string("itemId").and_then(|s| {
                ItemId::parse(s).map_err(|e| e.renamed(ItemId::FIELD, &item_id_path))
            }));
            let quantity = item_errs.keep(r.quantity("quantity"));
            let price = item_errs.keep(r.money("price"));
            match (item_id, quantity, price) {
                (Some(item_id), Some(quantity), Some(price)) => item_errs.finish(
                    OrderItem::new(item_id, quantity, price).map_err(|e| e.under(&path, "item")),
                ),
                _ => Err(item_errs.into_error()),
            }
        });
        if let Some(item) = errs.keep(item) {
            items.push(item);
        }
    }
    errs.finish(Ok(items))
}

/// Big-endian two's complement bytes to a number; `None` if it does not fit an `i128`.
fn unscaled_to_i128(bytes: &[u8]) -> Option<i128> {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let sign_byte = if negative { 0xFF } else { 0x00 };
    // Drop redundant sign-extension bytes.
    let mut start = 0;
    while bytes.len() - start > 16 && bytes[start] == sign_byte {
        start += 1;
    }
    let significant = &bytes[start..];
    if significant.len() > 16 {
        return None;
    }
    let mut wide = [sign_byte; 16];
    wide[16 - significant.len()..].copy_from_slice(significant);
    let value = i128::from_be_bytes(wide);
    // If sign bytes were dropped, the remaining top bit must still carry the same sign.
    (value.is_negative() == negative).then_some(value)
}

fn unwrap_union(value: Value) -> Value {
    match value {
        Value::Union(_, inner) => unwrap_union(*inner),
        other => other,
    }
}

fn malformed(path: &str, expected: &str, got: &Value) -> DomainError {
    DomainError::new(
        path,
        Violation::Malformed(format!("expected {expected}, got {}", kind(got))),
    )
}

/// A short name of a value's Avro kind, for error messages (never the value itself).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int(_) => "int",
        Value::Long(_) => "long",
        Value::Float(_) => "float",
        Value::Double(_) => "double",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "string",
        Value::Fixed(..) => "fixed",
        Value::Enum(..) => "enum",
        Value::Union(..) => "union",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Record(_) => "record",
        Value::Date(_) => "date",
        Value::Decimal(_) | Value::BigDecimal(_) => "decimal",
        Value::TimeMillis(_) | Value::TimeMicros(_) => "time",
        Value::TimestampMillis(_)
        | Value::TimestampMicros(_)
        | Value::TimestampNanos(_)
        | Value::LocalTimestampMillis(_)
        | Value::LocalTimestampMicros(_)
        | Value::LocalTimestampNanos(_) => "timestamp",
        Value::Duration(_) => "duration",
        Value::Uuid(_) => "uuid",
    }
}
