//! Go `encoding/gob` of an hcldec `ObjectSpec`, as Packer core decodes a gob `ConfigSpec`
//! (plugin-protocol.md §6.2), and a gob decoder for the same shapes.
//!
//! The encoder follows Go's own algorithm (`encoding/gob/encoder.go`) so that its output is
//! byte-for-byte what a Go plugin sends for the same map iteration order:
//! * type ids are allocated in order of first use, shared by the outer stream and the nested
//!   cty streams (Go's ids are process-global); a struct gets its id before its field types;
//! * a type definition is sent the first time a concrete type is met inside an interface, and
//!   the partially encoded outer value is flushed as a message (or, when nested, as a
//!   length-prefixed chunk of the enclosing buffer) right before it continues;
//! * `cty.Type` is a `GobEncoder` whose bytes are a complete, independent gob stream of
//!   `gobType{Version int; Impl typeImpl}`.
//!
//! The decoder mirrors Go's tolerant decoder (`decodeTypeSequence` skips the chunk counts that
//! follow mid-value type definitions), decodes any gob stream into a generic [`GobValue`], and
//! turns that into an [`ObjectSpec`], keeping the wire order of map entries.

use std::collections::{HashMap, HashSet};

use super::{AttrSpec, BlockListSpec, BlockSpec, CtyType, ObjectSpec, Spec};

/// Which registered gob name the nested (non-pointer) `hcldec.ObjectSpec` gets: it depends on
/// the package path of hcldec in the Packer core binary that decodes the spec, and must match
/// it exactly (Go's decoder fails with `name not registered for interface` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GobFlavor {
    /// Module builds (upstream Packer releases, modern core):
    /// `github.com/hashicorp/hcl/v2/hcldec.ObjectSpec`.
    Module,
    /// Debian's packer 1.6.6 binary (the only core that runs here), built with a vendor tree:
    /// `github.com/hashicorp/packer/vendor/github.com/hashicorp/hcl/v2/hcldec.ObjectSpec`.
    #[default]
    DebianVendored,
}

impl GobFlavor {
    /// The gob registered name of the nested `hcldec.ObjectSpec` for this flavor.
    pub fn object_spec_name(self) -> &'static str {
        match self {
            GobFlavor::Module => OBJECT_SPEC_NAME_MODULE,
            GobFlavor::DebianVendored => OBJECT_SPEC_NAME_DEBIAN,
        }
    }

    /// The flavor whose nested-ObjectSpec name is `name`, if any.
    pub fn from_object_spec_name(name: &str) -> Option<GobFlavor> {
        match name {
            OBJECT_SPEC_NAME_MODULE => Some(GobFlavor::Module),
            OBJECT_SPEC_NAME_DEBIAN => Some(GobFlavor::DebianVendored),
            _ => None,
        }
    }
}

impl GobFlavor {
    /// Tells which flavor the Packer core executable at `path` needs: [`GobFlavor::DebianVendored`]
    /// if the binary contains the vendored hcldec package path, else [`GobFlavor::Module`].
    /// Reads the whole file (about 100 MB for packer 1.6.6).
    pub fn detect_from_executable(path: &std::path::Path) -> std::io::Result<GobFlavor> {
        use std::io::Read;
        let needle = b"github.com/hashicorp/packer/vendor/github.com/hashicorp/hcl/v2/hcldec";
        let mut file = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut keep = 0usize;
        loop {
            let n = file.read(&mut buf[keep..])?;
            if n == 0 {
                return Ok(GobFlavor::Module);
            }
            let filled = keep + n;
            if contains(&buf[..filled], needle) {
                return Ok(GobFlavor::DebianVendored);
            }
            keep = (needle.len() - 1).min(filled);
            buf.copy_within(filled - keep..filled, 0);
        }
    }

    /// [`GobFlavor::detect_from_executable`] for the process that started this one (Packer
    /// core starts plugins directly), via `/proc/<ppid>/exe`; `None` if that cannot be read.
    pub fn detect_from_parent() -> Option<GobFlavor> {
        let ppid = std::os::unix::process::parent_id();
        Self::detect_from_executable(std::path::Path::new(&format!("/proc/{ppid}/exe"))).ok()
    }
}

/// Whether `needle` (non-empty) occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut start = 0;
    while let Some(i) = hay[start..].iter().position(|&b| b == first) {
        let at = start + i;
        if hay[at + 1..].starts_with(rest) {
            return true;
        }
        start = at + 1;
    }
    false
}

/// Registered name of the nested `hcldec.ObjectSpec` in module builds.
pub const OBJECT_SPEC_NAME_MODULE: &str = "github.com/hashicorp/hcl/v2/hcldec.ObjectSpec";
/// Registered name of the nested `hcldec.ObjectSpec` in Debian's vendored packer 1.6.6.
pub const OBJECT_SPEC_NAME_DEBIAN: &str =
    "github.com/hashicorp/packer/vendor/github.com/hashicorp/hcl/v2/hcldec.ObjectSpec";
/// Registered name of `*hcldec.AttrSpec`.
pub const ATTR_SPEC_NAME: &str = "*hcldec.AttrSpec";
/// Registered name of `*hcldec.BlockSpec`.
pub const BLOCK_SPEC_NAME: &str = "*hcldec.BlockSpec";
/// Registered name of `*hcldec.BlockListSpec`.
pub const BLOCK_LIST_SPEC_NAME: &str = "*hcldec.BlockListSpec";
const CTY_PRIMITIVE_NAME: &str = "github.com/zclconf/go-cty/cty.primitiveType";
const CTY_LIST_NAME: &str = "github.com/zclconf/go-cty/cty.typeList";
const CTY_MAP_NAME: &str = "github.com/zclconf/go-cty/cty.typeMap";

/// The first user type id we use by default: what Go 1.19 … 1.21 (the Go of Packer 1.6.6
/// era) allocates first. Go ≥ 1.22 starts at 64; Go's decoder accepts any consistent id ≥ 64.
pub const DEFAULT_FIRST_TYPE_ID: u64 = 65;
/// The lowest type id that does not collide with gob's predefined types.
pub const MIN_FIRST_TYPE_ID: u64 = 64;

// Predefined gob type ids.
const T_BOOL: i64 = 1;
const T_INT: i64 = 2;
const T_UINT: i64 = 3;
const T_FLOAT: i64 = 4;
const T_BYTES: i64 = 5;
const T_STRING: i64 = 6;
const T_COMPLEX: i64 = 7;
const T_INTERFACE: i64 = 8;

