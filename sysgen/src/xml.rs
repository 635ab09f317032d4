//! Just enough XML for a Microkit system description: elements,
//! attributes in single or double quotes, comments, the prolog, and text
//! between elements (which must be whitespace). Every node remembers where
//! it started so errors can point at it.

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

struct Parser<'a> {
    src: &'a [u8],
    at: usize,
    line: usize,
    col: usize,
}

/// Parses a document with one root element.
pub fn parse(src: &str) -> Result<Element, SyntaxError> {
    let mut p = Parser {
        src: src.as_bytes(),
        at: 0,
        line: 1,
        col: 1,
    };
    p.skip_misc()?;
    let root = p.element()?;
    p.skip_misc()?;
    if p.at < p.src.len() {
        return Err(p.error("content after the root element"));
    }
    Ok(root)
}

impl Parser<'_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos: self.pos(),
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.at).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        self.src[self.at..].starts_with(s.as_bytes())
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.at += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn expect(&mut self, s: &str) -> Result<(), SyntaxError> {
        if !self.starts_with(s) {
            return Err(self.error(format!("expected `{s}`")));
        }
        for _ in 0..s.len() {
            self.bump();
        }
        Ok(())
    }

    fn skip_until(&mut self, end: &str, what: &str) -> Result<(), SyntaxError> {
        let start = self.pos();
        while !self.starts_with(end) {
            if self.bump().is_none() {
                return Err(SyntaxError {
                    pos: start,
                    message: format!("unterminated {what}"),
                });
            }
        }
        self.expect(end)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.bump();
        }
    }

    /// Whitespace, comments and processing instructions.
    fn skip_misc(&mut self) -> Result<(), SyntaxError> {
        loop {
            self.skip_space();
            if self.starts_with("<!--") {
                self.skip_until("-->", "comment")?;
            } else if self.starts_with("<?") {
                self.skip_until("?>", "processing instruction")?;
            } else {
                return Ok(());
            }
        }
    }

    fn name(&mut self) -> Result<String, SyntaxError> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'))
        {
            self.bump();
        }
        if start == self.at {
            return Err(self.error("expected a name"));
        }
        Ok(String::from_utf8_lossy(&self.src[start..self.at]).into_owned())
    }

    fn element(&mut self) -> Result<Element, SyntaxError> {
        let pos = self.pos();
        self.expect("<")?;
        let name = self.name()?;
        let mut attrs: Vec<Attr> = Vec::new();
        loop {
            self.skip_space();
            if self.starts_with("/>") {
                self.expect("/>")?;
                return Ok(Element {
                    name,
                    attrs,
                    children: Vec::new(),
                    pos,
                });
            }
            if self.starts_with(">") {
                self.expect(">")?;
                break;
            }
            let apos = self.pos();
            let aname = self.name()?;
            self.skip_space();
            self.expect("=")?;
            self.skip_space();
            let quote = match self.peek() {
                Some(q @ (b'"' | b'\'')) => q,
                _ => return Err(self.error("expected a quoted attribute value")),
            };
            self.bump();
            let start = self.at;
            while self.peek().is_some_and(|c| c != quote && c != b'<') {
                self.bump();
            }
            if self.peek() != Some(quote) {
                return Err(self.error("unterminated attribute value"));
            }
            let raw = String::from_utf8_lossy(&self.src[start..self.at]).into_owned();
            self.bump();
            if attrs.iter().any(|a| a.name == aname) {
                return Err(SyntaxError {
                    pos: apos,
                    message: format!("attribute `{aname}` given twice"),
                });
            }
            let value = unescape(&raw).ok_or(SyntaxError {
                pos: apos,
                message: format!("bad entity in attribute `{aname}`"),
            })?;
            attrs.push(Attr {
                name: aname,
                value,
                pos: apos,
            });
        }
        let mut children = Vec::new();
        loop {
            self.skip_misc()?;
            if self.starts_with("</") {
                self.expect("</")?;
                let close = self.name()?;
                if close != name {
                    return Err(self.error(format!("`</{close}>` closes `<{name}>`")));
                }
                self.skip_space();
                self.expect(">")?;
                return Ok(Element {
                    name,
                    attrs,
                    children,
                    pos,
                });
            }
            match self.peek() {
                Some(b'<') => children.push(self.element()?),
                Some(_) => return Err(self.error(format!("text inside `<{name}>`"))),
                None => {
                    return Err(SyntaxError {
                        pos,
                        message: format!("`<{name}>` is never closed"),
                    })
                }
            }
        }
    }
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(';')? + i;
        out.push(match &rest[i + 1..end] {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => return None,
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
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

    #[test]
    fn errors_say_where() {
        let e = parse("<a>\n  <b>\n</a>").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 4 });
        assert!(e.message.contains("closes"), "{}", e.message);
        assert!(parse("<a x=\"1\" x=\"2\"/>")
            .unwrap_err()
            .message
            .contains("twice"));
        assert!(parse("<a>text</a>").unwrap_err().message.contains("text"));
        assert!(parse("<a/><b/>").unwrap_err().message.contains("after"));
        assert!(parse("<!-- open")
            .unwrap_err()
            .message
            .contains("unterminated"));
        assert!(parse("<a x=\"&bogus;\"/>").is_err());
    }
}
