//! Tests of the bbolt reader: hand-built files of several page sizes ([`synthetic`]) and real
//! etcd 3.4 and 3.5 snapshots compared with etcd's own tools ([`oracle`]). [`build`] writes
//! small bbolt files; [`fixture`] runs a real etcd.

mod build;
mod fixture;
mod oracle;
mod synthetic;