/// The Go types that occur in a ConfigSpec gob, outer stream and cty streams together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum GoType {
    ObjectSpec,
    AttrSpec,
    BlockSpec,
    BlockListSpec,
    CtyType,
    CtyGobType,
    CtyPrimitive,
    CtyList,
    CtyMap,
}

/// A field type in a struct definition: predefined id, or another user type.
#[derive(Clone, Copy)]
enum FieldTy {
    Builtin(i64),
    User(GoType),
}

impl GoType {
    /// Struct fields (name, type), in Go declaration order (exported fields only).
    fn struct_fields(self) -> &'static [(&'static str, FieldTy)] {
        use FieldTy::*;
        match self {
            GoType::AttrSpec => {
                &[("Name", Builtin(T_STRING)), ("Type", User(GoType::CtyType)), ("Required", Builtin(T_BOOL))]
            }
            GoType::BlockSpec => {
                &[("TypeName", Builtin(T_STRING)), ("Nested", Builtin(T_INTERFACE)), ("Required", Builtin(T_BOOL))]
            }
            GoType::BlockListSpec => &[
                ("TypeName", Builtin(T_STRING)),
                ("Nested", Builtin(T_INTERFACE)),
                ("MinItems", Builtin(T_INT)),
                ("MaxItems", Builtin(T_INT)),
            ],
            GoType::CtyGobType => &[("Version", Builtin(T_INT)), ("Impl", Builtin(T_INTERFACE))],
            GoType::CtyPrimitive => &[("Kind", Builtin(T_UINT))],
            GoType::CtyList | GoType::CtyMap => &[("ElementTypeT", User(GoType::CtyType))],
            GoType::ObjectSpec | GoType::CtyType => &[],
        }
    }

    /// The Go type name (`CommonType.Name`).
    fn go_name(self) -> &'static str {
        match self {
            GoType::ObjectSpec => "ObjectSpec",
            GoType::AttrSpec => "AttrSpec",
            GoType::BlockSpec => "BlockSpec",
            GoType::BlockListSpec => "BlockListSpec",
            GoType::CtyType => "Type",
            GoType::CtyGobType => "gobType",
            GoType::CtyPrimitive => "primitiveType",
            GoType::CtyList => "typeList",
            GoType::CtyMap => "typeMap",
        }
    }
}

/// Go's process-global type-id table (`types` / `nextId` in `encoding/gob/type.go`).
struct TypeIds {
    next: i64,
    ids: HashMap<GoType, i64>,
}

impl TypeIds {
    fn new(first: u64) -> Self {
        let first = first.clamp(MIN_FIRST_TYPE_ID, (i64::MAX / 2) as u64) as i64;
        TypeIds { next: first, ids: HashMap::new() }
    }

    /// The id of `t`, allocating it (and then its fields' types, like `newTypeObject`) on first use.
    fn id(&mut self, t: GoType) -> i64 {
        if let Some(id) = self.ids.get(&t) {
            return *id;
        }
        let id = self.next;
        self.next += 1;
        self.ids.insert(t, id);
        for (_, f) in t.struct_fields() {
            if let FieldTy::User(ft) = f {
                self.id(*ft);
            }
        }
        id
    }
}

/// Appends a gob unsigned integer.
pub(crate) fn put_uint(b: &mut Vec<u8>, u: u64) {
    if u < 128 {
        b.push(u as u8);
        return;
    }
    let bytes = u.to_be_bytes();
    let skip = bytes.iter().take_while(|&&x| x == 0).count();
    let n = bytes.len() - skip;
    b.push((256 - n) as u8);
    b.extend_from_slice(&bytes[skip..]);
}

/// Appends a gob signed integer.
pub(crate) fn put_int(b: &mut Vec<u8>, i: i64) {
    let u = if i < 0 { ((!i as u64) << 1) | 1 } else { (i as u64) << 1 };
    put_uint(b, u);
}

fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    put_uint(b, s.len() as u64);
    b.extend_from_slice(s);
}

/// Appends `CommonType{Name, Id}` as an embedded struct field (delta 1 within its parent).
fn put_common(b: &mut Vec<u8>, name: &str, id: i64) {
    b.push(1);
    b.push(1);
    put_str(b, name.as_bytes());
    b.push(1);
    put_int(b, id);
    b.push(0);
}

/// One Go `Encoder`: its own set of sent types, and the writer stack (`enc.w` plus the value
/// buffers). `bufs[0]` is the output; the last buffer is the value being encoded; the one
/// below it is where type definitions flush it to (Go's `enc.writer()`).
struct Encoder<'a> {
    ids: &'a mut TypeIds,
    sent: HashSet<GoType>,
    bufs: Vec<Vec<u8>>,
    object_spec_name: &'static str,
}

impl<'a> Encoder<'a> {
    fn new(ids: &'a mut TypeIds, object_spec_name: &'static str) -> Self {
        Encoder { ids, sent: HashSet::new(), bufs: vec![Vec::new(), Vec::new()], object_spec_name }
    }

    fn top(&mut self) -> &mut Vec<u8> {
        if self.bufs.is_empty() {
            self.bufs.push(Vec::new());
        }
        let last = self.bufs.len() - 1;
        &mut self.bufs[last]
    }

    /// Go's `writeMessage(enc.writer(), top)`: moves the top buffer, length-prefixed, into the
    /// buffer below it.
    fn flush_top(&mut self) {
        if let [.., parent, top] = self.bufs.as_mut_slice() {
            put_uint(parent, top.len() as u64);
            parent.append(top);
        }
    }

    /// `sendTypeDescriptor` + `sendActualType`: definition of `t` (and of the user types of its
    /// fields), each flushed as its own message, if this encoder has not sent it yet.
    fn send_type(&mut self, t: GoType) {
        if self.sent.contains(&t) {
            return;
        }
        let id = self.ids.id(t);
        let wire = self.wire_type(t);
        let top = self.top();
        put_int(top, -id);
        top.extend_from_slice(&wire);
        self.flush_top();
        self.sent.insert(t);
        for (_, f) in t.struct_fields() {
            if let FieldTy::User(ft) = f {
                self.send_type(*ft);
            }
        }
    }

