//! Media types of the OCI image spec and Docker's image manifest v2 schema 2, and what each
//! one means to rootsmith (an index to resolve, a manifest to read, a layer to apply).

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, uncompressed.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker manifest list (schema 2).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer (gzip).
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign layer (gzip, "non-distributable").
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema 1 manifests, which rootsmith refuses.
pub const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The manifest media types asked for in `Accept` headers, index types first.
pub const ACCEPT_MANIFESTS: [&str; 4] = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// True for an image index or a Docker manifest list.
pub fn is_index(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_LIST
}

/// True for an image manifest (OCI or Docker schema 2).
pub fn is_manifest(mt: &str) -> bool {
    mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
}

/// True for Docker schema 1.
pub fn is_schema1(mt: &str) -> bool {
    DOCKER_SCHEMA1.contains(&mt)
}

/// True for a media type rootsmith can apply as a filesystem layer: OCI tar, `+gzip`,
/// `+zstd` (and their deprecated non-distributable forms), and Docker's gzip layers.
/// Compression itself is told by magic bytes, so the suffix is not trusted.
pub fn is_layer(mt: &str) -> bool {
    let oci = mt
        .strip_prefix("application/vnd.oci.image.layer.v1.tar")
        .or_else(|| mt.strip_prefix("application/vnd.oci.image.layer.nondistributable.v1.tar"));
    matches!(oci, Some("" | "+gzip" | "+zstd")) || mt == DOCKER_LAYER || mt == DOCKER_FOREIGN_LAYER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types_are_recognised_and_others_are_not() {
        assert!(is_layer(OCI_LAYER_GZIP));
        assert!(is_layer(OCI_LAYER_ZSTD));
        assert!(is_layer(OCI_LAYER_TAR));
        assert!(is_layer(DOCKER_LAYER));
        assert!(is_layer(
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        ));
        assert!(!is_layer("application/vnd.oci.image.layer.v1.tar+bzip2"));
        assert!(!is_layer(
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
        ));
        assert!(
            is_index(DOCKER_LIST) && is_manifest(DOCKER_MANIFEST) && is_schema1(DOCKER_SCHEMA1[1])
        );
    }
}
