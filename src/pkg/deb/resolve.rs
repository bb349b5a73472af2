//! Choosing what to install, like apt without Recommends (unless asked): the base's dpkg
//! status satisfies dependencies first; otherwise the first installable alternative is
//! taken, real packages before virtual ones, the highest version across all indexes.
//! Versioned Provides, Pre-Depends, Conflicts/Breaks against the base and the new set,
//! upgrades of base packages a new package needs newer. The result is in dependency order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::packages::Package;
use super::relation::{Alternatives, Atom};

/// A package available from an index, with the archive root it came from.
#[derive(Debug, Clone)]
pub struct Available {
    /// The stanza.
    pub pkg: Package,
    /// Archive root URI (`Filename` is relative to it).
    pub base_uri: String,
}

/// Why no installable set exists.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A requested package is in no index.
    #[error("package {0:?} is not in any configured repository (check the name and the image's apt sources)")]
    NotFound(String),
    /// A dependency cannot be met.
    #[error("cannot satisfy {chain}: {why}")]
    Unsatisfiable {
        /// `a → b (>= 1) | c`.
        chain: String,
        /// Why.
        why: String,
    },
    /// Two packages conflict.
    #[error("{0}")]
    Conflict(String),
    /// A lock entry has no matching package.
    #[error("lock file: {0}")]
    Lock(String),
}

/// What is installed already (the base's status).
#[derive(Debug, Default)]
pub struct Installed {
    /// Installed packages by name.
    pub pkgs: BTreeMap<String, Package>,
}

impl Installed {
    /// From status stanzas (packages not installed are ignored).
    pub fn new(status: Vec<Package>) -> Installed {
        Installed {
            pkgs: status
                .into_iter()
                .filter(Package::is_installed)
                .map(|p| (p.name.clone(), p))
                .collect(),
        }
    }
}

/// The resolver's result.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Indexes into the available list, in install (dependency) order.
    pub order: Vec<usize>,
    /// Names of base packages that the plan upgrades.
    pub upgrades: Vec<String>,
}

fn arch_ok(p: &Package, arch: &str) -> bool {
    p.arch == arch || p.arch == "all"
}

fn atom_version_ok(atom: &Atom, v: &super::version::Version) -> bool {
    atom.constraint
        .as_ref()
        .is_none_or(|(op, want)| op.holds(v, want))
}

fn provides_ok(p: &Package, atom: &Atom) -> bool {
    p.provides.iter().any(|pr| {
        pr.name == atom.name
            && match (&atom.constraint, &pr.constraint) {
                (None, _) => true,
                (Some((op, want)), Some((super::version::Op::Eq, have))) => op.holds(have, want),
                _ => false,
            }
    })
}

fn priority_rank(p: &str) -> u8 {
    match p {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        _ => 4,
    }
}

struct State<'a> {
    avail: &'a [Available],
    installed: &'a Installed,
    /// Candidate (highest version) index per name.
    candidate: HashMap<&'a str, usize>,
    /// Providers per virtual name (candidates only).
    providers: HashMap<&'a str, Vec<usize>>,
    selected: BTreeMap<String, usize>,
    /// Who pulled each selected package in, for error chains.
    parent: HashMap<String, String>,
}

