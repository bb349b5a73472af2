//! Choosing the packages to install, like apk: every world dependency and, recursively,
//! every `D:` dependency must be provided by exactly one chosen or installed package —
//! by name or by a `p:` provide (`so:`, `cmd:`, `pc:`, paths, virtuals) — at a version the
//! constraint accepts; `!name` conflicts hold both ways; `i:` install-if packages join
//! when all their conditions are met. Installed packages (the base's database) satisfy
//! dependencies as they are. Among candidates: the real package of that name first, then
//! the highest `k:` provider priority, then the highest version, then the name. A wrong
//! choice is undone (bounded backtracking), so a conflict deeper down tries the next
//! candidate. Errors name the chain of packages that led to the failing dependency.

use std::collections::{BTreeMap, HashMap};

use super::dep::Dep;
use super::index::Package;
use super::version;

/// A package that may be chosen.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its index record.
    pub pkg: Package,
    /// Which repository it comes from (`None`: installed in the base).
    pub repo: Option<usize>,
    /// The repository's `@tag`, if any.
    pub tag: Option<String>,
}

impl Candidate {
    /// True for packages of the base's database.
    pub fn installed(&self) -> bool {
        self.repo.is_none()
    }
}

/// Why no installable set was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Nothing provides the name.
    #[error(
        "nothing provides {dep} (needed by {chain}): check the package name and the repositories"
    )]
    Missing {
        /// The dependency.
        dep: String,
        /// `world → a-1 → b-2`.
        chain: String,
    },
    /// Something provides the name, but not at an acceptable version.
    #[error("{dep} cannot be satisfied (needed by {chain}): available {available}")]
    Unsatisfiable {
        /// The dependency.
        dep: String,
        /// The chain.
        chain: String,
        /// What the repositories and the base offer.
        available: String,
    },
    /// Every candidate conflicts with something chosen or installed.
    #[error("{pkg} conflicts with {with} (needed by {chain})")]
    Conflict {
        /// The candidate.
        pkg: String,
        /// What it conflicts with.
        with: String,
        /// The chain.
        chain: String,
    },
    /// A virtual name with several providers and no priority to choose by.
    #[error("{name} is a virtual package provided by {providers} (needed by {chain}): name one of them with --package")]
    Virtual {
        /// The virtual name.
        name: String,
        /// The providers.
        providers: String,
        /// The chain.
        chain: String,
    },
    /// The lock file and the resolution disagree.
    #[error("lock file mismatch: {0}; delete the lock file to resolve afresh")]
    Lock(String),
    /// Too many alternatives tried.
    #[error("dependency resolution gave up after {0} steps: the dependencies are too entangled")]
    TooComplex(u32),
}

const MAX_STEPS: u32 = 200_000;

/// Packages to choose from: the repositories' and the base's.
#[derive(Debug, Default)]
pub struct Universe {
    /// Every candidate.
    pub cands: Vec<Candidate>,
    by_name: HashMap<String, Vec<(usize, Option<String>)>>,
    arch: String,
}

impl Universe {
    /// An empty universe for `arch` (packages for other arches are ignored; `noarch` fits).
    pub fn new(arch: &str) -> Universe {
        Universe {
            arch: arch.to_string(),
            ..Universe::default()
        }
    }

    /// Adds a candidate; returns its index (or `None` when its arch does not fit).
    pub fn add(&mut self, c: Candidate) -> Option<usize> {
        let a = &c.pkg.arch;
        if !c.installed() && !a.is_empty() && a != &self.arch && a != "noarch" {
            return None;
        }
        let i = self.cands.len();
        self.by_name
            .entry(c.pkg.name.clone())
            .or_default()
            .push((i, Some(c.pkg.version.clone())));
        for p in &c.pkg.provides {
            let v = p.constraint.as_ref().map(|(_, v)| v.clone());
            self.by_name.entry(p.name.clone()).or_default().push((i, v));
        }
        self.cands.push(c);
        Some(i)
    }

    /// Candidates providing `name`, with the version they provide it at.
    pub fn providers(&self, name: &str) -> &[(usize, Option<String>)] {
        self.by_name.get(name).map(|v| v.as_slice()).unwrap_or(&[])
    }
}

