//! Tests of the bbolt reader: hand-built files of several page sizes ([`synthetic`]), real
//! etcd 3.4 and 3.5 snapshots compared with etcd's own tools ([`oracle`]), and corrupt files
//! ([`corrupt`]). [`build`] writes small bbolt files; [`fixture`] runs a real etcd.

pub(crate) mod build;
mod corrupt;
mod fixture;
mod oracle;
mod synthetic;
