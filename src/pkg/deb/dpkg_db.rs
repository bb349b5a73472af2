//! The dpkg database inside the tree: `/var/lib/dpkg/status` stanzas (`install ok
//! installed`, dpkg's field order, `Conffiles`) and `/var/lib/dpkg/info/<pkg>[:<arch>].*`
//! (`list`, `md5sums`, `conffiles`, maintainer scripts), so dpkg and apt inside the VM see
//! the packages as installed.

use md5::{Digest as _, Md5};

use super::control::Paragraph;
use crate::tree::{Meta, Time, Tree, TreeError};

/// dpkg's own order of status fields; other fields follow in their control-file order.
const ORDER: &[&str] = &[
    "Package",
    "Essential",
    "Protected",
    "Status",
    "Priority",
    "Section",
    "Installed-Size",
    "Origin",
    "Maintainer",
    "Bugs",
    "Architecture",
    "Multi-Arch",
    "Source",
    "Version",
    "Config-Version",
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
    "Conffiles",
    "Description",
];

/// Hex MD5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The status stanza for an installed package from its control paragraph.
pub fn status_stanza(control: &Paragraph, conffiles: &[(String, String)]) -> Paragraph {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut rest: Vec<(String, String)> = Vec::new();
    let mut known: Vec<(usize, (String, String))> = Vec::new();
    let mut all = control.fields.clone();
    all.retain(|(n, _)| !n.eq_ignore_ascii_case("Status") && !n.eq_ignore_ascii_case("Conffiles"));
    all.push(("Status".into(), "install ok installed".into()));
    if !conffiles.is_empty() {
        let v: String = conffiles
            .iter()
            .map(|(p, h)| format!("\n {p} {h}"))
            .collect();
        all.push(("Conffiles".into(), v));
    }
    for (n, v) in all {
        match ORDER.iter().position(|o| o.eq_ignore_ascii_case(&n)) {
            Some(i) => known.push((i, (n, v))),
            None => rest.push((n, v)),
        }
    }
    known.sort_by_key(|(i, _)| *i);
    fields.extend(known.into_iter().map(|(_, f)| f));
    fields.extend(rest);
    Paragraph { fields }
}

/// Replaces (same `Package` and, for `Multi-Arch: same`, same architecture) or appends
/// `stanza` in the status text.
pub fn upsert(status: &str, stanza: &Paragraph) -> Result<String, super::control::ControlError> {
    let mut paras = super::control::parse(status)?;
    let key = |p: &Paragraph| {
        let same = p.get("Multi-Arch") == Some("same");
        (
            p.get("Package").unwrap_or_default().to_string(),
            if same {
                p.get("Architecture").unwrap_or_default().to_string()
            } else {
                String::new()
            },
        )
    };
    let k = key(stanza);
    match paras.iter_mut().find(|p| key(p) == k) {
        Some(p) => *p = stanza.clone(),
        None => paras.push(stanza.clone()),
    }
    let mut out = String::new();
    for p in &paras {
        out.push_str(&p.to_text());
        out.push('\n');
    }
    Ok(out)
}

/// Writes `/var/lib/dpkg/info/<name>.<ext>` files.
pub fn write_info(
    tree: &mut Tree,
    dpkg_name: &str,
    files: &[(&str, Vec<u8>, u16)],
    time: Time,
) -> Result<(), TreeError> {
    for (ext, data, mode) in files {
        let path = format!("/var/lib/dpkg/info/{dpkg_name}.{ext}");
        tree.write_file(path.as_bytes(), data, Meta::new(*mode, time))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanza_follows_dpkg_order() {
        let c = super::super::control::parse("Package: ucf\nVersion: 3.0043\nArchitecture: all\nMaintainer: m\nInstalled-Size: 1\nDepends: debconf\nSection: utils\nPriority: standard\nHomepage: h\nDescription: d\n more\n").unwrap().remove(0);
        let s = status_stanza(&c, &[("/etc/ucf.conf".into(), "abc".into())]).to_text();
        assert_eq!(s, "Package: ucf\nStatus: install ok installed\nPriority: standard\nSection: utils\nInstalled-Size: 1\nMaintainer: m\nArchitecture: all\nVersion: 3.0043\nDepends: debconf\nConffiles:\n /etc/ucf.conf abc\nDescription: d\n more\nHomepage: h\n");
        let st = upsert("Package: a\nVersion: 1\n\n", &c).unwrap();
        assert_eq!(st.matches("Package:").count(), 2);
        assert_eq!(upsert(&st, &c).unwrap(), st);
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
