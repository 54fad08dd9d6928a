//! The shape of a configuration type, read from its own `Deserialize`.
//!
//! [`Shape::of`] runs a type's deserializer against a probe that answers
//! every request with a harmless value and writes down what was asked: the
//! keys of each struct (optional and removed ones included), the names an
//! enum accepts, whether a value is a number, a string, a list or a free
//! map. So the key set, the types and the choices come from the code and
//! cannot drift from it. [`Shape::check`] then compares a user's TOML with
//! it and reports every mistake at once, each under its full dotted key
//! with what would be valid, before the typed deserialization (which then
//! only meets well-formed input).
//!
//! What the probe cannot see: checks a type makes in a hand-written
//! deserializer (the config types have none but [`Removed`](Shape::Removed)
//! keys) and values (ranges are each section's `validate`).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::Problems;

/// What a configuration value may be.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A struct: its keys, in declaration order.
    Table(Vec<(&'static str, Shape)>),
    /// Free keys (library options, labels), each value of this shape.
    Map(Box<Shape>),
    /// A list of values of this shape.
    List(Box<Shape>),
    /// One of these names (a unit enum).
    Choice(&'static [&'static str]),
    /// `true` or `false`.
    Bool,
    /// A whole number within `min..=max` (the Rust type's range, as far as
    /// TOML's 64-bit integers reach).
    Integer {
        /// Least value.
        min: i64,
        /// Greatest value.
        max: i64,
    },
    /// A number.
    Float,
    /// A string.
    Text,
    /// May be left out; no default value.
    Optional(Box<Shape>),
    /// A key of an earlier version: accepted by the parser so that the
    /// section's `validate` can say what replaced it.
    Removed,
    /// Anything; the type's own parser decides.
    Any,
}

impl Shape {
    /// The shape of `T`, as its `Deserialize` implementation asks for it.
    pub fn of<'de, T: Deserialize<'de>>() -> Result<Shape, String> {
        let mut shape = Shape::Any;
        T::deserialize(Probe { out: &mut shape }).map_err(|e| e.0)?;
        Ok(shape)
    }

    /// The shape at dotted `key` (`sinks.webhook.url`), if the key exists.
    pub fn at(&self, key: &str) -> Option<&Shape> {
        key.split('.')
            .try_fold(self, |shape, part| match shape.inner() {
                Shape::Table(fields) => fields.iter().find(|(k, _)| *k == part).map(|(_, s)| s),
                Shape::Map(value) => Some(&**value),
                _ => None,
            })
    }

    /// Without [`Shape::Optional`].
    pub fn inner(&self) -> &Shape {
        match self {
            Shape::Optional(s) => s.inner(),
            s => s,
        }
    }

