//! The command line: `redirector run` starts the daemon; every other verb
//! either talks to it over the admin socket or works on a config file or the
//! pins directly. Errors reach the user with context and a non-zero exit.

use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    admin::{self, Request, Response},
    config,
    error_chain::error_chain,
    status::{DaemonStatus, FlipRecord, FlowTableStatus},
};

const DEFAULT_CONFIG: &str = "/etc/redirector/redirector.toml";

#[derive(Parser)]
#[command(
    name = "redirector",
    version,
    about = "Kernel-level failover for Active-Active databases",
    long_about = "Applications connect to a stable VIP; eBPF programs rewrite it, in the kernel, \
                  to the member this daemon chose after health-checking every member. \
                  No proxy hop, no DNS delay, no client changes."
)]
pub struct Cli {
    /// The daemon's admin socket (for status, switchover, ... ).
    #[arg(long, global = true, default_value = config::DEFAULT_ADMIN_SOCKET)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground: load or adopt the data path,
    /// health-check every member, flip the VIP map entries. SIGHUP reloads
    /// the config; SIGTERM stops the daemon and leaves traffic flowing.
    Run {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Log lines on stderr as text or JSON.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Show each service's VIP, active member, member health with the last
    /// check's latency and error, and the data-path counters.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Pin SERVICE to MEMBER until `release` (a planned move: open flows on
    /// the old member drain for drain_timeout, then are reset). On a fleet
    /// service (`fleet = true`) these four commands act on the whole fleet:
    /// they write the fleet's next decision, which every host applies.
    Switchover { service: String, member: String },
    /// Remove a switchover pin; the normal choice applies again at once
    /// (this is also how a manual failback is done).
    Release { service: String },
    /// Take MEMBER out of rotation for SERVICE (planned move if active).
    Drain { service: String, member: String },
    /// Put a drained MEMBER back into rotation.
    Undrain { service: String, member: String },
    /// Show every flip: service, from, to, reason, and the times of the
    /// first failed check, the down decision and the map write.
    History {
        #[arg(long)]
        json: bool,
    },
    /// Make the daemon re-read its config file (like SIGHUP). An invalid
    /// file is rejected and the running config stays.
    Reload,
    /// Detach every program and remove every pin of the data path. Refused
    /// while a daemon runs on the pin path (unless --force); traffic to the
    /// VIPs stops being translated.
    Teardown {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Remove this pin path instead of the config's.
        #[arg(long)]
        pin_path: Option<PathBuf>,
        /// Tear down even while a daemon holds the pin path (it then
        /// reports a VIP it no longer serves until it is stopped).
        #[arg(long)]
        force: bool,
    },
    /// Run one round of health checks from a config file and print the
    /// results (no kernel, no root). Exits 1 if any member is unhealthy.
    Check {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, ...) to stdout.
    Completions { shell: clap_complete::Shell },
    /// Check a config file and print warnings. Exits 1 with the file, line
    /// and field of the first problem.
    Validate {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

// Over 100 lines on purpose: one short arm per verb, so the whole dispatch
// reads in one place.
pub fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, log_format } => {
            let _log = init_logging(log_format);
            // One thread: the daemon's work is thousands of small probes and
            // map writes, none of them blocking; without cross-thread wakeups
            // and work stealing a probe costs less CPU (see bench/REPORT.md).
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(crate::daemon::run(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let r = ask(&cli.socket, Request::Status)?;
            let s = r.status.context("daemon sent no status")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", format_status(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History { json } => {
            let r = ask(&cli.socket, Request::History)?;
            let h = r.history.unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else {
                print!("{}", format_history(&h));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Switchover { service, member } => {
            say(&cli.socket, Request::Switchover { service, member })
        }
        Command::Release { service } => say(&cli.socket, Request::Release { service }),
        Command::Drain { service, member } => say(&cli.socket, Request::Drain { service, member }),
        Command::Undrain { service, member } => {
            say(&cli.socket, Request::Undrain { service, member })
        }
        Command::Reload => say(&cli.socket, Request::Reload),
        Command::Teardown {
            config,
            pin_path,
            force,
        } => {
            let pin = match pin_path {
                Some(p) => p,
                None => config::load(&config)?.datapath.pin_path,
            };
            // Held while the pins go, so no daemon starts on them meanwhile.
            let _lock = match crate::lock::pin_path(&pin) {
                Ok(l) => Some(l),
                Err(e @ crate::lock::LockError::Held { .. }) if force => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "warning: {e}; tearing down anyway (--force)"
                    );
                    None
                }
                Err(e @ crate::lock::LockError::Held { .. }) => {
                    return Err(anyhow::Error::new(e)
                        .context("teardown refused (pass --force to tear down anyway)"));
                }
                Err(e) => return Err(e.into()),
            };
            let removed = crate::datapath::teardown(&pin)
                .with_context(|| format!("tearing down {}", pin.display()))?;
            println!("removed {} pins under {}", removed.len(), pin.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "redirector",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { config } => {
            let c = config::load(&config)?;
            // What `run` reads beyond the file: secrets, CA files.
            crate::health::preflight(&c)
                .with_context(|| format!("{}: the daemon would not start", config.display()))?;
            for w in config::warnings(&c) {
                println!("warning: {w}");
            }
            println!("{}: ok, {} services", config.display(), c.services.len());
            if let Some(f) = &c.fleet {
                println!(
                    "fleet: {} of {} services, as host {:?} under {} at {}",
                    c.services.iter().filter(|s| s.fleet).count(),
                    c.services.len(),
                    f.host,
                    f.prefix,
                    f.endpoints.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let c = config::load(&config)?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let all_ok = rt.block_on(check_once(&c))?;
            Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Logs go through a bounded queue to stderr: a write error or a stuck
/// reader drops lines (counted in /metrics) instead of panicking or
/// blocking a task (see `logging`). The guard flushes on return.
fn init_logging(format: LogFormat) -> crate::logging::LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = crate::logging::spawn(
        std::io::stderr(),
        crate::logging::QUEUE_LINES,
        crate::logging::counters(),
    );
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Its fallback on a failed write is eprintln!, which panics.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
    guard
}

/// An error and its causes joined with ": ", each said once
/// ([`error_chain`]). Presentation only; nothing decides on this text.
pub fn error_text(e: &anyhow::Error) -> String {
    error_chain(e.as_ref())
}

fn ask(socket: &std::path::Path, req: Request) -> anyhow::Result<Response> {
    let r = admin::request(socket, &req, Duration::from_secs(30))?;
    if !r.ok {
        bail!("{}", r.error.unwrap_or_else(|| "the daemon refused".into()));
    }
    Ok(r)
}

fn say(socket: &std::path::Path, req: Request) -> anyhow::Result<ExitCode> {
    let r = ask(socket, req)?;
    if let Some(m) = r.message {
        println!("{m}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn check_once(c: &config::Config) -> anyhow::Result<bool> {
    crate::health::install_crypto_provider();
    let mut all_ok = true;
    for s in &c.services {
        println!(
            "{} (vip {}, check {})",
            s.name,
            s.vip,
            s.check.kind.as_str()
        );
        for m in &s.members {
            let mut checker =
                crate::health::build(&s.check).with_context(|| format!("service {}", s.name))?;
            let addr = crate::resolve::resolve(&m.host, m.port, s.vip.is_ipv4()).await;
            let line = match addr {
                None => {
                    all_ok = false;
                    format!("DOWN  cannot resolve {}", m.host)
                }
                Some(a) => {
                    let o = checker.check(a, &m.host).await;
                    all_ok &= o.healthy;
                    format!(
                        "{} {:>8.2}ms {}{}",
                        if o.healthy { "UP  " } else { "DOWN" },
                        o.latency.as_secs_f64() * 1000.0,
                        o.error.unwrap_or_default(),
                        o.code.map(|c| format!(" [{c}]")).unwrap_or_default()
                    )
                }
            };
            println!(
                "  {:<16} {:<28} {line}",
                m.name,
                format!("{}:{}", m.host, m.port)
            );
        }
    }
    Ok(all_ok)
}

fn ms_text(ms: Option<u64>) -> String {
    ms.map(|ms| {
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms))
            .to_string()
    })
    .unwrap_or_else(|| "-".into())
}

pub fn format_status(s: &DaemonStatus) -> String {
    let mut out = String::new();
    for svc in &s.services {
        out += &format!(
            "{}  vip {}  active {}{}{}  failback {}\n",
            svc.name,
            svc.vip,
            svc.active.as_deref().unwrap_or("-"),
            svc.pinned
                .as_ref()
                .map(|p| format!("  pinned to {p}"))
                .unwrap_or_default(),
            if svc.degraded {
                "  DEGRADED (all members down: fail static)"
            } else {
                ""
            },
            svc.failback,
        );
        for m in &svc.members {
            let check = m
                .last_check
                .as_ref()
                .map(|c| {
                    format!(
                        "{:.2}ms{}{}",
                        c.latency_ms,
                        c.error
                            .as_ref()
                            .map(|e| format!("  {e}"))
                            .unwrap_or_default(),
                        c.code
                            .as_ref()
                            .map(|e| format!(" [{e}]"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "not checked yet".into());
            out += &format!(
                "  {} {:<16} {:<28} prio {:<3} {:<8}{} {}\n",
                if svc.active.as_deref() == Some(m.name.as_str()) {
                    "*"
                } else {
                    " "
                },
                m.name,
                m.resolved
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| m.addr.clone()),
                m.priority,
                format!("{:?}", m.health).to_lowercase(),
                if m.drained { " drained" } else { "" },
                check
            );
        }
        if let Some(f) = &svc.fleet {
            out += &format_fleet(f);
        }
    }
    out += &format!("data path: {} [{}]\n", s.pin_path, s.attachments.join(", "));
    out += &format_flows(&s.flows);
    out += "  ";
    out += &s
        .counters
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    out += "\n";
    out += &format_tasks(&s.tasks);
    out
}

/// A fleet service's link to the engine, the fleet's decision and each
/// live host's view.
fn format_fleet(f: &crate::status::FleetStatus) -> String {
    let link = if f.attached {
        "attached".to_string()
    } else {
        format!(
            "CUT OFF from etcd since {}{}",
            ms_text(f.detached_since_ms),
            if f.following {
                ", keeping the last decision"
            } else {
                ", deciding locally (on_detach = local)"
            }
        )
    };
    let serving = match &f.barrier_to {
        Some(to) => format!("BARRIER (nothing serves until every host applied it, then {to})"),
        None => format!("active {}", f.active.as_deref().unwrap_or("-")),
    };
    let mut out = format!(
        "  fleet: host {}, {link}; epoch {} {serving}, {} by {}; applied here: {}\n",
        f.host,
        f.epoch,
        f.reason.map_or("-", |r| r.as_str()),
        if f.by.is_empty() { "-" } else { &f.by },
        f.applied_epoch,
    );
    if let Some(p) = &f.pinned {
        out += &format!("    pinned to {p} for the fleet\n");
    }
    if !f.drained.is_empty() {
        out += &format!("    drained for the fleet: {}\n", f.drained.join(", "));
    }
    for h in &f.hosts {
        let seen: Vec<String> = h.members.iter().map(|(m, s)| format!("{m} {s}")).collect();
        out += &format!(
            "    host {:<16} applied {:<6} sees {}\n",
            h.name,
            h.applied_epoch,
            seen.join(", ")
        );
    }
    if let Some(e) = &f.last_error {
        out += &format!("    last error: {e}\n");
    }
    out
}

/// One line when every supervised task runs and none died; else one line
/// per task that died.
fn format_tasks(tasks: &[crate::status::TaskStatus]) -> String {
    let died: Vec<_> = tasks
        .iter()
        .filter(|t| !t.running || t.deaths > 0)
        .collect();
    if died.is_empty() {
        return format!("tasks: {} supervised, all running\n", tasks.len());
    }
    let mut out = String::from("tasks:\n");
    for t in died {
        out += &format!(
            "  {:<24} {} {} deaths, last: {}\n",
            t.name,
            if t.running { "running again," } else { "DOWN," },
            t.deaths,
            t.last_error.as_deref().unwrap_or("-")
        );
    }
    out
}

fn format_flows(f: &FlowTableStatus) -> String {
    if f.sweeps == 0 {
        return match &f.error {
            Some(e) => format!("  flows: not counted: {e}\n"),
            None => "  flows: not counted yet (first sweep pending)\n".into(),
        };
    }
    let mut out = format!(
        "  flows: {} open, {} closing of {} ({:.1} % full, peak {}); swept: {} idle, {} closing, {} orphan replies\n",
        f.open,
        f.closing,
        f.capacity,
        f.fill() * 100.0,
        f.peak,
        f.removed_idle,
        f.removed_closing,
        f.removed_orphans
    );
    if let Some(e) = &f.error {
        out += &format!("  flows: last sweep failed: {e}\n");
    }
    out
}

pub fn format_history(h: &[FlipRecord]) -> String {
    let mut out = String::from(
        "map written                service        from -> to          reason      first failed check        marked down                why\n",
    );
    for r in h {
        out += &format!(
            "{:<26} {:<14} {:<19} {:<11} {:<25} {:<26} {}\n",
            ms_text(Some(r.map_written_ms)),
            r.service,
            format!("{} -> {}", r.from.as_deref().unwrap_or("-"), r.to),
            r.reason.as_str(),
            ms_text(r.first_failed_check_ms),
            ms_text(r.marked_down_ms),
            why_text(r),
        );
    }
    out
}

/// What completed a failover and the reactive signals about the old member
/// in its failing streak, e.g. "checks; signals: refused x2, reset x1".
fn why_text(r: &FlipRecord) -> String {
    let mut parts = Vec::new();
    if let Some(e) = r.epoch {
        parts.push(match r.phase.as_deref() {
            Some(phase) => format!("fleet epoch {e} ({phase})"),
            None => format!("fleet epoch {e}"),
        });
    }
    if let Some(t) = &r.trigger {
        parts.push(t.clone());
    }
    if !r.signals.is_empty() {
        let kinds: Vec<String> = r.signals.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        parts.push(format!("signals: {}", kinds.join(", ")));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_says_what_completed_a_failover_and_which_signals_came_first() {
        let r = FlipRecord {
            service: "cache".into(),
            from: Some("east".into()),
            to: "west".into(),
            reason: crate::decide::Reason::Failover,
            first_failed_check_ms: Some(1),
            marked_down_ms: Some(2),
            map_written_ms: 3,
            signals: [("refused".to_string(), 2), ("reset".to_string(), 1)].into(),
            trigger: Some("checks".into()),
            epoch: None,
            phase: None,
        };
        let text = format_history(std::slice::from_ref(&r));
        assert!(
            text.contains("checks; signals: refused x2, reset x1"),
            "{text}"
        );
        let plain = FlipRecord {
            signals: Default::default(),
            trigger: None,
            ..r
        };
        assert!(
            format_history(std::slice::from_ref(&plain))
                .trim_end()
                .ends_with(" -")
        );
        let fleet = FlipRecord {
            epoch: Some(7),
            phase: Some("barrier".into()),
            ..plain
        };
        assert!(
            format_history(&[fleet])
                .trim_end()
                .ends_with(" fleet epoch 7 (barrier)")
        );
    }

    #[test]
    fn status_shows_the_fleet_link_decision_and_each_hosts_view() {
        let f = crate::status::FleetStatus {
            host: "h1".into(),
            attached: false,
            detached_since_ms: Some(1),
            following: true,
            epoch: 4,
            active: Some("west".into()),
            reason: Some(crate::decide::Reason::Failover),
            by: "h2".into(),
            applied_epoch: 4,
            hosts: vec![crate::status::FleetHostStatus {
                name: "h2".into(),
                applied_epoch: 4,
                members: [("east".to_string(), "down".to_string())].into(),
            }],
            last_error: Some("etcd unreachable".into()),
            ..Default::default()
        };
        let text = format_fleet(&f);
        assert!(text.contains("CUT OFF from etcd"), "{text}");
        assert!(text.contains("keeping the last decision"), "{text}");
        assert!(
            text.contains("epoch 4 active west, failover by h2"),
            "{text}"
        );
        assert!(text.contains("host h2"), "{text}");
        assert!(text.contains("sees east down"), "{text}");
        assert!(text.contains("last error: etcd unreachable"), "{text}");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("admin socket /run/x.sock: {source}")]
    struct Repeats {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_its_parent_message_is_said_once() {
        let io = std::io::Error::from_raw_os_error(libc::EACCES);
        let cause = io.to_string();
        let e = anyhow::Error::new(Repeats { source: io }).context("starting");
        let text = error_text(&e);
        assert_eq!(text, format!("starting: admin socket /run/x.sock: {cause}"));
        assert_eq!(text.matches(&cause).count(), 1, "{text}");
        // Distinct causes all stay.
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_text(&e), "outer: middle: inner");
    }
}
