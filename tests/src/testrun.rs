//! One BPF_PROG_TEST_RUN call with an output buffer, for the packet tests
//! and the benchmarks alike.

use aya::programs::{ProgramError, TestRun, TestRunOptions, TestRunResult};

/// What one run returned: the program's verdict, the packet it left, and
/// the kernel's mean time per repetition in nanoseconds.
pub struct Run {
    pub verdict: u32,
    pub packet: Vec<u8>,
    pub ns_per_run: f64,
}

/// Runs `prog` on `frame` `repeat` times, with an optional `__sk_buff` /
/// `xdp_md` context.
pub fn run<P>(prog: &P, frame: &[u8], repeat: u32, ctx: Option<&[u8]>) -> Result<Run, ProgramError>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let mut packet = vec![0u8; frame.len() + 256];
    let r = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut packet),
        ctx_in: ctx,
        repeat,
        ..TestRunOptions::default()
    })?;
    packet.truncate(r.data_size_out as usize);
    Ok(Run {
        verdict: r.return_value,
        packet,
        ns_per_run: r.duration.as_nanos() as f64,
    })
}