    /// Every dotted key of a leaf value (not a struct), free maps as
    /// `prefix.*`, removed keys left out. What a reference file must name.
    pub fn leaf_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_leaves("", &mut out);
        out
    }

    fn collect_leaves(&self, prefix: &str, out: &mut Vec<String>) {
        match self.inner() {
            Shape::Table(fields) => {
                for (k, s) in fields {
                    s.collect_leaves(&join(prefix, k), out);
                }
            }
            Shape::Map(_) => out.push(join(prefix, "*")),
            Shape::Removed => {}
            _ => out.push(prefix.to_owned()),
        }
    }

    /// Checks `value` (found at `key`) against this shape and records
    /// every mistake in `problems`, at its full dotted key. `source`
    /// names where a key was set when it was not the file (an environment
    /// variable), by key.
    pub fn check(
        &self,
        key: &str,
        value: &toml::Value,
        source: &dyn Fn(&str) -> Option<String>,
        problems: &mut Problems,
    ) {
        let bad = |problems: &mut Problems, what: String| push(problems, source, key, what);
        match (self.inner(), value) {
            (Shape::Table(fields), toml::Value::Table(table)) => {
                for (k, v) in table {
                    let child = join(key, k);
                    match fields.iter().find(|(f, _)| f == k) {
                        Some((_, shape)) => shape.check(&child, v, source, problems),
                        None => {
                            let valid: Vec<&str> = fields
                                .iter()
                                .filter(|(_, s)| *s.inner() != Shape::Removed)
                                .map(|(f, _)| *f)
                                .collect();
                            let hint = closest(k, &valid)
                                .map(|c| format!("did you mean `{c}`? "))
                                .unwrap_or_default();
                            let message = format!(
                                "unknown key; {hint}{} {}",
                                if key.is_empty() {
                                    "the sections are".to_owned()
                                } else {
                                    format!("the keys of [{key}] are")
                                },
                                list(&valid)
                            );
                            push(problems, source, &child, message);
                        }
                    }
                }
            }
            (Shape::Map(shape), toml::Value::Table(table)) => {
                for (k, v) in table {
                    shape.check(&join_free(key, k), v, source, problems);
                }
            }
            (Shape::List(shape), toml::Value::Array(items)) => {
                for (i, v) in items.iter().enumerate() {
                    shape.check(&format!("{key}[{i}]"), v, source, problems);
                }
            }
            (Shape::Choice(names), toml::Value::String(s)) => {
                if !names.contains(&s.as_str()) {
                    let hint = closest(s, names)
                        .map(|c| format!("did you mean `{c}`? "))
                        .unwrap_or_default();
                    bad(
                        problems,
                        format!(
                            "`{s}` is not a valid choice; {hint}write one of {}",
                            list(names)
                        ),
                    );
                }
            }
            (Shape::Bool, toml::Value::Boolean(_))
            | (Shape::Float, toml::Value::Float(_) | toml::Value::Integer(_))
            | (Shape::Text, toml::Value::String(_))
            | (Shape::Removed | Shape::Any, _) => {}
            (Shape::Integer { min, max }, toml::Value::Integer(i)) => {
                if i < min || i > max {
                    bad(
                        problems,
                        format!("{i} is out of range; write {}", self.describe()),
                    );
                }
            }
            (expected, found) => bad(
                problems,
                format!(
                    "must be {}, not {}{}",
                    expected.describe(),
                    found_as(found),
                    quoted_hint(expected, found)
                ),
            ),
        }
    }

    /// What a value of this shape is, in words ("a whole number ≥ 0").
    pub fn describe(&self) -> String {
        match self.inner() {
            Shape::Table(_) => "a table (a [section])".to_owned(),
            Shape::Map(_) => "a table of keys and values".to_owned(),
            Shape::List(s) => format!("a list of {}", plural(&s.describe())),
            Shape::Choice(names) => format!("one of {}", list(names)),
            Shape::Bool => "true or false".to_owned(),
            Shape::Integer {
                min: 0,
                max: i64::MAX,
            } => "a whole number ≥ 0".to_owned(),
            Shape::Integer {
                min: i64::MIN,
                max: i64::MAX,
            } => "a whole number".to_owned(),
            Shape::Integer { min, max } => format!("a whole number from {min} to {max}"),
            Shape::Float => "a number".to_owned(),
            Shape::Text => "a string".to_owned(),
            Shape::Removed | Shape::Any | Shape::Optional(_) => "a value".to_owned(),
        }
    }
}

/// Records `what` at `key`, naming the environment variable that set it.
fn push(problems: &mut Problems, source: &dyn Fn(&str) -> Option<String>, key: &str, what: String) {
    let message = match source(key) {
        Some(var) => format!("{what} (set by {var})"),
        None => what,
    };
    problems.push(key, message);
}

/// `prefix.key` for a free map's key, quoted when it holds a dot
/// (`kafka.options."fetch.max.bytes"`), as TOML writes it.
fn join_free(prefix: &str, key: &str) -> String {
    if key.contains(['.', ' ', '"', '[']) {
        join(prefix, &format!("\"{}\"", key.replace('"', "\\\"")))
    } else {
        join(prefix, key)
    }
}

/// The parts of a dotted key, quoted parts unquoted; a list index
/// (`[3]`) ends it.
fn parts(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut part = String::new();
    let mut quoted = false;
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => part.extend(chars.next()),
            '.' if !quoted => out.push(std::mem::take(&mut part)),
            '[' if !quoted => break,
            c => part.push(c),
        }
    }
    out.push(part);
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

