//! The single-pass check: a JSON Schema compiled into a plan that a `serde` visitor runs while
//! `serde_json` tokenizes the body, with the strictness of [`JsonBody::parse_value`](super::JsonBody::parse_value)
//! (duplicate keys, out-of-range numbers, trailing data) and no `serde_json::Value` built.
//!
//! **It is an accept filter.** [`Plan::accepts`] returning `true` means the body is strict JSON
//! and valid against the schema; `false` means "not sure" — the layer then runs the full path
//! (`parse_strict` + `jsonschema`), which gives the exact verdict and rejection. So the plan may
//! give up on anything unusual (a hash collision between two keys, a container where `enum`
//! applies, a schema `false`), but must never accept what the full path refuses.
//!
//! Only schemas made of the keywords below get a plan ([`Plan::compile`] returns `None` for
//! anything else, and the layer keeps the full path):
//!
//! - checked here, on objects and arrays: `type` (for `object` / `array`), `properties`,
//!   `required`, `additionalProperties` (boolean or schema), `minProperties`, `maxProperties`,
//!   `items` (one schema or a boolean), `minItems`, `maxItems`;
//! - checked by `jsonschema` itself on each scalar, through [`Leaf`]: `type`, `enum`, `const`,
//!   `minLength`, `maxLength`, `pattern`, `format`, `minimum`, `maximum`, `exclusiveMinimum`,
//!   `exclusiveMaximum` — compiled with the options of `compile_schema`
//!   and the root's `$schema` (so the same draft);
//! - ignored (annotations): `$schema` (root only), `$id`, `title`, `description`, `$comment`,
//!   `examples`, `default`, `deprecated`, `readOnly`, `writeOnly`;
//! - boolean sub-schemas `true` / `false`.

use std::collections::HashSet;
use std::fmt;

use jsonschema::{Draft, Validator};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::leaf::{Leaf, LeafNode};

/// Most declared keys (`properties` ∪ `required`) per object schema; more → no plan.
const MAX_KNOWN_KEYS: usize = 256;
/// Undeclared keys of one object remembered inline before spilling to a `HashSet`.
const INLINE_UNKNOWN: usize = 16;
/// At or below this many declared keys, a key is looked up by a linear scan.
const LINEAR_LOOKUP: usize = 8;

/// The message of every error the plan raises; it never reaches a response (the layer falls back
/// to the full path, which reports the real reason).
const GIVE_UP: &str = "guard:plan-gives-up";

/// A schema compiled for the single-pass check.
pub(crate) struct Plan {
    root: Node,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Plan")
    }
}

impl Plan {
    /// Strict JSON only: every value allowed (the `json_only` layer).
    pub(crate) fn any() -> Self {
        Plan { root: Node::ANY }
    }

    /// The plan for `schema`, or `None` when it uses anything outside the supported subset
    /// (see the module docs). `schema` must already have compiled with
    /// `compile_schema`.
    pub(crate) fn compile(schema: &Value) -> Option<Self> {
        let dollar_schema = match schema {
            Value::Object(m) => m.get("$schema").cloned(),
            _ => None,
        };
        if let Some(uri) = &dollar_schema {
            // Only the five drafts `jsonschema` knows; a custom meta-schema keeps the full path.
            if matches!(Draft::default().detect(schema), Draft::Unknown) || !uri.is_string() {
                return None;
            }
        }
        let compiler = Compiler { dollar_schema };
        Some(Plan {
            root: compiler.node(schema, true)?,
        })
    }

    /// `true` when `bytes` is strict JSON that the schema accepts; `false` when not, or not sure.
    pub(crate) fn accepts(&self, bytes: &[u8]) -> bool {
        run(&self.root, bytes)
    }
}

/// `true` when `bytes` is strict JSON as [`JsonBody::parse_value`](super::JsonBody::parse_value) defines it;
/// `false` when not, or not sure (then ask `parse_strict`).
pub(crate) fn is_strict_json(bytes: &[u8]) -> bool {
    run(&ANY, bytes)
}

/// Runs `node` over the whole body. The body is checked as UTF-8 once, up front, so that
/// `serde_json` can read it as a `&str` and skip validating each string again (its `from_slice`
/// reader checks every string separately: a tenth of the work on the orders payload). A body that
/// is not UTF-8 is not accepted here; the full path refuses it (`parse_strict` reads bytes and
/// finds the bad sequence inside a string or as a syntax error).
fn run(node: &Node, bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    LARGE_FLOAT_SEEN.set(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let accepted = Seed { node }.deserialize(&mut de).is_ok() && de.end().is_ok();
    // A float of magnitude ≥ 2^63 may be an over-range integer literal (rounded by serde_json):
    // accepted only when no such literal is in the body, as `parse_strict` decides.
    accepted && !(LARGE_FLOAT_SEEN.get() && super::json::has_integer_beyond_64_bits(bytes))
}

thread_local! {
    /// Set by a pass that met a float an over-range integer literal may have become ([`run`]
    /// resets it; a pass runs to its end on one thread).
    static LARGE_FLOAT_SEEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// One compiled (sub-)schema.
struct Node {
    /// Schema `false`: nothing is valid.
    never: bool,
    /// Objects / arrays allowed by `type` (both when `type` is absent).
    object_ok: bool,
    array_ok: bool,
    /// `enum` or `const` present: a container needs a tree to compare, so the plan gives up.
    compares_containers: bool,
    /// The scalar keywords, compiled by `jsonschema` over [`Leaf`]; `None` when there are none.
    leaf: Option<Validator<Leaf>>,
    /// Declared keys (`properties` ∪ `required`), in declaration order; the index is the key's bit.
    keys: Vec<Key>,
    /// Indices of `keys` sorted by name (used above [`LINEAR_LOOKUP`] keys).
    sorted: Vec<u16>,
    required: Bits,
    /// Schema for keys not in `properties` (`None`: anything).
    additional: Option<Box<Node>>,
    min_properties: u64,
    max_properties: u64,
    /// Schema of every array element (`None`: anything).
    items: Option<Box<Node>>,
    min_items: u64,
    max_items: u64,
}

struct Key {
    name: Box<str>,
    /// `properties[name]`, or `None` when the key is only `required` (then `additional` applies).
    schema: Option<Node>,
}

impl Node {
    const ANY: Node = Node {
        never: false,
        object_ok: true,
        array_ok: true,
        compares_containers: false,
        leaf: None,
        keys: Vec::new(),
        sorted: Vec::new(),
        required: Bits::EMPTY,
        additional: None,
        min_properties: 0,
        max_properties: u64::MAX,
        items: None,
        min_items: 0,
        max_items: u64::MAX,
    };

    fn never() -> Node {
        Node {
            never: true,
            ..Node::ANY
        }
    }

    fn lookup(&self, name: &str) -> Option<usize> {
        if self.keys.len() <= LINEAR_LOOKUP {
            self.keys.iter().position(|k| &*k.name == name)
        } else {
            self.sorted
                .binary_search_by(|&i| (*self.keys[usize::from(i)].name).cmp(name))
                .ok()
                .map(|pos| usize::from(self.sorted[pos]))
        }
    }

    fn additional(&self) -> &Node {
        self.additional.as_deref().unwrap_or(&ANY)
    }

    fn items(&self) -> &Node {
        self.items.as_deref().unwrap_or(&ANY)
    }
}

static ANY: Node = Node::ANY;

/// Scalar keywords: handed to `jsonschema` through [`Leaf`].
const SCALAR_KEYWORDS: &[&str] = &[
    "type",
    "enum",
    "const",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
];

/// Annotations: no effect on validity.
const ANNOTATIONS: &[&str] = &[
    "$id",
    "title",
    "description",
    "$comment",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
];

struct Compiler {
    /// The root's `$schema`, copied into every leaf schema so it compiles under the same draft.
    dollar_schema: Option<Value>,
}

impl Compiler {
    fn node(&self, schema: &Value, root: bool) -> Option<Node> {
        let map = match schema {
            Value::Bool(true) => return Some(Node::ANY),
            Value::Bool(false) => return Some(Node::never()),
            Value::Object(map) => map,
            _ => return None,
        };
        let mut node = Node::ANY;
        let mut leaf = Map::new();
        let mut properties: Option<&Map<String, Value>> = None;
        let mut required: &[Value] = &[];
        for (keyword, value) in map {
            let k = keyword.as_str();
            if SCALAR_KEYWORDS.contains(&k) {
                leaf.insert(keyword.clone(), value.clone());
                match k {
                    "type" => {
                        let (object_ok, array_ok) = container_types(value)?;
                        node.object_ok = object_ok;
                        node.array_ok = array_ok;
                    }
                    "enum" | "const" => node.compares_containers = true,
                    _ => {}
                }
                continue;
            }
            if ANNOTATIONS.contains(&k) || (root && k == "$schema") {
                continue;
            }
            match k {
                "properties" => properties = Some(value.as_object()?),
                "required" => required = value.as_array()?,
                "additionalProperties" => {
                    node.additional = Some(Box::new(self.node(value, false)?));
                }
                "minProperties" => node.min_properties = value.as_u64()?,
                "maxProperties" => node.max_properties = value.as_u64()?,
                // Only the one-schema form; the tuple form (array) is not supported.
                "items" if !value.is_array() => {
                    node.items = Some(Box::new(self.node(value, false)?));
                }
                "minItems" => node.min_items = value.as_u64()?,
                "maxItems" => node.max_items = value.as_u64()?,
                _ => return None,
            }
        }
        self.finish(node, properties, required, leaf)
    }

    /// Adds `properties` and `required` to the node's keys, and compiles its scalar keywords
    /// (`leaf`) under the root's draft.
    fn finish(
        &self,
        mut node: Node,
        properties: Option<&Map<String, Value>>,
        required: &[Value],
        mut leaf: Map<String, Value>,
    ) -> Option<Node> {
        if let Some(props) = properties {
            for (name, sub) in props {
                node.keys.push(Key {
                    name: name.as_str().into(),
                    schema: Some(self.node(sub, false)?),
                });
            }
        }
        index_keys(&mut node, required)?;
        if !leaf.is_empty() {
            if let Some(s) = &self.dollar_schema {
                leaf.insert("$schema".into(), s.clone());
            }
            node.leaf = Some(
                super::compile::options_for::<Leaf>()
                    .build(&Value::Object(leaf))
                    .ok()?,
            );
        }
        Some(node)
    }
}

/// Marks the `required` names among the node's keys (adding the ones `properties` did not name)
/// and sorts the keys for lookup. `None` past [`MAX_KNOWN_KEYS`] or for a non-string name.
fn index_keys(node: &mut Node, required: &[Value]) -> Option<()> {
    for name in required {
        let name = name.as_str()?;
        let index = match node.keys.iter().position(|k| &*k.name == name) {
            Some(i) => i,
            None => {
                node.keys.push(Key {
                    name: name.into(),
                    schema: None,
                });
                node.keys.len() - 1
            }
        };
        if index >= MAX_KNOWN_KEYS {
            return None;
        }
        node.required.set(index);
    }
    if node.keys.len() > MAX_KNOWN_KEYS {
        return None;
    }
    let mut sorted: Vec<u16> = (0..node.keys.len())
        .filter_map(|i| u16::try_from(i).ok())
        .collect();
    sorted.sort_by(|&a, &b| {
        node.keys[usize::from(a)]
            .name
            .cmp(&node.keys[usize::from(b)].name)
    });
    node.sorted = sorted;
    Some(())
}

/// Which containers a `type` value lets through: `(object, array)`. `None` for a malformed
/// `type` (the root compile would have refused it).
fn container_types(value: &Value) -> Option<(bool, bool)> {
    let names: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().map(Value::as_str).collect::<Option<_>>()?,
        _ => return None,
    };
    Some((names.contains(&"object"), names.contains(&"array")))
}

/// A fixed set of [`MAX_KNOWN_KEYS`] bits: which declared keys are required / were seen.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Bits([u64; MAX_KNOWN_KEYS / 64]);

impl Bits {
    const EMPTY: Bits = Bits([0; MAX_KNOWN_KEYS / 64]);

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    /// Sets bit `i`; `true` when it was already set.
    fn test_and_set(&mut self, i: usize) -> bool {
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        let was = self.0[word] & bit != 0;
        self.0[word] |= bit;
        was
    }

    fn contains_all(&self, other: &Bits) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & b == *b)
    }
}

/// Hashes of the undeclared keys of one object, to refuse duplicates without keeping the keys.
/// Two different keys with the same hash look like a duplicate: the plan gives up and the full
/// path decides, so a collision costs time, never a wrong verdict.
struct SeenUnknown {
    inline: [u64; INLINE_UNKNOWN],
    len: usize,
    spill: Option<HashSet<u64>>,
}

impl SeenUnknown {
    fn new() -> Self {
        SeenUnknown {
            inline: [0; INLINE_UNKNOWN],
            len: 0,
            spill: None,
        }
    }

    /// `false` when `hash` was already there.
    fn insert(&mut self, hash: u64) -> bool {
        if let Some(set) = &mut self.spill {
            return set.insert(hash);
        }
        if self.inline[..self.len].contains(&hash) {
            return false;
        }
        if self.len < INLINE_UNKNOWN {
            self.inline[self.len] = hash;
            self.len += 1;
            return true;
        }
        let mut set: HashSet<u64> = self.inline.iter().copied().collect();
        let fresh = set.insert(hash);
        self.spill = Some(set);
        fresh
    }
}

/// A word-at-a-time multiplicative hash (FxHash's step over 8-byte words, length mixed in):
/// fast on short keys. Not collision-resistant, and need not be: a collision only makes the plan
/// give up (see [`SeenUnknown`]), so a crafted one costs the full path, never a wrong verdict.
fn key_hash(s: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let step = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(K);
    let bytes = s.as_bytes();
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        h = step(h, u64::from_le_bytes(w));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = step(h, u64::from_le_bytes(w));
    }
    h
}

