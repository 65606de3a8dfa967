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
        .filter_map(|c| Some((edit_distance_within(&norm, len, &normalize(c), limit)?, c)))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The edit distance of `a` (`a_chars` chars long) and `b` if it is at most `limit`. The
/// distance is at least the difference of the lengths, so a candidate whose length rules it
/// out costs nothing: an unknown option name of a megabyte is compared with no option name
/// (computing every distance made a config with long unknown keys take seconds to check).
fn edit_distance_within(a: &str, a_chars: usize, b: &str, limit: usize) -> Option<usize> {
    if a_chars.abs_diff(b.chars().count()) > limit {
        return None;
    }
    Some(edit_distance(a, b)).filter(|d| *d <= limit)
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

    #[test]
    fn length_rules_out_candidates_before_any_distance() {
        assert_eq!(edit_distance_within("memroy", 6, "memory", 2), Some(2));
        assert_eq!(edit_distance_within("cpu", 3, "cpus", 1), Some(1));
        assert_eq!(edit_distance_within("abc", 3, "xyz", 1), None);
        // Lengths 7 and 3: the distance (7) is never computed, and would be over the limit anyway.
        assert_eq!(edit_distance_within("abcdefg", 7, "abc", 3), None);
        // By chars, not bytes: "é" is one char.
        assert_eq!(edit_distance_within("éé", 2, "ee", 2), Some(2));
        // An unknown key of 4 MiB against a realistic option list: no quadratic work.
        let long = "a".repeat(4 << 20);
        let keys: Vec<String> = (0..300).map(|i| format!("option_name_{i}")).collect();
        assert_eq!(closest(&long, keys.iter().map(String::as_str)), None);
    }
}