fn plural(what: &str) -> String {
    what.strip_prefix("a ")
        .map(|w| format!("{w}s"))
        .unwrap_or_else(|| what.to_owned())
}

/// The TOML value as the user wrote it, in words.
fn found_as(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("the string \"{s}\""),
        toml::Value::Integer(i) => format!("the number {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("{b}"),
        toml::Value::Datetime(d) => format!("the date {d}"),
        toml::Value::Array(_) => "a list".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

/// "write 0.7 without quotes" for a number or a boolean given as a string.
fn quoted_hint(expected: &Shape, found: &toml::Value) -> String {
    let toml::Value::String(s) = found else {
        return String::new();
    };
    let fits = match expected.inner() {
        Shape::Integer { .. } => s.trim().parse::<i64>().is_ok(),
        Shape::Float => s.trim().parse::<f64>().is_ok(),
        Shape::Bool => s.trim() == "true" || s.trim() == "false",
        _ => false,
    };
    if fits {
        format!("; write {} without quotes", s.trim())
    } else {
        String::new()
    }
}

/// The valid name nearest to `typo`, if it is near enough to be what was
/// meant: an edit distance of at most a third of its length (at least 1),
/// or the start of a valid name.
fn closest<'a>(typo: &str, valid: &[&'a str]) -> Option<&'a str> {
    let limit = (typo.chars().count() / 3).max(1);
    valid
        .iter()
        .map(|v| (edit_distance(typo, v), *v))
        .filter(|(d, v)| {
            // `group` for `group_id`: a cut-short key is meant too.
            *d <= limit || (typo.len() >= 4 && v.starts_with(typo))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Why probing failed: a type's deserializer refused the probe's values.
#[derive(Debug)]
struct ProbeError(String);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Answers every request of a deserializer and writes down what it was.
struct Probe<'s> {
    out: &'s mut Shape,
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Any;
        v.visit_unit()
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Bool;
        v.visit_bool(false)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        self.integer(i8::MIN.into(), i8::MAX.into(), v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        self.integer(i16::MIN.into(), i16::MAX.into(), v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        self.integer(i32::MIN.into(), i32::MAX.into(), v)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        self.integer(i64::MIN, i64::MAX, v)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        self.integer(0, u8::MAX.into(), v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        self.integer(0, u16::MAX.into(), v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        self.integer(0, u32::MAX.into(), v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        self.integer(0, i64::MAX, v)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Float;
        v.visit_f64(0.0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Float;
        v.visit_f64(0.0)
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Text;
        v.visit_char(' ')
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Text;
        v.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Text;
        v.visit_str("")
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Text;
        v.visit_bytes(&[])
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Text;
        v.visit_bytes(&[])
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        let mut inner = Shape::Any;
        let value = v.visit_some(Probe { out: &mut inner })?;
        *self.out = Shape::Optional(Box::new(inner));
        Ok(value)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Any;
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_unit(v)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, ProbeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        let mut item = Shape::Any;
        let value = v.visit_seq(OneItem {
            out: Some(&mut item),
        })?;
        *self.out = Shape::List(Box::new(item));
        Ok(value)
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, ProbeError> {
        self.deserialize_seq(v)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        let mut value_shape = Shape::Any;
        let value = v.visit_map(OneEntry {
            out: Some(&mut value_shape),
            key_given: false,
        })?;
        *self.out = Shape::Map(Box::new(value_shape));
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ProbeError> {
        let mut shapes = vec![Shape::Any; fields.len()];
        let value = v.visit_map(Fields {
            fields,
            shapes: &mut shapes,
            next: 0,
        })?;
        *self.out = Shape::Table(fields.iter().copied().zip(shapes).collect());
        Ok(value)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Choice(variants);
        let first = variants
            .first()
            .ok_or_else(|| ProbeError("an enum without variants".into()))?;
        v.visit_enum(FirstVariant { name: first })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Removed;
        v.visit_unit()
    }
}

impl Probe<'_> {
    fn integer<'de, V: Visitor<'de>>(
        self,
        min: i64,
        max: i64,
        v: V,
    ) -> Result<V::Value, ProbeError> {
        *self.out = Shape::Integer { min, max };
        // 1 fits every integer type, non-zero ones included.
        v.visit_u64(1)
    }
}

/// A struct's keys, each once, each value probed.
struct Fields<'s> {
    fields: &'static [&'static str],
    shapes: &'s mut [Shape],
    next: usize,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        match self.fields.get(self.next) {
            Some(name) => seed.deserialize(name.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, ProbeError> {
        let i = self.next;
        self.next += 1;
        let out = self
            .shapes
            .get_mut(i)
            .ok_or_else(|| ProbeError("a value without a key".into()))?;
        seed.deserialize(Probe { out })
    }
}

/// A free map with one entry, to learn the values' shape.
struct OneEntry<'s> {
    out: Option<&'s mut Shape>,
    key_given: bool,
}

impl<'de> de::MapAccess<'de> for OneEntry<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        if self.key_given || self.out.is_none() {
            return Ok(None);
        }
        self.key_given = true;
        seed.deserialize("key".into_deserializer()).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, ProbeError> {
        let out = self
            .out
            .take()
            .ok_or_else(|| ProbeError("a value without a key".into()))?;
        seed.deserialize(Probe { out })
    }
}

/// A list with one item, to learn the items' shape.
struct OneItem<'s> {
    out: Option<&'s mut Shape>,
}

impl<'de> de::SeqAccess<'de> for OneItem<'_> {
    type Error = ProbeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ProbeError> {
        match self.out.take() {
            Some(out) => seed.deserialize(Probe { out }).map(Some),
            None => Ok(None),
        }
    }
}

/// An enum given as its first variant.
struct FirstVariant {
    name: &'static str,
}

impl<'de> de::EnumAccess<'de> for FirstVariant {
    type Error = ProbeError;
    type Variant = UnitOnly;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, UnitOnly), ProbeError> {
        let v = seed.deserialize(self.name.into_deserializer())?;
        Ok((v, UnitOnly))
    }
}

/// Config enums are names; variants with data are not probed.
struct UnitOnly;

impl<'de> de::VariantAccess<'de> for UnitOnly {
    type Error = ProbeError;

    fn unit_variant(self) -> Result<(), ProbeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        _seed: T,
    ) -> Result<T::Value, ProbeError> {
        Err(ProbeError("an enum variant with data".into()))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _v: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError("an enum variant with data".into()))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _v: V,
    ) -> Result<V::Value, ProbeError> {
        Err(ProbeError("an enum variant with data".into()))
    }
}

