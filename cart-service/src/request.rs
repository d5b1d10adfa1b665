//! Parsing create and update bodies into commands, collecting every problem at once.
//!
//! Three steps, each listing every problem it finds, so a wrong type, an unknown field and a bad
//! value in three fields give one 400 listing all three:
//! 1. *shape*: the JSON object is read field by field (known names, JSON types, required
//!    fields); a field of the wrong type is reported and left out of the next steps;
//! 2. *rules*: the rest is deserialized into the request DTOs of [`crate::routes::dto`], whose
//!    `#[derive(Validate)]` field rules (lengths, ranges, patterns, each item) are checked; the
//!    same limits are in the OpenAPI document;
//! 3. *domain*: fields that passed are parsed into the contract's newtypes (`OrderId`, `Money`,
//!    …), which stay the authority, plus the rules across fields (`numItems` against `items`).
//!
//! Past this module only valid domain values exist.
//!
//! Listing every problem must not turn a small mistake into a big answer: a 60 KB body of 20,000
//! empty items has 60,000 problems. [`invalid`] lists the first [`MAX_LISTED_PROBLEMS`] and says
//! how many there were in all, so an error answer stays a few kilobytes whatever the body.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use order_events::{
    Currency, CustomerId, DomainError, ItemId, Money, OrderId, OrderItem, OrderStatus, Quantity,
};
use serde_json::{Map, Value};
use service_kit::http_error::{FieldProblem, HttpError};
use validator::{Validate, ValidationError, ValidationErrors, ValidationErrorsKind};

use crate::routes::dto::{CreateOrderRequest, OrderItemRequest, UpdateOrderRequest};

/// The most problems one error answer lists; the rest are counted, not listed.
pub(crate) const MAX_LISTED_PROBLEMS: usize = 20;

/// The field of the last entry of a truncated list, which says how many problems there were.
pub(crate) const TRUNCATED_FIELD: &str = "(more)";

/// A 400 answer `message` listing the first [`MAX_LISTED_PROBLEMS`] problems. When there are
/// more, the message gives the total and a last entry (field [`TRUNCATED_FIELD`]) says how many
/// were left out, keeping the services' error shape.
pub(crate) fn invalid(message: &str, mut problems: Vec<FieldProblem>) -> HttpError {
    let total = problems.len();
    if total <= MAX_LISTED_PROBLEMS {
        return HttpError::bad_request(message).with_errors(problems);
    }
    problems.truncate(MAX_LISTED_PROBLEMS);
    problems.push(FieldProblem {
        field: TRUNCATED_FIELD.to_string(),
        message: format!(
            "{} more problems not listed; {total} in total",
            total - MAX_LISTED_PROBLEMS
        ),
    });
    HttpError::bad_request(format!(
        "{message}: {total} problems, the first {MAX_LISTED_PROBLEMS} listed"
    ))
    .with_errors(problems)
}

/// A valid create request; `None` fields are generated.
#[derive(Debug)]
pub(crate) struct CreateOrder {
    pub(crate) order_id: OrderId,
    pub(crate) customer_id: Option<CustomerId>,
    pub(crate) num_items: Option<usize>,
    pub(crate) items: Option<Vec<OrderItem>>,
    pub(crate) currency: Option<Currency>,
    pub(crate) order_date: Option<DateTime<Utc>>,
    pub(crate) total_amount: Option<Money>,
}

/// A valid update request.
#[derive(Debug)]
pub(crate) struct UpdateOrder {
    pub(crate) order_id: OrderId,
    pub(crate) status: OrderStatus,
}

/// The JSON type a field must have.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    /// A JSON number or a string.
    Amount,
    /// An array of item objects.
    Items,
}

/// One field of a body: its JSON name, its Rust name (validator's key) and type.
struct Field {
    json: &'static str,
    rust: &'static str,
    kind: Kind,
    required: bool,
}

const fn field(json: &'static str, rust: &'static str, kind: Kind, required: bool) -> Field {
    Field {
        json,
        rust,
        kind,
        required,
    }
}

