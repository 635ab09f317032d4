//! Configuration errors name the file, position, element and attribute at
//! fault, the way the Microkit tool does.

use std::fmt;

use crate::xml::{Element, Pos};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub file: String,
    pub pos: Pos,
    /// The element, as `<name key="value">`.
    pub element: String,
    pub attribute: Option<String>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.pos, self.element)?;
        if let Some(a) = &self.attribute {
            write!(f, " attribute `{a}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Error {}

/// `<name key="value">` for an element, keyed by its naming attribute.
pub fn describe(e: &Element) -> String {
    let key = ["name", "pd", "mr", "symbol", "irq"]
        .iter()
        .find_map(|k| e.attr(k).map(|a| format!(" {k}=\"{}\"", a.value)))
        .unwrap_or_default();
    format!("<{}{key}>", e.name)
}

/// Where errors about one file are reported.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pub file: &'a str,
}

impl Source<'_> {
    /// An error about an element as a whole.
    pub fn element(&self, e: &Element, message: impl Into<String>) -> Error {
        Error {
            file: self.file.to_string(),
            pos: e.pos,
            element: describe(e),
            attribute: None,
            message: message.into(),
        }
    }

    /// An error about one attribute (pointing at it when present).
    pub fn attr(&self, e: &Element, attribute: &str, message: impl Into<String>) -> Error {
        Error {
            file: self.file.to_string(),
            pos: e.attr(attribute).map_or(e.pos, |a| a.pos),
            element: describe(e),
            attribute: Some(attribute.to_string()),
            message: message.into(),
        }
    }

    /// A required attribute's value.
    pub fn required<'e>(&self, e: &'e Element, attribute: &str) -> Result<&'e str, Error> {
        e.attr(attribute)
            .map(|a| a.value.as_str())
            .ok_or_else(|| self.attr(e, attribute, "missing"))
    }

    /// A number in decimal or 0x hex, `_` allowed between digits.
    pub fn number(&self, e: &Element, attribute: &str) -> Result<Option<u64>, Error> {
        let Some(a) = e.attr(attribute) else {
            return Ok(None);
        };
        parse_number(&a.value)
            .map(Some)
            .ok_or_else(|| self.attr(e, attribute, format!("`{}` is not a number", a.value)))
    }

    pub fn required_number(&self, e: &Element, attribute: &str) -> Result<u64, Error> {
        self.number(e, attribute)?
            .ok_or_else(|| self.attr(e, attribute, "missing"))
    }

    /// `true` or `false`, `default` when absent.
    pub fn boolean(&self, e: &Element, attribute: &str, default: bool) -> Result<bool, Error> {
        match e.attr(attribute).map(|a| a.value.as_str()) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => {
                Err(self.attr(e, attribute, format!("`{other}` is neither true nor false")))
            }
        }
    }

    /// Refuses attributes outside `allowed` (for the sidecar, whose schema
    /// is ours).
    pub fn only_attrs(&self, e: &Element, allowed: &[&str]) -> Result<(), Error> {
        match e.attrs.iter().find(|a| !allowed.contains(&a.name.as_str())) {
            Some(a) => Err(Error {
                file: self.file.to_string(),
                pos: a.pos,
                element: describe(e),
                attribute: Some(a.name.clone()),
                message: format!("unknown attribute (expected one of {})", allowed.join(", ")),
            }),
            None => Ok(()),
        }
    }
}

pub fn parse_number(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') {
        return None;
    }
    u64::from_str_radix(&digits.replace('_', ""), radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0x40_1000_0000"), Some(0x40_1000_0000));
        assert_eq!(parse_number("4096"), Some(4096));
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("12ab"), None);
        assert_eq!(parse_number("0x1_0000_0000_0000_0000"), None);
    }
}