/// Removes dotted `key` from `table` (a mistake, so that the typed
/// deserialization after [`Shape::check`] meets the default instead).
/// List items (`key[3]`) remove the whole list.
pub fn remove(table: &mut toml::Table, key: &str) {
    let parts = parts(key);
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut t = table;
    for p in parents {
        match t.get_mut(p) {
            Some(toml::Value::Table(next)) => t = next,
            _ => return,
        }
    }
    t.remove(last);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        #[default]
        Linear,
        Autoencoder,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        lags: usize,
        offset: i32,
        rate: f64,
        kind: Kind,
        name: String,
        labels: BTreeMap<String, String>,
        topics: Vec<String>,
        limit: Option<f64>,
        #[serde(deserialize_with = "ignore")]
        old: (),
    }

    fn ignore<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| ())
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Outer {
        on: bool,
        inner: Inner,
    }

    fn problems(text: &str) -> Vec<String> {
        let shape = Shape::of::<Outer>().unwrap();
        let value: toml::Table = toml::from_str(text).unwrap();
        let mut p = Problems::new();
        shape.check("", &toml::Value::Table(value), &|_| None, &mut p);
        p.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_probe_reads_keys_types_and_choices_from_deserialize() {
        let shape = Shape::of::<Outer>().unwrap();
        assert_eq!(shape.at("on"), Some(&Shape::Bool));
        assert_eq!(
            shape.at("inner.lags"),
            Some(&Shape::Integer {
                min: 0,
                max: i64::MAX
            })
        );
        assert_eq!(
            shape.at("inner.offset"),
            Some(&Shape::Integer {
                min: i32::MIN.into(),
                max: i32::MAX.into()
            })
        );
        assert_eq!(shape.at("inner.rate"), Some(&Shape::Float));
        assert_eq!(
            shape.at("inner.kind"),
            Some(&Shape::Choice(&["linear", "autoencoder"]))
        );
        assert_eq!(shape.at("inner.labels.anything"), Some(&Shape::Text));
        assert_eq!(
            shape.at("inner.topics"),
            Some(&Shape::List(Box::new(Shape::Text)))
        );
        assert_eq!(
            shape.at("inner.limit"),
            Some(&Shape::Optional(Box::new(Shape::Float)))
        );
        assert_eq!(shape.at("inner.old"), Some(&Shape::Removed));
        assert_eq!(shape.at("inner.nope"), None);
        let leaves = shape.leaf_keys();
        assert!(leaves.contains(&"inner.limit".to_owned()));
        assert!(leaves.contains(&"inner.labels.*".to_owned()));
        assert!(!leaves.contains(&"inner.old".to_owned()));
    }

    #[test]
    fn every_mistake_is_reported_at_its_full_key_with_what_is_valid() {
        let got = problems(
            "on = \"true\"\n[inner]\nlagz = 3\nrate = \"0.7\"\nkind = \"lineer\"\n\
             topics = [\"a\", 3]\nlabels = { a = 1 }\nlags = -2\nold = 5\nlimit = 0.5\n\
             offset = 3000000000\n",
        );
        assert_eq!(got.len(), 8, "{got:#?}");
        assert!(
            got[0].starts_with(
                "on: must be true or false, not the string \"true\"; write true without quotes"
            ),
            "{got:#?}"
        );
        let find = |key: &str| {
            got.iter()
                .find(|p| p.starts_with(&format!("{key}: ")))
                .unwrap_or_else(|| panic!("no problem at {key}: {got:#?}"))
        };
        assert!(find("inner.lagz").contains("did you mean `lags`?"));
        // Removed keys are accepted here (validation says what replaced
        // them) and never offered as valid.
        assert!(!find("inner.lagz").contains("old"));
        assert!(find("inner.lagz").contains("`limit`"));
        assert!(
            find("inner.rate")
                .contains("must be a number, not the string \"0.7\"; write 0.7 without quotes")
        );
        assert!(find("inner.kind").contains("did you mean `linear`?"));
        assert!(
            find("inner.offset").contains("write a whole number from -2147483648 to 2147483647")
        );
        assert!(find("inner.kind").contains("`linear`, `autoencoder`"));
        assert!(find("inner.topics[1]").contains("must be a string, not the number 3"));
        assert!(find("inner.labels.a").contains("must be a string"));
        assert!(find("inner.lags").contains("-2 is out of range; write a whole number ≥ 0"));
        for p in &got {
            for rust in ["f64", "usize", "i32", "struct", "enum", "Kind", "Inner"] {
                assert!(!p.contains(rust), "a Rust name in {p}");
            }
        }
    }

    #[test]
    fn remove_takes_out_dotted_keys_quoted_parts_and_whole_lists() {
        let mut base: toml::Table =
            toml::from_str("[a]\nx = [1, 2, 3]\ny = 3\n[b]\nz = 4\n").unwrap();
        remove(&mut base, "b.z");
        remove(&mut base, "a.x[2]");
        remove(&mut base, "a.nothing.here");
        let mut dotted: toml::Table =
            toml::from_str("[o]\n\"fetch.max.bytes\" = 1\nk = 2\n").unwrap();
        remove(&mut dotted, &join_free("o", "fetch.max.bytes"));
        assert_eq!(
            dotted,
            toml::from_str::<toml::Table>("[o]\nk = 2\n").unwrap()
        );
        assert_eq!(
            base,
            toml::from_str::<toml::Table>("[a]\ny = 3\n[b]\n").unwrap()
        );
    }
}
