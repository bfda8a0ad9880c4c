//! Flattening the unpickled checkpoint into dotted names, the way `state_dict` keys read
//! (`state_dict.net.blocks.0.w`), separating tensors from the values to report as skipped.

use super::Skipped;
use super::pickle::{Node, Pickle, TensorRef, Value, kind};

/// Deeper than any real checkpoint; a cyclic structure (a list appended to itself) stops here.
const MAX_DEPTH: usize = 64;

/// Walk steps allowed per arena node: memo references let a small pickle describe a DAG whose
/// expansion into names is exponential, while a real checkpoint visits each node about once.
const VISITS_PER_NODE: usize = 16;

pub(super) struct Flat<'p> {
    pub tensors: Vec<(String, &'p TensorRef)>,
    pub skipped: Vec<Skipped>,
}

pub(super) fn flatten(pickle: &Pickle) -> Result<Flat<'_>, String> {
    let Some(Node::Dict(items)) = pickle.node(pickle.root) else {
        return Err(format!(
            "the top-level object is a {}, not a dict of tensors",
            describe(pickle, pickle.root)
        ));
    };
    let mut walk = Walk {
        pickle,
        flat: Flat {
            tensors: Vec::new(),
            skipped: Vec::new(),
        },
        budget: pickle.nodes.len().saturating_mul(VISITS_PER_NODE),
    };
    for &(key, value) in items {
        walk.visit(value, key_text(pickle, key), 1)?;
    }
    Ok(walk.flat)
}

struct Walk<'p> {
    pickle: &'p Pickle,
    flat: Flat<'p>,
    budget: usize,
}

impl<'p> Walk<'p> {
    fn visit(&mut self, value: Value, name: String, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "`{name}` is nested more than {MAX_DEPTH} levels deep"
            ));
        }
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or("the object graph expands to too many names (containers shared many times)")?;
        let p = self.pickle;
        let children: Vec<(String, Value)> = match p.node(value) {
            Some(Node::Tensor(t)) => {
                self.flat.tensors.push((name, t));
                return Ok(());
            }
            Some(Node::Dict(items)) => items
                .iter()
                .map(|&(k, v)| (join(&name, &key_text(p, k)), v))
                .collect(),
            Some(Node::List(items) | Node::Tuple(items)) => items
                .iter()
                .enumerate()
                .map(|(i, &v)| (join(&name, &i.to_string()), v))
                .collect(),
            _ => {
                let kind = describe(p, value);
                self.flat.skipped.push(Skipped { name, kind });
                return Ok(());
            }
        };
        let (tensors, skipped) = (self.flat.tensors.len(), self.flat.skipped.len());
        for (child, v) in children {
            self.visit(v, child, depth + 1)?;
        }
        // A container without tensors is one setting (a config dict, an optimizer's
        // param_groups): report it whole rather than leaf by leaf.
        if self.flat.tensors.len() == tensors {
            self.flat.skipped.truncate(skipped);
            let kind = describe(p, value);
            self.flat.skipped.push(Skipped { name, kind });
        }
        Ok(())
    }
}

fn join(prefix: &str, key: &str) -> String {
    format!("{prefix}.{key}")
}

/// Dict keys as Python's `str()` would print them; state dicts use strings, optimizer states
/// ints.
fn key_text(p: &Pickle, key: Value) -> String {
    match key {
        Value::None => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Node(_) => match p.node(key) {
            Some(Node::Str(s)) => s.clone(),
            _ => format!("<{}>", describe(p, key)),
        },
    }
}

fn describe(p: &Pickle, value: Value) -> String {
    match value {
        Value::None => "None".into(),
        Value::Bool(_) => "bool".into(),
        Value::Int(_) => "int".into(),
        Value::Float(_) => "float".into(),
        Value::Node(_) => p.node(value).map_or("?", kind).to_string(),
    }
}
