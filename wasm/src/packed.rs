//! A multi-get's values handed to JavaScript packed: `[codes, blob, ranges, values]` aligned
//! with the keys, where `codes[j]` is 0 (miss or tombstone), 1 (bytes:
//! `blob[ranges[2j] .. ranges[2j+1]]`), 2 (UTF-8 text, same range, already validated) or 3
//! (`values[j]`: a number, bigint, boolean, parsed JSON, or an `Error`: the key's failure, or a
//! value JavaScript cannot read). So a 100-key answer costs one allocation for all the bytes,
//! and plain and replicated reads come out in the same shape.

use js_sys::{Array, Uint32Array, Uint8Array};
use multiput::machine::mode::Got;
use multiput::values::{self as core_values, Convention, TypedRef};
use wasm_bindgen::prelude::*;

use crate::{js, values};

pub(crate) struct Packed {
    codes: Vec<u8>,
    ranges: Vec<u32>,
    blob: Vec<u8>,
    others: Option<Array>,
}

impl Packed {
    /// For `n` keys, with room for `bytes` bytes of values.
    pub(crate) fn new(n: usize, bytes: usize) -> Packed {
        Packed {
            codes: vec![0; n],
            ranges: vec![0; 2 * n],
            blob: Vec::with_capacity(bytes),
            others: None,
        }
    }

    fn bytes(&mut self, j: usize, code: u8, b: &[u8]) {
        self.codes[j] = code;
        self.ranges[2 * j] = self.blob.len() as u32;
        self.blob.extend_from_slice(b);
        self.ranges[2 * j + 1] = self.blob.len() as u32;
    }

    /// Key `j`'s value or error as a JavaScript value (code 3).
    pub(crate) fn other(&mut self, j: usize, v: JsValue) {
        self.codes[j] = 3;
        self.others.get_or_insert_with(Array::new).set(j as u32, v);
    }

    /// Key `j`'s typed value.
    pub(crate) fn typed(&mut self, j: usize, t: TypedRef<'_>) {
        match t {
            TypedRef::Bytes(b) | TypedRef::Raw(b, _) => self.bytes(j, 1, b),
            TypedRef::Text(s) => self.bytes(j, 2, s.as_bytes()),
            t => self.other(j, values::typed_to_js(t).unwrap_or_else(|e| e)),
        }
    }

    /// Key `j`'s value as stored (an envelope, or a plain value typed by its flags).
    pub(crate) fn stored(&mut self, convention: Convention, j: usize, data: &[u8], flags: u32) {
        match values::stored_ref(convention, data, flags) {
            values::Stored::Missing => {}
            values::Stored::Bytes(b) => self.bytes(j, 1, b),
            values::Stored::Text(b) => self.bytes(j, 2, b),
            values::Stored::Other(t) => self.typed(j, t),
            values::Stored::Slow => match values::stored_to_js(convention, data, flags) {
                Ok(None) => {}
                Ok(Some(v)) | Err(v) => self.other(j, v),
            },
        }
    }

    /// Key `j`'s value as read: plain (typed by its flags) or replicated (by its envelope).
    pub(crate) fn got(&mut self, convention: Convention, j: usize, g: &Got) {
        match g {
            Got::Plain(v) => self.stored(convention, j, &v.data, v.flags),
            Got::Replicated(v) => self.typed(j, core_values::from_versioned(convention, v)),
        }
    }

    /// Room for the bytes of every value read.
    pub(crate) fn bytes_of<T>(rs: &[Result<Option<(Got, T)>, multiput::Error>]) -> usize {
        rs.iter()
            .flatten()
            .flatten()
            .map(|(g, _)| match g {
                Got::Plain(v) => v.data.len(),
                Got::Replicated(v) => v.data.len(),
            })
            .sum()
    }

    /// `[codes, blob, ranges, values]`.
    pub(crate) fn finish(self) -> JsValue {
        js::array(&[
            &Uint8Array::from(&self.codes[..]).into(),
            &js::u8a(&self.blob).into(),
            &Uint32Array::from(&self.ranges[..]).into(),
            &self.others.unwrap_or_default().into(),
        ])
        .into()
    }
}
