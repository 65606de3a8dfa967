//! "Did you mean …?" suggestions for misspelt option names.

/// Levenshtein edit distance between two strings (by chars).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn normalize(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace('-', "_")
}

/// The candidate closest to `input`, if it is close enough to be a plausible typo.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = normalize(input);
    let len = norm.chars().count();
    let limit = match len {
        0..=4 => 1,
        5..=11 => 2,
        _ => 3,
    };
    candidates
        .into_iter()
        .map(|c| (edit_distance(&norm, &normalize(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("memroy", "memory"), 2);
    }

    #[test]
    fn suggests_close_names_only() {
        let keys = ["iso_url", "iso_urls", "memory", "disk_size", "cpus"];
        assert_eq!(closest("iso_ur", keys), Some("iso_url"));
        assert_eq!(closest("memroy", keys), Some("memory"));
        assert_eq!(closest("DISK_SIZE", keys), Some("disk_size"));
        assert_eq!(closest("disk-size", keys), Some("disk_size"));
        assert_eq!(closest("cpu", keys), Some("cpus"));
        assert_eq!(closest("foo", keys), None);
        assert_eq!(closest("completely_different", keys), None);
    }
}
