//! Host metrics, the node_exporter way (placeholder: being written).
