//! Canonical JSON written straight from a value's `Serialize`, without building a
//! `serde_json::Value` first: the same bytes as [`crate::event::canonical_json`] of
//! `serde_json::to_value(value)` (object keys sorted at every depth, no whitespace, scalars as
//! serde_json writes them), at a fraction of the allocations. Hashing a case's state on every
//! event is what this is for ([`crate::Case::state_sha256`]).
//!
//! What `to_value` does that a JSON writer does not, and is done here the same way: an object's
//! keys are sorted and a repeated key keeps its last value; an `f32` is widened to `f64` first;
//! map keys that are numbers, booleans or characters become strings. Anything `to_value` would
//! refuse is refused ([`Unsupported`]), and the caller falls back to the value.

use std::fmt::{self, Display};
use std::ops::Range;

use serde::ser::{self, Serialize};

/// A value the direct writer does not take (the caller then goes through `serde_json::Value`).
#[derive(Debug)]
pub struct Unsupported(String);

impl Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: Display>(message: T) -> Unsupported {
        Unsupported(message.to_string())
    }
}

/// What the top-level object's fields become: `skip` are left out (not serialised at all), and
/// `replace` stands for the named field's value (already canonical JSON).
pub struct TopFields<'a> {
    pub skip: &'a [&'static str],
    pub replace: (&'static str, &'a [u8]),
}

