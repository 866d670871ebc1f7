/work/main/target/debug/deps/redirector_common-9e196cd7544f4f17.d: redirector-common/src/lib.rs redirector-common/src/csum.rs redirector-common/src/maps.rs redirector-common/src/parse.rs redirector-common/src/stats.rs redirector-common/src/builder.rs

/work/main/target/debug/deps/redirector_common-9e196cd7544f4f17: redirector-common/src/lib.rs redirector-common/src/csum.rs redirector-common/src/maps.rs redirector-common/src/parse.rs redirector-common/src/stats.rs redirector-common/src/builder.rs

redirector-common/src/lib.rs:
redirector-common/src/csum.rs:
redirector-common/src/maps.rs:
redirector-common/src/parse.rs:
redirector-common/src/stats.rs:
redirector-common/src/builder.rs:
