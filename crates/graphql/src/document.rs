//! What a document asks for, measured before it runs: its size in lexical
//! tokens (counted before it is parsed, so an oversized document never
//! builds a syntax tree) and the [`Shape`] of exactly the operation that
//! will run, with variables resolved as execution resolves them (the
//! request's value, else the operation's default).

use std::collections::HashMap;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, FragmentDefinition, OperationDefinition,
    OperationType, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Variables};
use async_graphql_value::{ConstValue, Value};

/// Counts the lexical tokens of `source` as GraphQL's grammar reads them
/// (punctuators, names, numbers, strings; whitespace, commas and comments
/// are not tokens). Stops as soon as the count passes `max`: `Err` carries
/// a count above `max`, `Ok` the exact count.
pub fn count_tokens(source: &str, max: usize) -> Result<usize, usize> {
    let b = source.as_bytes();
    let mut i = 0usize;
    let mut n = 0usize;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            0xEF if b[i..].starts_with(&[0xEF, 0xBB, 0xBF]) => {
                i += 3;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < b.len() {
                    if b[i..].starts_with(b"\\\"\"\"") {
                        i += 4;
                    } else if b[i..].starts_with(b"\"\"\"") {
                        i += 3;
                        break;
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\n' | b'\r' => break,
                        _ => i += 1,
                    }
                }
            }
            b'.' if b[i..].starts_with(b"...") => i += 3,
            c if c == b'_' || c.is_ascii_alphabetic() => {
                while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
            }
            c if c == b'-' || c.is_ascii_digit() => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b'e' | b'E')) {
                    let sign_follows = matches!(b[i], b'e' | b'E')
                        && b.get(i + 1).is_some_and(|s| matches!(s, b'+' | b'-'));
                    i += if sign_follows { 2 } else { 1 };
                }
            }
            // A punctuator, or a character the parser will refuse.
            _ => i += 1,
        }
        n += 1;
        if n > max {
            return Err(n);
        }
    }
    Ok(n)
}

/// What the operation that will run asks for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Fields (aliases counted) at its root.
    pub root_fields: usize,
    /// Mutation fields at its root (0 for a query or subscription).
    pub mutations: usize,
    /// `_entities` representations it resolves.
    pub entities: usize,
    /// Representations × the cost of the selection on them, summed.
    pub entities_cost: usize,
    /// The walk ran out of budget: the document is too large to measure,
    /// and is refused rather than let through.
    pub exhausted: bool,
}

/// Fragments are expanded at most this deep.
const MAX_WALK_DEPTH: usize = 64;

/// Selections visited at most per document: fragments spread several times
/// each could otherwise make the walk exponential. Past it the document is
/// refused ([`Shape::exhausted`]).
pub const MAX_WALK_STEPS: usize = 100_000;

/// The operation a request naming `name` runs, and the operation's name,
/// as async-graphql picks it: the named one of several, or the only one.
/// `None` when none would run (an unknown name, a name for an unnamed
/// operation, several operations and no name).
pub fn selected_operation<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<(Option<&'a str>, &'a Positioned<OperationDefinition>)> {
    match (&document.operations, name) {
        (DocumentOperations::Single(op), None) => Some((None, op)),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .get_key_value(name)
            .map(|(n, op)| (Some(n.as_str()), op)),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.iter().next().map(|(n, op)| (Some(n.as_str()), op))
        }
        _ => None,
    }
}

/// The operations to measure for a request naming `operation`: the one
/// that runs, or every one when none would (so the answer never counts
/// less than what runs).
fn selected<'a>(
    document: &'a ExecutableDocument,
    operation: Option<&str>,
) -> Vec<&'a Positioned<OperationDefinition>> {
    match (
        selected_operation(document, operation),
        &document.operations,
    ) {
        (Some((_, op)), _) => vec![op],
        (None, DocumentOperations::Single(op)) => vec![op],
        (None, DocumentOperations::Multiple(ops)) => ops.values().collect(),
    }
}

