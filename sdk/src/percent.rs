//! Percent-decoding of URL paths (`%2e` → `.`), shared by the HTTP seed server and `file://`
//! download sources.

/// Decodes `%XX` escapes of `s` byte-wise; a `%` not followed by two hex digits stays as it is,
/// and bytes that do not form UTF-8 become U+FFFD. Never panics, whatever follows a `%`.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(hi), Some(lo)) = (hex_value(b[i + 1]), hex_value(b[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_escapes_and_leaves_the_rest() {
        assert_eq!(decode("/a%2e%2E/%2fb%20c"), "/a..//b c");
        assert_eq!(decode("%41"), "A");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("%zz%"), "%zz%");
        assert_eq!(decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn multibyte_text_after_a_percent_does_not_panic() {
        assert_eq!(decode("/%aé"), "/%aé");
        assert_eq!(decode("/%é"), "/%é");
        assert_eq!(decode("%€x"), "%€x");
    }
}
