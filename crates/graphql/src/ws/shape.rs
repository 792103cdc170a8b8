//! What a document would run, read before it runs: a subscription or
//! not, and whether it may share a group (no root field replays from
//! `after`).

use std::collections::HashMap;

use async_graphql::Value;
use async_graphql::parser::types::{OperationType, Selection};

/// What a document would run.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Shape {
    /// A subscription operation.
    pub(super) subscription: bool,
    /// It can share a group: no root field replays from `after`.
    pub(super) shareable: bool,
}

impl Shape {
    /// The shape of `query`; a document past `max_tokens` is not parsed
    /// here (the schema's guard then refuses it).
    pub(super) fn of(
        query: &str,
        operation: Option<&str>,
        variables: &serde_json::Value,
        max_tokens: usize,
    ) -> Self {
        let none = Shape {
            subscription: false,
            shareable: false,
        };
        if crate::document::count_tokens(query, max_tokens).is_err() {
            return none;
        }
        let Ok(doc) = async_graphql::parser::parse_query(query) else {
            return none;
        };
        // The operation that would run, chosen as execution chooses it.
        let Some((_, op)) = crate::document::selected_operation(&doc, operation) else {
            return none;
        };
        if op.node.ty != OperationType::Subscription {
            return none;
        }
        let defaults: HashMap<&str, Value> = op
            .node
            .variable_definitions
            .iter()
            .filter_map(|d| {
                d.node
                    .default_value
                    .as_ref()
                    .map(|v| (d.node.name.node.as_str(), v.node.clone()))
            })
            .collect();
        let shareable = op.node.selection_set.node.items.iter().all(|item| {
            let Selection::Field(field) = &item.node else {
                return false;
            };
            field.node.arguments.iter().all(|(name, value)| {
                if name.node.as_str() != "after" {
                    return true;
                }
                let resolved = value.node.clone().into_const_with(|var| {
                    Ok::<_, ()>(match variables.get(var.as_str()).filter(|v| !v.is_null()) {
                        Some(v) => Value::from_json(v.clone()).unwrap_or(Value::Null),
                        None => defaults.get(var.as_str()).cloned().unwrap_or(Value::Null),
                    })
                });
                matches!(resolved, Ok(Value::Null))
            })
        });
        Shape {
            subscription: true,
            shareable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Shape;
    use serde_json::json;

    #[test]
    fn only_live_subscriptions_share() {
        let q = "subscription($a: String) { activityEvents(after: $a) { cursor } }";
        assert_eq!(
            Shape::of(q, None, &json!({}), 1_000),
            Shape {
                subscription: true,
                shareable: true
            }
        );
        assert!(!Shape::of(q, None, &json!({"a": "x"}), 1_000).shareable);
        assert!(
            !Shape::of(
                r#"subscription { activityEvents(after: "x") { cursor } }"#,
                None,
                &json!({}),
                1_000
            )
            .shareable
        );
        assert!(
            Shape::of(
                "subscription { activityEvents { cursor } }",
                None,
                &json!({}),
                1_000
            )
            .shareable
        );
        assert!(!Shape::of("{ network { name } }", None, &json!({}), 1_000).subscription);
        assert!(!Shape::of("subscription {", None, &json!({}), 1_000).subscription);
    }
}
