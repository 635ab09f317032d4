//! A Microkit system description as elements whose every node remembers
//! where it starts, read with roxmltree, the XML parser the Microkit tool
//! itself uses: what the tool accepts (a byte-order mark, character
//! references, CDATA, comments) reads the same here, and what it refuses
//! (`--` inside a comment, a duplicate attribute, mismatched tags) is a
//! located error. Text between elements is ignored, as the tool ignores
//! it.

use std::fmt;

/// A position in the source, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub name: String,
    pub value: String,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    pub pos: Pos,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }
}

/// A syntax error and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

fn pos(p: roxmltree::TextPos) -> Pos {
    Pos {
        line: p.row as usize,
        col: p.col as usize,
    }
}

/// Parses a document with one root element.
pub fn parse(src: &str) -> Result<Element, SyntaxError> {
    let doc = parse_document(src)?;
    Ok(element(&doc, doc.root_element()))
}

/// roxmltree's document, with its errors as [`SyntaxError`]s.
pub fn parse_document(src: &str) -> Result<roxmltree::Document<'_>, SyntaxError> {
    roxmltree::Document::parse(src).map_err(|e| {
        // The position is ours to print: take roxmltree's `at L:C` out of
        // its text, wherever it stands ("comment at 10:5 contains '--'").
        let text = e.to_string();
        let p = e.pos();
        let at = format!(" at {}:{}", p.row, p.col);
        let message = text.replacen(&at, "", 1);
        let found = pos(e.pos());
        let stray = match &e {
            roxmltree::Error::UnexpectedCloseTag(open, _, _) => stray_close(src, open, found),
            _ => None,
        };
        unclosed_tag(src, found)
            .or_else(|| unclosed_value(src, found))
            .or(stray)
            .unwrap_or(SyntaxError {
                pos: found,
                message,
            })
    })
}

/// The byte offset of `p` in `src`, counted as roxmltree counts
/// positions (lines by `\n`, columns in characters).
fn offset(src: &str, p: Pos) -> Option<usize> {
    let line_start = if p.line == 1 {
        0
    } else {
        src.match_indices('\n').nth(p.line - 2)?.0 + 1
    };
    let line = &src[line_start..];
    let column = line
        .char_indices()
        .nth(p.col - 1)
        .map_or(line.len(), |(i, _)| i);
    Some(line_start + column)
}

fn pos_of(src: &str, offset: usize) -> Pos {
    let before = &src[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        line: before.matches('\n').count() + 1,
        col: before[line_start..].chars().count() + 1,
    }
}

/// A start tag never closed (`<map mr="x"` without `/>`): roxmltree finds
/// out only at the next `<` and says so there, lines after the mistake.
/// When the error is at a `<` and the last `<` before it opens a tag that
/// no `>` closes, the error is that tag's.
fn unclosed_tag(src: &str, found: Pos) -> Option<SyntaxError> {
    let at = offset(src, found)?;
    if !src[at..].starts_with('<') {
        return None;
    }
    let start = src[..at].rfind('<')?;
    let tag = &src[start + 1..at];
    let name_len = tag
        .find(|c: char| !(c.is_alphanumeric() || "_-.:".contains(c)))
        .unwrap_or(tag.len());
    let name = &tag[..name_len];
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_alphabetic() || c == '_')
        || tag.contains('>')
    {
        return None;
    }
    Some(SyntaxError {
        pos: pos_of(src, start),
        message: format!(
            "`<{name}` is never closed: no `>` or `/>` before the next tag at {found}"
        ),
    })
}

/// The length of the XML name `s` starts with (0 if none).
fn name_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_alphanumeric() || "_-.:".contains(c)))
        .unwrap_or(s.len())
}

/// Whether `s` ends with whitespace, a name and `=` (and maybe more
/// whitespace): the start of another attribute.
fn ends_with_attribute_start(s: &str) -> Option<usize> {
    let s = s.trim_end().strip_suffix('=')?.trim_end();
    let name_start = s
        .rfind(|c: char| !(c.is_alphanumeric() || "_-.:".contains(c)))
        .map_or(0, |i| i + 1);
    let name = &s[name_start..];
    let before = &s[..name_start];
    (!name.is_empty() && before.ends_with(char::is_whitespace)).then(|| before.trim_end().len())
}

/// An attribute value missing its closing quote (`mr="x vaddr="0x1"`):
/// the parser reads the next attribute's `vaddr=` as part of the value
/// and complains at the character after, where it wants a space. When
/// the error follows a quote inside a start tag, and the value that quote
/// closes ends with ` name=`, the mistake is the missing quote before it.
fn unclosed_value(src: &str, found: Pos) -> Option<SyntaxError> {
    let at = offset(src, found)?;
    let tag_start = src[..at].rfind('<')?;
    let tag = &src[tag_start..at];
    if tag.contains('>') {
        return None;
    }
    let quote = tag
        .chars()
        .next_back()
        .filter(|c| *c == '"' || *c == '\'')?;
    let body = &tag[..tag.len() - 1];
    let open = body.rfind(quote)?;
    let value = &body[open + 1..];
    let missing = ends_with_attribute_start(value)?;
    let attribute = body[..open].trim_end().strip_suffix('=')?.trim_end();
    let attribute = &attribute[attribute
        .rfind(|c: char| !(c.is_alphanumeric() || "_-.:".contains(c)))
        .map_or(0, |i| i + 1)..];
    Some(SyntaxError {
        pos: pos_of(src, tag_start + open + 1 + missing),
        message: format!(
            "the value of `{attribute}` has no closing `{quote}`: `{}` reads as part of it",
            value[missing..].trim()
        ),
    })
}