    /// The encoded `wireType` struct describing `t`.
    fn wire_type(&mut self, t: GoType) -> Vec<u8> {
        let id = self.ids.id(t);
        let mut b = Vec::new();
        match t {
            GoType::ObjectSpec => {
                b.push(4); // MapT
                put_common(&mut b, t.go_name(), id);
                b.push(1);
                put_int(&mut b, T_STRING);
                b.push(1);
                put_int(&mut b, T_INTERFACE);
                b.push(0);
            }
            GoType::CtyType => {
                b.push(5); // GobEncoderT
                put_common(&mut b, t.go_name(), id);
                b.push(0);
            }
            _ => {
                b.push(3); // StructT
                put_common(&mut b, t.go_name(), id);
                let fields = t.struct_fields();
                b.push(1);
                put_uint(&mut b, fields.len() as u64);
                for (name, f) in fields {
                    let fid = match f {
                        FieldTy::Builtin(i) => *i,
                        FieldTy::User(u) => self.ids.id(*u),
                    };
                    b.push(1);
                    put_str(&mut b, name.as_bytes());
                    b.push(1);
                    put_int(&mut b, fid);
                    b.push(0);
                }
                b.push(0);
            }
        }
        b.push(0);
        b
    }

    /// Go's `Encoder.Encode` of a value of type `t` whose body `body` writes; returns the stream.
    fn encode_top(mut self, t: GoType, body: impl FnOnce(&mut Self)) -> Vec<u8> {
        self.send_type(t);
        let id = self.ids.id(t);
        put_int(self.top(), id);
        body(&mut self);
        self.flush_top();
        self.bufs.truncate(1);
        self.bufs.pop().unwrap_or_default()
    }

    /// Go's `encodeInterface` for a non-nil value of concrete type `t` registered as `name`.
    fn encode_interface(&mut self, name: &str, t: GoType, body: impl FnOnce(&mut Self)) {
        put_str(self.top(), name.as_bytes());
        self.send_type(t);
        let id = self.ids.id(t);
        put_int(self.top(), id);
        self.bufs.push(Vec::new());
        body(self);
        self.flush_top();
        self.bufs.pop();
    }

    /// An `hcldec.ObjectSpec` value (a non-struct, so a singleton: `00` then the map).
    fn object_spec_value(&mut self, spec: &ObjectSpec) {
        let top = self.top();
        top.push(0);
        put_uint(top, spec.entries.len() as u64);
        for (key, entry) in &spec.entries {
            put_str(self.top(), key.as_bytes());
            match entry {
                Spec::Attr(a) => self.encode_interface(ATTR_SPEC_NAME, GoType::AttrSpec, |e| e.attr_value(a)),
                Spec::Block(b) => self.encode_interface(BLOCK_SPEC_NAME, GoType::BlockSpec, |e| e.block_value(b)),
                Spec::BlockList(b) => {
                    self.encode_interface(BLOCK_LIST_SPEC_NAME, GoType::BlockListSpec, |e| e.block_list_value(b))
                }
            }
        }
    }

    fn nested_object(&mut self, nested: &ObjectSpec) {
        let name = self.object_spec_name;
        self.encode_interface(name, GoType::ObjectSpec, |e| e.object_spec_value(nested));
    }

    fn attr_value(&mut self, a: &AttrSpec) {
        let mut s = StructWriter::default();
        if !a.name.is_empty() {
            s.field(self.top(), 0);
            put_str(self.top(), a.name.as_bytes());
        }
        let cty = cty_stream(self.ids, &a.ty);
        s.field(self.top(), 1);
        put_str(self.top(), &cty);
        if a.required {
            s.field(self.top(), 2);
            self.top().push(1);
        }
        self.top().push(0);
    }

    fn block_value(&mut self, b: &BlockSpec) {
        let mut s = StructWriter::default();
        if !b.type_name.is_empty() {
            s.field(self.top(), 0);
            put_str(self.top(), b.type_name.as_bytes());
        }
        s.field(self.top(), 1);
        self.nested_object(&b.nested);
        if b.required {
            s.field(self.top(), 2);
            self.top().push(1);
        }
        self.top().push(0);
    }

