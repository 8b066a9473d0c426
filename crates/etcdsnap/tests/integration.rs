//! Integration tests against real etcd 3.4 and 3.5 processes and real `etcdsnap server`s.

#[path = "integration/harness.rs"]
#[macro_use]
mod harness;

#[path = "integration/alerts.rs"]
mod alerts;
#[path = "integration/auth.rs"]
mod auth;
#[path = "integration/badinput.rs"]
mod badinput;
#[path = "integration/check.rs"]
mod check;
#[path = "integration/cloud.rs"]
mod cloud;
#[path = "integration/cluster.rs"]
mod cluster;
#[path = "integration/config_file.rs"]
mod config_file;
#[path = "integration/drill.rs"]
mod drill;
#[path = "integration/faults.rs"]
mod faults;
#[path = "integration/inspect.rs"]
mod inspect;
#[path = "integration/kube_errors.rs"]
mod kube_errors;
#[path = "integration/packaging.rs"]
mod packaging;
#[path = "integration/progress.rs"]
mod progress;
#[path = "integration/reach.rs"]
mod reach;
#[path = "integration/records.rs"]
mod records;
#[path = "integration/restore.rs"]
mod restore;
#[path = "integration/s3.rs"]
mod s3;
#[path = "integration/server.rs"]
mod server;
#[path = "integration/setup.rs"]
mod setup;
#[path = "integration/snapshots.rs"]
mod snapshots;
#[path = "integration/ui.rs"]
mod ui;