/// A `>` too many inside a start tag (`<map mr="x" > vaddr="0x1" />`):
/// it ends the tag, the rest reads as text, and the parser finds the
/// element unclosed only at its parent's end tag. When the last
/// unfinished `<open` start tag before `found` is followed by text that
/// reads as an attribute, the mistake is its `>`.
fn stray_close(src: &str, open: &str, found: Pos) -> Option<SyntaxError> {
    let at = offset(src, found)?;
    let needle = format!("<{open}");
    let start = src[..at]
        .match_indices(&needle)
        .map(|(i, _)| i)
        .filter(|&i| name_len(&src[i + 1..]) == open.len())
        .filter(|&i| {
            src[i..at]
                .find('>')
                .is_some_and(|end| !src[..i + end].ends_with('/'))
        })
        .last()?;
    let close = start + src[start..at].find('>')?;
    let after = src[close + 1..at].trim_start();
    let attribute = &after[..name_len(after)];
    let rest = after[attribute.len()..].trim_start();
    if attribute.is_empty() || !rest.starts_with('=') {
        return None;
    }
    Some(SyntaxError {
        pos: pos_of(src, close),
        message: format!(
            "this `>` ends `<{open}` (at {}), and `{attribute}=` after it reads as one of its attributes: a stray `>`?",
            pos_of(src, start)
        ),
    })
}

fn element(doc: &roxmltree::Document<'_>, node: roxmltree::Node<'_, '_>) -> Element {
    Element {
        name: node.tag_name().name().to_string(),
        attrs: node
            .attributes()
            .map(|a| Attr {
                name: a.name().to_string(),
                value: a.value().to_string(),
                pos: pos(doc.text_pos_at(a.position())),
            })
            .collect(),
        children: node
            .children()
            .filter(|c| c.is_element())
            .map(|c| element(doc, c))
            .collect(),
        pos: pos(doc.text_pos_at(node.range().start)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_elements_attributes_and_comments() {
        let doc = parse(
            "<?xml version=\"1.0\"?>\n<!-- c -->\n<system>\n  <a x=\"1\" y='a&amp;b'/>\n  <b><c/></b>\n</system>\n",
        )
        .unwrap();
        assert_eq!(doc.name, "system");
        assert_eq!(doc.children.len(), 2);
        assert_eq!(doc.children[0].attr("y").unwrap().value, "a&b");
        assert_eq!(doc.children[0].pos, Pos { line: 4, col: 3 });
        assert_eq!(
            doc.children[0].attr("y").unwrap().pos,
            Pos { line: 4, col: 12 }
        );
        assert_eq!(doc.children[1].children[0].name, "c");
    }

    /// What the Microkit tool's parser accepts reads the same here.
    #[test]
    fn accepts_what_the_tool_accepts() {
        let doc = parse("\u{feff}<a x=\"&#x41;&#66;\"><![CDATA[ <not/> ]]>text<b/></a>").unwrap();
        assert_eq!(doc.attr("x").unwrap().value, "AB");
        assert_eq!(doc.children.len(), 1, "text and CDATA are not elements");
    }

    #[test]
    fn errors_say_where() {
        let e = parse("<a>\n  <b>\n</a>").unwrap_err();
        assert_eq!(e.pos.line, 3);
        assert!(!e.message.contains(" at "), "{}", e.message);
        let dup = parse("<a x=\"1\" x=\"2\"/>").unwrap_err();
        assert_eq!(dup.message, "attribute 'x' is already defined");
        let dashes = parse("<!-- a -- b --><a/>").unwrap_err();
        assert_eq!(dashes.message, "comment contains '--'");
        assert!(parse("<a/><b/>").is_err(), "two roots");
        assert!(parse("<!-- open").is_err(), "unterminated comment");
        assert!(parse("<!-- a -- b --><a/>").is_err(), "-- in a comment");
        assert!(parse("<a x=\"&bogus;\"/>").is_err());
    }

    /// A start tag left open is reported where it starts, not at the next
    /// tag, where the parser notices.
    #[test]
    fn an_unclosed_tag_is_located_where_it_starts() {
        let e = parse("<a>\n  <b x=\"1\"\n\n  <!-- c -->\n  <c/>\n</a>").unwrap_err();
        assert_eq!(
            (e.pos, e.message.as_str()),
            (
                Pos { line: 2, col: 3 },
                "`<b` is never closed: no `>` or `/>` before the next tag at 4:3",
            )
        );
        let e = parse("<a>\n  <é x=\"1\" <c/>\n</a>").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 3 }, "{}", e.message);
        let e = parse("\u{feff}<a x=\"1\" <b/></a>").unwrap_err();
        assert_eq!(
            (e.pos, e.message.as_str()),
            (
                Pos { line: 1, col: 2 },
                "`<a` is never closed: no `>` or `/>` before the next tag at 1:11",
            ),
            "a byte-order mark is a column, as for every other error"
        );
        // Other errors at a `<` stay where the parser found them.
        let e = parse("<a>\n  <b>x</b> < <c/>\n</a>").unwrap_err();
        assert_eq!(e.pos.line, 2);
        assert!(!e.message.contains("never closed"), "{}", e.message);
        let e = parse("<a>\n  <b>\n</a>").unwrap_err();
        assert_eq!(e.pos.line, 3, "a mismatched end tag is where it is");
    }
}
