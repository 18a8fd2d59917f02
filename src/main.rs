//! Command line: parses flags, sets up logging, and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use alertmanager_wechat::config::Config;
use alertmanager_wechat::delivery::RetryPolicy;
use alertmanager_wechat::store::Store;
use alertmanager_wechat::{Service, cli};

#[derive(Parser, Debug)]
#[command(
    name = "alertmanager-wechat",
    version,
    about = "Prometheus Alertmanager and Grafana alerts to WeChat"
)]
struct Args {
    /// Configuration file; without one, a built-in default prints every alert to stdout.
    #[arg(long = "config.file", global = true)]
    config_file: Option<PathBuf>,
    /// Address to listen on, `:9097` for every interface.
    #[arg(long = "web.listen-address", default_value = ":9097")]
    listen_address: String,
    #[arg(long = "log.level", default_value = "info", global = true)]
    log_level: String,
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validates configuration files; lists every error.
    ///
    /// The files are named as arguments, with `--config.file=FILE`, or both (amtool takes
    /// both forms too).
    CheckConfig { files: Vec<PathBuf> },
    /// Prints the exact upstream requests a payload would become, secrets masked; with
    /// `--person`, the page each of that person's contacts would get.
    Render {
        /// An Alertmanager or Grafana webhook body.
        #[arg(long, required_unless_present = "person")]
        payload: Option<PathBuf>,
        /// Print the page a person of `people:` gets (a sample incident) instead.
        #[arg(long, conflicts_with_all = ["payload", "receiver"])]
        person: Option<String>,
        /// Send straight to this receiver instead of routing.
        #[arg(long)]
        receiver: Option<String>,
        /// The time to render durations against (RFC 3339); default now.
        #[arg(long)]
        now: Option<String>,
        /// Print JSON instead of the readable form.
        #[arg(long)]
        json: bool,
    },
    /// Pushes a one-line test message through every integration of a receiver.
    SendTest {
        #[arg(long)]
        receiver: String,
    },
    /// Creates a WxPusher QR code whose subscribers get a receiver's alerts; prints its URL.
    Qrcode {
        /// The receiver whose WxPusher app the code subscribes to.
        #[arg(long)]
        receiver: String,
        /// The tag subscribers are stored with; name it in `subscriber_tags`.
        #[arg(long)]
        extra: String,
        /// How long the code can be scanned (at most 30d).
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        valid: Duration,
    },
    /// Notifications that gave up: list, show, replay or purge them (uses `storage.path`).
    Deadletters {
        #[command(subcommand)]
        action: DeadLetters,
    },
    /// WxPusher subscribers learned from callbacks: list them, or remove one by UID.
    Subscribers {
        #[command(subcommand)]
        action: Subscribers,
    },
}

#[derive(Subcommand, Debug)]
enum Subscribers {
    /// One line per subscription: when, the UID, the QR-code tag.
    List,
    /// Forgets every subscription of a UID; later alerts no longer go to it.
    Remove { uid: String },
}

#[derive(Subcommand, Debug)]
enum DeadLetters {
    /// One line per dead letter, with its last error.
    List,
    /// Everything kept about one dead letter.
    Show { id: i64 },
    /// Re-queues one dead letter, or all with --all; attempts start over.
    Replay {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        #[arg(long)]
        all: bool,
    },
    /// Deletes every dead letter.
    Purge,
}