fn give_up<T, E: de::Error>() -> Result<T, E> {
    Err(E::custom(GIVE_UP))
}

/// Runs a [`Node`] over one value.
#[derive(Clone, Copy)]
struct Seed<'p> {
    node: &'p Node,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Seed<'_> {
    fn scalar<E: de::Error>(self, leaf: LeafNode<'_>) -> Result<(), E> {
        if self.node.never {
            return give_up();
        }
        match &self.node.leaf {
            Some(v) if !v.is_valid(leaf) => give_up(),
            _ => Ok(()),
        }
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(LeafNode::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(LeafNode::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(LeafNode::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // Same rules as `parse_strict`: a float that is not a finite `Number` is refused, and one
        // an over-range integer literal may have become is checked on the literal after the pass.
        if super::json::may_be_large_integer(v) {
            LARGE_FLOAT_SEEN.set(true);
        }
        match Number::from_f64(v) {
            Some(n) => self.scalar(LeafNode::Number(n)),
            None => give_up(),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(LeafNode::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(LeafNode::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let node = self.node;
        if node.never || !node.array_ok || node.compares_containers {
            return give_up();
        }
        let items = Seed { node: node.items() };
        let mut count: u64 = 0;
        while seq.next_element_seed(items)?.is_some() {
            count += 1;
            if count > node.max_items {
                return give_up();
            }
        }
        if count < node.min_items {
            return give_up();
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let node = self.node;
        if node.never || !node.object_ok || node.compares_containers {
            return give_up();
        }
        let mut seen = Bits::EMPTY;
        // Only objects with undeclared keys need it (never under `additionalProperties: false`).
        let mut unknown: Option<SeenUnknown> = None;
        let mut count: u64 = 0;
        while let Some(key) = map.next_key_seed(KeySeed { node })? {
            count += 1;
            if count > node.max_properties {
                return give_up();
            }
            let schema = match key {
                KeyId::Known(i) => {
                    if seen.test_and_set(i) {
                        return give_up();
                    }
                    node.keys[i]
                        .schema
                        .as_ref()
                        .unwrap_or_else(|| node.additional())
                }
                KeyId::Unknown(hash) => {
                    if !unknown.get_or_insert_with(SeenUnknown::new).insert(hash) {
                        return give_up();
                    }
                    node.additional()
                }
            };
            map.next_value_seed(Seed { node: schema })?;
        }
        if count < node.min_properties || !seen.contains_all(&node.required) {
            return give_up();
        }
        Ok(())
    }
}

/// A key as the plan sees it: the index of a declared key, or the hash of another one.
enum KeyId {
    Known(usize),
    Unknown(u64),
}

/// Reads one object key (borrowed or unescaped into serde_json's scratch buffer, never kept).
#[derive(Clone, Copy)]
struct KeySeed<'p> {
    node: &'p Node,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = KeyId;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<KeyId, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = KeyId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyId, E> {
        let node = self.node;
        if let Some(i) = node.lookup(v) {
            return Ok(KeyId::Known(i));
        }
        if node.additional.as_deref().is_some_and(|a| a.never) {
            // `additionalProperties: false`: no need to hash, the object is refused.
            return give_up();
        }
        Ok(KeyId::Unknown(key_hash(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(schema: Value) -> Plan {
        super::super::compile::compile_schema(&schema).expect("schema compiles");
        Plan::compile(&schema).expect("schema gets a plan")
    }

    #[test]
    fn any_plan_accepts_strict_json_only() {
        let p = Plan::any();
        assert!(p.accepts(br#"{"a":[1,2,{"b":null}],"c":"\u00e9"}"#));
        assert!(!p.accepts(br#"{"a":1,"a":2}"#));
        assert!(!p.accepts(br#"{"a":1,"\u0061":2}"#));
        assert!(!p.accepts(b"1e400"));
        assert!(!p.accepts(b"{} x"));
        assert!(!p.accepts(b""));
    }

    #[test]
    fn many_undeclared_keys_spill_and_still_refuse_duplicates() {
        let p = Plan::any();
        let keys: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let ok = format!("{{{}}}", keys.join(","));
        assert!(p.accepts(ok.as_bytes()));
        let dup = format!("{{{},\"k3\":0}}", keys.join(","));
        assert!(!p.accepts(dup.as_bytes()));
    }

    #[test]
    fn declared_keys_use_the_sorted_lookup_above_the_linear_limit() {
        let props: Map<String, Value> = (0..20)
            .map(|i| (format!("p{i}"), json!({"type": "integer"})))
            .collect();
        let p = plan(json!({"type": "object", "properties": props, "required": ["p19", "p0"]}));
        assert!(p.accepts(br#"{"p0":1,"p19":2,"p7":3,"x":"y"}"#));
        assert!(!p.accepts(br#"{"p0":1,"p19":"2"}"#));
        assert!(!p.accepts(br#"{"p0":1}"#));
        assert!(!p.accepts(br#"{"p0":1,"p19":2,"p19":2}"#));
    }

    #[test]
    fn more_declared_keys_than_the_bit_set_holds_get_no_plan() {
        let names: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
        let props: Map<String, Value> = names.iter().map(|n| (n.clone(), json!({}))).collect();
        for schema in [
            json!({"properties": props}),
            json!({"required": names}),
            json!({"properties": {"a": {}}, "required": names}),
        ] {
            assert!(Plan::compile(&schema).is_none());
        }
        let limit: Vec<String> = (0..MAX_KNOWN_KEYS).map(|i| format!("k{i}")).collect();
        let p = plan(json!({"required": limit}));
        assert!(!p.accepts(br#"{"k0":1}"#));
    }

    #[test]
    fn unsupported_keywords_get_no_plan() {
        for schema in [
            json!({"$ref": "#/$defs/a", "$defs": {"a": {}}}),
            json!({"allOf": [{}]}),
            json!({"properties": {"a": {"not": {}}}}),
            json!({"items": [{}]}),
            json!({"x-custom": 1}),
            json!({"properties": {"a": {"$schema": "https://json-schema.org/draft/2020-12/schema"}}}),
            json!({"$schema": "https://example.com/custom-meta"}),
        ] {
            assert!(Plan::compile(&schema).is_none(), "{schema}");
        }
    }
}