/// The outcome: what to install, in order (dependencies first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Candidate indices of new packages, dependencies before dependents.
    pub install: Vec<usize>,
    /// `(new, installed)`: new packages that replace (upgrade) a base package.
    pub upgrades: Vec<(usize, usize)>,
}

struct Solver<'u> {
    u: &'u Universe,
    chosen: Vec<bool>,
    by_pkgname: HashMap<String, usize>,
    order: Vec<usize>,
    /// `(order length when it happened, installed candidate)` for each upgrade.
    replaced: Vec<(usize, usize)>,
    steps: u32,
    lock: Option<&'u BTreeMap<String, String>>,
}

fn chain_text(chain: &[String]) -> String {
    chain.join(" → ")
}

impl<'u> Solver<'u> {
    fn nv(&self, c: usize) -> String {
        let p = &self.u.cands[c].pkg;
        if self.u.cands[c].installed() {
            format!("{} (installed in the base)", p.nv())
        } else {
            p.nv()
        }
    }

    fn satisfied(&self, dep: &Dep) -> bool {
        self.u
            .providers(&dep.name)
            .iter()
            .any(|(c, v)| self.chosen[*c] && dep.satisfied_by(v.as_deref()))
    }

    /// What `c` would conflict with, if chosen now.
    fn conflict_of(&self, c: usize) -> Option<String> {
        let pkg = &self.u.cands[c].pkg;
        if let Some(&other) = self.by_pkgname.get(&pkg.name) {
            // A base package may be upgraded; two new versions of one name may not coexist.
            if other != c && !self.u.cands[other].installed() {
                return Some(self.nv(other));
            }
        }
        for d in pkg.depends.iter().filter(|d| d.conflict) {
            for (o, v) in self.u.providers(&d.name) {
                if *o != c && self.chosen[*o] && d.satisfied_by(v.as_deref()) {
                    return Some(self.nv(*o));
                }
            }
        }
        // Chosen packages' conflicts against what `c` provides.
        let mut names: Vec<(&str, Option<&str>)> = vec![(&pkg.name, Some(&pkg.version))];
        for p in &pkg.provides {
            names.push((&p.name, p.constraint.as_ref().map(|(_, v)| v.as_str())));
        }
        for (i, chosen) in self.chosen.iter().enumerate() {
            if !chosen || i == c {
                continue;
            }
            for d in self.u.cands[i].pkg.depends.iter().filter(|d| d.conflict) {
                if names
                    .iter()
                    .any(|(n, v)| *n == d.name && d.satisfied_by(*v))
                {
                    return Some(self.nv(i));
                }
            }
        }
        None
    }

    fn mark(&mut self, c: usize) {
        self.chosen[c] = true;
        self.by_pkgname.insert(self.u.cands[c].pkg.name.clone(), c);
    }

    fn undo_to(&mut self, len: usize) {
        while self.order.len() > len {
            let c = self.order.pop().expect("len checked");
            self.chosen[c] = false;
            self.by_pkgname.remove(&self.u.cands[c].pkg.name);
        }
        while self.replaced.last().is_some_and(|(at, _)| *at >= len) {
            let (_, old) = self.replaced.pop().expect("checked");
            self.mark(old);
        }
    }

    fn tag_ok(&self, c: usize, dep: &Dep) -> bool {
        // Untagged repositories always serve; a tagged one only `name@tag` requests.
        let cand = &self.u.cands[c];
        cand.installed() || cand.tag.is_none() || cand.tag == dep.tag
    }

    fn lock_ok(&self, c: usize) -> bool {
        let p = &self.u.cands[c].pkg;
        match self.lock {
            Some(l) if !self.u.cands[c].installed() => l.get(&p.name) == Some(&p.version),
            _ => true,
        }
    }