impl<'a> State<'a> {
    fn new(avail: &'a [Available], installed: &'a Installed, arch: &str) -> State<'a> {
        let mut candidate: HashMap<&str, usize> = HashMap::new();
        for (i, a) in avail.iter().enumerate() {
            if !arch_ok(&a.pkg, arch) {
                continue;
            }
            match candidate.get(a.pkg.name.as_str()) {
                Some(&j) if avail[j].pkg.version >= a.pkg.version => {}
                _ => {
                    candidate.insert(&a.pkg.name, i);
                }
            }
        }
        let mut providers: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut cands: Vec<usize> = candidate.values().copied().collect();
        cands.sort_unstable();
        for i in cands {
            for pr in &avail[i].pkg.provides {
                providers.entry(pr.name.as_str()).or_default().push(i);
            }
        }
        State {
            avail,
            installed,
            candidate,
            providers,
            selected: BTreeMap::new(),
            parent: HashMap::new(),
        }
    }

    /// The package present after the plan under `name` (selected, else installed).
    fn present(&self, name: &str) -> Option<&Package> {
        match self.selected.get(name) {
            Some(&i) => Some(&self.avail[i].pkg),
            None => self.installed.pkgs.get(name),
        }
    }

    fn all_present(&self) -> impl Iterator<Item = (&Package, bool)> {
        let sel = self.selected.values().map(|&i| (&self.avail[i].pkg, true));
        let inst = self
            .installed
            .pkgs
            .values()
            .filter(|p| !self.selected.contains_key(&p.name))
            .map(|p| (p, false));
        sel.chain(inst)
    }

    fn satisfied(&self, atom: &Atom) -> bool {
        if self
            .present(&atom.name)
            .is_some_and(|p| atom_version_ok(atom, &p.version))
        {
            return true;
        }
        self.all_present().any(|(p, _)| provides_ok(p, atom))
    }

    /// The package to install for `atom`, or why there is none.
    fn choose(&self, atom: &Atom) -> Result<usize, String> {
        if let Some(&i) = self.candidate.get(atom.name.as_str()) {
            if atom_version_ok(atom, &self.avail[i].pkg.version) {
                return Ok(i);
            }
        }
        let mut provs: Vec<usize> = self
            .providers
            .get(atom.name.as_str())
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|&i| provides_ok(&self.avail[i].pkg, atom))
                    .collect()
            })
            .unwrap_or_default();
        provs.sort_by(|&a, &b| {
            let (pa, pb) = (&self.avail[a].pkg, &self.avail[b].pkg);
            priority_rank(&pa.priority)
                .cmp(&priority_rank(&pb.priority))
                .then_with(|| pa.name.cmp(&pb.name))
        });
        if let Some(&i) = provs.first() {
            return Ok(i);
        }
        Err(match self.candidate.get(atom.name.as_str()) {
            Some(&i) => format!(
                "only version {} of {} is available",
                self.avail[i].pkg.version, atom.name
            ),
            None if self.providers.contains_key(atom.name.as_str()) => {
                format!("no provider of {} has a matching version", atom.name)
            }
            None => format!("{} is not in any configured repository", atom.name),
        })
    }

    fn chain(&self, name: &str) -> Vec<String> {
        let mut c = vec![name.to_string()];
        let mut cur = name;
        while let Some(p) = self.parent.get(cur) {
            if c.contains(p) || c.len() > 64 {
                break;
            }
            c.push(p.clone());
            cur = p;
        }
        c.reverse();
        c
    }

    fn select(
        &mut self,
        i: usize,
        parent: Option<&str>,
        queue: &mut Vec<usize>,
    ) -> Result<(), ResolveError> {
        let name = self.avail[i].pkg.name.clone();
        if let Some(&j) = self.selected.get(&name) {
            if j != i && self.avail[j].pkg.version != self.avail[i].pkg.version {
                return Err(ResolveError::Conflict(format!(
                    "{name} is needed in versions {} and {}",
                    self.avail[j].pkg.version, self.avail[i].pkg.version
                )));
            }
            return Ok(());
        }
        if let Some(p) = parent {
            self.parent.insert(name.clone(), p.to_string());
        }
        self.selected.insert(name, i);
        queue.push(i);
        Ok(())
    }

    fn relations(&self, p: &'a Package, recommends: bool) -> Vec<&'a Alternatives> {
        let mut r: Vec<&Alternatives> = p.pre_depends.iter().chain(p.depends.iter()).collect();
        if recommends {
            r.extend(p.recommends.iter());
        }
        r
    }

    fn process(&mut self, mut queue: Vec<usize>, recommends: bool) -> Result<(), ResolveError> {
        while let Some(i) = queue.pop() {
            let p = &self.avail[i].pkg;
            let n_hard = p.pre_depends.len() + p.depends.len();
            for (k, alts) in self.relations(p, recommends).into_iter().enumerate() {
                if alts.iter().any(|a| self.satisfied(a)) {
                    continue;
                }
                let mut why = Vec::new();
                let mut done = false;
                for a in alts {
                    match self.choose(a) {
                        Ok(c) => {
                            self.select(c, Some(&p.name), &mut queue)?;
                            done = true;
                            break;
                        }
                        Err(w) => why.push(w),
                    }
                }
                if !done && k < n_hard {
                    let rel = alts
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" | ");
                    let mut chain = self.chain(&p.name);
                    chain.push(rel);
                    return Err(ResolveError::Unsatisfiable {
                        chain: chain.join(" → "),
                        why: why.join("; "),
                    });
                }
            }
        }
        Ok(())
    }

    /// Installed packages whose dependencies the new set breaks get upgraded.
    fn repair_installed(&mut self, recommends: bool) -> Result<bool, ResolveError> {
        let mut queue = Vec::new();
        let names: Vec<String> = self
            .installed
            .pkgs
            .keys()
            .filter(|n| !self.selected.contains_key(*n))
            .cloned()
            .collect();
        for n in names {
            let p = &self.installed.pkgs[&n];
            let broken = p
                .pre_depends
                .iter()
                .chain(p.depends.iter())
                .any(|alts| !alts.iter().any(|a| self.satisfied(a)));
            if broken {
                if let Some(&c) = self.candidate.get(n.as_str()) {
                    if self.avail[c].pkg.version > p.version {
                        self.select(c, None, &mut queue)?;
                    }
                }
            }
        }
        let changed = !queue.is_empty();
        self.process(queue, recommends)?;
        Ok(changed)
    }

    fn check_conflicts(&self) -> Result<(), ResolveError> {
        for (p, new) in self.all_present() {
            for atom in p.conflicts.iter().chain(p.breaks.iter()).flatten() {
                for (q, qnew) in self.all_present() {
                    if q.name == p.name || !(new || qnew) {
                        continue;
                    }
                    let hit = (q.name == atom.name && atom_version_ok(atom, &q.version))
                        || provides_ok(q, atom);
                    if hit {
                        return Err(ResolveError::Conflict(format!(
                            "{} {} conflicts with or breaks {} {} ({atom}); they cannot be installed together",
                            p.name, p.version, q.name, q.version
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Selected packages in dependency order (dependencies first; cycles broken).
    fn order(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut state: HashMap<usize, u8> = HashMap::new();
        let roots: Vec<usize> = self.selected.values().copied().collect();
        for r in roots {
            self.visit(r, &mut state, &mut out);
        }
        out
    }

    fn visit(&self, i: usize, state: &mut HashMap<usize, u8>, out: &mut Vec<usize>) {
        if state.contains_key(&i) {
            return;
        }
        state.insert(i, 1);
        let p = &self.avail[i].pkg;
        for alts in p.pre_depends.iter().chain(p.depends.iter()) {
            for a in alts {
                let dep = self.selected.get(&a.name).copied().or_else(|| {
                    self.selected
                        .values()
                        .copied()
                        .find(|&j| provides_ok(&self.avail[j].pkg, a))
                });
                if let Some(j) = dep {
                    self.visit(j, state, out);
                    break;
                }
            }
        }
        state.insert(i, 2);
        out.push(i);
    }
}

/// Resolves `requested` names against `avail` on top of `installed`.
pub fn resolve(
    avail: &[Available],
    installed: &Installed,
    arch: &str,
    requested: &[String],
    recommends: bool,
) -> Result<Plan, ResolveError> {
    let mut st = State::new(avail, installed, arch);
    let mut queue = Vec::new();
    for r in requested {
        // `name=version` (apt's syntax) or a relation atom `name (>= version)`.
        let spec = match r.split_once('=') {
            Some((n, v)) if !r.contains('(') => format!("{n} (= {v})"),
            _ => r.clone(),
        };
        let atom =
            super::relation::parse_atom(&spec).map_err(|_| ResolveError::NotFound(r.clone()))?;
        let i = match st.choose(&atom) {
            Ok(i) => i,
            Err(why) if st.candidate.contains_key(atom.name.as_str()) => {
                return Err(ResolveError::Unsatisfiable {
                    chain: r.clone(),
                    why,
                })
            }
            // Like apt: a package the base already has is "already the newest version"
            // even when no index lists it (bash in a repository holding only a closure).
            Err(_) if atom.constraint.is_none() && installed.pkgs.contains_key(&atom.name) => {
                continue
            }
            Err(_) => return Err(ResolveError::NotFound(r.clone())),
        };
        if installed
            .pkgs
            .get(&st.avail[i].pkg.name)
            .is_some_and(|p| p.version >= st.avail[i].pkg.version)
        {
            continue;
        }
        st.select(i, None, &mut queue)?;
    }
    st.process(queue, recommends)?;
    while st.repair_installed(recommends)? {}
    st.check_conflicts()?;
    let upgrades = st
        .selected
        .keys()
        .filter(|n| installed.pkgs.contains_key(*n))
        .cloned()
        .collect();
    Ok(Plan {
        order: st.order(),
        upgrades,
    })
}

/// One line of a lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEntry {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// SHA-256 of the .deb.
    pub sha256: String,
}

/// Writes a lock file: a comment line, then `name version arch sha256` per package.
pub fn lock_text(avail: &[Available], plan: &Plan) -> String {
    let mut s = String::from("# rootsmith deb lock: name version arch sha256\n");
    let mut lines: BTreeSet<String> = BTreeSet::new();
    for &i in &plan.order {
        let p = &avail[i].pkg;
        let sha = p.sha256.map(|d| d.hex()).unwrap_or_default();
        lines.insert(format!("{} {} {} {}", p.name, p.version, p.arch, sha));
    }
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
    s
}

/// Parses a lock file.
pub fn parse_lock(text: &str) -> Result<Vec<LockEntry>, ResolveError> {
    let mut out = Vec::new();
    for (n, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        let [name, version, arch, sha256] = f[..] else {
            return Err(ResolveError::Lock(format!(
                "line {}: expected `name version arch sha256`",
                n + 1
            )));
        };
        out.push(LockEntry {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            sha256: sha256.into(),
        });
    }
    Ok(out)
}

/// The plan a lock file pins: every entry must match an available package exactly.
pub fn plan_from_lock(
    avail: &[Available],
    installed: &Installed,
    lock: &[LockEntry],
) -> Result<Plan, ResolveError> {
    let mut st = State::new(avail, installed, "");
    let mut queue = Vec::new();
    for e in lock {
        let i = avail
            .iter()
            .position(|a| {
                a.pkg.name == e.name
                    && a.pkg.version.to_string() == e.version
                    && a.pkg.arch == e.arch
                    && a.pkg.sha256.map(|d| d.hex()).as_deref() == Some(e.sha256.as_str())
            })
            .ok_or_else(|| {
                ResolveError::Lock(format!(
                    "{} {} {} (sha256 {}) is not in the repositories any more; update the lock by building without it",
                    e.name, e.version, e.arch, e.sha256
                ))
            })?;
        st.select(i, None, &mut queue)?;
    }
    st.check_conflicts()?;
    let upgrades = st
        .selected
        .keys()
        .filter(|n| installed.pkgs.contains_key(*n))
        .cloned()
        .collect();
    Ok(Plan {
        order: st.order(),
        upgrades,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkg::deb::packages::parse_all;

    fn avail(text: &str) -> Vec<Available> {
        parse_all("Packages", text)
            .unwrap()
            .into_iter()
            .map(|pkg| Available {
                pkg,
                base_uri: "http://x".into(),
            })
            .collect()
    }

    fn names(a: &[Available], p: &Plan) -> Vec<String> {
        p.order.iter().map(|&i| a[i].pkg.name.clone()).collect()
    }

    const INDEX: &str = "Package: init-system-helpers\nVersion: 1.65\nArchitecture: all\nDepends: usrmerge | usr-is-merged, perl-base\n\nPackage: usrmerge\nVersion: 37\nArchitecture: all\nDepends: perl\n\nPackage: perl\nVersion: 5.36\nArchitecture: amd64\n\nPackage: usr-is-merged\nVersion: 37\nArchitecture: all\n\nPackage: app\nVersion: 2\nArchitecture: amd64\nDepends: init-system-helpers (>= 1.60), libssl3 (>= 3), mail-transport-agent\n\nPackage: libssl3\nVersion: 3.0.1\nArchitecture: amd64\n\nPackage: libssl3\nVersion: 3.0.9\nArchitecture: amd64\n\nPackage: exim\nVersion: 4\nArchitecture: amd64\nProvides: mail-transport-agent\nPriority: extra\n\nPackage: postfix\nVersion: 3\nArchitecture: amd64\nProvides: mail-transport-agent\nPriority: optional\n\nPackage: old\nVersion: 1\nArchitecture: amd64\nDepends: libssl3 (>= 9)\n\nPackage: bad\nVersion: 1\nArchitecture: amd64\nConflicts: perl-base\n";

    #[test]
    fn installed_alternatives_win_and_the_highest_version_is_taken() {
        let a = avail(INDEX);
        let inst = Installed::new(parse_all("status", "Package: usr-is-merged\nStatus: install ok installed\nVersion: 37\n\nPackage: perl-base\nStatus: install ok installed\nVersion: 5.36\n").unwrap());
        let p = resolve(&a, &inst, "amd64", &["app".into()], false).unwrap();
        let n = names(&a, &p);
        assert!(!n.contains(&"usrmerge".to_string()), "{n:?}");
        assert!(n.contains(&"postfix".to_string()), "{n:?}");
        assert_eq!(n.last().unwrap(), "app");
        let ssl = p
            .order
            .iter()
            .find(|&&i| a[i].pkg.name == "libssl3")
            .unwrap();
        assert_eq!(a[*ssl].pkg.version.to_string(), "3.0.9");
        // On an empty system the first alternative is installable and taken.
        let p = resolve(
            &a,
            &Installed::default(),
            "amd64",
            &["init-system-helpers".into()],
            false,
        );
        assert!(p.is_err(), "perl-base is in no index");
    }

    #[test]
    fn failures_name_the_chain() {
        let a = avail(INDEX);
        let e = resolve(&a, &Installed::default(), "amd64", &["old".into()], false).unwrap_err();
        assert!(e.to_string().contains("old → libssl3 (>= 9)"), "{e}");
        assert!(matches!(
            resolve(&a, &Installed::default(), "amd64", &["nope".into()], false),
            Err(ResolveError::NotFound(_))
        ));
        // Regression: a requested package the base has, in no index, is already installed.
        let has_bash = Installed::new(
            parse_all(
                "status",
                "Package: bash\nStatus: install ok installed\nVersion: 5.2\n",
            )
            .unwrap(),
        );
        let p = resolve(&a, &has_bash, "amd64", &["bash".into()], false).unwrap();
        assert!(p.order.is_empty());
        let inst = Installed::new(
            parse_all(
                "status",
                "Package: perl-base\nStatus: install ok installed\nVersion: 5.36\n",
            )
            .unwrap(),
        );
        assert!(matches!(
            resolve(&a, &inst, "amd64", &["bad".into()], false),
            Err(ResolveError::Conflict(_))
        ));
    }

    #[test]
    fn recommends_only_when_asked_and_never_fatal() {
        let a = avail("Package: s\nVersion: 1\nArchitecture: all\nRecommends: r, missing\n\nPackage: r\nVersion: 1\nArchitecture: all\n");
        let without = resolve(&a, &Installed::default(), "amd64", &["s".into()], false).unwrap();
        assert_eq!(names(&a, &without), ["s"]);
        let with = resolve(&a, &Installed::default(), "amd64", &["s".into()], true).unwrap();
        assert_eq!(names(&a, &with), ["r", "s"]);
    }

    #[test]
    fn versioned_provides_and_base_upgrades() {
        let a = avail("Package: app\nVersion: 1\nArchitecture: all\nDepends: virt (>= 2), lib (>= 2)\n\nPackage: impl\nVersion: 5\nArchitecture: all\nProvides: virt (= 2)\n\nPackage: old-impl\nVersion: 9\nArchitecture: all\nProvides: virt\n\nPackage: lib\nVersion: 2\nArchitecture: amd64\n");
        let inst = Installed::new(
            parse_all(
                "status",
                "Package: lib\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n",
            )
            .unwrap(),
        );
        let p = resolve(&a, &inst, "amd64", &["app".into()], false).unwrap();
        assert_eq!(names(&a, &p), ["impl", "lib", "app"]);
        assert_eq!(p.upgrades, ["lib"]);
    }

    #[test]
    fn lock_round_trip() {
        let a = avail("Package: x\nVersion: 1\nArchitecture: all\nSHA256: 672aab86b8f9ca3653a0292d0df6af8e974e4ec1f991fa29cf69f33e451c76a4\n");
        let p = resolve(&a, &Installed::default(), "amd64", &["x".into()], false).unwrap();
        let lock = parse_lock(&lock_text(&a, &p)).unwrap();
        assert_eq!(
            plan_from_lock(&a, &Installed::default(), &lock)
                .unwrap()
                .order,
            p.order
        );
        let mut bad = lock.clone();
        bad[0].sha256 = "00".into();
        assert!(plan_from_lock(&a, &Installed::default(), &bad).is_err());
    }
}