/// Measures the operation of `document` that a request naming `operation`
/// with `variables` runs (the largest of all when the request names none
/// that would run).
pub fn measure(
    document: &ExecutableDocument,
    variables: &Variables,
    operation: Option<&str>,
) -> Shape {
    let mut shape = Shape::default();
    let steps = std::cell::Cell::new(0);
    for op in selected(document, operation) {
        let walker = Walker {
            fragments: &document.fragments,
            variables,
            defaults: op
                .node
                .variable_definitions
                .iter()
                .filter_map(|d| {
                    d.node
                        .default_value
                        .as_ref()
                        .map(|v| (&d.node.name.node, &v.node))
                })
                .collect(),
            steps: &steps,
        };
        let mut roots = Vec::new();
        walker.root_fields(&op.node.selection_set.node, 0, &mut roots);
        shape.root_fields = shape.root_fields.max(roots.len());
        if op.node.ty == OperationType::Mutation {
            shape.mutations = shape.mutations.max(roots.len());
        }
        let (mut entities, mut cost) = (0usize, 0usize);
        for field in roots.iter().filter(|f| f.name.node == "_entities") {
            let n = field
                .arguments
                .iter()
                .find(|(name, _)| name.node == "representations")
                .map_or(0, |(_, value)| walker.list_len(&value.node));
            entities = entities.saturating_add(n);
            let per = 1 + walker.count_fields(&field.selection_set.node, 0);
            cost = cost.saturating_add(n.saturating_mul(per));
        }
        shape.entities = shape.entities.max(entities);
        shape.entities_cost = shape.entities_cost.max(cost);
    }
    shape.exhausted = steps.get() > MAX_WALK_STEPS;
    shape
}

struct Walker<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    variables: &'a Variables,
    /// The operation's variable defaults, used when the request sends none.
    defaults: HashMap<&'a Name, &'a ConstValue>,
    steps: &'a std::cell::Cell<usize>,
}

impl<'a> Walker<'a> {
    /// Counts a step; false once the budget is spent (then the shape says
    /// so, and the document is refused).
    fn step(&self, depth: usize) -> bool {
        let steps = self.steps.get().saturating_add(1);
        self.steps.set(steps);
        if depth > MAX_WALK_DEPTH {
            // Deeper than any document the validator lets run: refuse.
            self.steps.set(MAX_WALK_STEPS + 1);
        }
        self.steps.get() <= MAX_WALK_STEPS
    }

    /// A variable's value as execution sees it: the request's, else the
    /// operation's default.
    fn variable(&self, name: &Name) -> Option<&ConstValue> {
        self.variables
            .get(name)
            .or_else(|| self.defaults.get(name).copied())
    }

    /// Collects the fields of a root selection set, fragments expanded.
    fn root_fields(&self, set: &'a SelectionSet, depth: usize, out: &mut Vec<&'a Field>) {
        if !self.step(depth) {
            return;
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => out.push(&f.node),
                Selection::InlineFragment(f) => {
                    self.root_fields(&f.node.selection_set.node, depth + 1, out);
                }
                Selection::FragmentSpread(s) => {
                    if let Some(def) = self.fragments.get(&s.node.fragment_name.node) {
                        self.root_fields(&def.node.selection_set.node, depth + 1, out);
                    }
                }
            }
        }
    }

    /// The page size a listing field asks for: its `first` (literal or
    /// variable, at most 1,000), or the listing's default.
    fn page_size(&self, field: &Field) -> Option<usize> {
        let default = match field.name.node.as_str() {
            "activities" => Some(page_default::ACTIVITIES),
            "cities" => Some(page_default::CITIES),
            _ => None,
        };
        let first = field
            .arguments
            .iter()
            .find(|(name, _)| name.node == "first")
            .map(|(_, v)| match &v.node {
                Value::Number(n) => n.as_u64(),
                Value::Variable(name) => match self.variable(name) {
                    Some(ConstValue::Number(n)) => n.as_u64(),
                    _ => None,
                },
                _ => None,
            });
        match first {
            Some(Some(n)) => Some(usize::try_from(n).map_or(page_default::MOST_COUNTED, |n| {
                n.min(page_default::MOST_COUNTED)
            })),
            Some(None) => default.or(Some(page_default::ACTIVITIES)),
            None => default,
        }
    }

    /// The cost of a selection set, as async-graphql's complexity counts
    /// it: 1 per field, and a listing `2 + page size × its children`.
    fn count_fields(&self, set: &SelectionSet, depth: usize) -> usize {
        if !self.step(depth) {
            return 0;
        }
        set.items.iter().fold(0usize, |n, item| {
            n.saturating_add(match &item.node {
                Selection::Field(f) => {
                    let children = self.count_fields(&f.node.selection_set.node, depth + 1);
                    match self.page_size(&f.node) {
                        Some(size) => size.saturating_mul(children).saturating_add(2),
                        None => 1usize.saturating_add(children),
                    }
                }
                Selection::InlineFragment(f) => {
                    self.count_fields(&f.node.selection_set.node, depth + 1)
                }
                Selection::FragmentSpread(s) => self
                    .fragments
                    .get(&s.node.fragment_name.node)
                    .map_or(0, |def| {
                        self.count_fields(&def.node.selection_set.node, depth + 1)
                    }),
            })
        })
    }

    /// The length of a list argument, literal or from a variable (the
    /// request's value or the operation's default); a single value stands
    /// for a list of one, as input coercion reads it.
    fn list_len(&self, value: &Value) -> usize {
        match value {
            Value::List(items) => items.len(),
            Value::Variable(name) => match self.variable(name) {
                Some(ConstValue::List(items)) => items.len(),
                Some(ConstValue::Null) | None => 0,
                Some(_) => 1,
            },
            Value::Null => 0,
            _ => 1,
        }
    }
}

