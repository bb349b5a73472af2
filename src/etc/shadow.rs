//! `/etc/shadow` (`name:hash:lastchg:min:max:warn:inactive:expire:`), edited
//! line-preservingly; new entries are appended.

/// `text` with a locked entry for `name` appended (unless present). `lastchg` is days since
/// the epoch, or `None` for an empty field (reproducible when no epoch is given).
pub fn add_locked(text: &str, name: &str, lastchg: Option<i64>) -> String {
    if text.lines().any(|l| l.split(':').next() == Some(name)) {
        return text.to_string();
    }
    let mut s = text.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    let day = lastchg.map(|d| d.to_string()).unwrap_or_default();
    s.push_str(&format!("{name}:!:{day}::::::\n"));
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn appends_once() {
        let t = super::add_locked("root:*:19000:0:99999:7:::\n", "sshd", Some(20000));
        assert_eq!(t, "root:*:19000:0:99999:7:::\nsshd:!:20000::::::\n");
        assert_eq!(super::add_locked(&t, "sshd", None), t);
    }
}
