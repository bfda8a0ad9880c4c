//! Wan's prompt cleaning (`wan/modules/tokenizers.py`, `clean='whitespace'`), without ftfy.
//!
//! Wan runs `ftfy.fix_text`, `html.unescape` twice, strips, and collapses whitespace runs into one
//! space. Here: HTML references are decoded twice, curly quotes straightened (ftfy's
//! `uncurl_quotes`, which changes token ids), then whitespace is stripped and collapsed (Unicode
//! `White_Space`, as the `regex` module's `\s`). What differs from ftfy, and why it rarely matters:
//! - full-width forms, Latin ligatures and NFC composition are left to the tokenizer, whose NFKC
//!   normalizer (umT5's precompiled charsmap) yields the same pieces;
//! - mojibake (`cafÃ©`) is not repaired, and control characters other than whitespace are left
//!   to the tokenizer's normalizer;
//! - ftfy decodes references until none are left unless the line contains `<`; here exactly two
//!   levels are decoded (`&amp;amp;amp;` keeps one `&amp;`);
//! - numeric references and the names below decode as `html.unescape` does, including every name
//!   HTML5 accepts without `;`; HTML5's other names, and unknown names followed by `;` (where
//!   Python decodes a legacy prefix: `&ampx;` → `&x;`), are left as they are.

/// The Latin-1 entities, `nbsp` (U+00A0) to `yuml` (U+00FF) in code point order.
const LATIN1: [&str; 96] = [
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
    "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
    "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
    "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave", "Eacute",
    "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve", "Oacute",
    "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute",
    "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring", "aelig", "ccedil",
    "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc", "iuml", "eth", "ntilde",
    "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash", "ugrave", "uacute", "ucirc",
    "uuml", "yacute", "thorn", "yuml",
];

/// With [`LATIN1`], exactly the HTML5 names that also decode without a `;`.
const LEGACY_ASCII: [(&str, char); 10] = [
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("AMP", '&'),
    ("LT", '<'),
    ("GT", '>'),
    ("QUOT", '"'),
    ("COPY", '©'),
    ("REG", '®'),
];

/// Common punctuation names, decoded only with their `;`.
const PUNCTUATION: [(&str, char); 15] = [
    ("apos", '\''),
    ("ndash", '–'),
    ("mdash", '—'),
    ("hellip", '…'),
    ("lsquo", '‘'),
    ("rsquo", '’'),
    ("sbquo", '‚'),
    ("ldquo", '“'),
    ("rdquo", '”'),
    ("bdquo", '„'),
    ("lsaquo", '‹'),
    ("rsaquo", '›'),
    ("bull", '•'),
    ("trade", '™'),
    ("euro", '€'),
];

/// What `&#128;` to `&#159;` decode to: windows-1252, as browsers and `html.unescape` read them.
const CP1252: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}',
    '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
];

/// Cleans a prompt the way Wan does before tokenizing (see the module documentation).
pub fn clean_prompt(prompt: &str) -> String {
    let text = uncurl_quotes(&unescape_html(&unescape_html(prompt)));
    text.split(char::is_whitespace)
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
            '\u{201c}'..='\u{201f}' => '"',
            other => other,
        })
        .collect()
}

fn unescape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        match reference(tail, &mut out) {
            Some(consumed) => rest = &tail[consumed..],
            None => {
                out.push('&');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes the reference that `tail` (the text after a `&`) starts with into `out`, returning how
/// many bytes of `tail` it spans; `None` if `tail` starts with no known reference.
fn reference(tail: &str, out: &mut String) -> Option<usize> {
    if let Some(number) = tail.strip_prefix('#') {
        let (digits, radix, marker) = match number.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 2),
            None => (number, 10, 1),
        };
        let len = digits
            .find(|c: char| !c.is_digit(radix))
            .unwrap_or(digits.len());
        if len == 0 {
            return None;
        }
        // Too many digits for a u32 is past U+10FFFF, which decodes to U+FFFD like any too-large value.
        let code = u32::from_str_radix(&digits[..len], radix).unwrap_or(u32::MAX);
        out.extend(numeric(code));
        return Some(marker + len + usize::from(digits[len..].starts_with(';')));
    }
    let len = tail
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(tail.len());
    let name = &tail[..len];
    if tail[len..].starts_with(';') {
        let c = legacy(name).or_else(|| lookup(&PUNCTUATION, name))?;
        out.push(c);
        return Some(len + 1);
    }
    // Without `;`, the longest legacy name that the text starts with is decoded.
    let (prefix, c) = (2..=len)
        .rev()
        .find_map(|n| legacy(&name[..n]).map(|c| (n, c)))?;
    out.push(c);
    Some(prefix)
}

fn legacy(name: &str) -> Option<char> {
    LATIN1
        .iter()
        .position(|n| *n == name)
        .and_then(|i| char::from_u32(0xa0 + i as u32))
        .or_else(|| lookup(&LEGACY_ASCII, name))
}

fn lookup(table: &[(&str, char)], name: &str) -> Option<char> {
    table.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// `html.unescape`'s reading of a numeric reference: `None` for the control characters and
/// non-characters it drops.
fn numeric(code: u32) -> Option<char> {
    match code {
        0 | 0xd800..=0xdfff | 0x11_0000.. => Some('\u{fffd}'),
        0x80..=0x9f => Some(CP1252[(code - 0x80) as usize]),
        0x01..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0xfdd0..=0xfdef => None,
        c if c & 0xfffe == 0xfffe => None,
        c => char::from_u32(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings are Python 3.11's `html.unescape` of the same input.
    #[test]
    fn unescapes_like_python() {
        for (input, want) in [
            (
                "&#65x &#x263a; &#X1F600 &#0; &#13; &#150; &#129; &#1; &#xD800; &#99999999999; &#xFFFF; &#12;",
                "Ax ☺ 😀 \u{fffd} \r – \u{81}  \u{fffd} \u{fffd}  \u{c}",
            ),
            (
                "&amp;amp; &copy2024 &para5 &AMP; &COPY &eacute;&Eacute; &hellip; &unknown; &#x; &",
                "&amp; ©2024 ¶5 & © éÉ … &unknown; &#x; &",
            ),
            ("&nbsp;x&nbsp;", "\u{a0}x\u{a0}"),
            ("&lt;&lt;", "<<"),
            ("AT&T & co", "AT&T & co"),
        ] {
            assert_eq!(unescape_html(input), want, "{input}");
        }
    }

    #[test]
    fn cleans_whitespace_entities_and_quotes() {
        assert_eq!(
            clean_prompt(" \t“Hi”\u{3000}&amp;amp;\n\n‘there’ &nbsp;"),
            "\"Hi\" & 'there'"
        );
        assert_eq!(clean_prompt("&nbsp; \u{2028}"), "");
    }
}
