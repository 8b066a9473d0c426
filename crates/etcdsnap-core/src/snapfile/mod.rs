//! A snapshot file: how one is written from etcd's stream ([`writer`]), followed by a reader
//! while it is written ([`growing`]), and checked against etcd's SHA-256 trailer ([`verify`]).
//! Both the engine and the stores build on this module; it depends on neither.

pub mod growing;
pub(crate) mod parzip;
pub mod verify;
pub mod writer;
