//! Kubernetes: tags from the Pod's labels (`pod_tags`), the shipped manifests' configuration
//! end to end (`deployed`), and `sidelog inject` (`inject`, with the workloads it is given in
//! `manifests/`).

mod deployed;
mod inject;
mod pod_tags;
