//! The known name closest to an unknown one, for the "did you mean" of an
//! unknown environment variable or settings-file key.

/// The name of `known` closest to `name`: one that begins with the other
/// (an abbreviation such as `MCP_ENV`, or an extra suffix) first, then the
/// fewest single-character edits (case ignored).
pub(super) fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    known
        .into_iter()
        .map(|candidate| {
            let lower = candidate.to_ascii_lowercase();
            let related = lower.starts_with(&name) || name.starts_with(&lower);
            ((!related, edit_distance(&name, &lower)), candidate)
        })
        .min_by_key(|(score, _)| *score)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}
