//! Tests of the bbolt reader: hand-built files of several page sizes ([`synthetic`]), written
//! by [`build`].

mod build;
mod synthetic;
