//! What the configuration checker's tests share: loading a pair from
//! text, editing a document, and asserting every case's exact message.
#![allow(dead_code)]

/// Checks a pair given as text, as sysgen does files.
pub fn load(system: &str, policy: &str) -> Result<sysgen::Config, String> {
    sysgen::load_str("system.xml", system, "iommu.xml", policy)
        .map(|(_, c)| c)
        .map_err(|e| e.to_string())
}

/// Applies one textual edit (which must apply) to a document.
pub fn edit(doc: &str, from: &str, to: &str) -> String {
    assert!(doc.contains(from), "edit target `{from}` not found");
    doc.replacen(from, to, 1)
}

/// Loads each case and lists those whose error is not exactly the one
/// expected (all of them, not just the first).
#[track_caller]
pub fn exactly(cases: &[(&str, String, String, &str)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(what, system, policy, expected)| {
            let got = load(system, policy).map(|_| "accepted");
            (got.as_ref().err().map(String::as_str) != Some(*expected))
                .then(|| format!("{what}:\n  expected {expected}\n  got      {got:?}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// Applies each edit in turn.
pub fn edits(doc: &str, list: &[(&str, &str)]) -> String {
    list.iter()
        .fold(doc.to_string(), |d, (from, to)| edit(&d, from, to))
}
