//! The ConfigSpec model: the HCL2 schema of a component's configuration (hcldec's
//! `ObjectSpec` of `AttrSpec`/`BlockSpec`/`BlockListSpec` with cty types), sent to Packer core
//! in reply to `ConfigSpec`, encoded as gob (Packer 1.6.6, and modern core without
//! `--protobuf`) or protobuf (modern core with `--protobuf`).
//!
//! Encoders: [`ObjectSpec::to_gob`] (module [`gob`], plugin-protocol.md §6.2) and
//! [`ObjectSpec::to_protobuf`] (module [`protobuf`], §6.3). Builders: [`ObjectSpec::attr`],
//! [`ObjectSpec::required_attr`], [`ObjectSpec::block`], [`ObjectSpec::block_list`],
//! [`ObjectSpec::with_packer_common`]; cty JSON type notation: [`CtyType::from_cty_json`].

pub mod gob;
pub mod protobuf;

pub use gob::{GobDecodeError, GobFlavor, DEFAULT_FIRST_TYPE_ID};

/// A cty type, as far as ConfigSpecs use them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CtyType {
    /// `cty.String`
    String,
    /// `cty.Number`
    Number,
    /// `cty.Bool`
    Bool,
    /// `cty.List(T)`
    List(Box<CtyType>),
    /// `cty.Map(T)`
    Map(Box<CtyType>),
}

/// One entry of an [`ObjectSpec`].
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// An attribute (`name = value`).
    Attr(AttrSpec),
    /// A single nested block (`name { … }`).
    Block(BlockSpec),
    /// A repeated nested block.
    BlockList(BlockListSpec),
}

/// hcldec `AttrSpec`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrSpec {
    /// Attribute name.
    pub name: String,
    /// Its cty type.
    pub ty: CtyType,
    /// Whether HCL requires it.
    pub required: bool,
}

/// hcldec `BlockSpec`.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockSpec {
    /// Block type name.
    pub type_name: String,
    /// The block's body.
    pub nested: ObjectSpec,
    /// Whether HCL requires it.
    pub required: bool,
}

/// hcldec `BlockListSpec`.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockListSpec {
    /// Block type name.
    pub type_name: String,
    /// The body of each block.
    pub nested: ObjectSpec,
    /// Minimum number of blocks (0 = no minimum).
    pub min_items: u64,
    /// Maximum number of blocks (0 = no maximum).
    pub max_items: u64,
}

/// hcldec `ObjectSpec`: named entries, kept in insertion order (encoders may sort).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectSpec {
    /// The entries, by key.
    pub entries: Vec<(String, Spec)>,
}

impl ObjectSpec {
    /// An empty spec.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an optional attribute named `name` of type `ty` (replacing an entry of that key).
    pub fn attr(mut self, name: &str, ty: CtyType) -> Self {
        self.insert(name, Spec::Attr(AttrSpec { name: name.to_string(), ty, required: false }));
        self
    }

    /// Looks an entry up by key.
    pub fn get(&self, key: &str) -> Option<&Spec> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, s)| s)
    }
}

impl CtyType {
    /// `cty.List(elem)`.
    pub fn list(elem: CtyType) -> CtyType {
        CtyType::List(Box::new(elem))
    }

    /// `cty.Map(elem)`.
    pub fn map(elem: CtyType) -> CtyType {
        CtyType::Map(Box::new(elem))
    }

    /// Parses cty's JSON type notation (`"string"`, `"number"`, `"bool"`, `["list", T]`,
    /// `["map", T]`); `None` for anything else (including types this model cannot represent,
    /// such as sets, objects, tuples and `"dynamic"`).
    pub fn from_cty_json(v: &serde_json::Value) -> Option<CtyType> {
        Self::from_cty_json_depth(v, 0)
    }

