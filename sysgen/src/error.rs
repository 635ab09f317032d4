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

    /// Where `e` is, for the generated configuration to carry into
    /// refusals at run time.
    pub fn origin(&self, e: &Element) -> crate::model::Origin {
        crate::model::Origin {
            file: self.file.to_string(),
            line: u32::try_from(e.pos.line).unwrap_or(u32::MAX),
        }
    }

    /// `file:line` of an element, for messages that point from one file
    /// into the other.
    pub fn line(&self, e: &Element) -> String {
        format!("{}:{}", self.file, e.pos.line)
    }

    /// `; file has `x` (file:line)` when one of `candidates` (names and
    /// the elements that declare them in this file) nearly matches
    /// `name` (see [`near_miss`]), else nothing: a lookup that failed in
    /// one file may be a typo in the other.
    pub fn hint<'e>(
        &self,
        name: &str,
        candidates: impl IntoIterator<Item = (&'e str, &'e Element)>,
    ) -> String {
        near_miss(name, candidates).map_or_else(String::new, |(n, e)| {
            format!("; {} has `{n}` ({})", self.file, self.line(e))
        })
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

    /// A required number that counts things the server holds.
    pub fn required_count(&self, e: &Element, attribute: &str) -> Result<usize, Error> {
        let n = self.required_number(e, attribute)?;
        usize::try_from(n).map_err(|_| self.attr(e, attribute, format!("{n:#x} is too many")))
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

/// The Levenshtein distance between `a` and `b`, in characters, with a
/// swap of two neighbours counted as one edit (the optimal string
/// alignment distance), so `edu_a_dam` is nearer `edu_a_dma` (one edit)
/// than `edu_a_bar` (two).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // `d[i][j]`: the distance between `a[..i]` and `b[..j]`.
    let mut d: Vec<Vec<usize>> = (0..=a.len())
        .map(|i| (0..=b.len()).map(|j| if i == 0 { j } else { i }).collect())
        .collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitute = d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let mut best = substitute.min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate `name` most likely is a typo of: the same name but for
/// case, else the nearest within two edits (the first of equals). Never
/// `name` itself.
pub fn near_miss<'e, T>(
    name: &str,
    candidates: impl IntoIterator<Item = (&'e str, T)>,
) -> Option<(&'e str, T)> {
    candidates
        .into_iter()
        .filter(|(c, _)| *c != name)
        .filter_map(|(c, t)| {
            let rank = if c.to_lowercase() == name.to_lowercase() {
                0
            } else {
                edit_distance(c, name)
            };
            (rank <= 2).then_some((rank, c, t))
        })
        .min_by_key(|(rank, _, _)| *rank)
        .map(|(_, c, t)| (c, t))
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
    fn edit_distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("edu_a", ""), 5);
        assert_eq!(edit_distance("", "edu_a"), 5);
        assert_eq!(edit_distance("edu_a_dma", "edu_a_dma"), 0);
        assert_eq!(
            edit_distance("edu_a_dma", "edu_a_dam"),
            1,
            "a swap is one edit"
        );
        assert_eq!(edit_distance("edu_a_bar", "edu_a_dam"), 2);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("abc", "ca"), 3);
        assert_eq!(edit_distance("edu_a_dma", "edu_a_dm"), 1);
        assert_eq!(edit_distance("edu_a_dma", "edu_b_dma"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("smmu_regs", "smmu_regs_x"), 2);
        assert_eq!(edit_distance("ä_dma", "a_dma"), 1, "characters, not bytes");
    }

    #[test]
    fn near_misses() {
        let names = ["edu_a_dma", "EDU_B_COMMAND", "iommu_server", "edu_b_dma"];
        let near = |n: &str| near_miss(n, names.iter().map(|c| (*c, ()))).map(|(c, _)| c);
        assert_eq!(near("edu_a_dmaa"), Some("edu_a_dma"));
        assert_eq!(near("edu_b_dam"), Some("edu_b_dma"), "the nearest");
        assert_eq!(near("edu_c_dma"), Some("edu_a_dma"), "the first of equals");
        assert_eq!(near("edu_b_dm"), Some("edu_b_dma"));
        assert_eq!(near("edu_b_command"), Some("EDU_B_COMMAND"), "case");
        assert_eq!(near("iommu"), None, "seven edits away");
        assert_eq!(
            near("edu_a_dma"),
            Some("edu_b_dma"),
            "never the name itself"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0x40_1000_0000"), Some(0x40_1000_0000));
        assert_eq!(parse_number("4096"), Some(4096));
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("12ab"), None);
        assert_eq!(parse_number("0x1_0000_0000_0000_0000"), None);
    }
}