const CREATE: [Field; 8] = [
    field("orderId", "order_id", Kind::Text, true),
    field("numItems", "num_items", Kind::Integer, false),
    field("customerId", "customer_id", Kind::Text, false),
    field("items", "items", Kind::Items, false),
    field("currency", "currency", Kind::Text, false),
    field("orderDate", "order_date", Kind::Text, false),
    field("totalAmount", "total_amount", Kind::Amount, false),
    field("status", "status", Kind::Text, false),
];
/// Where `items` is in [`CREATE`].
const ITEMS_FIELD: usize = 3;
const ITEM: [Field; 3] = [
    field("itemId", "item_id", Kind::Text, true),
    field("quantity", "quantity", Kind::Integer, true),
    field("price", "price", Kind::Amount, true),
];
const UPDATE: [Field; 2] = [
    field("orderId", "order_id", Kind::Text, true),
    field("status", "status", Kind::Text, true),
];

/// Where a problem is, for ordering the answer as the body reads: (field of the body, item
/// (0: the field itself, i + 1: item i), field of the item).
type Key = (usize, usize, usize);

/// Every problem found so far, and which fields have one (later steps skip those).
#[derive(Default)]
struct Problems {
    list: Vec<(Key, FieldProblem)>,
    flagged: HashSet<Key>,
}

impl Problems {
    fn add(&mut self, key: Key, field: String, message: impl Into<String>) {
        self.flagged.insert(key);
        self.list.push((
            key,
            FieldProblem {
                field,
                message: message.into(),
            },
        ));
    }

    fn has(&self, key: Key) -> bool {
        self.flagged.contains(&key)
    }

    fn domain(&mut self, key: Key, field: &str, error: DomainError) {
        for e in error.into_errors() {
            // The contract names the field itself; report it at this request's path.
            self.add(key, field.to_string(), e.violation.to_string());
        }
    }

    /// The validator's findings for one struct; fields with a shape problem are skipped (their
    /// value was left out, so a rule failing on the default says nothing).
    fn rules(
        &mut self,
        errors: &ValidationErrors,
        fields: &[Field],
        key: impl Fn(usize) -> Key,
        path: impl Fn(&str) -> String,
    ) {
        for (i, f) in fields.iter().enumerate() {
            if self.has(key(i)) {
                continue;
            }
            if let Some(ValidationErrorsKind::Field(list)) = errors.errors().get(f.rust) {
                for e in list {
                    self.add(key(i), path(f.json), message(e));
                }
            }
        }
    }

    /// The problems in body order (stable: same place keeps the order found).
    fn into_sorted(mut self) -> Vec<FieldProblem> {
        self.list.sort_by_key(|(key, _)| *key);
        self.list.into_iter().map(|(_, p)| p).collect()
    }
}

/// A validator error as a sentence, with the offending size or value.
fn message(error: &ValidationError) -> String {
    if let Some(message) = &error.message {
        return message.to_string();
    }
    let param = |name: &str| error.params.get(name).map(Value::to_string);
    let bounds = (param("min"), param("max"));
    match (error.code.as_ref(), error.params.get("value")) {
        ("length", Some(Value::Array(list))) => match (list.len(), bounds) {
            (0, _) => "must not be empty".to_string(),
            (n, (Some(min), Some(max))) => format!("must have {min} to {max} items, got {n}"),
            (n, _) => format!("has a wrong number of items: {n}"),
        },
        ("length", Some(Value::String(text))) => match (text.chars().count(), bounds) {
            (0, _) => "must not be empty".to_string(),
            (n, (Some(min), Some(max))) => {
                format!("must be {min} to {max} characters long, got {n}")
            }
            (n, _) => format!("has a wrong length: {n}"),
        },
        ("range", Some(value)) => match bounds {
            (Some(min), Some(max)) => format!("must be between {min} and {max}, got {value}"),
            _ => format!("is out of range: {value}"),
        },
        (code, _) => format!("breaks the rule '{code}'"),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

/// Step 1 for one object: unknown names, missing required fields and wrong JSON types are
/// problems; what has the right type is returned for the next steps (`null` counts as absent).
fn shape(
    object: &Map<String, Value>,
    fields: &[Field],
    key: impl Fn(usize) -> Key,
    path: impl Fn(&str) -> String,
    problems: &mut Problems,
) -> Map<String, Value> {
    let known: Vec<&str> = fields.iter().map(|f| f.json).collect();
    for name in object.keys() {
        if !known.contains(&name.as_str()) {
            problems.add(
                key(fields.len()),
                path(name),
                format!("unknown field; expected one of: {}", known.join(", ")),
            );
        }
    }
    let mut kept = Map::new();
    for (i, f) in fields.iter().enumerate() {
        let Some(value) = object.get(f.json).filter(|v| !v.is_null()) else {
            if f.required {
                problems.add(key(i), path(f.json), "is required");
            }
            continue;
        };
        let wrong = match (f.kind, value) {
            (Kind::Text, Value::String(_)) => None,
            (Kind::Text, other) => Some(format!("must be a string, got {}", kind(other))),
            (Kind::Integer, v) if v.as_i64().is_some() => None,
            (Kind::Integer, other) => Some(format!("must be a whole number, got {}", shown(other))),
            (Kind::Amount, Value::Number(_) | Value::String(_)) => None,
            (Kind::Amount, other) => Some(format!(
                "must be a decimal number such as 19.99, got {}",
                kind(other)
            )),
            (Kind::Items, Value::Array(_)) => None,
            (Kind::Items, other) => Some(format!("must be an array, got {}", kind(other))),
        };
        match wrong {
            Some(message) => problems.add(key(i), path(f.json), message),
            None => {
                kept.insert(f.json.to_string(), value.clone());
            }
        }
    }
    kept
}

/// Step 2: deserializes what passed step 1 (its types are right, so this cannot fail on them).
fn deserialize<T: serde::de::DeserializeOwned + Default>(
    kept: Map<String, Value>,
    problems: &mut Problems,
) -> T {
    serde_json::from_value(Value::Object(kept)).unwrap_or_else(|e| {
        problems.add(
            (0, 0, 0),
            String::new(),
            format!("the body could not be read: {e}"),
        );
        T::default()
    })
}

/// Reads a create-order body.
pub(crate) fn create(body: &Map<String, Value>) -> Result<CreateOrder, Vec<FieldProblem>> {
    let mut problems = Problems::default();
    let top = |i| (i, 0, 0);
    // The place of a field of `CREATE` by its JSON name.
    let at = |name: &str| {
        top(CREATE
            .iter()
            .position(|f| f.json == name)
            .unwrap_or(CREATE.len()))
    };
    let mut kept = shape(body, &CREATE, top, str::to_string, &mut problems);
    if let Some(Value::Array(list)) = kept.get_mut("items") {
        for (n, value) in list.iter_mut().enumerate() {
            let at = move |i| (ITEMS_FIELD, n + 1, i);
            let checked = match &*value {
                Value::Object(object) => shape(
                    object,
                    &ITEM,
                    at,
                    |f| format!("items[{n}].{f}"),
                    &mut problems,
                ),
                other => {
                    problems.add(
                        at(0),
                        format!("items[{n}]"),
                        format!("must be an object, got {}", kind(other)),
                    );
                    for i in 1..=ITEM.len() {
                        problems.flagged.insert(at(i));
                    }
                    Map::new()
                }
            };
            *value = Value::Object(checked);
        }
    }
    let request: CreateOrderRequest = deserialize(kept, &mut problems);
    if let Err(errors) = request.validate() {
        problems.rules(&errors, &CREATE, top, str::to_string);
    }
    // Each item by itself: validator's `nested` cannot sit next to `length` on one field.
    for (n, item) in request.items.iter().flatten().enumerate() {
        if let Err(errors) = item.validate() {
            problems.rules(
                &errors,
                &ITEM,
                |i| (ITEMS_FIELD, n + 1, i),
                |f| format!("items[{n}].{f}"),
            );
        }
    }
    let CreateOrderRequest {
        order_id,
        num_items,
        customer_id,
        items,
        currency,
        order_date,
        total_amount,
        status,
    } = request;

    // Step 3: the domain's newtypes, for what passed the steps before.
    let p = &mut problems;
    let order_id = if p.has(at("orderId")) {
        None
    } else {
        OrderId::parse(order_id.as_str())
            .map_err(|e| p.domain(at("orderId"), "orderId", e))
            .ok()
    };
    let customer_id = match customer_id {
        Some(c) if !p.has(at("customerId")) => CustomerId::parse(c.as_str())
            .map_err(|e| p.domain(at("customerId"), "customerId", e))
            .ok(),
        _ => None,
    };
    let currency = match currency {
        Some(c) if !p.has(at("currency")) => Currency::parse(&c)
            .map_err(|e| p.domain(at("currency"), "currency", e))
            .ok(),
        _ => None,
    };
    let order_date = match order_date {
        Some(text) if !p.has(at("orderDate")) => match DateTime::parse_from_rfc3339(&text) {
            Ok(d) => Some(d.with_timezone(&Utc)),
            Err(e) => {
                p.add(
                    at("orderDate"),
                    "orderDate".into(),
                    format!("must be an ISO 8601 date-time such as 2026-01-13T10:30:00Z ({e})"),
                );
                None
            }
        },
        _ => None,
    };
    let total_amount = match total_amount {
        Some(amount) if !p.has(at("totalAmount")) => Money::parse(&amount.0)
            .map_err(|e| p.domain(at("totalAmount"), "totalAmount", e))
            .ok(),
        _ => None,
    };
    if let Some(text) = status.filter(|_| !p.has(at("status"))) {
        match OrderStatus::parse(&text) {
            Ok(OrderStatus::Pending) => {}
            Ok(other) => p.add(
                at("status"),
                "status".into(),
                format!("a new order starts as pending, got {other}"),
            ),
            Err(e) => p.domain(at("status"), "status", e),
        }
    }
    let given_items = items.is_some();
    let items = items.map(|list| {
        list.into_iter()
            .enumerate()
            .filter_map(|(n, item)| self::item(n, item, p))
            .collect::<Vec<_>>()
    });
    let num_items = num_items.filter(|_| !p.has(at("numItems")));
    if let (Some(n), Some(list)) = (num_items, body.get("items").and_then(Value::as_array)) {
        if usize::try_from(n).ok() != Some(list.len()) && !p.has(at("items")) {
            p.add(
                at("numItems"),
                "numItems".into(),
                format!("is {n} but {} items were given", list.len()),
            );
        }
    }
    if !given_items
        && !p.has(at("numItems"))
        && !p.has(at("items"))
        && body.get("numItems").is_none_or(Value::is_null)
    {
        p.add(
            at("numItems"),
            "numItems".into(),
            "is required when no items are given",
        );
    }
    match order_id {
        Some(order_id) if problems.list.is_empty() => Ok(CreateOrder {
            order_id,
            customer_id,
            num_items: num_items.and_then(|n| usize::try_from(n).ok()),
            items,
            currency,
            order_date,
            total_amount,
        }),
        _ => Err(problems.into_sorted()),
    }
}

/// Step 3 for one item that passed the steps before.
fn item(n: usize, item: OrderItemRequest, p: &mut Problems) -> Option<OrderItem> {
    let at = |name: &str| {
        let i = ITEM
            .iter()
            .position(|f| f.json == name)
            .unwrap_or(ITEM.len());
        (ITEMS_FIELD, n + 1, i)
    };
    let path = |f: &str| format!("items[{n}].{f}");
    let id = if p.has(at("itemId")) {
        None
    } else {
        ItemId::parse(item.item_id.as_str())
            .map_err(|e| p.domain(at("itemId"), &path("itemId"), e))
            .ok()
    };
    let quantity = if p.has(at("quantity")) {
        None
    } else {
        Quantity::new(item.quantity)
            .map_err(|e| p.domain(at("quantity"), &path("quantity"), e))
            .ok()
    };
    let price = if p.has(at("price")) {
        None
    } else {
        match Money::parse(&item.price.0) {
            Ok(m) if m.is_positive() => Some(m),
            Ok(_) => {
                p.add(at("price"), path("price"), "must be greater than zero");
                None
            }
            Err(e) => {
                p.domain(at("price"), &path("price"), e);
                None
            }
        }
    };
    let (id, quantity, price) = (id?, quantity?, price?);
    OrderItem::new(id, quantity, price)
        .map_err(|e| {
            for e in e.into_errors() {
                p.add(at(&e.field), path(&e.field), e.violation.to_string());
            }
        })
        .ok()
}

/// Reads an update-order body.
pub(crate) fn update(body: &Map<String, Value>) -> Result<UpdateOrder, Vec<FieldProblem>> {
    let mut problems = Problems::default();
    let at = |i| (i, 0, 0);
    let kept = shape(body, &UPDATE, at, str::to_string, &mut problems);
    let request: UpdateOrderRequest = deserialize(kept, &mut problems);
    if let Err(errors) = request.validate() {
        problems.rules(&errors, &UPDATE, at, str::to_string);
    }
    let p = &mut problems;
    let order_id = if p.has(at(0)) {
        None
    } else {
        OrderId::parse(request.order_id.as_str())
            .map_err(|e| p.domain(at(0), "orderId", e))
            .ok()
    };
    let status = if p.has(at(1)) {
        None
    } else {
        OrderStatus::parse(&request.status)
            .map_err(|e| p.domain(at(1), "status", e))
            .ok()
    };
    match (order_id, status) {
        (Some(order_id), Some(status)) if problems.list.is_empty() => {
            Ok(UpdateOrder { order_id, status })
        }
        _ => Err(problems.into_sorted()),
    }
}

/// Domain errors of a whole order, as field problems.
pub(crate) fn problems(error: DomainError) -> Vec<FieldProblem> {
    error
        .into_errors()
        .into_iter()
        .map(|e| FieldProblem {
            field: e.field,
            message: e.violation.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn fields(result: Result<CreateOrder, Vec<FieldProblem>>) -> Vec<String> {
        match result {
            Ok(_) => vec![],
            Err(problems) => problems.into_iter().map(|p| p.field).collect(),
        }
    }

    #[test]
    fn the_seed_example_is_valid() {
        assert!(create(&object(json!({"orderId": "ORDER-001", "numItems": 3}))).is_ok());
    }

    #[test]
    fn every_bad_field_is_listed_in_one_answer() {
        let got = fields(create(&object(json!({
            "orderId": "", "numItems": 0, "currency": "usd", "customerId": 7, "extra": true
        }))));
        for field in ["orderId", "numItems", "currency", "customerId", "extra"] {
            assert!(
                got.contains(&field.to_string()),
                "{field} missing from {got:?}"
            );
        }
    }

    #[test]
    fn item_problems_name_the_item() {
        let got = fields(create(&object(json!({
            "orderId": "A", "items": [{"itemId": "I", "quantity": 0, "price": 1.005}]
        }))));
        assert_eq!(got, vec!["items[0].quantity", "items[0].price"]);
    }

    #[test]
    fn a_fractional_quantity_is_refused() {
        let got = fields(create(&object(json!({
            "orderId": "A", "items": [{"itemId": "I", "quantity": 1.5, "price": 1}]
        }))));
        assert_eq!(got, vec!["items[0].quantity"]);
    }

    #[test]
    fn prices_may_be_strings_and_keep_every_cent() -> Result<(), Vec<FieldProblem>> {
        let order = create(&object(json!({
            "orderId": "A", "items": [{"itemId": "I", "quantity": 3, "price": "0.10"}]
        })))?;
        let items = order.items.unwrap_or_default();
        assert_eq!(items[0].price().cents(), 10);
        Ok(())
    }

    #[test]
    fn a_new_order_must_be_pending() {
        let got = fields(create(&object(
            json!({"orderId": "A", "numItems": 1, "status": "shipped"}),
        )));
        assert_eq!(got, vec!["status"]);
    }

    fn listed(result: Result<CreateOrder, Vec<FieldProblem>>) -> Vec<(String, String)> {
        match result {
            Ok(_) => vec![],
            Err(problems) => problems.into_iter().map(|p| (p.field, p.message)).collect(),
        }
    }

    /// The field rules are the validator's (step 2), reported in body order with what was sent.
    #[test]
    fn the_validator_rules_name_the_limit_and_what_was_sent() {
        let got = listed(create(&object(json!({
            "orderId": "x".repeat(65), "numItems": 101, "customerId": "a b", "currency": "usd"
        }))));
        let expected = [
            ("orderId", "must be 1 to 64 characters long, got 65"),
            ("numItems", "must be between 1 and 100, got 101"),
            (
                "customerId",
                "must contain only A-Z a-z 0-9 . _ : - (found ' ')",
            ),
            (
                "currency",
                "must be three capital letters (ISO 4217), such as EUR",
            ),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(f, m)| (f.to_string(), m.to_string()))
            .collect();
        assert_eq!(got, expected);
    }

    /// Too many items and a bad item in one body: both listed (validator would panic were
    /// `length` and `nested` on the same field).
    #[test]
    fn too_many_items_and_a_bad_item_are_both_listed() {
        let mut items = vec![json!({"itemId": "I", "quantity": 1, "price": 1}); 101];
        items[5] = json!({"itemId": "I", "quantity": 0, "price": 1});
        let got = fields(create(&object(json!({"orderId": "A", "items": items}))));
        assert_eq!(got, vec!["items", "items[5].quantity"]);
    }

    /// A wrong type is the only problem of its field: the rules and the domain do not pile on.
    #[test]
    fn a_mistyped_field_gets_one_problem() {
        let got = listed(create(&object(json!({
            "orderId": 5, "items": [{"itemId": [], "quantity": "2", "price": true}]
        }))));
        let got: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "orderId",
                "items[0].itemId",
                "items[0].quantity",
                "items[0].price"
            ]
        );
    }

    #[test]
    fn a_long_list_of_problems_is_cut_and_counted() {
        let items: Vec<Value> = (0..1000).map(|_| json!({})).collect();
        let problems = create(&object(json!({"orderId": "A", "items": items})))
            .err()
            .unwrap_or_default();
        let total = problems.len();
        assert!(total > 3000, "every item has three problems, got {total}");
        let answer = invalid("The order is invalid", problems);
        assert_eq!(answer.errors.len(), MAX_LISTED_PROBLEMS + 1);
        assert_eq!(answer.errors[0].field, "items");
        let last = &answer.errors[MAX_LISTED_PROBLEMS];
        assert_eq!(last.field, TRUNCATED_FIELD);
        assert!(
            last.message.contains(&format!("{total} in total")),
            "{last:?}"
        );
        assert!(
            answer.message.contains(&format!("{total} problems")),
            "{}",
            answer.message
        );
    }

    #[test]
    fn a_short_list_of_problems_is_listed_whole() {
        let problems = update(&object(json!({"status": "lost"})))
            .err()
            .unwrap_or_default();
        let answer = invalid("The update is invalid", problems.clone());
        assert_eq!(answer.errors, problems);
        assert_eq!(answer.message, "The update is invalid");
    }

    #[test]
    fn update_needs_an_id_and_a_known_status() {
        let problems = update(&object(json!({"status": "lost"})))
            .err()
            .unwrap_or_default();
        let got: Vec<String> = problems.into_iter().map(|p| p.field).collect();
        assert_eq!(got, vec!["orderId", "status"]);
    }
}
