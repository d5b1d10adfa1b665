//! Parsing create and update bodies into commands, collecting every problem at once.
//!
//! Bodies arrive as JSON objects and are read field by field (not with a derived struct), so
//! that a wrong type, an unknown field and a bad value in three fields give one 400 listing all
//! three. Past this module only valid domain values exist.
//!
//! Listing every problem must not turn a small mistake into a big answer: a 60 KB body of 20,000
//! empty items has 60,000 problems. [`invalid`] lists the first [`MAX_LISTED_PROBLEMS`] and says
//! how many there were in all, so an error answer stays a few kilobytes whatever the body.

use chrono::{DateTime, Utc};
use order_events::{
    Currency, CustomerId, DomainError, ItemId, Money, OrderId, OrderItem, OrderStatus, Quantity,
};
use serde_json::{Map, Value};
use service_kit::http_error::{FieldProblem, HttpError};

/// The most items an order may have.
pub const MAX_ITEMS: usize = 100;

/// The most problems one error answer lists; the rest are counted, not listed.
pub const MAX_LISTED_PROBLEMS: usize = 20;

/// The field of the last entry of a truncated list, which says how many problems there were.
pub const TRUNCATED_FIELD: &str = "(more)";

/// A 400 answer `message` listing the first [`MAX_LISTED_PROBLEMS`] problems. When there are
/// more, the message gives the total and a last entry (field [`TRUNCATED_FIELD`]) says how many
/// were left out, keeping the services' error shape.
pub fn invalid(message: &str, mut problems: Vec<FieldProblem>) -> HttpError {
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
pub struct CreateOrder {
    pub order_id: OrderId,
    pub customer_id: Option<CustomerId>,
    pub num_items: Option<usize>,
    pub items: Option<Vec<OrderItem>>,
    pub currency: Option<Currency>,
    pub order_date: Option<DateTime<Utc>>,
    pub total_amount: Option<Money>,
}

/// A valid update request.
#[derive(Debug)]
pub struct UpdateOrder {
    pub order_id: OrderId,
    pub status: OrderStatus,
}

/// Collects problems while reading one object.
struct Reader<'a> {
    object: &'a Map<String, Value>,
    prefix: String,
    problems: Vec<FieldProblem>,
}

impl<'a> Reader<'a> {
    fn new(object: &'a Map<String, Value>, prefix: &str, known: &[&str]) -> Self {
        let mut reader = Reader {
            object,
            prefix: prefix.to_string(),
            problems: vec![],
        };
        for key in object.keys() {
            if !known.contains(&key.as_str()) {
                let field = reader.path(key);
                reader.problem(
                    field,
                    format!("unknown field; expected one of: {}", known.join(", ")),
                );
            }
        }
        reader
    }

    fn path(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    fn problem(&mut self, field: String, message: impl Into<String>) {
        self.problems.push(FieldProblem {
            field,
            message: message.into(),
        });
    }

    fn domain(&mut self, field: &str, error: DomainError) {
        for e in error.into_errors() {
            // The contract names the field itself; report it at this request's path.
            let _ = e.field;
            self.problem(self.path(field), e.violation.to_string());
        }
    }

    /// A field that is absent or `null` is `None`.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.object.get(field).filter(|v| !v.is_null())
    }

