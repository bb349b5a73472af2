//! `/etc/group` (`name:x:gid:members`) and `/etc/gshadow`, read for name → gid lookups.

/// `(name, gid)` of every well-formed line.
pub fn entries(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 4).then_some(())?;
            Some((f[0].to_string(), f[2].parse().ok()?))
        })
        .collect()
}

/// The gid of group `name`.
pub fn gid_of(text: &str, name: &str) -> Option<u32> {
    entries(text)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, g)| g)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lookup() {
        assert_eq!(
            super::gid_of("root:x:0:\nutmp:x:43:\nbad", "utmp"),
            Some(43)
        );
    }
}
