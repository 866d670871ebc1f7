/work/main/target/debug/deps/redirector_common-9a94e823407cd3bf.d: redirector-common/src/lib.rs redirector-common/src/csum.rs redirector-common/src/maps.rs redirector-common/src/parse.rs redirector-common/src/stats.rs

/work/main/target/debug/deps/libredirector_common-9a94e823407cd3bf.rlib: redirector-common/src/lib.rs redirector-common/src/csum.rs redirector-common/src/maps.rs redirector-common/src/parse.rs redirector-common/src/stats.rs

/work/main/target/debug/deps/libredirector_common-9a94e823407cd3bf.rmeta: redirector-common/src/lib.rs redirector-common/src/csum.rs redirector-common/src/maps.rs redirector-common/src/parse.rs redirector-common/src/stats.rs

redirector-common/src/lib.rs:
redirector-common/src/csum.rs:
redirector-common/src/maps.rs:
redirector-common/src/parse.rs:
redirector-common/src/stats.rs:
