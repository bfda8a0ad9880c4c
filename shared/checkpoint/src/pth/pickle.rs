//! A pickle virtual machine for what `torch.save` writes: protocol 2 by default, plus the protocol
//! 3–5 opcodes a `pickle_protocol` argument brings. It builds an arena of nodes instead of Python
//! objects. Only torch's tensor-rebuilding functions and `collections.OrderedDict` are understood;
//! any other global becomes an opaque object whose contents are dropped, so that training
//! checkpoints full of arbitrary Python values still load and their leaves can be reported.
//!
//! Values refer to arena nodes by index, which gives the memo Python's reference semantics (a dict
//! filled after being memoized is seen filled through every `BINGET`) and keeps cyclic or deeply
//! nested input from turning into reference cycles or recursive drops.

use std::collections::HashMap;

/// Guards the only recursion in the VM (`_rebuild_from_type_v2` wrapping another rebuild call).
const MAX_CALL_DEPTH: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Node(usize),
}

#[derive(Debug)]
pub(super) enum Node {
    Str(String),
    /// A value reported only by its kind: bytes, an integer wider than 64 bits, a set.
    Leaf(&'static str),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// A reference to a module-level name, `module.qualname`.
    Global(String),
    /// An instance this reader does not model, named by its class (or the function that made it).
    Object(String),
    Storage(Storage),
    Tensor(TensorRef),
}

/// A storage record as named by torch's persistent id `('storage', class, key, location, numel)`.
#[derive(Debug, Clone)]
pub(super) struct Storage {
    /// Dotted path of the storage class (`torch.FloatStorage`, `torch.storage.UntypedStorage`).
    pub class: String,
    /// Record name under `<archive>/data/`.
    pub key: String,
    /// Elements of the storage class (bytes for an untyped storage).
    pub numel: u64,
}

/// The arguments of a `_rebuild_tensor*` call: a strided view into a storage.
#[derive(Debug, Clone)]
pub(super) struct TensorRef {
    pub storage: Storage,
    /// `_rebuild_tensor_v3` names the dtype (a `torch.<dtype>` path); older calls take it from
    /// the typed storage class.
    pub dtype: Option<String>,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub strides: Vec<u64>,
}

#[derive(Debug)]
pub(super) struct Pickle {
    pub nodes: Vec<Node>,
    pub root: Value,
}

impl Pickle {
    pub fn node(&self, value: Value) -> Option<&Node> {
        match value {
            Value::Node(id) => self.nodes.get(id),
            Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) => None,
        }
    }
}

/// Runs `data` to its STOP opcode. Errors give the byte offset of the failing opcode.
pub(super) fn parse(data: &[u8]) -> Result<Pickle, String> {
    let mut vm = Vm {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        nodes: Vec::new(),
    };
    loop {
        let at = vm.pos;
        let op = vm.byte().map_err(|e| format!("byte {at}: {e}"))?;
        match vm.step(op) {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop) => break,
            Err(e) => return Err(format!("byte {at} (opcode {op:#04x}): {e}")),
        }
    }
    let root = vm.pop().map_err(|e| format!("at STOP: {e}"))?;
    Ok(Pickle {
        nodes: vm.nodes,
        root,
    })
}

enum Flow {
    Continue,
    Stop,
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// Stack depths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    nodes: Vec<Node>,
}

