//! A JSON representation for `jsonschema` that holds one scalar borrowed from the body.
//!
//! The single-pass plan ([`super::plan`]) checks structure itself (objects, arrays, `properties`,
//! `required`, …) and hands every scalar to a small `jsonschema` validator compiled from the
//! scalar keywords of its sub-schema (`type`, `enum`, `const`, `pattern`, `format`, lengths,
//! bounds). Validating through this representation lets `jsonschema` apply its own semantics —
//! ECMA regex translation, formats, code-point lengths, integer-ness of `1.0`, exact comparison of
//! big numbers — to a `&str` still in the request body, without building a `serde_json::Value`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::marker::PhantomData;

use jsonschema::json::{Array, Json, Node, NodeIdentity, Object, cmp};
use jsonschema::types::JsonType;
use serde_json::{Number, Value};

/// The representation: a scalar node, never an object or an array.
pub(crate) struct Leaf;

/// One scalar, exactly as [`parse_strict`](super::json::parse_strict) would have stored it (same
/// `Number` from the same `visit_*` call), but with the string borrowed.
#[derive(Clone, Debug)]
pub(crate) enum LeafNode<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(&'a str),
}

impl Json for Leaf {
    type Node<'a> = LeafNode<'a>;
    type PreparedKey = String;
    type StringBuffer = ();

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>(_buffer: &mut (), string: &str, f: impl FnOnce(LeafNode<'_>) -> T) -> T {
        f(LeafNode::Str(string))
    }
}

impl<'a> Node<'a, Leaf> for LeafNode<'a> {
    type Object = NoContainer<'a>;
    type Array = NoContainer<'a>;
    type Number = Number;

    fn as_object(&self) -> Option<NoContainer<'a>> {
        None
    }
    fn as_array(&self) -> Option<NoContainer<'a>> {
        None
    }
    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self {
            LeafNode::Str(s) => Some(Cow::Borrowed(s)),
            _ => None,
        }
    }
    fn as_number(&self) -> Option<Number> {
        match self {
            LeafNode::Number(n) => Some(n.clone()),
            _ => None,
        }
    }
    fn as_boolean(&self) -> Option<bool> {
        match self {
            LeafNode::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, LeafNode::Null)
    }
    fn is_number(&self) -> bool {
        matches!(self, LeafNode::Number(_))
    }
    fn json_type(&self) -> JsonType {
        match self {
            LeafNode::Null => JsonType::Null,
            LeafNode::Bool(_) => JsonType::Boolean,
            LeafNode::Number(_) => JsonType::Number,
            LeafNode::Str(_) => JsonType::String,
        }
    }
    fn string_length(&self) -> Option<u64> {
        match self {
            LeafNode::Str(s) => Some(s.chars().count() as u64),
            _ => None,
        }
    }
    /// `enum` / `const`: strings compare without building a `Value`; the other scalars build one
    /// on the stack (no allocation) and use `jsonschema`'s own equality (numbers mathematically).
    fn equals_value(&self, expected: &Value) -> bool {
        match self {
            LeafNode::Str(s) => matches!(expected, Value::String(e) if e == s),
            LeafNode::Null => cmp::equal(&Value::Null, expected),
            LeafNode::Bool(b) => cmp::equal(&Value::Bool(*b), expected),
            LeafNode::Number(n) => cmp::equal(&Value::Number(n.clone()), expected),
        }
    }
    /// Cold paths only (error messages, annotations); `is_valid` never calls it for scalars.
    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(match self {
            LeafNode::Null => Value::Null,
            LeafNode::Bool(b) => Value::Bool(*b),
            LeafNode::Number(n) => Value::Number(n.clone()),
            LeafNode::Str(s) => Value::String((*s).to_owned()),
        })
    }
    /// Scalars are never containers and leaf schemas hold no `$ref`: no identity is needed.
    fn identity(&self) -> Option<NodeIdentity> {
        None
    }
}

/// Stands for the object and array types of [`Leaf`]; no value of it can exist.
pub(crate) struct NoContainer<'a> {
    never: Infallible,
    _life: PhantomData<&'a ()>,
}

impl<'a> Object<'a, Leaf> for NoContainer<'a> {
    type Node = LeafNode<'a>;
    type MemberName = &'a str;
    type MembersIter = std::iter::Empty<(&'a str, LeafNode<'a>)>;

    fn len(&self) -> usize {
        match self.never {}
    }
    fn get(&self, _key: &String) -> Option<LeafNode<'a>> {
        match self.never {}
    }
    fn members(&self) -> Self::MembersIter {
        match self.never {}
    }
}

impl<'a> Array<'a, Leaf> for NoContainer<'a> {
    type Node = LeafNode<'a>;
    type ElementsIter = std::iter::Empty<LeafNode<'a>>;

    fn len(&self) -> usize {
        match self.never {}
    }
    fn elements(&self) -> Self::ElementsIter {
        match self.never {}
    }
}