    fn required(&mut self, field: &str) -> Option<&'a Value> {
        let value = self.get(field);
        if value.is_none() {
            self.problem(self.path(field), "is required");
        }
        value
    }

    fn string(&mut self, field: &str, value: &'a Value) -> Option<&'a str> {
        match value.as_str() {
            Some(s) => Some(s),
            None => {
                self.problem(
                    self.path(field),
                    format!("must be a string, got {}", kind(value)),
                );
                None
            }
        }
    }

    fn parsed<T>(
        &mut self,
        field: &str,
        value: Option<&'a Value>,
        parse: impl FnOnce(&str) -> Result<T, DomainError>,
    ) -> Option<T> {
        let text = self.string(field, value?)?;
        match parse(text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.domain(field, e);
                None
            }
        }
    }

    fn integer(&mut self, field: &str, value: &Value) -> Option<i64> {
        match value.as_i64() {
            Some(n) => Some(n),
            None => {
                self.problem(
                    self.path(field),
                    format!("must be a whole number, got {}", shown(value)),
                );
                None
            }
        }
    }

    /// Money from a JSON number (`19.99`) or a string (`"19.99"`), exact, two places at most.
    fn money(&mut self, field: &str, value: &Value) -> Option<Money> {
        let text = match value {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => {
                self.problem(
                    self.path(field),
                    format!(
                        "must be a decimal number such as 19.99, got {}",
                        kind(other)
                    ),
                );
                return None;
            }
        };
        match Money::parse(&text) {
            Ok(m) => Some(m),
            Err(e) => {
                self.domain(field, e);
                None
            }
        }
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

/// Reads a create-order body.
pub fn create(body: &Map<String, Value>) -> Result<CreateOrder, Vec<FieldProblem>> {
    const KNOWN: [&str; 8] = [
        "orderId",
        "numItems",
        "customerId",
        "items",
        "currency",
        "orderDate",
        "totalAmount",
        "status",
    ];
    let mut r = Reader::new(body, "", &KNOWN);
    let order_id_value = r.required("orderId");
    let order_id = r.parsed("orderId", order_id_value, |s| OrderId::parse(s));
    let customer_value = r.get("customerId");
    let customer_id = r.parsed("customerId", customer_value, |s| CustomerId::parse(s));
    let currency_value = r.get("currency");
    let currency = r.parsed("currency", currency_value, Currency::parse);
    let date_value = r.get("orderDate");
    let order_date = date_value.and_then(|v| {
        let text = r.string("orderDate", v)?;
        match DateTime::parse_from_rfc3339(text) {
            Ok(d) => Some(d.with_timezone(&Utc)),
            Err(e) => {
                r.problem(
                    "orderDate".into(),
                    format!("must be an ISO 8601 date-time such as 2026-01-13T10:30:00Z ({e})"),
                );
                None
            }
        }
    });
    let total_amount = r.get("totalAmount").and_then(|v| r.money("totalAmount", v));
    if let Some(v) = r.get("status") {
        if let Some(status) = r.parsed("status", Some(v), OrderStatus::parse) {
            if status != OrderStatus::Pending {
                r.problem(
                    "status".into(),
                    format!("a new order starts as pending, got {status}"),
                );
            }
        }
    }
    let num_items = r.get("numItems").and_then(|v| {
        let n = r.integer("numItems", v)?;
        if (1..=MAX_ITEMS as i64).contains(&n) {
            Some(n as usize)
        } else {
            r.problem(
                "numItems".into(),
                format!("must be between 1 and {MAX_ITEMS}, got {n}"),
            );
            None
        }
    });
    let items = match r.get("items") {
        None => None,
        Some(Value::Array(list)) => {
            if list.is_empty() {
                r.problem("items".into(), "must not be empty");
            } else if list.len() > MAX_ITEMS {
                r.problem(
                    "items".into(),
                    format!("must have at most {MAX_ITEMS} items, got {}", list.len()),
                );
            }
            let mut items = Vec::with_capacity(list.len());
            for (i, value) in list.iter().enumerate() {
                match item(i, value) {
                    Ok(item) => items.push(item),
                    Err(mut problems) => r.problems.append(&mut problems),
                }
            }
            Some(items)
        }
        Some(other) => {
            r.problem(
                "items".into(),
                format!("must be an array, got {}", kind(other)),
            );
            None
        }
    };
    if let (Some(n), Some(items)) = (num_items, items.as_ref()) {
        if n != items.len() {
            r.problem(
                "numItems".into(),
                format!("is {n} but {} items were given", items.len()),
            );
        }
    }
    if num_items.is_none() && r.get("items").is_none() && r.get("numItems").is_none() {
        r.problem("numItems".into(), "is required when no items are given");
    }
    match order_id {
        Some(order_id) if r.problems.is_empty() => Ok(CreateOrder {
            order_id,
            customer_id,
            num_items,
            items,
            currency,
            order_date,
            total_amount,
        }),
        _ => Err(r.problems),
    }
}

fn item(index: usize, value: &Value) -> Result<OrderItem, Vec<FieldProblem>> {
    let prefix = format!("items[{index}].");
    let Value::Object(object) = value else {
        return Err(vec![FieldProblem {
            field: format!("items[{index}]"),
            message: format!("must be an object, got {}", kind(value)),
        }]);
    };
    let mut r = Reader::new(object, &prefix, &["itemId", "quantity", "price"]);
    let id_value = r.required("itemId");
    let item_id = r.parsed("itemId", id_value, |s| ItemId::parse(s));
    let quantity = r.required("quantity").and_then(|v| {
        let n = r.integer("quantity", v)?;
        match Quantity::new(n) {
            Ok(q) => Some(q),
            Err(e) => {
                r.domain("quantity", e);
                None
            }
        }
    });
    let price = r.required("price").and_then(|v| r.money("price", v));
    if let Some(p) = price {
        if !p.is_positive() {
            r.problem(r.path("price"), "must be greater than zero");
        }
    }
    match (item_id, quantity, price) {
        (Some(id), Some(q), Some(p)) if r.problems.is_empty() => {
            OrderItem::new(id, q, p).map_err(|e| {
                e.into_errors()
                    .into_iter()
                    .map(|e| FieldProblem {
                        field: format!("{prefix}{}", e.field),
                        message: e.violation.to_string(),
                    })
                    .collect()
            })
        }
        _ => Err(r.problems),
    }
}

/// Reads an update-order body.
pub fn update(body: &Map<String, Value>) -> Result<UpdateOrder, Vec<FieldProblem>> {
    let mut r = Reader::new(body, "", &["orderId", "status"]);
    let id_value = r.required("orderId");
    let order_id = r.parsed("orderId", id_value, |s| OrderId::parse(s));
    let status_value = r.required("status");
    let status = r.parsed("status", status_value, OrderStatus::parse);
    match (order_id, status) {
        (Some(order_id), Some(status)) if r.problems.is_empty() => {
            Ok(UpdateOrder { order_id, status })
        }
        _ => Err(r.problems),
    }
}

/// Domain errors of a whole order, as field problems.
pub fn problems(error: DomainError) -> Vec<FieldProblem> {
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
