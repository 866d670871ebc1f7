#![no_std]
//! Empty on purpose: the programs are the `baseline` binary built for the
//! BPF target. This library target exists so that `tests/build.rs` can
//! depend on the crate and be rebuilt when it changes (aya-template shape).
