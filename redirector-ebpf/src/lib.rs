#![no_std]
//! Empty on purpose: the programs are the `redirector` binary built for the
//! BPF target. This library target exists so that `redirector/build.rs` can
//! depend on the crate and be rebuilt when it changes (aya-template shape).