/// The listings' default page sizes, as the schema declares them (the
/// domain's `page`), and the largest `first` counted.
mod page_default {
    use cityhub_domain::page;

    /// `activities(first:)`.
    pub const ACTIVITIES: usize = page::ACTIVITIES as usize;
    /// `cities(first:)`.
    pub const CITIES: usize = page::CITIES as usize;
    /// The largest `first` counted.
    pub const MOST_COUNTED: usize = page::MOST_COUNTED as usize;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_graphql::extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo,
    };
    use async_graphql::{Context, EmptySubscription, Object, Schema, ServerResult};
    use proptest::prelude::*;

    use super::*;

    fn shape(query: &str, variables: serde_json::Value, operation: Option<&str>) -> Shape {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        measure(&doc, &Variables::from_json(variables), operation)
    }

    #[test]
    fn counts_tokens_not_comments_or_whitespace() {
        assert_eq!(count_tokens("{ a }", 100), Ok(3));
        assert_eq!(count_tokens("# a b c\n{ a, b }", 100), Ok(4));
        assert_eq!(
            count_tokens(r#"{ a(s: "x y \" z", n: -1.5e+3) }"#, 100),
            Ok(11)
        );
        assert_eq!(
            count_tokens("{ a(s: \"\"\"x \\\"\"\" y\"\"\") }", 100),
            Ok(8)
        );
        assert_eq!(count_tokens("{ ...F }", 100), Ok(4));
        assert!(count_tokens(&"a ".repeat(1_000), 999).is_err());
        let introspection = include_str!("testdata/introspection.graphql");
        let n = count_tokens(introspection, 20_000).expect("GraphiQL's query fits");
        assert!(n > 100 && n < 2_000, "{n}");
    }

    #[test]
    fn counts_aliases_fragments_and_mutations() {
        let q = "query { a: network { name } b: network { name } ...F ... on Query { c: viewer { role } } } fragment F on Query { d: network { name } }";
        let s = shape(q, serde_json::json!({}), None);
        assert_eq!(s.root_fields, 4);
        assert_eq!(s.mutations, 0);
        let m = "mutation { a: deleteActivity(id: 1) b: deleteActivity(id: 2) }";
        assert_eq!(shape(m, serde_json::json!({}), None).mutations, 2);
    }

    #[test]
    fn counts_entities_literal_variable_and_default() {
        let q = r#"query($r: [_Any!]!) { _entities(representations: $r) { ... on City { id name } } x: _entities(representations: [{__typename: "City", id: "1"}]) { __typename } }"#;
        let reps: Vec<_> = (0..7)
            .map(|i| serde_json::json!({"__typename": "City", "id": i.to_string()}))
            .collect();
        let s = shape(q, serde_json::json!({ "r": reps }), None);
        assert_eq!(s.entities, 8);
        assert_eq!(s.entities_cost, 7 * 3 + 2);
        // Given as the variable's default, and no variables sent.
        let items = vec!["{__typename: \"City\", id: \"1\"}"; 500].join(", ");
        let q = format!(
            "query($r: [_Any!]! = [{items}]) {{ _entities(representations: $r) {{ __typename }} }}"
        );
        assert_eq!(shape(&q, serde_json::json!({}), None).entities, 500);
        // A value sent wins over the default.
        assert_eq!(shape(&q, serde_json::json!({"r": []}), None).entities, 0);
    }

    #[test]
    fn measures_the_operation_that_runs() {
        let mutations = (0..14)
            .map(|i| format!("m{i}: deleteActivity(id: {i})"))
            .collect::<Vec<_>>()
            .join(" ");
        let big_query = (0..40)
            .map(|i| format!("q{i}: network {{ name }}"))
            .collect::<Vec<_>>()
            .join(" ");
        let doc = format!("query Q {{ {big_query} }} mutation M {{ {mutations} }}");
        let m = shape(&doc, serde_json::json!({}), Some("M"));
        assert_eq!((m.mutations, m.root_fields), (14, 14));
        let q = shape(&doc, serde_json::json!({}), Some("Q"));
        assert_eq!((q.mutations, q.root_fields), (0, 40));
        let unnamed = shape(&doc, serde_json::json!({}), None);
        assert_eq!((unnamed.mutations, unnamed.root_fields), (14, 40));
    }

    #[test]
    fn an_exhausted_walk_refuses() {
        let q = "query { ...A } fragment A on Query { ...B } fragment B on Query { network { name } ...A }";
        assert!(shape(q, serde_json::json!({}), None).exhausted);
        let fan = "query { _entities(representations: [1]) { ...A } } \
                   fragment A on City { ...B ...B ...B ...B } fragment B on City { ...C ...C ...C ...C } \
                   fragment C on City { ...D ...D ...D ...D } fragment D on City { ...E ...E ...E ...E } \
                   fragment E on City { ...G ...G ...G ...G } fragment G on City { ...H ...H ...H ...H } \
                   fragment H on City { ...I ...I ...I ...I } fragment I on City { ...J ...J ...J ...J } \
                   fragment J on City { id name id name id name id name id name }";
        assert!(shape(fan, serde_json::json!({}), None).exhausted);
        assert!(!shape("{ network { name } }", serde_json::json!({}), None).exhausted);
    }

    // A toy schema whose resolvers count what runs, for the property test.

    #[derive(Default)]
    struct Seen {
        roots: AtomicUsize,
        mutations: AtomicUsize,
        entities: AtomicUsize,
    }

    struct Counting(Arc<Seen>);

    impl ExtensionFactory for Counting {
        fn create(&self) -> Arc<dyn Extension> {
            Arc::new(Counting(self.0.clone()))
        }
    }

    #[async_trait::async_trait]
    impl Extension for Counting {
        async fn resolve(
            &self,
            ctx: &ExtensionContext<'_>,
            info: ResolveInfo<'_>,
            next: NextResolve<'_>,
        ) -> ServerResult<Option<async_graphql::Value>> {
            if info.path_node.parent.is_none() {
                self.0.roots.fetch_add(1, Ordering::Relaxed);
                if info.parent_type == "M" {
                    self.0.mutations.fetch_add(1, Ordering::Relaxed);
                }
            }
            next.run(ctx, info).await
        }
    }

    struct Q;

    #[Object]
    impl Q {
        async fn a(&self) -> i32 {
            1
        }

        #[graphql(name = "_entities")]
        async fn entities(
            &self,
            ctx: &Context<'_>,
            representations: Vec<async_graphql::Any>,
        ) -> Vec<i32> {
            ctx.data_unchecked::<Arc<Seen>>()
                .entities
                .fetch_add(representations.len(), Ordering::Relaxed);
            vec![1; representations.len()]
        }
    }

    struct M;

    #[Object]
    impl M {
        async fn m(&self) -> i32 {
            1
        }
    }

    /// One generated document, the variables sent and the operation named.
    #[derive(Debug, Clone)]
    struct Case {
        document: String,
        variables: serde_json::Value,
        operation: Option<String>,
    }

    fn reps(n: usize) -> String {
        format!("[{}]", vec!["1"; n].join(", "))
    }

    /// A selection item of a query: a field, an aliased field, entities
    /// from a literal or the variable, a fragment spread, an inline fragment.
    fn query_item(fragments: usize) -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            (0..5usize).prop_map(|i| format!("x{i}: a")),
            (0..6usize).prop_map(|n| format!("e{n}: _entities(representations: {})", reps(n))),
            Just("v: _entities(representations: $r)".to_owned()),
            (0..fragments.max(1)).prop_map(|i| format!("...QF{i}")),
            Just("... on Q { a y: a }".to_owned()),
        ]
    }

    fn mutation_item(fragments: usize) -> impl Strategy<Value = String> {
        prop_oneof![
            Just("m".to_owned()),
            (0..8usize).prop_map(|i| format!("m{i}: m")),
            (0..fragments.max(1)).prop_map(|i| format!("...MF{i}")),
            Just("... on M { i1: m i2: m }".to_owned()),
        ]
    }

    fn case() -> impl Strategy<Value = Case> {
        let fragments = 3usize;
        let query_ops = prop::collection::vec(
            (
                prop::collection::vec(query_item(fragments), 1..6),
                prop::option::of(0..8usize),
            ),
            0..3,
        );
        let mutation_ops =
            prop::collection::vec(prop::collection::vec(mutation_item(fragments), 1..8), 0..3);
        let query_fragments =
            prop::collection::vec(prop::collection::vec(query_item(0), 1..4), fragments);
        let mutation_fragments =
            prop::collection::vec(prop::collection::vec(mutation_item(0), 1..4), fragments);
        (
            query_ops,
            mutation_ops,
            query_fragments,
            mutation_fragments,
            prop::option::of(0..8usize),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(qs, ms, qf, mf, sent, pick, name_it)| {
                let mut ops = Vec::new();
                for (i, (items, default)) in qs.iter().enumerate() {
                    let var = match default {
                        Some(n) => format!("($r: [_Any!] = {})", reps(*n)),
                        None => "($r: [_Any!])".to_owned(),
                    };
                    ops.push((
                        format!("Q{i}"),
                        format!("query Q{i}{var} {{ {} }}", items.join(" ")),
                    ));
                }
                for (i, items) in ms.iter().enumerate() {
                    ops.push((
                        format!("M{i}"),
                        format!("mutation M{i} {{ {} }}", items.join(" ")),
                    ));
                }
                if ops.is_empty() {
                    ops.push(("Q".to_owned(), "query Q($r: [_Any!]) { a }".to_owned()));
                }
                // Fragments that refer to other fragments are left out of
                // the fragments themselves (no cycles); unused ones make
                // the document invalid, which must count no less either.
                let mut document = ops.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>();
                for (i, items) in qf.iter().enumerate() {
                    let items: Vec<_> = items
                        .iter()
                        .filter(|s| !s.starts_with("...Q"))
                        .cloned()
                        .collect();
                    let body = if items.is_empty() {
                        "a".to_owned()
                    } else {
                        items.join(" ")
                    };
                    document.push(format!("fragment QF{i} on Q {{ {body} }}"));
                }
                for (i, items) in mf.iter().enumerate() {
                    let items: Vec<_> = items
                        .iter()
                        .filter(|s| !s.starts_with("...M"))
                        .cloned()
                        .collect();
                    let body = if items.is_empty() {
                        "m".to_owned()
                    } else {
                        items.join(" ")
                    };
                    document.push(format!("fragment MF{i} on M {{ {body} }}"));
                }
                let document = document.join("\n");
                let operation = (name_it || ops.len() > 1).then(|| pick.get(&ops).0.clone());
                let variables = match sent {
                    Some(n) => serde_json::json!({ "r": vec![1; n] }),
                    None => serde_json::json!({}),
                };
                Case {
                    document,
                    variables,
                    operation,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The guard's counts are never below what runs.
        #[test]
        fn never_counts_less_than_what_runs(case in case()) {
            let seen = Arc::new(Seen::default());
            let schema = Schema::build(Q, M, EmptySubscription)
                .extension(Counting(seen.clone()))
                .data(seen.clone())
                .finish();
            let mut request = async_graphql::Request::new(case.document.clone())
                .variables(Variables::from_json(case.variables.clone()));
            request.operation_name = case.operation.clone();
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let _ = runtime.block_on(schema.execute(request));
            let measured = shape(&case.document, case.variables.clone(), case.operation.as_deref());
            prop_assert!(measured.root_fields >= seen.roots.load(Ordering::Relaxed), "{case:?} {measured:?}");
            prop_assert!(measured.mutations >= seen.mutations.load(Ordering::Relaxed), "{case:?} {measured:?}");
            prop_assert!(measured.entities >= seen.entities.load(Ordering::Relaxed), "{case:?} {measured:?}");
        }
    }
}