    fn block_list_value(&mut self, b: &BlockListSpec) {
        let mut s = StructWriter::default();
        if !b.type_name.is_empty() {
            s.field(self.top(), 0);
            put_str(self.top(), b.type_name.as_bytes());
        }
        s.field(self.top(), 1);
        self.nested_object(&b.nested);
        for (i, n) in [(2, b.min_items), (3, b.max_items)] {
            if n != 0 {
                s.field(self.top(), i);
                put_int(self.top(), i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        self.top().push(0);
    }
}

/// Tracks the field-number deltas of a struct being encoded.
struct StructWriter {
    last: i64,
}

impl Default for StructWriter {
    fn default() -> Self {
        StructWriter { last: -1 }
    }
}

impl StructWriter {
    fn field(&mut self, b: &mut Vec<u8>, n: i64) {
        put_uint(b, (n - self.last) as u64);
        self.last = n;
    }
}

/// `cty.Type.GobEncode()`: a fresh encoder (own sent-set, shared ids) encoding
/// `gobType{Version: 0, Impl: <type impl>}`.
fn cty_stream(ids: &mut TypeIds, ty: &CtyType) -> Vec<u8> {
    let enc = Encoder::new(ids, OBJECT_SPEC_NAME_MODULE);
    enc.encode_top(GoType::CtyGobType, |e| {
        // Version (field 0) is 0 and omitted; Impl is field 1.
        e.top().push(2);
        match ty {
            CtyType::String | CtyType::Number | CtyType::Bool => {
                let kind = match ty {
                    CtyType::String => b'S',
                    CtyType::Number => b'N',
                    _ => b'B',
                };
                e.encode_interface(CTY_PRIMITIVE_NAME, GoType::CtyPrimitive, |e| {
                    let top = e.top();
                    top.push(1);
                    put_uint(top, kind as u64);
                    top.push(0);
                });
            }
            CtyType::List(elem) | CtyType::Map(elem) => {
                let (name, t) = match ty {
                    CtyType::List(_) => (CTY_LIST_NAME, GoType::CtyList),
                    _ => (CTY_MAP_NAME, GoType::CtyMap),
                };
                e.encode_interface(name, t, |e| {
                    let inner = cty_stream(e.ids, elem);
                    e.top().push(1);
                    put_str(e.top(), &inner);
                    e.top().push(0);
                });
            }
        }
        e.top().push(0);
    })
}

/// Gob stream of `spec` as a Go `hcldec.ObjectSpec`, entries in `spec.entries` order, Go's
/// layout (type definitions where first needed), user type ids from `first_type_id` (clamped
/// to at least [`MIN_FIRST_TYPE_ID`]).
pub fn encode_object_spec(spec: &ObjectSpec, flavor: GobFlavor, first_type_id: u64) -> Vec<u8> {
    let mut ids = TypeIds::new(first_type_id);
    let enc = Encoder::new(&mut ids, flavor.object_spec_name());
    enc.encode_top(GoType::ObjectSpec, |e| e.object_spec_value(spec))
}

/// `cty.Type.GobEncode()` of `ty` alone, as a Go process produces it when the Go types named in
/// `known` (by Go type name: `Type`, `gobType`, `primitiveType`, `typeList`, `typeMap`, …)
/// already have those ids and the next free id is `next_id`. Unknown names are ignored. Used
/// to check against captured cty blobs, whose ids depend on what the process encoded before.
pub fn encode_cty_type(ty: &CtyType, known: &[(&str, u64)], next_id: u64) -> Vec<u8> {
    let mut ids = TypeIds::new(next_id);
    const ALL: [GoType; 9] = [
        GoType::ObjectSpec,
        GoType::AttrSpec,
        GoType::BlockSpec,
        GoType::BlockListSpec,
        GoType::CtyType,
        GoType::CtyGobType,
        GoType::CtyPrimitive,
        GoType::CtyList,
        GoType::CtyMap,
    ];
    for (name, id) in known {
        if let Some(t) = ALL.iter().find(|t| t.go_name() == *name) {
            ids.ids.insert(*t, (*id).min(i64::MAX as u64) as i64);
        }
    }
    cty_stream(&mut ids, ty)
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

/// Why a gob stream could not be decoded into a ConfigSpec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GobDecodeError {
    /// The bytes end in the middle of a message or value.
    #[error("gob: unexpected end of data at byte {0}; the ConfigSpec bytes are truncated")]
    UnexpectedEof(usize),
    /// The bytes are not a well-formed gob stream.
    #[error("gob: corrupted data at byte {offset}: {what}")]
    Corrupt {
        /// Byte offset in the stream (approximate: start of the current message).
        offset: usize,
        /// What was wrong.
        what: String,
    },
    /// A well-formed gob value that is not an hcldec ObjectSpec of the supported shapes.
    #[error("gob ConfigSpec has an unsupported shape: {0}")]
    Unsupported(String),
}

fn corrupt(offset: usize, what: impl Into<String>) -> GobDecodeError {
    GobDecodeError::Corrupt { offset, what: what.into() }
}

/// A decoded gob value.
#[derive(Debug, Clone, PartialEq)]
pub enum GobValue {
    /// bool
    Bool(bool),
    /// any signed integer
    Int(i64),
    /// any unsigned integer
    Uint(u64),
    /// float32/float64
    Float(f64),
    /// complex64/complex128
    Complex(f64, f64),
    /// `[]byte`
    Bytes(Vec<u8>),
    /// string (kept as bytes: Go strings need not be UTF-8)
    String(Vec<u8>),
    /// A struct: fields present on the wire, by name, in wire order; `type_name` is the
    /// `CommonType.Name` from the definition.
    Struct {
        /// Go type name.
        type_name: String,
        /// Fields sent (zero-valued fields are omitted by gob).
        fields: Vec<(String, GobValue)>,
    },
    /// A map, entries in wire order.
    Map(Vec<(GobValue, GobValue)>),
    /// A slice or array.
    List(Vec<GobValue>),
    /// A non-nil interface value: its registered name and concrete value.
    Interface(String, Box<GobValue>),
    /// A nil interface value.
    NilInterface,
    /// The bytes produced by a `GobEncoder`/`BinaryMarshaler`/`TextMarshaler`.
    Encoded(Vec<u8>),
}

impl GobValue {
    /// A struct field by name.
    pub fn field(&self, name: &str) -> Option<&GobValue> {
        match self {
            GobValue::Struct { fields, .. } => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum WireType {
    Struct { name: String, fields: Vec<(String, i64)> },
    Map { key: i64, elem: i64 },
    Slice { elem: i64 },
    Array { elem: i64, len: u64 },
    Encoded,
}

const MAX_DEPTH: usize = 64;
const MAX_MESSAGE: u64 = 1 << 30;

/// A gob stream decoder (Go's `Decoder`), for one stream.
pub struct GobDecoder<'a> {
    data: &'a [u8],
    /// Offset of the next unread message in `data`.
    next: usize,
    /// Current message: `data[pos..end]`.
    pos: usize,
    end: usize,
    types: HashMap<i64, WireType>,
}

impl<'a> GobDecoder<'a> {
    /// A decoder reading the stream `data`.
    pub fn new(data: &'a [u8]) -> Self {
        GobDecoder { data, next: 0, pos: 0, end: 0, types: HashMap::new() }
    }

    /// Whether all bytes have been consumed.
    pub fn at_end(&self) -> bool {
        self.pos >= self.end && self.next >= self.data.len()
    }

    fn raw_uint(data: &[u8], pos: &mut usize, end: usize) -> Result<u64, GobDecodeError> {
        let first = *data.get(*pos).filter(|_| *pos < end).ok_or(GobDecodeError::UnexpectedEof(*pos))?;
        *pos += 1;
        if first < 128 {
            return Ok(first as u64);
        }
        let n = 256 - first as usize;
        if n > 8 {
            return Err(corrupt(*pos, "invalid uint byte count"));
        }
        if *pos + n > end {
            return Err(GobDecodeError::UnexpectedEof(end));
        }
        let mut u = 0u64;
        for &b in &data[*pos..*pos + n] {
            u = (u << 8) | b as u64;
        }
        *pos += n;
        Ok(u)
    }

    fn uint(&mut self) -> Result<u64, GobDecodeError> {
        Self::raw_uint(self.data, &mut self.pos, self.end)
    }

    /// The next field number of a struct whose last field was `field` (-1 before the first):
    /// `None` at the end marker (delta 0). A delta that takes the number past `i64::MAX` is
    /// corrupt data (the sum overflowed: a panic with overflow checks).
    fn next_field(&mut self, field: i64) -> Result<Option<i64>, GobDecodeError> {
        let delta = self.uint()?;
        if delta == 0 {
            return Ok(None);
        }
        i64::try_from(delta)
            .ok()
            .and_then(|d| field.checked_add(d))
            .map(Some)
            .ok_or_else(|| corrupt(self.pos, format!("field delta {delta} after field {field} is out of range")))
    }

    fn int(&mut self) -> Result<i64, GobDecodeError> {
        let u = self.uint()?;
        Ok(if u & 1 == 1 { !((u >> 1) as i64) } else { (u >> 1) as i64 })
    }

    fn bytes(&mut self) -> Result<Vec<u8>, GobDecodeError> {
        let n = self.uint()?;
        let avail = (self.end - self.pos) as u64;
        if n > avail {
            return Err(GobDecodeError::UnexpectedEof(self.end));
        }
        let v = self.data[self.pos..self.pos + n as usize].to_vec();
        self.pos += n as usize;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, GobDecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b).map_err(|_| corrupt(self.pos, "type or field name is not UTF-8"))
    }

    /// Reads the next message into the current buffer. Returns false at a clean end of data.
    fn recv_message(&mut self) -> Result<bool, GobDecodeError> {
        if self.next >= self.data.len() {
            return Ok(false);
        }
        let mut p = self.next;
        let len = Self::raw_uint(self.data, &mut p, self.data.len())?;
        if len == 0 || len > MAX_MESSAGE {
            return Err(corrupt(self.next, format!("invalid message length {len}")));
        }
        let end = p.checked_add(len as usize).filter(|&e| e <= self.data.len());
        let end = end.ok_or(GobDecodeError::UnexpectedEof(self.data.len()))?;
        self.pos = p;
        self.end = end;
        self.next = end;
        Ok(true)
    }

    /// Go's `decodeTypeSequence`: reads type definitions until a value's type id.
    fn type_sequence(&mut self, is_interface: bool) -> Result<i64, GobDecodeError> {
        loop {
            if self.pos >= self.end && !self.recv_message()? {
                return Err(GobDecodeError::UnexpectedEof(self.data.len()));
            }
            let id = self.int()?;
            if id >= 0 {
                return Ok(id);
            }
            let id = id.checked_neg().ok_or_else(|| corrupt(self.pos, "invalid type id"))?;
            self.recv_type(id)?;
            if self.pos < self.end {
                if !is_interface {
                    return Err(corrupt(self.pos, "extra data in buffer after type definition"));
                }
                self.uint()?;
            }
        }
    }

    fn recv_type(&mut self, id: i64) -> Result<(), GobDecodeError> {
        if id < MIN_FIRST_TYPE_ID as i64 || self.types.contains_key(&id) {
            return Err(corrupt(self.pos, format!("invalid or duplicate type id {id} in type definition")));
        }
        // wireType struct.
        let mut field = -1i64;
        let mut wire = None;
        while let Some(next) = self.next_field(field)? {
            field = next;
            let (common, rest) = self.wire_type_body(field)?;
            if common.1 != id {
                return Err(corrupt(self.pos, format!("type definition of {id} carries id {}", common.1)));
            }
            wire = Some(match field {
                0 => WireType::Array { elem: rest.elem, len: rest.len },
                1 => WireType::Slice { elem: rest.elem },
                2 => WireType::Struct { name: common.0, fields: rest.fields },
                3 => WireType::Map { key: rest.key, elem: rest.elem },
                _ => WireType::Encoded,
            });
        }
        let wire = wire.ok_or_else(|| corrupt(self.pos, "empty type definition"))?;
        self.types.insert(id, wire);
        Ok(())
    }

    /// One of `arrayType`, `sliceType`, `structType`, `mapType`, `gobEncoderType`, … (wireType
    /// field `kind`): returns (CommonType{name, id}, the other fields).
    fn wire_type_body(&mut self, kind: i64) -> Result<((String, i64), WireRest), GobDecodeError> {
        if !(0..=6).contains(&kind) {
            return Err(corrupt(self.pos, format!("unknown wireType field {kind}")));
        }
        let mut common = (String::new(), 0);
        let mut rest = WireRest::default();
        let mut f = -1i64;
        while let Some(next) = self.next_field(f)? {
            f = next;
            match (kind, f) {
                (_, 0) => {
                    let mut g = -1i64;
                    while let Some(next) = self.next_field(g)? {
                        g = next;
                        match g {
                            0 => common.0 = self.string()?,
                            1 => common.1 = self.int()?,
                            _ => return Err(corrupt(self.pos, "bad CommonType field")),
                        }
                    }
                }
                (0, 1) | (1, 1) => rest.elem = self.int()?,
                (0, 2) => rest.len = self.int()?.max(0) as u64,
                (2, 1) => {
                    let n = self.uint()?;
                    if n > (self.end - self.pos) as u64 {
                        return Err(GobDecodeError::UnexpectedEof(self.end));
                    }
                    for _ in 0..n {
                        let (mut name, mut fid, mut g) = (String::new(), 0i64, -1i64);
                        while let Some(next) = self.next_field(g)? {
                            g = next;
                            match g {
                                0 => name = self.string()?,
                                1 => fid = self.int()?,
                                _ => return Err(corrupt(self.pos, "bad fieldType field")),
                            }
                        }
                        rest.fields.push((name, fid));
                    }
                }
                (3, 1) => rest.key = self.int()?,
                (3, 2) => rest.elem = self.int()?,
                _ => return Err(corrupt(self.pos, format!("bad field {f} in wire type kind {kind}"))),
            }
        }
        Ok((common, rest))
    }

    /// Decodes the next top-level value of the stream (Go's `Decoder.Decode`).
    pub fn decode(&mut self) -> Result<GobValue, GobDecodeError> {
        let id = self.type_sequence(false)?;
        let v = self.value_top(id, 0)?;
        if self.pos < self.end {
            return Err(corrupt(self.pos, "extra data after value"));
        }
        Ok(v)
    }

    /// A value of type `id` where Go calls `decodeValue`: structs directly, others as singletons.
    fn value_top(&mut self, id: i64, depth: usize) -> Result<GobValue, GobDecodeError> {
        if matches!(self.types.get(&id), Some(WireType::Struct { .. })) {
            self.value(id, depth)
        } else {
            if self.uint()? != 0 {
                return Err(corrupt(self.pos, "non-zero delta for singleton"));
            }
            self.value(id, depth)
        }
    }

    fn value(&mut self, id: i64, depth: usize) -> Result<GobValue, GobDecodeError> {
        if depth > MAX_DEPTH {
            return Err(corrupt(self.pos, "values nested too deeply"));
        }
        Ok(match id {
            T_BOOL => GobValue::Bool(self.uint()? != 0),
            T_INT => GobValue::Int(self.int()?),
            T_UINT => GobValue::Uint(self.uint()?),
            T_FLOAT => GobValue::Float(f64::from_bits(self.uint()?.swap_bytes())),
            T_COMPLEX => {
                let re = f64::from_bits(self.uint()?.swap_bytes());
                GobValue::Complex(re, f64::from_bits(self.uint()?.swap_bytes()))
            }
            T_BYTES => GobValue::Bytes(self.bytes()?),
            T_STRING => GobValue::String(self.bytes()?),
            T_INTERFACE => {
                let name = self.string()?;
                if name.is_empty() {
                    return Ok(GobValue::NilInterface);
                }
                let cid = self.type_sequence(true)?;
                self.uint()?; // byte count, not needed
                GobValue::Interface(name, Box::new(self.value_top(cid, depth + 1)?))
            }
            _ => {
                let wire = self.types.get(&id).cloned();
                match wire {
                    None => return Err(corrupt(self.pos, format!("unknown type id {id}"))),
                    Some(WireType::Encoded) => GobValue::Encoded(self.bytes()?),
                    Some(WireType::Struct { name, fields: defs }) => {
                        let mut fields = Vec::new();
                        let mut f = -1i64;
                        while let Some(next) = self.next_field(f)? {
                            f = next;
                            let (fname, fid) = usize::try_from(f)
                                .ok()
                                .and_then(|i| defs.get(i))
                                .ok_or_else(|| corrupt(self.pos, format!("field number {f} out of range")))?;
                            fields.push((fname.clone(), self.value(*fid, depth + 1)?));
                        }
                        GobValue::Struct { type_name: name, fields }
                    }
                    Some(WireType::Map { key, elem }) => {
                        let n = self.count()?;
                        let mut entries = Vec::new();
                        for _ in 0..n {
                            let k = self.value(key, depth + 1)?;
                            entries.push((k, self.value(elem, depth + 1)?));
                        }
                        GobValue::Map(entries)
                    }
                    Some(WireType::Slice { elem }) => {
                        let n = self.count()?;
                        let mut items = Vec::new();
                        for _ in 0..n {
                            items.push(self.value(elem, depth + 1)?);
                        }
                        GobValue::List(items)
                    }
                    Some(WireType::Array { elem, len }) => {
                        let n = self.count()?;
                        if n != len {
                            return Err(corrupt(self.pos, "array length mismatch"));
                        }
                        let mut items = Vec::new();
                        for _ in 0..n {
                            items.push(self.value(elem, depth + 1)?);
                        }
                        GobValue::List(items)
                    }
                }
            }
        })
    }

    /// An element count, sanity-checked against the bytes left (every element is ≥ 1 byte,
    /// except when typedefs interleave, which only happens in interfaces — also ≥ 1 byte).
    fn count(&mut self) -> Result<u64, GobDecodeError> {
        let n = self.uint()?;
        if n > (self.end - self.pos) as u64 + (self.data.len() - self.next) as u64 {
            return Err(corrupt(self.pos, format!("element count {n} exceeds the data")));
        }
        Ok(n)
    }
}

#[derive(Default)]
struct WireRest {
    elem: i64,
    key: i64,
    len: u64,
    fields: Vec<(String, i64)>,
}

/// A decoded gob ConfigSpec: the spec (entries in wire order) and the nested-ObjectSpec
/// registered name met, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedSpec {
    /// The spec, entries in the order they were on the wire (at every level).
    pub spec: ObjectSpec,
    /// The registered name of nested ObjectSpecs (`None` if the spec has no blocks).
    pub object_spec_name: Option<String>,
}

/// Decodes a gob `hcldec.ObjectSpec` stream (what Packer core receives) into the model.
pub fn decode_object_spec(data: &[u8]) -> Result<DecodedSpec, GobDecodeError> {
    let mut dec = GobDecoder::new(data);
    let v = dec.decode()?;
    if !dec.at_end() {
        return Err(corrupt(dec.next, "extra data after the ObjectSpec value"));
    }
    let mut name = None;
    let spec = object_from_value(&v, &mut name, 0)?;
    Ok(DecodedSpec { spec, object_spec_name: name })
}

fn unsupported(what: impl Into<String>) -> GobDecodeError {
    GobDecodeError::Unsupported(what.into())
}

fn object_from_value(v: &GobValue, name: &mut Option<String>, depth: usize) -> Result<ObjectSpec, GobDecodeError> {
    if depth > MAX_DEPTH {
        return Err(unsupported("ObjectSpecs nested too deeply"));
    }
    let GobValue::Map(entries) = v else {
        return Err(unsupported("the ObjectSpec is not a map"));
    };
    let mut spec = ObjectSpec::new();
    for (k, e) in entries {
        let GobValue::String(k) = k else {
            return Err(unsupported("an ObjectSpec key is not a string"));
        };
        let key = String::from_utf8_lossy(k).into_owned();
        let GobValue::Interface(iname, inner) = e else {
            return Err(unsupported(format!("entry {key:?} is not a non-nil hcldec.Spec interface")));
        };
        let s = gob_str(inner.field("Name").or(inner.field("TypeName")));
        let entry = match iname.as_str() {
            ATTR_SPEC_NAME => {
                let ty = match inner.field("Type") {
                    Some(GobValue::Encoded(b)) => decode_cty_type(b, depth + 1)?,
                    _ => return Err(unsupported(format!("attribute {key:?} has no cty type"))),
                };
                Spec::Attr(AttrSpec { name: s, ty, required: gob_bool(inner.field("Required")) })
            }
            BLOCK_SPEC_NAME => Spec::Block(BlockSpec {
                type_name: s,
                nested: nested_from_value(inner.field("Nested"), name, depth, &key)?,
                required: gob_bool(inner.field("Required")),
            }),
            BLOCK_LIST_SPEC_NAME => Spec::BlockList(BlockListSpec {
                type_name: s,
                nested: nested_from_value(inner.field("Nested"), name, depth, &key)?,
                min_items: gob_count(inner.field("MinItems")),
                max_items: gob_count(inner.field("MaxItems")),
            }),
            other => return Err(unsupported(format!("entry {key:?} has unsupported spec type {other:?}"))),
        };
        spec.entries.push((key, entry));
    }
    Ok(spec)
}

fn nested_from_value(
    v: Option<&GobValue>,
    name: &mut Option<String>,
    depth: usize,
    key: &str,
) -> Result<ObjectSpec, GobDecodeError> {
    match v {
        Some(GobValue::Interface(n, inner)) if n.ends_with("hcldec.ObjectSpec") => {
            if name.is_none() {
                *name = Some(n.clone());
            }
            object_from_value(inner, name, depth + 1)
        }
        _ => Err(unsupported(format!("block {key:?} does not nest an hcldec.ObjectSpec"))),
    }
}

fn gob_str(v: Option<&GobValue>) -> String {
    match v {
        Some(GobValue::String(s)) => String::from_utf8_lossy(s).into_owned(),
        _ => String::new(),
    }
}

fn gob_bool(v: Option<&GobValue>) -> bool {
    matches!(v, Some(GobValue::Bool(true)))
}

fn gob_count(v: Option<&GobValue>) -> u64 {
    match v {
        Some(GobValue::Int(i)) => (*i).max(0) as u64,
        Some(GobValue::Uint(u)) => *u,
        _ => 0,
    }
}

/// Decodes the bytes of `cty.Type.GobEncode()` (a nested gob stream).
pub fn decode_cty_type(data: &[u8], depth: usize) -> Result<CtyType, GobDecodeError> {
    if depth > MAX_DEPTH {
        return Err(unsupported("cty types nested too deeply"));
    }
    let mut dec = GobDecoder::new(data);
    let v = dec.decode()?;
    if !dec.at_end() {
        return Err(corrupt(dec.next, "extra data after the cty type"));
    }
    match v.field("Version") {
        None | Some(GobValue::Int(0)) => {}
        _ => return Err(unsupported("cty type with an unknown gob Version")),
    }
    let Some(GobValue::Interface(name, imp)) = v.field("Impl") else {
        return Err(unsupported("cty type without an implementation"));
    };
    match name.rsplit('/').next().unwrap_or_default() {
        "cty.primitiveType" => match imp.field("Kind") {
            Some(GobValue::Uint(83)) => Ok(CtyType::String),
            Some(GobValue::Uint(78)) => Ok(CtyType::Number),
            Some(GobValue::Uint(66)) => Ok(CtyType::Bool),
            _ => Err(unsupported("unknown cty primitive kind")),
        },
        kind @ ("cty.typeList" | "cty.typeMap") => {
            let Some(GobValue::Encoded(b)) = imp.field("ElementTypeT") else {
                return Err(unsupported("cty collection type without an element type"));
            };
            let elem = Box::new(decode_cty_type(b, depth + 1)?);
            Ok(if kind == "cty.typeList" { CtyType::List(elem) } else { CtyType::Map(elem) })
        }
        other => Err(unsupported(format!("cty type {other:?} (only string, number, bool, list, map)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_and_int_encoding() {
        let mut b = Vec::new();
        put_uint(&mut b, 7);
        put_uint(&mut b, 131);
        put_uint(&mut b, 256);
        put_int(&mut b, 65);
        put_int(&mut b, -65);
        assert_eq!(b, [0x07, 0xff, 0x83, 0xfe, 0x01, 0x00, 0xff, 0x82, 0xff, 0x81]);
        let mut d = GobDecoder::new(&[]);
        d.data = &b;
        d.end = b.len();
        assert_eq!(d.uint().unwrap(), 7);
        assert_eq!(d.uint().unwrap(), 131);
        assert_eq!(d.uint().unwrap(), 256);
        assert_eq!(d.int().unwrap(), 65);
        assert_eq!(d.int().unwrap(), -65);
    }

    #[test]
    fn first_typedef_of_every_spec() {
        // plugin-protocol.md §6.2 worked example (ids from 65).
        let spec = ObjectSpec::new().attr("a", CtyType::String);
        let b = encode_object_spec(&spec, GobFlavor::DebianVendored, 65);
        let head = "1aff810401010a4f626a6563745370656301ff8200010c01100000";
        assert_eq!(hex::encode(&b[..head.len() / 2]), head);
    }

    fn testdata_hex(name: &str) -> Vec<u8> {
        let path = format!("{}/testdata/protocol/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let hex: String = text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().concat();
        hex::decode(hex.trim()).unwrap()
    }

    #[test]
    fn cty_blobs_match_captures() {
        // Ids as allocated in the captured Packer 1.6.6 process (Type 67, gobType 68,
        // primitiveType 69, typeList 70, typeMap 72).
        let known = [("Type", 67), ("gobType", 68), ("primitiveType", 69), ("typeList", 70), ("typeMap", 72)];
        let s = || CtyType::String;
        let cases = [
            ("string", s()),
            ("number", CtyType::Number),
            ("bool", CtyType::Bool),
            ("list-string", CtyType::list(s())),
            ("list-number", CtyType::list(CtyType::Number)),
            ("list-list-string", CtyType::list(CtyType::list(s()))),
            ("map-string", CtyType::map(s())),
        ];
        for (name, ty) in cases {
            let want = testdata_hex(&format!("cty-type-gob-{name}.hex"));
            let got = encode_cty_type(&ty, &known, 73);
            assert_eq!(hex::encode(&got), hex::encode(&want), "cty type {name}");
            assert_eq!(decode_cty_type(&want, 0).unwrap(), ty, "decoding cty type {name}");
        }
    }

    #[test]
    fn cty_ids_allocated_in_order_of_first_use() {
        // Fresh process, nothing known but cty.Type: gobType, typeList, then primitiveType.
        let got = encode_cty_type(&CtyType::list(CtyType::Number), &[("Type", 66)], 67);
        let mut d = GobDecoder::new(&got);
        d.decode().unwrap();
        let mut ids: Vec<i64> = d.types.keys().copied().collect();
        ids.sort();
        assert_eq!(ids, [66, 67, 68]);
        assert!(matches!(&d.types[&68], WireType::Struct { name, .. } if name == "typeList"));
    }

    #[test]
    fn typedefs_first_layout_decodes() {
        let d = decode_object_spec(&testdata_hex("configspec-gob-handmade-typedefs-first.hex")).unwrap();
        let mut got = d.spec.sorted();
        got.entries.sort_by(|a, b| a.0.cmp(&b.0));
        let want = ObjectSpec::new()
            .required_attr("foo", CtyType::String)
            .attr("count", CtyType::Number)
            .attr("flag", CtyType::Bool)
            .attr("args", CtyType::list(CtyType::String))
            .block("blk", ObjectSpec::new().attr("x", CtyType::String))
            .sorted();
        assert_eq!(got, want);
        assert_eq!(d.object_spec_name.as_deref(), Some(OBJECT_SPEC_NAME_MODULE));
    }

    #[test]
    fn flavor_detection() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &vec![b'g'; 3 << 20]).unwrap();
        assert_eq!(GobFlavor::detect_from_executable(f.path()).unwrap(), GobFlavor::Module);
        // The name straddling a 1 MiB read boundary is still found.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut data = vec![0u8; (1 << 20) - 10];
        data.extend_from_slice(OBJECT_SPEC_NAME_DEBIAN.as_bytes());
        std::io::Write::write_all(&mut f, &data).unwrap();
        assert_eq!(GobFlavor::detect_from_executable(f.path()).unwrap(), GobFlavor::DebianVendored);
        assert!(GobFlavor::detect_from_executable(std::path::Path::new("/nonexistent/packer")).is_err());
        // The Debian packer 1.6.6 binary, where installed.
        if std::path::Path::new("/usr/bin/packer").exists() {
            let got = GobFlavor::detect_from_executable(std::path::Path::new("/usr/bin/packer")).unwrap();
            assert_eq!(got, GobFlavor::DebianVendored);
        }
    }

    #[test]
    fn roundtrip_all_shapes() {
        let nested = ObjectSpec::new().required_attr("size", CtyType::Number).attr("f", CtyType::String);
        let spec = ObjectSpec::new()
            .attr("l", CtyType::list(CtyType::list(CtyType::String)))
            .block("b", nested.clone())
            .attr("m", CtyType::map(CtyType::Bool))
            .block_list("bl", ObjectSpec::new().block("inner", nested))
            .required_attr("", CtyType::Number);
        for flavor in [GobFlavor::Module, GobFlavor::DebianVendored] {
            for first in [64, 65, 1000] {
                let b = encode_object_spec(&spec, flavor, first);
                let d = decode_object_spec(&b).unwrap();
                assert_eq!(d.spec, spec);
                assert_eq!(d.object_spec_name.as_deref(), Some(flavor.object_spec_name()));
            }
        }
    }

    #[test]
    fn min_max_items_roundtrip() {
        let mut spec = ObjectSpec::new().block_list("x", ObjectSpec::new());
        if let Some((_, Spec::BlockList(b))) = spec.entries.first_mut() {
            b.min_items = 1;
            b.max_items = 300;
        }
        let d = decode_object_spec(&spec.to_gob(GobFlavor::Module)).unwrap();
        assert_eq!(d.spec, spec);
    }

    #[test]
    fn truncated_and_garbage_fail_cleanly() {
        let spec = ObjectSpec::new().attr("a", CtyType::String).block("b", ObjectSpec::new().attr("c", CtyType::Bool));
        let b = spec.to_gob(GobFlavor::DebianVendored);
        for n in 0..b.len() {
            assert!(decode_object_spec(&b[..n]).is_err(), "prefix of {n} bytes decoded");
        }
        assert!(decode_object_spec(&[0xff; 40]).is_err());
    }

    /// Found by the `gob_spec` fuzz target: a field delta near 2^63 in a type definition
    /// overflowed the field number (a panic with overflow checks). Every struct-field loop of
    /// the decoder gets such a delta here; each must be a clean error.
    #[test]
    fn huge_field_deltas_are_errors() {
        // The fuzzer's input: gobType's definition whose fieldType (Version) has delta 1, then
        // i64::MAX (f8 7f ff ff ff ff ff ff ff) to the next fieldType field.
        let crash = hex::decode(concat!(
            "2aff8703010107676f625479706501ff880001020107566572",
            "73696f6e0152f87fffffffffffffff00ff746800"
        ))
        .unwrap();
        assert!(matches!(decode_cty_type(&crash, 0), Err(GobDecodeError::Corrupt { .. })));
        // i64::MAX as a gob uint, and the start of that definition: type id 68 (ff 87), delta
        // 3 to structType, delta 1 to its CommonType, Name "gobType" (delta 1).
        let huge = "f87fffffffffffffff";
        let head = "ff8703010107676f6254797065";
        // The delta after CommonType.Id (ff 88 = 68), after structType's Field (no fields) and
        // after the whole structType: the three other struct-field loops of type definitions.
        for body in
            [format!("{head}01ff88{huge}"), format!("{head}01ff88000100{huge}"), format!("{head}01ff8800010000{huge}")]
        {
            let body = hex::decode(body).unwrap();
            let msg = [&[body.len() as u8][..], &body[..]].concat();
            let err = GobDecoder::new(&msg).decode().unwrap_err();
            assert!(matches!(err, GobDecodeError::Corrupt { .. }), "{msg:02x?}: {err}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn cty() -> impl Strategy<Value = CtyType> {
        let leaf = prop_oneof![Just(CtyType::String), Just(CtyType::Number), Just(CtyType::Bool)];
        leaf.prop_recursive(3, 8, 1, |inner| {
            prop_oneof![inner.clone().prop_map(CtyType::list), inner.prop_map(CtyType::map)]
        })
    }

    fn spec() -> impl Strategy<Value = ObjectSpec> {
        let attrs = prop::collection::vec(("[a-z_]{0,12}", cty(), any::<bool>()), 0..6).prop_map(|v| {
            let mut s = ObjectSpec::new();
            for (k, t, r) in v {
                s.insert(&k, Spec::Attr(AttrSpec { name: k.clone(), ty: t, required: r }));
            }
            s
        });
        attrs.prop_recursive(2, 16, 3, |inner| {
            (inner.clone(), "[a-z]{1,8}", inner, any::<bool>(), 0u64..3).prop_map(|(mut s, k, n, list, min)| {
                if list {
                    s.insert(
                        &k,
                        Spec::BlockList(BlockListSpec {
                            type_name: k.clone(),
                            nested: n,
                            min_items: min,
                            max_items: 0,
                        }),
                    );
                } else {
                    s.insert(&k, Spec::Block(BlockSpec { type_name: k.clone(), nested: n, required: min == 1 }));
                }
                s
            })
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_object_spec(&data);
            let _ = decode_cty_type(&data, 0);
        }

        #[test]
        fn mutated_specs_never_panic(s in spec(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut data = s.to_gob(GobFlavor::Module);
            let i = pos.index(data.len());
            data[i] = byte;
            let _ = decode_object_spec(&data);
        }

        #[test]
        fn encode_decode_roundtrip(s in spec(), first in 64u64..300) {
            let d = decode_object_spec(&encode_object_spec(&s, GobFlavor::DebianVendored, first)).unwrap();
            prop_assert_eq!(d.spec, s);
        }
    }
}
