//! JSON the way Python's `json.dumps` writes it, byte for byte: `", "` and `": "` separators,
//! non-ASCII escaped as lowercase `\uXXXX` (surrogate pairs above the BMP), keys in insertion
//! order. Scrapyd answers every webservice in this form and some clients compare bytes.

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};
use std::io;

/// A `serde_json` formatter reproducing `json.JSONEncoder()`'s defaults.
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.bytes().all(|b| b < 0x7f) {
            return w.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (c as u32) < 0x7f {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(w, "\\u{:04x}", unit)?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write!(w, "\\u{:04x}", byte),
        };
        w.write_all(s)
    }
}

/// Serializes `value` as Python's `json.dumps(value)` would, without a trailing newline.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    push(&mut out, value);
    out
}

/// Appends `value` to `out` as Python's `json.dumps(value)` would.
pub fn push<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, PythonFormatter);
    // Serializing a `serde_json::Value` or plain data into a Vec cannot fail.
    if value.serialize(&mut ser).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
}

/// Like [`to_vec`], as a `String` (the output is pure ASCII).
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    String::from_utf8(to_vec(value)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_separators_and_escapes() {
        let v =
            json!({"pending": 0, "list": [1, 2], "s": "ñ\u{7f}\n\"\\/", "e": "😀", "c": "\u{1}"});
        assert_eq!(
            to_string(&v),
            r#"{"pending": 0, "list": [1, 2], "s": "\u00f1\u007f\n\"\\/", "e": "\ud83d\ude00", "c": "\u0001"}"#
        );
    }

    #[test]
    fn empty_containers() {
        assert_eq!(
            to_string(&json!({"a": [], "b": {}})),
            r#"{"a": [], "b": {}}"#
        );
    }
}