/// Appends the canonical JSON of `value`, a struct, to `out` with its top-level fields as `top`
/// says.
pub fn write_struct<T: Serialize + ?Sized>(
    value: &T,
    top: &TopFields<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Unsupported> {
    value.serialize(Writer {
        out,
        top: Some(top),
    })
}

/// Appends the canonical JSON of `value` to `out`.
pub fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Unsupported> {
    value.serialize(Writer { out, top: None })
}

/// serde_json's compact form of a string or scalar.
fn scalar<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Unsupported> {
    serde_json::to_writer(out, value).map_err(|e| Unsupported(e.to_string()))
}

struct Writer<'w, 't> {
    out: &'w mut Vec<u8>,
    top: Option<&'t TopFields<'t>>,
}

/// An object being written: its fields' values are written after `start` as they come, then
/// put in key order when it ends.
struct Object<'w, 't> {
    out: &'w mut Vec<u8>,
    top: Option<&'t TopFields<'t>>,
    start: usize,
    fields: Vec<(Key, Range<usize>)>,
    /// A map's key waiting for its value.
    pending: Option<String>,
    /// Closes a variant's wrapping object (`{"variant":{…}}`) after this one.
    close_variant: bool,
}

enum Key {
    Static(&'static str),
    Owned(String),
}

impl Key {
    fn as_str(&self) -> &str {
        match self {
            Key::Static(key) => key,
            Key::Owned(key) => key,
        }
    }
}

impl<'w, 't> Object<'w, 't> {
    fn new(out: &'w mut Vec<u8>, top: Option<&'t TopFields<'t>>, close_variant: bool) -> Self {
        let start = out.len();
        Object {
            out,
            top,
            start,
            fields: Vec::new(),
            pending: None,
            close_variant,
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: Key, value: &T) -> Result<(), Unsupported> {
        let from = self.out.len();
        if let Some(top) = self.top {
            if top.skip.contains(&key.as_str()) {
                return Ok(());
            }
            if key.as_str() == top.replace.0 {
                self.out.extend_from_slice(top.replace.1);
                self.fields.push((key, from..self.out.len()));
                return Ok(());
            }
        }
        write(value, self.out)?;
        self.fields.push((key, from..self.out.len()));
        Ok(())
    }

    fn end(mut self) -> Result<(), Unsupported> {
        if let Some(top) = self.top {
            // The replaced field stands even where the value had none.
            let (name, bytes) = top.replace;
            if !self.fields.iter().any(|(key, _)| key.as_str() == name) {
                let from = self.out.len();
                self.out.extend_from_slice(bytes);
                self.fields.push((Key::Static(name), from..self.out.len()));
            }
        }
        let values = self.out.split_off(self.start);
        // Stable: of a repeated key, the last value written is the one kept (as a map insert).
        self.fields.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        self.out.push(b'{');
        let mut first = true;
        for (index, (key, range)) in self.fields.iter().enumerate() {
            let repeated = self
                .fields
                .get(index + 1)
                .is_some_and(|(next, _)| next.as_str() == key.as_str());
            if repeated {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            scalar(key.as_str(), self.out)?;
            self.out.push(b':');
            let value = values.get(range.start - self.start..range.end - self.start);
            self.out.extend_from_slice(value.unwrap_or_default());
        }
        self.out.push(b'}');
        if self.close_variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// An array being written.
struct Array<'w> {
    out: &'w mut Vec<u8>,
    first: bool,
    close_variant: bool,
}

impl<'w> Array<'w> {
    fn new(out: &'w mut Vec<u8>, close_variant: bool) -> Self {
        out.push(b'[');
        Array {
            out,
            first: true,
            close_variant,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write(value, self.out)
    }

    fn end(self) -> Result<(), Unsupported> {
        self.out.push(b']');
        if self.close_variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// Opens a variant's wrapping object: `{"variant":`.
fn open_variant(out: &mut Vec<u8>, variant: &str) -> Result<(), Unsupported> {
    out.push(b'{');
    scalar(variant, out)?;
    out.push(b':');
    Ok(())
}

impl<'w, 't> ser::Serializer for Writer<'w, 't> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Array<'w>;
    type SerializeTuple = Array<'w>;
    type SerializeTupleStruct = Array<'w>;
    type SerializeTupleVariant = Array<'w>;
    type SerializeMap = Object<'w, 't>;
    type SerializeStruct = Object<'w, 't>;
    type SerializeStructVariant = Object<'w, 't>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        scalar(&v, self.out)
    }
    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        scalar(&v, self.out)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        scalar(&v, self.out)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        scalar(&v, self.out)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        scalar(&v, self.out)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Unsupported> {
        match (i64::try_from(v), u64::try_from(v)) {
            (Ok(v), _) => scalar(&v, self.out),
            (_, Ok(v)) => scalar(&v, self.out),
            _ => Err(Unsupported("an integer beyond 64 bits".into())),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        scalar(&v, self.out)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        scalar(&v, self.out)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        scalar(&v, self.out)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        scalar(&v, self.out)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Unsupported> {
        match u64::try_from(v) {
            Ok(v) => scalar(&v, self.out),
            Err(_) => Err(Unsupported("an integer beyond 64 bits".into())),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        // `to_value` widens an f32 before it is written.
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        scalar(&v, self.out)
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        scalar(&v, self.out)
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        scalar(v, self.out)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unsupported> {
        scalar(v, self.out)
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Unsupported> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        scalar(variant, self.out)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        open_variant(self.out, variant)?;
        write(value, self.out)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Array<'w>, Unsupported> {
        Ok(Array::new(self.out, false))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Array<'w>, Unsupported> {
        Ok(Array::new(self.out, false))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Array<'w>, Unsupported> {
        Ok(Array::new(self.out, false))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Array<'w>, Unsupported> {
        open_variant(self.out, variant)?;
        Ok(Array::new(self.out, true))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Object<'w, 't>, Unsupported> {
        if self.top.is_some() {
            return Err(Unsupported("the top level is not a struct".into()));
        }
        Ok(Object::new(self.out, None, false))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Object<'w, 't>, Unsupported> {
        Ok(Object::new(self.out, self.top, false))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Object<'w, 't>, Unsupported> {
        if self.top.is_some() {
            return Err(Unsupported("the top level is not a struct".into()));
        }
        open_variant(self.out, variant)?;
        Ok(Object::new(self.out, None, true))
    }
}

/// The four serde sequence traits: each writes its elements as one array.
macro_rules! array_of_elements {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for Array<'_> {
            type Ok = ();
            type Error = Unsupported;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
                self.element(value)
            }
            fn end(self) -> Result<(), Unsupported> {
                Array::end(self)
            }
        }
    )*};
}
array_of_elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Object<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsupported> {
        self.pending = Some(key.serialize(MapKey)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        let key = self
            .pending
            .take()
            .ok_or_else(|| Unsupported("a map value without its key".into()))?;
        self.field(Key::Owned(key), value)
    }
    fn end(self) -> Result<(), Unsupported> {
        Object::end(self)
    }
}

/// The two serde struct traits: each writes its fields as one object.
macro_rules! object_of_fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Object<'_, '_> {
            type Ok = ();
            type Error = Unsupported;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Unsupported> {
                self.field(Key::Static(key), value)
            }
            fn end(self) -> Result<(), Unsupported> {
                Object::end(self)
            }
        }
    )*};
}
object_of_fields!(SerializeStruct, SerializeStructVariant);

/// A map key as `to_value` makes it: strings as they are, numbers, booleans and characters as
/// their text, a unit variant as its name; anything else refused.
struct MapKey;

fn refused_key() -> Unsupported {
    Unsupported("a map key that is not a string".into())
}

impl ser::Serializer for MapKey {
    type Ok = String;
    type Error = Unsupported;
    type SerializeSeq = ser::Impossible<String, Unsupported>;
    type SerializeTuple = ser::Impossible<String, Unsupported>;
    type SerializeTupleStruct = ser::Impossible<String, Unsupported>;
    type SerializeTupleVariant = ser::Impossible<String, Unsupported>;
    type SerializeMap = ser::Impossible<String, Unsupported>;
    type SerializeStruct = ser::Impossible<String, Unsupported>;
    type SerializeStructVariant = ser::Impossible<String, Unsupported>;

    fn serialize_bool(self, v: bool) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _v: f32) -> Result<String, Unsupported> {
        Err(refused_key())
    }
    fn serialize_f64(self, _v: f64) -> Result<String, Unsupported> {
        Err(refused_key())
    }
    fn serialize_char(self, v: char) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, Unsupported> {
        Ok(v.to_string())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, Unsupported> {
        Err(refused_key())
    }
    fn serialize_none(self) -> Result<String, Unsupported> {
        Err(refused_key())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, Unsupported> {
        Err(refused_key())
    }
    fn serialize_unit(self) -> Result<String, Unsupported> {
        Err(refused_key())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, Unsupported> {
        Err(refused_key())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, Unsupported> {
        Ok(variant.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, Unsupported> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, Unsupported> {
        Err(refused_key())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        Err(refused_key())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Unsupported> {
        Err(refused_key())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        Err(refused_key())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(refused_key())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        Err(refused_key())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Unsupported> {
        Err(refused_key())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(refused_key())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::*;
    use crate::event::canonical_json;

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(i32, String),
        Struct { z: bool, a: Option<u8> },
    }

    #[derive(Serialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Tagged {
        Plain,
        WithFields { b: u8, a: Vec<u8> },
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Wrapper(String);

    #[derive(Serialize)]
    struct Sample {
        zeta: &'static str,
        alpha: f32,
        wide: f64,
        not_a_number: f64,
        #[serde(with = "serde_bytes_as_bytes")]
        bytes: Vec<u8>,
        shapes: Vec<Shape>,
        tagged: Vec<Tagged>,
        by_number: BTreeMap<u32, &'static str>,
        by_name: BTreeMap<String, Option<i64>>,
        unit: (),
        unit_struct: Unit,
        wrapper: Wrapper,
        tuple: (u8, char, &'static str),
        big: u128,
        negative: i128,
        escaped: &'static str,
    }

    mod serde_bytes_as_bytes {
        pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(bytes)
        }
    }

    fn through_value<T: Serialize>(value: &T) -> String {
        canonical_json(&serde_json::to_value(value).unwrap_or_default())
    }

    /// The direct writer gives the bytes of the canonical JSON of `to_value`, for every kind of
    /// value serde has (keys sorted at every depth, f32 widened, map keys made strings).
    #[test]
    fn writes_what_the_canonical_json_of_the_value_is() {
        let sample = Sample {
            zeta: "last",
            alpha: 0.1,
            wide: -2.5e-300,
            not_a_number: f64::NAN,
            bytes: vec![0, 1, 255],
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(-1, "t".into()),
                Shape::Struct { z: true, a: None },
            ],
            tagged: vec![Tagged::Plain, Tagged::WithFields { b: 2, a: vec![3] }],
            by_number: [(10, "ten"), (9, "nine"), (100, "hundred")].into(),
            by_name: [("é".to_string(), Some(-3)), ("A".to_string(), None)].into(),
            unit: (),
            unit_struct: Unit,
            wrapper: Wrapper("w".into()),
            tuple: (1, 'c', "\u{1}\"\\\n\u{2028}"),
            big: u128::from(u64::MAX),
            negative: i128::from(i64::MIN),
            escaped: "昭通 \t\r",
        };
        let mut out = Vec::new();
        assert!(write(&sample, &mut out).is_ok());
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            through_value(&sample)
        );

        // Top-level fields left out and one replaced, as a state hash has them.
        let top = TopFields {
            skip: &["bytes", "shapes", "big"],
            replace: ("zeta", br#""digest""#),
        };
        let mut out = Vec::new();
        assert!(write_struct(&sample, &top, &mut out).is_ok());
        let mut value = serde_json::to_value(&sample).unwrap_or_default();
        if let serde_json::Value::Object(fields) = &mut value {
            for field in ["bytes", "shapes", "big"] {
                fields.remove(field);
            }
            fields.insert("zeta".into(), "digest".into());
        }
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            canonical_json(&value)
        );
    }

    /// What `to_value` refuses is refused (the caller falls back to the value): an integer
    /// beyond 64 bits, a map keyed by something that is not a string, number or word.
    #[test]
    fn refuses_what_the_value_refuses() {
        let mut out = Vec::new();
        assert!(write(&u128::MAX, &mut out).is_err());
        let by_list: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(write(&by_list, &mut out).is_err());
        assert!(serde_json::to_value(&by_list).is_err());
        let top = TopFields {
            skip: &[],
            replace: ("a", b"null"),
        };
        assert!(write_struct(&by_list, &top, &mut out).is_err());
    }
}
