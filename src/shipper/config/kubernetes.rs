//! The `[kubernetes]` table: where the Pod's Downward API files are, and which labels and
//! annotations become tags (see `crate::podtags`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Downward API file of `metadata.labels`; empty: none.
    #[serde(with = "crate::optional::path")]
    pub labels_file: Option<PathBuf>,
    /// Downward API file of `metadata.annotations`; empty: none.
    #[serde(with = "crate::optional::path")]
    pub annotations_file: Option<PathBuf>,
    /// Pod label name to tag name (`app = "kube_app"` sends `kube_app:<value>`); a `*` key
    /// maps every other label, `%%label%%` in its tag name standing for the label's name.
    pub pod_labels_as_tags: BTreeMap<String, String>,
    /// The same for annotations.
    pub pod_annotations_as_tags: BTreeMap<String, String>,
}