    /// Candidates for `dep`, best first.
    fn candidates(&self, dep: &Dep, chain: &[String]) -> Result<Vec<usize>, ResolveError> {
        let all = self.u.providers(&dep.name);
        if all.is_empty() {
            return Err(ResolveError::Missing {
                dep: dep.to_string(),
                chain: chain_text(chain),
            });
        }
        let is_real = all
            .iter()
            .any(|(c, _)| self.u.cands[*c].pkg.name == dep.name);
        let mut ok: Vec<(usize, Option<&str>)> = all
            .iter()
            .filter(|(c, v)| {
                dep.satisfied_by(v.as_deref())
                    && self.tag_ok(*c, dep)
                    && self.lock_ok(*c)
                    && !self.u.cands[*c].installed()
            })
            .map(|(c, v)| (*c, v.as_deref()))
            .collect();
        if !is_real {
            // Unversioned provides are chosen automatically only with a provider priority.
            let auto: Vec<_> = ok
                .iter()
                .copied()
                .filter(|(c, v)| v.is_some() || self.u.cands[*c].pkg.provider_priority.is_some())
                .collect();
            if auto.is_empty() && ok.len() > 1 {
                let mut names: Vec<String> = ok
                    .iter()
                    .map(|(c, _)| self.u.cands[*c].pkg.name.clone())
                    .collect();
                names.sort();
                names.dedup();
                return Err(ResolveError::Virtual {
                    name: dep.name.clone(),
                    providers: names.join(", "),
                    chain: chain_text(chain),
                });
            }
            if !auto.is_empty() {
                ok = auto;
            }
        }
        if ok.is_empty() {
            let mut avail: Vec<String> = all
                .iter()
                .map(|(c, v)| {
                    let p = &self.u.cands[*c].pkg;
                    let what = if p.name == dep.name {
                        p.nv()
                    } else {
                        format!(
                            "{} (provides {}{})",
                            p.nv(),
                            dep.name,
                            v.as_deref().map(|v| format!("={v}")).unwrap_or_default()
                        )
                    };
                    if self.u.cands[*c].installed() {
                        format!("{what} installed in the base")
                    } else {
                        what
                    }
                })
                .collect();
            avail.sort();
            avail.dedup();
            return Err(ResolveError::Unsatisfiable {
                dep: dep.to_string(),
                chain: chain_text(chain),
                available: avail.join(", "),
            });
        }
        let u = self.u;
        ok.sort_by(|(a, av), (b, bv)| {
            let (pa, pb) = (&u.cands[*a].pkg, &u.cands[*b].pkg);
            let real = (pb.name == dep.name).cmp(&(pa.name == dep.name));
            let prio = pb
                .provider_priority
                .unwrap_or(0)
                .cmp(&pa.provider_priority.unwrap_or(0));
            let pver = match (av, bv) {
                (Some(x), Some(y)) if pa.name != dep.name => version::compare(y, x),
                _ => std::cmp::Ordering::Equal,
            };
            real.then(prio)
                .then(pver)
                .then(pa.name.cmp(&pb.name))
                .then(version::compare(&pb.version, &pa.version))
                .then(a.cmp(b))
        });
        Ok(ok.into_iter().map(|(c, _)| c).collect())
    }

