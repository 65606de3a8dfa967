//! The `Datasource` service, served by the plugin on broker id 0 for modern Packer (Packer's Go
//! SDK `rpc/datasource.go`; Packer 1.6 has no data sources).
//!
//! | method | args | reply |
//! |---|---|---|
//! | `Datasource.ConfigSpec` | nil | `{ConfigSpec: bin}` (gob or protobuf, as for builders) |
//! | `Datasource.Configure` | `{Configs: [...]}` | `{Error: nil}`; a bad config is a method error |
//! | `Datasource.OutputSpec` | nil | `{OutputSpec: bin}` (the same encoding as ConfigSpec) |
//! | `Datasource.Execute` | nil | `{Value: bin, Error: nil}`: the result in go-cty's msgpack encoding of a `cty.DynamicPseudoType` value |
//! | `Datasource.Cancel` | nil | nil |
//!
//! `Execute`'s value: with protocol v2 (`--protobuf`) core decodes it with
//! `msgpack.Unmarshal(b, cty.DynamicPseudoType)`: a 2-element array of the type's JSON (msgpack bin)
//! and the value encoded for that type ([`cty_msgpack_dynamic`]). A gob-speaking core (Packer
//! 1.7–1.11) expects a gob-encoded `cty.Value` (Go's interface registry inside gob); that encoding
//! is not implemented: `Execute` then fails with a message saying so.

use async_trait::async_trait;

use super::builder::{config_spec_reply, raw_configs, SpecEncoder};
use super::codec::{map, Value};
use crate::component::Datasource;
use crate::hcl::{CtyType, ObjectSpec, Spec};

/// Serves a [`Datasource`] as `Datasource.*`.
pub struct DatasourceServer {
    datasource: tokio::sync::RwLock<Box<dyn Datasource>>,
    encoder: SpecEncoder,
    protobuf: bool,
}

impl DatasourceServer {
    /// Serves `datasource`; `protobuf` = core started the plugin with `--protobuf` (protocol v2).
    pub fn new(datasource: Box<dyn Datasource>, encoder: SpecEncoder, protobuf: bool) -> Self {
        DatasourceServer { datasource: tokio::sync::RwLock::new(datasource), encoder, protobuf }
    }

    async fn execute(&self) -> Result<Value, String> {
        if !self.protobuf {
            return Err("data sources of this plugin need Packer 1.12 or later (protocol v2, cty values in msgpack); \
                        this Packer expects a gob-encoded cty.Value, which the Rust SDK does not write"
                .to_string());
        }
        let ds = self.datasource.read().await;
        let outputs = ds.execute().await.map_err(|e| e.0)?;
        let ty = output_type(&ds.output_spec())?;
        let value = serde_json::Value::Object(outputs);
        let bytes = cty_msgpack_dynamic(&value, &ty)?;
        Ok(map(vec![("Value", Value::Binary(bytes)), ("Error", Value::Nil)]))
    }
}

#[async_trait]
impl super::netrpc::Service for DatasourceServer {
    async fn call(&self, method: &str, body: Value) -> Result<Value, String> {
        match method {
            "ConfigSpec" => {
                let spec = self.datasource.read().await.config_spec();
                config_spec_reply(&spec, &self.encoder)
            }
            "Configure" => {
                let raws = raw_configs(&body)?;
                self.datasource.write().await.configure(raws).await.map_err(|e| e.to_string())?;
                Ok(map(vec![("Error", Value::Nil)]))
            }
            "OutputSpec" => {
                let spec = self.datasource.read().await.output_spec();
                Ok(map(vec![("OutputSpec", Value::Binary((self.encoder)(&spec)?))]))
            }
            "Execute" => self.execute().await,
            "Cancel" => Ok(Value::Nil),
            other => Err(format!("rpc: can't find method Datasource.{other}")),
        }
    }
}

/// A cty type: the spec's attribute types, and objects (a data source's whole output).
#[derive(Debug, Clone, PartialEq)]
pub enum OutputType {
    /// A type an attribute can have.
    Cty(CtyType),
    /// `cty.Object`, attributes sorted by name.
    Object(Vec<(String, OutputType)>),
}

/// The object type of an output spec (attributes only: an output has no blocks).
pub fn output_type(spec: &ObjectSpec) -> Result<OutputType, String> {
    let mut attrs = Vec::new();
    for (name, s) in &spec.entries {
        match s {
            Spec::Attr(a) => attrs.push((name.clone(), OutputType::Cty(a.ty.clone()))),
            _ => return Err(format!("the data source's output spec has a block ({name}): outputs are attributes")),
        }
    }
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(OutputType::Object(attrs))
}

/// The type's JSON, as go-cty writes it (`"string"`, `["list","number"]`, `["object",{…}]`).
pub fn type_json(ty: &OutputType) -> serde_json::Value {
    fn cty(t: &CtyType) -> serde_json::Value {
        match t {
            CtyType::String => "string".into(),
            CtyType::Number => "number".into(),
            CtyType::Bool => "bool".into(),
            CtyType::List(e) => serde_json::json!(["list", cty(e)]),
            CtyType::Map(e) => serde_json::json!(["map", cty(e)]),
        }
    }
    match ty {
        OutputType::Cty(t) => cty(t),
        OutputType::Object(attrs) => {
            let m: serde_json::Map<String, serde_json::Value> =
                attrs.iter().map(|(k, t)| (k.clone(), type_json(t))).collect();
            serde_json::json!(["object", m])
        }
    }
}