impl Vm<'_> {
    fn step(&mut self, op: u8) -> Result<Flow, String> {
        match op {
            // PROTO
            0x80 => {
                let proto = self.byte()?;
                if proto > 5 {
                    return Err(format!("pickle protocol {proto} is newer than 5"));
                }
            }
            // FRAME: framing only groups opcodes for buffered reads.
            0x95 => {
                self.take(8)?;
            }
            b'.' => return Ok(Flow::Stop),
            b'(' => self.marks.push(self.stack.len()),
            // POP: Python drops the MARK itself when nothing was pushed after it.
            b'0' => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = *self.stack.last().ok_or("DUP on an empty stack")?;
                self.stack.push(top);
            }

            // Scalars.
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(self.array()?);
                self.stack.push(Value::Int(v.into()));
            }
            b'K' => {
                let v = self.byte()?;
                self.stack.push(Value::Int(v.into()));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array()?);
                self.stack.push(Value::Int(v.into()));
            }
            0x8a => {
                let n = usize::from(self.byte()?);
                self.long(n)?;
            }
            0x8b => {
                let n = i32::from_le_bytes(self.array()?);
                let n = usize::try_from(n).map_err(|_| "negative LONG4 length")?;
                self.long(n)?;
            }
            b'G' => {
                let v = f64::from_be_bytes(self.array()?);
                self.stack.push(Value::Float(v));
            }

            // Strings and bytes.
            b'X' => {
                let n = u32::from_le_bytes(self.array()?);
                self.unicode(n.into())?;
            }
            0x8c => {
                let n = self.byte()?;
                self.unicode(n.into())?;
            }
            0x8d => {
                let n = u64::from_le_bytes(self.array()?);
                self.unicode(n)?;
            }
            // BINSTRING / SHORT_BINSTRING: Python 2 `str`, which Python 3 reads as text.
            b'T' => {
                let n = i32::from_le_bytes(self.array()?);
                let n = u64::try_from(n).map_err(|_| "negative BINSTRING length")?;
                let s = String::from_utf8_lossy(self.take_u64(n)?).into_owned();
                self.push_node(Node::Str(s));
            }
            b'U' => {
                let n = self.byte()?;
                let s = String::from_utf8_lossy(self.take(n.into())?).into_owned();
                self.push_node(Node::Str(s));
            }
            b'B' => {
                let n = u32::from_le_bytes(self.array()?);
                self.bytes(n.into())?;
            }
            b'C' => {
                let n = self.byte()?;
                self.bytes(n.into())?;
            }
            0x8e | 0x96 => {
                let n = u64::from_le_bytes(self.array()?);
                self.bytes(n)?;
            }

            // Containers.
            b')' => self.push_node(Node::Tuple(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.push_node(Node::Tuple(items));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let floor = self.marks.last().copied().unwrap_or(0);
                let at = self
                    .stack
                    .len()
                    .checked_sub(n)
                    .filter(|&at| at >= floor)
                    .ok_or("stack underflow building a tuple")?;
                let items = self.stack.split_off(at);
                self.push_node(Node::Tuple(items));
            }
            b']' => self.push_node(Node::List(Vec::new())),
            b'l' => {
                let items = self.pop_mark()?;
                self.push_node(Node::List(items));
            }
            b'a' => {
                let item = self.pop()?;
                self.append(vec![item])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            b'}' => self.push_node(Node::Dict(Vec::new())),
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = pairs(items)?;
                self.push_node(Node::Dict(pairs));
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![(key, value)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(pairs(items)?)?;
            }
            // EMPTY_SET, ADDITEMS, FROZENSET: sets never hold tensors in a checkpoint.
            0x8f => self.push_node(Node::Leaf("set")),
            0x90 => {
                self.pop_mark()?;
            }
            0x91 => {
                self.pop_mark()?;
                self.push_node(Node::Leaf("frozenset"));
            }

            // Memo.
            b'q' => {
                let i = self.byte()?;
                self.put(i.into())?;
            }
            b'r' => {
                let i = u32::from_le_bytes(self.array()?);
                self.put(i)?;
            }
            0x94 => {
                let i = u32::try_from(self.memo.len()).map_err(|_| "memo overflow")?;
                self.put(i)?;
            }
            b'h' => {
                let i = self.byte()?;
                self.get(i.into())?;
            }
            b'j' => {
                let i = u32::from_le_bytes(self.array()?);
                self.get(i)?;
            }

            // Objects.
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.push_node(Node::Global(format!("{module}.{name}")));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(module), Some(name)) = (self.str(module), self.str(name)) else {
                    return Err("STACK_GLOBAL needs two strings".into());
                };
                let path = format!("{module}.{name}");
                self.push_node(Node::Global(path));
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let node = self.call(callable, args, 0)?;
                self.push_node(node);
            }
            0x81 => {
                self.pop()?;
                let class = self.pop()?;
                let node = self.instantiate(class);
                self.push_node(node);
            }
            0x92 => {
                self.pop()?;
                self.pop()?;
                let class = self.pop()?;
                let node = self.instantiate(class);
                self.push_node(node);
            }
            // BUILD sets attributes (an OrderedDict's `_metadata`, an object's fields); none of
            // them are reported, so the state is dropped.
            b'b' => {
                self.pop()?;
                if self.stack.is_empty() {
                    return Err("BUILD on an empty stack".into());
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                let storage = self.persistent_load(pid)?;
                self.push_node(Node::Storage(storage));
            }
            _ => return Err("unsupported pickle opcode".into()),
        }
        Ok(Flow::Continue)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| {
                let left = self.data.len() - self.pos;
                format!("truncated: needs {n} bytes, {left} left")
            })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn take_u64(&mut self, n: u64) -> Result<&[u8], String> {
        let n = usize::try_from(n).map_err(|_| format!("length {n} does not fit in memory"))?;
        self.take(n)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        let [b] = self.array()?;
        Ok(b)
    }

    /// A newline-terminated text argument (GLOBAL's module and name).
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated GLOBAL name")?;
        let text = std::str::from_utf8(&rest[..n])
            .map_err(|_| "GLOBAL name is not UTF-8")?
            .to_string();
        self.pos += n + 1;
        Ok(text)
    }

    fn long(&mut self, n: usize) -> Result<(), String> {
        let bytes = self.take(n)?;
        if n > 8 {
            self.push_node(Node::Leaf("int"));
            return Ok(());
        }
        // Two's complement, little-endian: sign-extend from the top byte.
        let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut buf = [fill; 8];
        buf[..n].copy_from_slice(bytes);
        self.stack.push(Value::Int(i64::from_le_bytes(buf)));
        Ok(())
    }

    fn unicode(&mut self, n: u64) -> Result<(), String> {
        let s = std::str::from_utf8(self.take_u64(n)?)
            .map_err(|_| "string is not UTF-8")?
            .to_string();
        self.push_node(Node::Str(s));
        Ok(())
    }

    fn bytes(&mut self, n: u64) -> Result<(), String> {
        self.take_u64(n)?;
        self.push_node(Node::Leaf("bytes"));
        Ok(())
    }

    fn push_node(&mut self, node: Node) {
        self.nodes.push(node);
        self.stack.push(Value::Node(self.nodes.len() - 1));
    }

    fn pop(&mut self) -> Result<Value, String> {
        // Popping below the last MARK would pop the mark's items out from under it.
        if self.marks.last() == Some(&self.stack.len()) {
            return Err("stack underflow (at a MARK)".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self.marks.pop().ok_or("no MARK to pop to")?;
        Ok(self.stack.split_off(at))
    }

    fn put(&mut self, i: u32) -> Result<(), String> {
        let top = *self.stack.last().ok_or("memoizing an empty stack")?;
        self.memo.insert(i, top);
        Ok(())
    }

    fn get(&mut self, i: u32) -> Result<(), String> {
        let v = *self
            .memo
            .get(&i)
            .ok_or_else(|| format!("memo entry {i} was never stored"))?;
        self.stack.push(v);
        Ok(())
    }

    /// The mutable node under the top of the stack, which APPEND/SETITEM fill.
    fn target(&mut self) -> Result<&mut Node, String> {
        match self.stack.last() {
            Some(&Value::Node(id)) => self.nodes.get_mut(id).ok_or("dangling node".into()),
            Some(_) => Err("adding items to a scalar".into()),
            None => Err("adding items to an empty stack".into()),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), String> {
        match self.target()? {
            Node::List(list) => list.extend(items),
            Node::Object(_) => {}
            other @ (Node::Str(_)
            | Node::Leaf(_)
            | Node::Tuple(_)
            | Node::Dict(_)
            | Node::Global(_)
            | Node::Storage(_)
            | Node::Tensor(_)) => return Err(format!("APPEND to a {}", kind(other))),
        }
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), String> {
        match self.target()? {
            Node::Dict(dict) => dict.extend(pairs),
            Node::Object(_) => {}
            other @ (Node::Str(_)
            | Node::Leaf(_)
            | Node::Tuple(_)
            | Node::List(_)
            | Node::Global(_)
            | Node::Storage(_)
            | Node::Tensor(_)) => return Err(format!("SETITEM on a {}", kind(other))),
        }
        Ok(())
    }

    fn str(&self, v: Value) -> Option<&str> {
        let Node::Str(s) = self.node(v)? else {
            return None;
        };
        Some(s)
    }

    fn node(&self, v: Value) -> Option<&Node> {
        match v {
            Value::Node(id) => self.nodes.get(id),
            Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) => None,
        }
    }

    fn tuple(&self, v: Value) -> Option<&[Value]> {
        let Node::Tuple(items) = self.node(v)? else {
            return None;
        };
        Some(items)
    }

    fn global(&self, v: Value) -> Option<&str> {
        let Node::Global(path) = self.node(v)? else {
            return None;
        };
        Some(path)
    }

    /// A tuple of non-negative ints (sizes, strides).
    fn dims(&self, v: Value) -> Option<Vec<u64>> {
        self.tuple(v)?
            .iter()
            .map(|&d| match d {
                Value::Int(i) => u64::try_from(i).ok(),
                Value::None | Value::Bool(_) | Value::Float(_) | Value::Node(_) => None,
            })
            .collect()
    }

    fn instantiate(&self, class: Value) -> Node {
        match self.global(class) {
            Some("collections.OrderedDict") => Node::Dict(Vec::new()),
            Some(path) => Node::Object(path.to_string()),
            None => Node::Object("object".into()),
        }
    }

    /// REDUCE: the few functions that make tensors and dicts are evaluated, anything else
    /// becomes an opaque object.
    fn call(&self, callable: Value, args: Value, depth: usize) -> Result<Node, String> {
        let Some(path) = self.global(callable) else {
            return Ok(Node::Object("object".into()));
        };
        let bad = |what: &str| format!("{path}: {what}");
        match path {
            "torch._utils._rebuild_tensor"
            | "torch._utils._rebuild_tensor_v2"
            | "torch._utils._rebuild_tensor_v3" => {
                let args = self
                    .tuple(args)
                    .ok_or_else(|| bad("arguments are not a tuple"))?;
                let tensor = self
                    .tensor(args, path.ends_with("v3"))
                    .map_err(|e| bad(&e))?;
                Ok(Node::Tensor(tensor))
            }
            // A Parameter pickles as its data tensor plus flags the reader has no use for.
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                let data = self
                    .tuple(args)
                    .and_then(|a| a.first().copied())
                    .ok_or_else(|| bad("no data argument"))?;
                self.copy(data)
            }
            // Tensors with Python attributes or subclasses: (func, type, args, state).
            "torch._tensor._rebuild_from_type_v2" => {
                if depth >= MAX_CALL_DEPTH {
                    return Err(bad("nested too deeply"));
                }
                match self.tuple(args) {
                    Some(&[func, _, inner, ..]) => self.call(func, inner, depth + 1),
                    _ => Err(bad("expected (func, type, args, state)")),
                }
            }
            "collections.OrderedDict" if self.tuple(args).is_some_and(<[_]>::is_empty) => {
                Ok(Node::Dict(Vec::new()))
            }
            // How protocol 2 pickles plain class instances: (class, base, state).
            "copyreg._reconstructor" => {
                let class = self.tuple(args).and_then(|a| a.first().copied());
                Ok(class.map_or(Node::Object(path.to_string()), |c| self.instantiate(c)))
            }
            _ => Ok(Node::Object(path.to_string())),
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`; v3 adds the dtype seventh.
    fn tensor(&self, args: &[Value], v3: bool) -> Result<TensorRef, String> {
        let (Some(&storage), Some(&offset), Some(&size), Some(&stride)) =
            (args.first(), args.get(1), args.get(2), args.get(3))
        else {
            return Err("expected (storage, offset, size, stride, ...)".into());
        };
        let Some(Node::Storage(storage)) = self.node(storage) else {
            return Err("first argument is not a storage".into());
        };
        let Value::Int(offset) = offset else {
            return Err("storage offset is not an int".into());
        };
        let offset = u64::try_from(offset).map_err(|_| "negative storage offset")?;
        let shape = self
            .dims(size)
            .ok_or("size is not a tuple of non-negative ints")?;
        let strides = self
            .dims(stride)
            .ok_or("stride is not a tuple of non-negative ints")?;
        let dtype = if v3 {
            let dtype = args
                .get(6)
                .and_then(|&d| self.global(d))
                .ok_or("seventh argument is not a dtype")?;
            Some(dtype.to_string())
        } else {
            None
        };
        Ok(TensorRef {
            storage: storage.clone(),
            dtype,
            offset,
            shape,
            strides,
        })
    }

    /// Re-creates the node `v` refers to, for calls that return one of their arguments.
    fn copy(&self, v: Value) -> Result<Node, String> {
        match self.node(v) {
            Some(Node::Tensor(t)) => Ok(Node::Tensor(t.clone())),
            Some(other) => Ok(Node::Object(kind(other).to_string())),
            None => Err("a tensor argument is a scalar".into()),
        }
    }

    /// BINPERSID: torch refers to storage records as `('storage', class, key, location, numel)`.
    fn persistent_load(&self, pid: Value) -> Result<Storage, String> {
        let bad = || "persistent id is not ('storage', class, key, location, numel)".to_string();
        let &[tag, class, key, _location, numel] = self.tuple(pid).ok_or_else(bad)? else {
            return Err(bad());
        };
        if self.str(tag) != Some("storage") {
            return Err(bad());
        }
        let (Some(class), Some(key), Value::Int(numel)) =
            (self.global(class), self.str(key), numel)
        else {
            return Err(bad());
        };
        Ok(Storage {
            class: class.to_string(),
            key: key.to_string(),
            numel: u64::try_from(numel).map_err(|_| "negative storage size")?,
        })
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of items for a dict".into());
    }
    Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
}

/// What a node is, in Python's words, for messages and skipped-entry reports.
pub(super) fn kind(node: &Node) -> &str {
    match node {
        Node::Str(_) => "str",
        Node::Leaf(kind) => kind,
        Node::Tuple(_) => "tuple",
        Node::List(_) => "list",
        Node::Dict(_) => "dict",
        Node::Global(path) | Node::Object(path) => path,
        Node::Storage(_) => "storage",
        Node::Tensor(_) => "tensor",
    }
}