    fn require(&mut self, dep: &Dep, chain: &mut Vec<String>) -> Result<(), ResolveError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(ResolveError::TooComplex(MAX_STEPS));
        }
        if dep.conflict {
            // Checked when packages are chosen.
            return Ok(());
        }
        if self.satisfied(dep) {
            return Ok(());
        }
        let cands = self.candidates(dep, chain)?;
        let mut first_err = None;
        for c in cands {
            let mark = self.order.len();
            match self.choose(c, chain) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.undo_to(mark);
                    if matches!(e, ResolveError::TooComplex(_)) {
                        return Err(e);
                    }
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.expect("candidates() returns at least one"))
    }

    fn choose(&mut self, c: usize, chain: &mut Vec<String>) -> Result<(), ResolveError> {
        if let Some(with) = self.conflict_of(c) {
            return Err(ResolveError::Conflict {
                pkg: self.nv(c),
                with,
                chain: chain_text(chain),
            });
        }
        if let Some(&old) = self.by_pkgname.get(&self.u.cands[c].pkg.name) {
            if old != c {
                self.chosen[old] = false;
                self.replaced.push((self.order.len(), old));
            }
        }
        self.mark(c);
        // Recorded now so an undo removes it; moved after its dependencies below.
        self.order.push(c);
        let at = self.order.len() - 1;
        chain.push(self.nv(c));
        let deps = self.u.cands[c].pkg.depends.clone();
        let mut res = Ok(());
        for d in deps.iter().filter(|d| !d.conflict) {
            let mut d = d.clone();
            // A tagged package's dependencies may come from the same tagged repositories.
            d.tag = self.u.cands[c].tag.clone();
            if let Err(e) = self.require(&d, chain) {
                res = Err(e);
                break;
            }
        }
        chain.pop();
        res?;
        // Dependencies first: move `c` behind everything chosen for it.
        let me = self.order.remove(at);
        self.order.push(me);
        Ok(())
    }

    /// After upgrades, the base packages that stay must still have their dependencies
    /// (an upgrade may pull further upgrades, as apk does).
    fn base_still_satisfied(&mut self) -> Result<(), ResolveError> {
        loop {
            let mut missing = None;
            'scan: for (i, c) in self.u.cands.iter().enumerate() {
                if !c.installed() || !self.chosen[i] {
                    continue;
                }
                for d in c.pkg.depends.iter().filter(|d| !d.conflict) {
                    if !self.satisfied(d) {
                        missing = Some((i, d.clone()));
                        break 'scan;
                    }
                }
            }
            let Some((i, d)) = missing else { return Ok(()) };
            let mut chain = vec!["base".to_string(), self.nv(i)];
            // First try upgrading the base package itself; else report its dependency.
            let name = self.u.cands[i].pkg.name.clone();
            let newer = Dep {
                constraint: Some((version::Op::Greater, self.u.cands[i].pkg.version.clone())),
                ..Dep::on(&name)
            };
            let mark = self.order.len();
            match self.require(&newer, &mut chain) {
                Ok(()) => continue,
                Err(e @ ResolveError::TooComplex(_)) => return Err(e),
                Err(_) => self.undo_to(mark),
            }
            self.require(&d, &mut chain)?;
        }
    }

    /// Adds install-if packages whose conditions hold, until nothing changes.
    fn install_ifs(&mut self) -> Result<(), ResolveError> {
        loop {
            let mut added = false;
            let mut best: BTreeMap<&str, usize> = BTreeMap::new();
            for (i, c) in self.u.cands.iter().enumerate() {
                if c.installed()
                    || c.pkg.install_if.is_empty()
                    || c.tag.is_some()
                    || !self.lock_ok(i)
                {
                    continue;
                }
                match best.get(c.pkg.name.as_str()) {
                    Some(&j)
                        if version::compare(&self.u.cands[j].pkg.version, &c.pkg.version)
                            .is_ge() => {}
                    _ => {
                        best.insert(&c.pkg.name, i);
                    }
                }
            }
            for (name, c) in best {
                if self.by_pkgname.contains_key(name) {
                    continue;
                }
                let cond = &self.u.cands[c].pkg.install_if;
                let met = cond.iter().all(|d| {
                    if d.conflict {
                        !self.satisfied(&Dep {
                            conflict: false,
                            ..d.clone()
                        })
                    } else {
                        self.satisfied(d)
                    }
                });
                if !met {
                    continue;
                }
                let mark = self.order.len();
                let mut chain = vec![format!(
                    "install_if {}",
                    cond.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                )];
                match self.choose(c, &mut chain) {
                    Ok(()) => added = true,
                    Err(e @ ResolveError::TooComplex(_)) => return Err(e),
                    Err(_) => self.undo_to(mark),
                }
            }
            if !added {
                return Ok(());
            }
        }
    }
}