/// `value` as go-cty's `msgpack.Marshal(v, cty.DynamicPseudoType)`: `[bin(type JSON), value]`.
/// Written by hand because it is go-cty's own format (no crate writes it): numbers as the smallest
/// msgpack int when integral, else float64; maps and objects with sorted keys; null as nil.
pub fn cty_msgpack_dynamic(value: &serde_json::Value, ty: &OutputType) -> Result<Vec<u8>, String> {
    let type_json = serde_json::to_vec(&type_json(ty)).map_err(|e| e.to_string())?;
    let v = Value::Array(vec![Value::Binary(type_json), cty_value(value, ty, "")?]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).map_err(|e| e.to_string())?;
    Ok(out)
}

fn cty_value(v: &serde_json::Value, ty: &OutputType, path: &str) -> Result<Value, String> {
    use serde_json::Value as J;
    let here = if path.is_empty() { "the output" } else { path };
    if v.is_null() {
        return Ok(Value::Nil);
    }
    let mismatch = |want: &str| Err(format!("{here}: expected {want}, got {v}"));
    Ok(match (ty, v) {
        (OutputType::Cty(CtyType::String), J::String(s)) => Value::from(s.as_str()),
        (OutputType::Cty(CtyType::Bool), J::Bool(b)) => Value::Boolean(*b),
        (OutputType::Cty(CtyType::Number), J::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        (OutputType::Cty(CtyType::List(e)), J::Array(items)) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| cty_value(x, &OutputType::Cty((**e).clone()), &format!("{here}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        (OutputType::Cty(CtyType::Map(e)), J::Object(m)) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Vec::new();
            for k in keys {
                out.push((
                    Value::from(k.as_str()),
                    cty_value(&m[k], &OutputType::Cty((**e).clone()), &format!("{here}.{k}"))?,
                ));
            }
            Value::Map(out)
        }
        (OutputType::Object(attrs), J::Object(m)) => {
            if let Some(extra) = m.keys().find(|k| !attrs.iter().any(|(a, _)| a == *k)) {
                return Err(format!("{here}: {extra:?} is not in the output spec"));
            }
            let mut out = Vec::new();
            for (name, aty) in attrs {
                let av = m.get(name).unwrap_or(&J::Null);
                let p = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                out.push((Value::from(name.as_str()), cty_value(av, aty, &p)?));
            }
            Value::Map(out)
        }
        (OutputType::Cty(CtyType::String), _) => return mismatch("a string"),
        (OutputType::Cty(CtyType::Bool), _) => return mismatch("a bool"),
        (OutputType::Cty(CtyType::Number), _) => return mismatch("a number"),
        (OutputType::Cty(CtyType::List(_)), _) => return mismatch("a list"),
        (OutputType::Cty(CtyType::Map(_)) | OutputType::Object(_), _) => return mismatch("an object"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hcl::AttrSpec;

    fn spec() -> ObjectSpec {
        let mut s = ObjectSpec::new();
        for (name, ty) in [
            ("s", CtyType::String),
            ("n", CtyType::Number),
            ("tags", CtyType::List(Box::new(CtyType::String))),
            ("labels", CtyType::Map(Box::new(CtyType::Number))),
            ("ok", CtyType::Bool),
        ] {
            s.insert(name, Spec::Attr(AttrSpec { name: name.into(), ty, required: false }));
        }
        s
    }

    #[test]
    fn go_cty_dynamic_msgpack_bytes() {
        let ty = output_type(&spec()).unwrap();
        assert_eq!(
            serde_json::to_string(&type_json(&ty)).unwrap(),
            r#"["object",{"labels":["map","number"],"n":"number","ok":"bool","s":"string","tags":["list","string"]}]"#
        );
        let v = serde_json::json!({"s": "x", "n": 1, "tags": ["a"], "labels": {"b": 2.5, "a": -1}, "ok": null});
        let bytes = cty_msgpack_dynamic(&v, &ty).unwrap();
        let tj = serde_json::to_vec(&type_json(&ty)).unwrap();
        let mut want = vec![0x92, 0xc4, tj.len() as u8];
        want.extend(&tj);
        want.push(0x85); // 5 attributes, sorted
        want.extend([0xa6]);
        want.extend(b"labels");
        want.extend([0x82, 0xa1, b'a', 0xff, 0xa1, b'b', 0xcb]);
        want.extend(2.5f64.to_be_bytes());
        want.extend([0xa1, b'n', 0x01]);
        want.extend([0xa2, b'o', b'k', 0xc0]);
        want.extend([0xa1, b's', 0xa1, b'x']);
        want.extend([0xa4]);
        want.extend(b"tags");
        want.extend([0x91, 0xa1, b'a']);
        assert_eq!(bytes, want);
    }

    #[test]
    fn wrong_types_and_unknown_outputs_are_errors() {
        let ty = output_type(&spec()).unwrap();
        let e = cty_msgpack_dynamic(&serde_json::json!({"n": "one"}), &ty).unwrap_err();
        assert!(e.contains("n: expected a number"), "{e}");
        let e = cty_msgpack_dynamic(&serde_json::json!({"tags": [1]}), &ty).unwrap_err();
        assert!(e.contains("tags[0]: expected a string"), "{e}");
        let e = cty_msgpack_dynamic(&serde_json::json!({"extra": 1}), &ty).unwrap_err();
        assert!(e.contains("\"extra\" is not in the output spec"), "{e}");
    }
}
