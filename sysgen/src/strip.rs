//! The system description the Microkit tool is given: the user's file
//! with its `<io_address_space>` elements taken out (on aarch64 the tool
//! refuses them: its IO address spaces need the kernel's x86 IOMMU
//! support; here the IOMMU server builds them) and every other byte as
//! it was. An element alone on its lines goes with its lines (indent and
//! line end); one sharing a line with other text goes alone.

use crate::xml::{parse_document, SyntaxError};

/// `src` without its top-level `<io_address_space>` elements.
pub fn microkit_sdf(src: &str) -> Result<String, SyntaxError> {
    let doc = parse_document(src)?;
    let mut cuts: Vec<(usize, usize)> = doc
        .root_element()
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "io_address_space")
        .map(|n| whole_lines(src, n.range().start, n.range().end))
        .collect();
    cuts.sort_unstable();
    let mut out = String::with_capacity(src.len());
    let mut at = 0;
    for (start, end) in cuts {
        out.push_str(&src[at..start]);
        at = end;
    }
    out.push_str(&src[at..]);
    Ok(out)
}

/// Widens `[start, end)` to its whole lines when only blanks share them.
fn whole_lines(src: &str, start: usize, end: usize) -> (usize, usize) {
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[end..].find('\n').map_or(src.len(), |i| end + i + 1);
    let blank = |s: &str| {
        s.chars()
            .all(|c| c == ' ' || c == '\t' || c == '\r' || c == '\n')
    };
    if blank(&src[line_start..start]) && blank(&src[end..line_end]) {
        (line_start, line_end)
    } else {
        (start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_out_the_element_and_only_it() {
        let src = "<system>\n    <memory_region name=\"a\" size=\"0x1000\" />\n    <io_address_space name=\"s\" peripheral_id=\"00:04.0\" domain_id=\"1\">\n        <iomap mr=\"a\" iovaddr=\"0x1000\" />\n    </io_address_space>\n    <!-- kept -->\n</system>\n";
        assert_eq!(
            microkit_sdf(src).unwrap(),
            "<system>\n    <memory_region name=\"a\" size=\"0x1000\" />\n    <!-- kept -->\n</system>\n"
        );
        let inline = "<system><io_address_space name=\"s\" peripheral_id=\"0x8\" domain_id=\"1\"/> <x/></system>";
        assert_eq!(microkit_sdf(inline).unwrap(), "<system> <x/></system>");
        let none = "<?xml version=\"1.0\"?>\r\n<system>\r\n  <x/>\r\n</system>";
        assert_eq!(microkit_sdf(none).unwrap(), none, "byte-identical");
    }
}
