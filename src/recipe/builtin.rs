//! The recipes shipped in `manifests/`, embedded in the binary so `rootsmith build
//! debian-ssh-key` works from any directory.

/// Name and text of every shipped recipe.
const RECIPES: &[(&str, &str)] = &[
    (
        "alpine-ssh",
        include_str!("../../manifests/alpine-ssh.toml"),
    ),
    (
        "alpine-ssh-key",
        include_str!("../../manifests/alpine-ssh-key.toml"),
    ),
    (
        "alpine-ssh-key-minimal",
        include_str!("../../manifests/alpine-ssh-key-minimal.toml"),
    ),
    (
        "debian-ssh-key",
        include_str!("../../manifests/debian-ssh-key.toml"),
    ),
    (
        "debian-ssh-key-minimal",
        include_str!("../../manifests/debian-ssh-key-minimal.toml"),
    ),
    (
        "ubuntu-ssh-key",
        include_str!("../../manifests/ubuntu-ssh-key.toml"),
    ),
    (
        "ubuntu-ssh-key-minimal",
        include_str!("../../manifests/ubuntu-ssh-key-minimal.toml"),
    ),
];

/// The text of the shipped recipe `name`.
pub fn get(name: &str) -> Option<&'static str> {
    RECIPES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Every shipped recipe's name.
pub fn names() -> Vec<&'static str> {
    RECIPES.iter().map(|(n, _)| *n).collect()
}

/// True when `name` is a recipe that builds a SmolVM preset image (hostname `smolvm`,
/// guest agent slot).
pub fn is_smolvm_preset(name: &str) -> bool {
    get(name).is_some()
}