    fn from_cty_json_depth(v: &serde_json::Value, depth: usize) -> Option<CtyType> {
        if depth > 64 {
            return None;
        }
        match v {
            serde_json::Value::String(s) => match s.as_str() {
                "string" => Some(CtyType::String),
                "number" => Some(CtyType::Number),
                "bool" => Some(CtyType::Bool),
                _ => None,
            },
            serde_json::Value::Array(a) if a.len() == 2 => {
                let elem = Box::new(Self::from_cty_json_depth(&a[1], depth + 1)?);
                match a[0].as_str()? {
                    "list" => Some(CtyType::List(elem)),
                    "map" => Some(CtyType::Map(elem)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// This type in cty's JSON type notation (inverse of [`CtyType::from_cty_json`]).
    pub fn to_cty_json(&self) -> serde_json::Value {
        match self {
            CtyType::String => serde_json::json!("string"),
            CtyType::Number => serde_json::json!("number"),
            CtyType::Bool => serde_json::json!("bool"),
            CtyType::List(e) => serde_json::json!(["list", e.to_cty_json()]),
            CtyType::Map(e) => serde_json::json!(["map", e.to_cty_json()]),
        }
    }

    /// Go's `cty.Type.GoString()`: `cty.String`, `cty.List(cty.Number)`, … (what the protobuf
    /// `CtyPrimitive.typeString` carries for primitives).
    pub fn go_string(&self) -> String {
        match self {
            CtyType::String => "cty.String".to_string(),
            CtyType::Number => "cty.Number".to_string(),
            CtyType::Bool => "cty.Bool".to_string(),
            CtyType::List(e) => format!("cty.List({})", e.go_string()),
            CtyType::Map(e) => format!("cty.Map({})", e.go_string()),
        }
    }
}

/// HCL type-expression form: `string`, `list(string)`, `map(number)`, …
impl std::fmt::Display for CtyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CtyType::String => f.write_str("string"),
            CtyType::Number => f.write_str("number"),
            CtyType::Bool => f.write_str("bool"),
            CtyType::List(e) => write!(f, "list({e})"),
            CtyType::Map(e) => write!(f, "map({e})"),
        }
    }
}

/// The common `packer_*` attributes every Packer component's ConfigSpec carries
/// (plugin-protocol.md §6.1), in the order [`ObjectSpec::with_packer_common`] adds them.
pub fn packer_common_attrs() -> Vec<(&'static str, CtyType)> {
    vec![
        ("packer_build_name", CtyType::String),
        ("packer_builder_type", CtyType::String),
        ("packer_core_version", CtyType::String),
        ("packer_debug", CtyType::Bool),
        ("packer_force", CtyType::Bool),
        ("packer_on_error", CtyType::String),
        ("packer_user_variables", CtyType::map(CtyType::String)),
        ("packer_sensitive_variables", CtyType::list(CtyType::String)),
    ]
}

impl ObjectSpec {
    /// Adds `spec` under `key`, replacing an existing entry of that key in place.
    pub fn insert(&mut self, key: &str, spec: Spec) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, s)) => *s = spec,
            None => self.entries.push((key.to_string(), spec)),
        }
    }

    /// Adds a required attribute named `name` of type `ty`.
    pub fn required_attr(mut self, name: &str, ty: CtyType) -> Self {
        self.insert(name, Spec::Attr(AttrSpec { name: name.to_string(), ty, required: true }));
        self
    }

    /// Adds an optional single block `name { … }` whose body is `nested`.
    pub fn block(mut self, name: &str, nested: ObjectSpec) -> Self {
        self.insert(name, Spec::Block(BlockSpec { type_name: name.to_string(), nested, required: false }));
        self
    }

    /// Adds a required single block `name { … }` whose body is `nested`.
    pub fn required_block(mut self, name: &str, nested: ObjectSpec) -> Self {
        self.insert(name, Spec::Block(BlockSpec { type_name: name.to_string(), nested, required: true }));
        self
    }

    /// Adds a repeatable block `name { … }` (no minimum or maximum count) whose body is `nested`.
    pub fn block_list(mut self, name: &str, nested: ObjectSpec) -> Self {
        self.insert(
            name,
            Spec::BlockList(BlockListSpec { type_name: name.to_string(), nested, min_items: 0, max_items: 0 }),
        );
        self
    }

    /// Adds the common `packer_*` attributes ([`packer_common_attrs`]) that are not present yet.
    pub fn with_packer_common(mut self) -> Self {
        for (name, ty) in packer_common_attrs() {
            if self.get(name).is_none() {
                self = self.attr(name, ty);
            }
        }
        self
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the spec has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// A copy with the entries sorted by key at every level (Go's deterministic order).
    pub fn sorted(&self) -> ObjectSpec {
        let mut entries: Vec<(String, Spec)> = self
            .entries
            .iter()
            .map(|(k, s)| {
                let s = match s {
                    Spec::Attr(a) => Spec::Attr(a.clone()),
                    Spec::Block(b) => Spec::Block(BlockSpec { nested: b.nested.sorted(), ..b.clone() }),
                    Spec::BlockList(b) => Spec::BlockList(BlockListSpec { nested: b.nested.sorted(), ..b.clone() }),
                };
                (k.clone(), s)
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        ObjectSpec { entries }
    }

    /// Go `encoding/gob` of this spec as an `hcldec.ObjectSpec` (what Packer core expects in
    /// `ConfigSpec` without `--protobuf`): entries in `entries` order, Go's message layout,
    /// user type ids from [`DEFAULT_FIRST_TYPE_ID`]. `flavor` must match the core binary.
    pub fn to_gob(&self, flavor: GobFlavor) -> Vec<u8> {
        gob::encode_object_spec(self, flavor, DEFAULT_FIRST_TYPE_ID)
    }

    /// [`ObjectSpec::to_gob`] with user type ids numbered from `first_type_id` (Go ≤ 1.21
    /// starts at 65, Go ≥ 1.22 at 64; values below 64 are raised to 64).
    pub fn to_gob_with_first_type_id(&self, flavor: GobFlavor, first_type_id: u64) -> Vec<u8> {
        gob::encode_object_spec(self, flavor, first_type_id)
    }

    /// Decodes a gob `hcldec.ObjectSpec` (either flavor), keeping the wire order of entries.
    pub fn from_gob(data: &[u8]) -> Result<ObjectSpec, GobDecodeError> {
        gob::decode_object_spec(data).map(|d| d.spec)
    }

    /// The protobuf `Spec` message (sdk `rpc/hcl_spec.proto`) of this spec, what Packer core
    /// expects in `ConfigSpec` when the plugin was started with `--protobuf`; every map in
    /// sorted key order (= protobuf-go's deterministic marshalling).
    pub fn to_protobuf(&self) -> Vec<u8> {
        protobuf::encode_spec(self, true)
    }

    /// Like [`ObjectSpec::to_protobuf`], but map entries in `entries` order (any order is valid
    /// protobuf; this reproduces a particular Go map iteration order).
    pub fn to_protobuf_in_entry_order(&self) -> Vec<u8> {
        protobuf::encode_spec(self, false)
    }
}