fn main() -> ExitCode {
    purge_freed_memory();
    let args = Args::parse();
    init_logging(&args);
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// mimalloc: a heap per thread, so the store's writer thread and the HTTP threads do not queue
/// for one malloc lock (glibc with one arena spent a tenth of the writer's time there), and
/// memory freed by another thread than the one that allocated it is reused (glibc with an
/// arena per thread held a large notification parsed on one thread and rendered on another
/// twice over). [`purge_freed_memory`] sets the options that keep the peak bounded.
/// docs/performance.md has the figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`, as numbered in the `mi_option_t` of the bundled mimalloc
/// (v3's `include/mimalloc.h`; the crate's bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Gives freed memory back to the system at once instead of after 10 ms, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise: a notification's memory is gone before the next one
/// is parsed. (Transparent huge pages are left out at build time, see Cargo.toml.)
fn purge_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores the option's value (an unknown option is ignored).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

fn init_logging(args: &Args) {
    use tracing_subscriber::prelude::*;
    // The level applies to this program; libraries only speak up at warn and above, so that
    // debug logs stay readable (and do not dump whole template contexts). A full EnvFilter
    // directive (containing `=`) is taken as given.
    let directive = if args.log_level.contains('=') {
        args.log_level.clone()
    } else {
        format!("warn,alertmanager_wechat={}", args.log_level)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,alertmanager_wechat=info"));
    let registry = tracing_subscriber::registry().with(filter);
    // Logs go to stderr: stdout carries the console integration's messages.
    match args.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Command::CheckConfig { mut files }) => {
            files.splice(0..0, args.config_file);
            if files.is_empty() {
                anyhow::bail!(
                    "check-config needs a file: check-config FILE... or --config.file=FILE"
                );
            }
            let (out, ok) = cli::check_config(&files);
            print!("{out}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Some(Command::Render {
            payload,
            person,
            receiver,
            now,
            json,
        }) => {
            let path = args.config_file.context("render needs --config.file")?;
            let rt = cli::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let now = match now {
                Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
                    .with_context(|| format!("--now {s:?} is not RFC 3339"))?
                    .to_utc(),
                None => chrono::Utc::now(),
            };
            let rendered = match (person, payload) {
                (Some(person), _) => cli::render_person(&rt, &person, now),
                (None, Some(payload)) => {
                    let body = std::fs::read(&payload)
                        .with_context(|| format!("reading {}", payload.display()))?;
                    cli::render(&rt, &body, receiver.as_deref(), now)
                }
                (None, None) => anyhow::bail!("render needs --payload or --person"),
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rendered)?);
            } else {
                print!("{}", cli::format_rendered(&rendered));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::SendTest { receiver }) => {
            let path = args.config_file.context("send-test needs --config.file")?;
            let rt = cli::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let tokio = tokio::runtime::Runtime::new()?;
            let (out, ok) = tokio.block_on(cli::send_test(&rt, &receiver));
            print!("{out}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Some(Command::Qrcode {
            receiver,
            extra,
            valid,
        }) => {
            let path = args.config_file.context("qrcode needs --config.file")?;
            let rt = cli::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let tokio = tokio::runtime::Runtime::new()?;
            match tokio.block_on(cli::qrcode(&rt, &receiver, &extra, valid)) {
                Ok(out) => {
                    println!("{}", out.url);
                    for n in out.notes {
                        eprintln!("{n}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Some(Command::Deadletters { action }) => {
            let config = match &args.config_file {
                Some(p) => Config::load(p),
                None => Config::builtin(),
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let action = match action {
                DeadLetters::List => cli::DeadLetterAction::List,
                DeadLetters::Show { id } => cli::DeadLetterAction::Show(id),
                DeadLetters::Replay { id, .. } => cli::DeadLetterAction::Replay(id),
                DeadLetters::Purge => cli::DeadLetterAction::Purge,
            };
            let tokio = tokio::runtime::Runtime::new()?;
            let (out, ok) = tokio.block_on(async {
                match Store::admin_from_config(&config.storage) {
                    Ok(store) => cli::deadletters(&store, action).await,
                    Err(e) => (format!("{e}\n"), false),
                }
            });
            print!("{out}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Some(Command::Subscribers { action }) => {
            let config = match &args.config_file {
                Some(p) => Config::load(p),
                None => Config::builtin(),
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let action = match action {
                Subscribers::List => cli::SubscriberAction::List,
                Subscribers::Remove { uid } => cli::SubscriberAction::Remove(uid),
            };
            let tokio = tokio::runtime::Runtime::new()?;
            let (out, ok) = tokio.block_on(async {
                match Store::admin_from_config(&config.storage) {
                    Ok(store) => cli::subscribers(&store, action).await,
                    Err(e) => (format!("{e}\n"), false),
                }
            });
            print!("{out}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        None => serve(args.config_file, &args.listen_address),
    }
}

fn parse_listen(addr: &str) -> anyhow::Result<SocketAddr> {
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    full.parse()
        .with_context(|| format!("--web.listen-address {addr:?} is not host:port"))
}

fn serve(config_file: Option<PathBuf>, listen: &str) -> anyhow::Result<ExitCode> {
    let config = match &config_file {
        Some(p) => Config::load(p),
        None => Config::builtin(),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let addr = parse_listen(listen)?;
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async move {
        let open = config.auth.is_open();
        let service = match Service::start(config, config_file.clone(), RetryPolicy::default()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(1));
            }
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!(
            address = %local,
            config = %config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "<built-in>".into()),
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        );
        if open {
            tracing::warn!("webhook endpoints are open: set auth.bearer_token_file or basic_auth to protect them");
        }
        let app = service.app.clone();
        tokio::spawn(reload_on_sighup(app));
        service.run(listener, shutdown_signal(), Duration::from_secs(10)).await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

async fn reload_on_sighup(app: std::sync::Arc<alertmanager_wechat::server::App>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let app = app.clone();
            let _ = tokio::task::spawn_blocking(move || app.reload()).await;
        }
    }
}