/// Resolves `world` (the requested names, plus the base's world) in `u`. With `lock`,
/// new packages must be exactly the locked `name → version` set.
pub fn resolve(
    u: &Universe,
    world: &[Dep],
    lock: Option<&BTreeMap<String, String>>,
) -> Result<Resolution, ResolveError> {
    let mut s = Solver {
        u,
        chosen: vec![false; u.cands.len()],
        by_pkgname: HashMap::new(),
        order: Vec::new(),
        replaced: Vec::new(),
        steps: 0,
        lock,
    };
    for (i, c) in u.cands.iter().enumerate() {
        if c.installed() {
            s.mark(i);
        }
    }
    // World conflicts (`!name` in world) are checked against everything at the end.
    for dep in world.iter().filter(|d| !d.conflict) {
        let mut chain = vec!["world".to_string()];
        s.require(dep, &mut chain)?;
    }
    s.base_still_satisfied()?;
    s.install_ifs()?;
    s.base_still_satisfied()?;
    for dep in world.iter().filter(|d| d.conflict) {
        let plain = Dep {
            conflict: false,
            ..dep.clone()
        };
        if let Some((c, _)) = u
            .providers(&plain.name)
            .iter()
            .find(|(c, v)| s.chosen[*c] && plain.satisfied_by(v.as_deref()))
        {
            return Err(ResolveError::Conflict {
                pkg: s.nv(*c),
                with: format!("world {dep}"),
                chain: "world".into(),
            });
        }
    }
    if let Some(lock) = lock {
        let got: BTreeMap<&str, &str> = s
            .order
            .iter()
            .map(|&c| {
                (
                    u.cands[c].pkg.name.as_str(),
                    u.cands[c].pkg.version.as_str(),
                )
            })
            .collect();
        let want: BTreeMap<&str, &str> =
            lock.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if got != want {
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, _)| !want.contains_key(*k))
                .map(|(k, v)| format!("{k}-{v}"))
                .collect();
            let missing: Vec<_> = want
                .iter()
                .filter(|(k, _)| !got.contains_key(*k))
                .map(|(k, v)| format!("{k}-{v}"))
                .collect();
            return Err(ResolveError::Lock(format!(
                "resolution adds [{}] and drops [{}] relative to the lock",
                extra.join(", "),
                missing.join(", ")
            )));
        }
    }
    let upgrades = s
        .replaced
        .iter()
        .filter_map(|&(_, old)| Some((*s.by_pkgname.get(&u.cands[old].pkg.name)?, old)))
        .collect();
    Ok(Resolution {
        install: s.order,
        upgrades,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkg::apk::index;

    fn universe(installed: &str, repo: &str) -> Universe {
        let mut u = Universe::new("x86_64");
        for p in index::parse(installed).unwrap() {
            u.add(Candidate {
                pkg: p,
                repo: None,
                tag: None,
            });
        }
        for p in index::parse(repo).unwrap() {
            u.add(Candidate {
                pkg: p,
                repo: Some(0),
                tag: None,
            });
        }
        u
    }

    fn names(u: &Universe, world: &str) -> Result<Vec<String>, ResolveError> {
        let w = Dep::parse_list(world).unwrap();
        let r = resolve(u, &w, None)?;
        Ok(r.install.iter().map(|&c| u.cands[c].pkg.nv()).collect())
    }

    const BASE: &str = "P:musl\nV:1.2.5-r0\nA:x86_64\np:so:libc.musl-x86_64.so.1=1\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\np:/bin/sh cmd:sh=1.36.1-r29\n";

    #[test]
    fn deps_sonames_and_order() {
        let repo = "P:app\nV:1.0-r0\nA:x86_64\nD:libfoo>=2 so:libbar.so.1 cmd:sh\n\n\
P:libfoo\nV:2.0_rc1-r0\nA:x86_64\n\nP:libfoo\nV:2.0-r0\nA:x86_64\nD:so:libc.musl-x86_64.so.1\n\n\
P:libfoo\nV:1.9-r9\nA:x86_64\n\nP:libbar\nV:1-r0\nA:x86_64\np:so:libbar.so.1=1.0\n";
        let u = universe(BASE, repo);
        assert_eq!(
            names(&u, "app").unwrap(),
            ["libfoo-2.0-r0", "libbar-1-r0", "app-1.0-r0"]
        );
        assert!(matches!(
            names(&u, "nothing"),
            Err(ResolveError::Missing { .. })
        ));
        let e = names(&u, "libfoo>=3").unwrap_err();
        assert!(matches!(e, ResolveError::Unsatisfiable { .. }), "{e}");
    }

    #[test]
    fn virtual_priorities_and_conflicts() {
        let repo = "P:ssh-a\nV:1-r0\nA:x86_64\nk:1\np:ssh-client\n\nP:ssh-b\nV:1-r0\nA:x86_64\nk:2\np:ssh-client\n\n\
P:x\nV:1-r0\nA:x86_64\np:thing\n\nP:y\nV:1-r0\nA:x86_64\np:thing\n\n\
P:bad\nV:1-r0\nA:x86_64\nD:!busybox\n\nP:uses\nV:1-r0\nA:noarch\nD:ssh-client\n";
        let u = universe(BASE, repo);
        assert_eq!(names(&u, "uses").unwrap(), ["ssh-b-1-r0", "uses-1-r0"]);
        assert!(matches!(
            names(&u, "thing"),
            Err(ResolveError::Virtual { .. })
        ));
        let e = names(&u, "bad").unwrap_err();
        assert!(
            e.to_string()
                .contains("busybox-1.36.1-r29 (installed in the base)"),
            "{e}"
        );
    }

    #[test]
    fn backtracks_and_install_if() {
        let repo = "P:top\nV:1-r0\nA:x86_64\nD:lib\n\n\
P:lib\nV:2-r0\nA:x86_64\nD:!busybox\n\nP:lib\nV:1-r0\nA:x86_64\n\n\
P:top-doc\nV:1-r0\nA:noarch\ni:top docs\n\nP:top-sh\nV:1-r0\nA:noarch\ni:top /bin/sh\n";
        let u = universe(BASE, repo);
        assert_eq!(
            names(&u, "top").unwrap(),
            ["lib-1-r0", "top-1-r0", "top-sh-1-r0"]
        );
    }

    #[test]
    fn base_packages_upgrade_when_needed() {
        let base = "P:zlib\nV:1.3.1-r1\nA:x86_64\np:so:libz.so.1=1.3.1\n\nP:tool\nV:1-r0\nA:x86_64\nD:zlib=1.3.1-r1\n";
        let repo = "P:zlib\nV:1.3.1-r2\nA:x86_64\np:so:libz.so.1=1.3.1\n\nP:app\nV:1-r0\nA:x86_64\nD:zlib>=1.3.1-r2\n\n\
P:tool\nV:2-r0\nA:x86_64\nD:zlib=1.3.1-r2\n";
        let u = universe(base, repo);
        let w = Dep::parse_list("app").unwrap();
        let r = resolve(&u, &w, None).unwrap();
        let nv: Vec<String> = r.install.iter().map(|&c| u.cands[c].pkg.nv()).collect();
        assert_eq!(nv, ["zlib-1.3.1-r2", "app-1-r0", "tool-2-r0"]);
        assert_eq!(r.upgrades.len(), 2);
        // Without a newer `tool`, the base's exact dependency blocks the upgrade.
        let u = universe(base, &repo.replace("P:tool\nV:2-r0", "P:toolx\nV:2-r0"));
        let e = resolve(&u, &w, None).unwrap_err().to_string();
        assert!(e.contains("zlib=1.3.1-r1 cannot be satisfied (needed by base → tool-1-r0 (installed in the base))"), "{e}");
    }

    #[test]
    fn lock_pins_versions() {
        let repo = "P:a\nV:1-r0\nA:x86_64\n\nP:a\nV:2-r0\nA:x86_64\n";
        let u = universe(BASE, repo);
        let lock: BTreeMap<String, String> = [("a".to_string(), "1-r0".to_string())].into();
        let r = resolve(&u, &[Dep::on("a")], Some(&lock)).unwrap();
        assert_eq!(u.cands[r.install[0]].pkg.version, "1-r0");
        let lock2: BTreeMap<String, String> = [("a".to_string(), "3-r0".to_string())].into();
        assert!(resolve(&u, &[Dep::on("a")], Some(&lock2)).is_err());
    }
}
